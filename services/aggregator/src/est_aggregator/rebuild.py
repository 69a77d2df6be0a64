"""Rebuild the aggregator's projection from the event history in the EST_REPORTS stream.

``rebuild(settings, progress=callable)`` (``await rebuild_async(...)`` inside a running loop) does:

1. clear what is derived from the stream: stored reports, forfeiture facts, the processed-event
   marks, the dirty marks and the state rows of pictures that are still open;
2. replay the stream from its first message with an ephemeral pull consumer (filtered like the
   live consumers: ``report_subject`` and ``forfeiture_subject``), through the same handlers the
   live consumers use (``handle_report_batch``, ``handle_forfeiture_recorded``): duplicates and
   corrections come out exactly as live, and events the live consumer dead-letters (undecodable,
   or reports that cannot be tallied) are skipped and counted in ``poison``;
3. drop the dirty marks of open pictures (an open picture is computed from the stored reports
   on every read, so it is rebuilt once its reports are; no burst of picture.updated events).

A database without any organisation history (a new one) first records the organisation versions the
``EST_ORG_SNAPSHOTS`` object store still holds (the intake keeps the newest few), oldest first, each from
its ``applied_at``, so past periods expect the reporters they had as far back as those versions tell.

Kept, because they are history and not derived: published versions (``picture_versions`` and the
published state rows), comments, alerts, the organisation history and the outbox. A published
picture whose replayed reports differ from its last version keeps its dirty mark, so the running
service publishes ONE revision for it (none when nothing changed). The processed marks are written
under the live durable's consumer name, so events the durable delivers again after the rebuild
change nothing.

Run it while the aggregator is stopped (or its consumer paused): live writes during a rebuild
would be erased by step 1. Command line: ``python -m est_aggregator.rebuild`` (the lead wires it
as ``est aggregator rebuild``), with a rich progress bar.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
from est_shared.adapters.jetstream_pull import Puller
from est_shared.adapters.schema import lock_schema
from est_shared.adapters.sqlite import checkpoint_loop
from est_shared.batching import parse_expected
from est_shared.bus import ORG_SNAPSHOTS, PoisonEvent, get_object, latest_org_snapshot, object_names
from est_shared.clock import utcnow
from est_shared.db import make_engine
from est_shared.events import ReportSubmitted
from est_shared.org import OrgSnapshot, snapshot_version
from est_shared.runtime import tune_gc
from est_shared.subjects import REPORTS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry
from sqlalchemy import delete, select

from est_aggregator.app import build_deps
from est_aggregator.metrics import AggregatorMetrics
from est_aggregator.pictures import db
from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.ingest import handle_forfeiture_recorded, handle_report_batch
from est_aggregator.pictures.organisation import record_org_version
from est_aggregator.settings import AggregatorSettings

log = logging.getLogger("est.aggregator")

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild replayed and stored."""

    events: int
    reports_stored: int
    duplicates: int
    forfeitures: int
    poison: int
    seconds: float


async def _load_org(js: Any) -> OrgSnapshot:
    return await latest_org_snapshot(js) or OrgSnapshot()


async def _record_stored_versions(js: Any, deps: Deps) -> int:
    """On a database with no organisation history: record the versions the object store holds, oldest first
    (the oldest as the first; a later one only with its ``applied_at``). Returns how many were recorded."""
    async with deps.sessions() as s:
        if await s.scalar(select(db.org_history.c.id).limit(1)) is not None:
            return 0
    names = sorted((v, n) for n in await object_names(js, ORG_SNAPSHOTS) if (v := snapshot_version(n)) is not None)
    recorded = 0
    for _, name in names:
        data = await get_object(js, ORG_SNAPSHOTS, name)
        if data is None:
            continue
        try:
            snapshot = OrgSnapshot.model_validate_json(data)
        except ValueError:
            log.warning("rebuild skipped an organisation snapshot that does not validate", extra={"object": name})
            continue
        if recorded and snapshot.applied_at is None:  # when it took effect is not known
            continue
        await record_org_version(deps=deps, snapshot=snapshot, now=utcnow())
        recorded += 1
    return recorded


async def _clear(deps: Deps) -> None:
    async with deps.unit_of_work() as s:
        for table in (db.reports, db.forfeitures, db.processed, db.picture_dirty):
            await s.execute(delete(table))
        await s.execute(delete(db.pictures).where(db.pictures.c.status == "open"))


