"""Rebuild the analysis projection (pictures, persistent-problem states) from the EST_PICTURES history.

Run it with the service stopped (``est`` wires it as a CLI command): it replays every published picture of the
configured municipality filter, in stream order, through the same step the live consumer runs
(:func:`est_analysis.strategic.handlers.apply_picture`), so the result equals what the live service built.
Alerts are not queued again (they went out when the pictures first arrived). Analyses, measures and the outbox are kept.
Everything happens in one transaction: a failed rebuild leaves the old projection as it was.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import nats
from est_shared.adapters.schema import lock_schema
from est_shared.bus import PoisonEvent, parse_event
from est_shared.db import make_engine, session_factory, transaction
from est_shared.events import CloudEvent, PicturePublished
from est_shared.observability import error_name
from est_shared.org import OrgSnapshot
from est_shared.subjects import PICTURES
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from est_analysis.metrics import AnalysisMetrics
from est_analysis.settings import AnalysisSettings
from est_analysis.strategic import db
from est_analysis.strategic.handlers import Context, apply_picture, picture_subject

log = logging.getLogger("est.analysis")

Progress = Callable[[int, int], None]


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


async def rebuild(settings: AnalysisSettings, progress: Progress | None = None, *, batch: int = 500,
                  fetch_timeout: float = 5.0) -> RebuildResult:
    """Rebuild pictures and problem states from the stream; ``progress(done, total)`` after each batch."""
    started = time.perf_counter()
    engine = make_engine(settings.db_url())
    sessions = session_factory(engine)
    ctx = Context(sessions=sessions, settings=settings, metrics=AnalysisMetrics(CollectorRegistry()),
                  snapshot=OrgSnapshot)
    result = RebuildResult()
    nc = await nats.connect(servers=settings.nats_servers, connect_timeout=5, max_reconnect_attempts=3)
    try:
        async with engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(db.metadata.create_all)
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            picture_subject(settings.municipality_filter), durable=None, stream=PICTURES.name,
            config=ConsumerConfig(name=f"analysis-rebuild-{uuid.uuid4().hex[:8]}", deliver_policy=DeliverPolicy.ALL,
                                  ack_policy=AckPolicy.ALL, ack_wait=300, inactive_threshold=120,
                                  max_ack_pending=-1))
        total = (await sub.consumer_info()).num_pending or 0
        if progress:
            progress(0, total)
        async with transaction(sessions) as s:
            await s.execute(delete(db.pictures))
            await s.execute(delete(db.problem_states))
            await s.execute(delete(db.processed).where(db.processed.c.consumer == settings.durable))
            while result.events < total:
                msgs = await sub.fetch(min(batch, total - result.events), timeout=fetch_timeout)
                for msg in msgs:
                    result.events += 1
                    await _replay(s, msg.data, ctx=ctx, result=result)
                await msgs[-1].ack()  # AckPolicy.ALL: everything up to here
                if progress:
                    progress(result.events, total)
            result.pictures = len((await s.execute(db.pictures.select())).all())
            result.open_problems = await db.open_problem_count(s)
        await sub.unsubscribe()
    finally:
        await nc.close()
        await engine.dispose()
    result.seconds = time.perf_counter() - started
    log.info("analysis projection rebuilt", extra={"events": result.events, "pictures": result.pictures,
                                                   "seconds": round(result.seconds, 2)})
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
