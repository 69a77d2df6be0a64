"""Bus consumers of the analysis service: published pictures (thin; the rules live in handlers)."""

from __future__ import annotations

from typing import Any

from est_shared.bus import add_consumer
from est_shared.events import AlertData, AnalysisPublished, CloudEvent, PicturePublished
from est_shared.runtime import ServiceRuntime
from est_shared.subjects import PICTURES

from est_analysis.strategic.handlers import Context, handle_picture_published, picture_subject


def register(runtime: ServiceRuntime, *, ctx: Context) -> None:
    """A durable pull consumer on EST_PICTURES for ``se.est.picture.published`` (revisions too), and the
    channels the analysis publishes on (declared for AsyncAPI)."""
    runtime.declare_published("est.alert.raised.{municipality}.{area}", AlertData, types=["se.est.alert.raised"],
                              description="a problem became persistent (flagged in k of the last n periods)")
    runtime.declare_published("est.alert.resolved.{municipality}.{area}", AlertData,
                              types=["se.est.alert.resolved"], description="a persistent problem ended")
    runtime.declare_published("est.analysis.published.{municipality}", AnalysisPublished,
                              types=["se.est.analysis.published"],
                              description="a quarterly, tertial or yearly strategic analysis was compiled")

    async def handle(event: CloudEvent[Any]) -> None:
        await runtime.tables.wait()
        await handle_picture_published(event, ctx=ctx)

    add_consumer(runtime.broker, service="analysis", stream=PICTURES,
                 subject=picture_subject(ctx.settings.municipality_filter), durable=ctx.settings.durable,
                 data=PicturePublished, types=["se.est.picture.published"], handle=handle, metrics=runtime.metrics,
                 max_deliver=ctx.settings.consumer_max_deliver, batch_size=ctx.settings.consumer_batch_size)