async def rebuild_async(settings: AggregatorSettings, progress: Progress | None = None, *,
                        batch_size: int = 5000, checkpoint_interval: float = 1.0) -> RebuildResult:
    """Rebuild the projection (see the module docstring); ``progress(done, total)`` is called as events replay."""
    t0 = time.perf_counter()
    if settings.gc_tuning:
        tune_gc()
    engine = make_engine(settings.db_url())
    deps, local = build_deps(settings, engine, AggregatorMetrics(CollectorRegistry()))
    deps.cache = None  # a rebuild computes no picture: nothing to keep
    nc = await nats.connect(settings.nats_servers, connect_timeout=5)
    # the in-loop writes leave checkpoints to this task, as in the service: without it the WAL holds
    # every page each batch writes and the replay slows as it grows
    checkpoints = None if local is None else asyncio.create_task(checkpoint_loop(engine, checkpoint_interval),
                                                                 name="wal-checkpoint")
    try:
        async with engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(db.metadata.create_all)
            await conn.run_sync(db.add_missing_columns)
        js = nc.jetstream()
        org = await _load_org(js)
        await _clear(deps)
        await _record_stored_versions(js, deps)
        filters = [settings.report_subject] + ([settings.forfeiture_subject] if settings.forfeiture_subject else [])
        name = f"rebuild-{uuid.uuid4().hex[:8]}"
        config = ConsumerConfig(name=name, ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                                filter_subjects=filters, inactive_threshold=120.0, mem_storage=True)
        await js.add_consumer(REPORTS.name, config)
        # nats-py's fetch spent a task, a timer and a random read per message: a third of the time
        replay = await Puller(nc, REPORTS.name, name, window=batch_size, expires=4.5).start()
        total = (await js.consumer_info(REPORTS.name, name)).num_pending
        done = stored = duplicates = forfeitures = poison = 0
        if progress:
            progress(0, total)
        while done < total:
            msgs = await replay.take(min(batch_size, total - done), full=True, left=total - done, timeout=5.0)
            if not msgs:
                if (await js.consumer_info(REPORTS.name, name)).num_pending == 0:
                    break
                continue
            reports = []
            for m in msgs:
                try:
                    event = parse_expected(m.data, ReportSubmitted)
                except PoisonEvent:
                    poison += 1
                    log.warning("rebuild skipped an undecodable event")
                    continue
                if event.type == "se.est.report.submitted":
                    reports.append(event)
                elif event.type == "se.est.forfeiture.recorded":
                    if await handle_forfeiture_recorded(event, deps=deps, org=org):
                        forfeitures += 1
            if reports:
                outcome = await handle_report_batch(reports, deps=deps, org=org)
                stored += outcome.stored
                duplicates += outcome.duplicates
                poison += len(outcome.refused)
                for why in outcome.refused.values():  # the live consumer dead-lettered them (or would now)
                    log.warning("rebuild skipped a report that cannot be tallied", extra={"faults": why})
            done += len(msgs)
            if progress:
                progress(done, total)
        await replay.stop()
        try:
            await js.delete_consumer(REPORTS.name, name)
        except Exception:
            log.warning("could not delete the rebuild consumer (it expires by itself)")
        async with deps.unit_of_work() as s:
            open_keys = db.pictures.c.status == "open"
            open_rows = (await s.execute(db.pictures.select().where(open_keys))).all()
            for row in open_rows:
                await s.execute(delete(db.picture_dirty).where(db.picture_dirty.c.area_id == row.area_id,
                                                               db.picture_dirty.c.period == row.period))
    finally:
        if checkpoints is not None:
            checkpoints.cancel()
            await asyncio.gather(checkpoints, return_exceptions=True)
        await nc.close()
        await engine.dispose()
        if local is not None:
            local.dispose()
    return RebuildResult(events=done, reports_stored=stored, duplicates=duplicates, forfeitures=forfeitures,
                         poison=poison, seconds=time.perf_counter() - t0)


def rebuild(settings: AggregatorSettings, progress: Progress | None = None) -> RebuildResult:
    """Rebuild the projection from the stream history (blocking; see the module docstring)."""
    return asyncio.run(rebuild_async(settings, progress))


def run_cli(settings: AggregatorSettings | None = None) -> RebuildResult:
    """``est aggregator rebuild``: rebuild with a rich progress bar and print a summary."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console()
    with Progress(TextColumn("[bold]Rebuilding pictures"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("rebuild", total=None)
        result = rebuild(settings or AggregatorSettings(),
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"{result.events} events replayed in {result.seconds:.1f} s: {result.reports_stored} reports "
                  f"stored, {result.duplicates} duplicates ignored, {result.forfeitures} forfeitures, "
                  f"{result.poison} undecodable or untallyable skipped")
    return result


if __name__ == "__main__":
    run_cli()
