"""Bus consumers of the analysis service: published pictures (thin; the rules live in handlers)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from est_shared.bus import add_consumer
from est_shared.events import CloudEvent
from est_shared.runtime import ServiceRuntime
from est_shared.subjects import PICTURES

from est_analysis.handlers import Context, handle_picture_published

log = logging.getLogger("est.analysis")


def picture_subject(municipality_filter: str) -> str:
    """The subject filter for published pictures of one municipality, or of all ('*')."""
    return f"est.picture.published.{municipality_filter or '*'}.>"


def register_consumers(runtime: ServiceRuntime, *, ctx: Context, ensure_schema: Callable[[], Awaitable[None]]) -> None:
    """A durable pull consumer on EST_PICTURES for ``se.est.picture.published`` (revisions too)."""

    async def handle(event: CloudEvent[Any]) -> None:
        if event.type != "se.est.picture.published":
            return  # other picture events are not ours: ack and move on
        await ensure_schema()
        await handle_picture_published(event, ctx=ctx)

    add_consumer(runtime.broker, service="analysis", stream=PICTURES,
                 subject=picture_subject(ctx.settings.municipality_filter), durable=ctx.settings.durable,
                 handle=handle, metrics=runtime.metrics, max_deliver=ctx.settings.consumer_max_deliver,
                 batch_size=ctx.settings.consumer_batch_size)
