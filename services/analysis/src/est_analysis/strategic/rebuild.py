"""Rebuild the analysis projection (pictures, persistent-problem states) from the EST_PICTURES history.

Run it with the service stopped (``est analysis rebuild`` calls ``est_analysis.app.rebuild``): it replays every
published picture of the configured municipality filter, in stream order, through the same step the live
consumer runs (:func:`est_analysis.strategic.handlers.apply_picture`), so the result equals what the live
service built. Alerts are not queued again (they went out when the pictures first arrived). Analyses, measures
and the outbox are kept. Everything happens in one transaction: a failed rebuild leaves the old projection as
it was.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from est_shared.bus import PoisonEvent, parse_event
from est_shared.db import transaction
from est_shared.events import CloudEvent, PicturePublished
from est_shared.observability import error_name
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from est_analysis.strategic import db
from est_analysis.strategic.handlers import Context, apply_picture

log = logging.getLogger("est.analysis")

Progress = Callable[[int, int], None]


class PictureHistory(Protocol):
    """The published-picture events to replay (``est_analysis.adapters.history`` reads them from the stream)."""

    total: int
    """How many events there are to read."""

    def batches(self) -> AsyncIterator[Sequence[bytes]]:
        """The events' raw bytes in stream order, a batch at a time."""
        ...


@dataclass
class RebuildResult:
    """What a rebuild read and built."""

    events: int = 0
    applied: int = 0
    stale: int = 0
    duplicate: int = 0
    skipped: int = 0  # other event types and poison events (the live consumer dead-letters those)
    pictures: int = 0
    open_problems: int = 0
    seconds: float = 0.0


async def rebuild_projection(history: PictureHistory, *, ctx: Context, progress: Progress | None = None
                             ) -> RebuildResult:
    """Replace pictures and problem states by the replayed history; ``progress(done, total)`` after each batch."""
    result = RebuildResult()
    if progress:
        progress(0, history.total)
    async with transaction(ctx.sessions) as s:
        await s.execute(delete(db.pictures))
        await s.execute(delete(db.problem_states))
        await s.execute(delete(db.processed).where(db.processed.c.consumer == ctx.settings.durable))
        async for batch in history.batches():
            for raw in batch:
                result.events += 1
                await _replay(s, raw, ctx=ctx, result=result)
            if progress:
                progress(result.events, history.total)
        result.pictures = len((await s.execute(db.pictures.select())).all())
        result.open_problems = await db.open_problem_count(s)
    return result


async def _replay(s: AsyncSession, raw: bytes, *, ctx: Context, result: RebuildResult) -> None:
    try:
        event = parse_event(raw)
        if event.type != "se.est.picture.published" or not isinstance(event.data, PicturePublished):
            result.skipped += 1
            return
        outcome, _ = await apply_picture(s, cast(CloudEvent[PicturePublished], event), ctx=ctx, emit=False)
    except PoisonEvent as exc:
        log.warning("rebuild skipped an invalid event", extra={"error": error_name(exc)})
        result.skipped += 1
        return
    setattr(result, outcome, getattr(result, outcome) + 1)
