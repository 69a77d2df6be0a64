"""Composition root of the intake service: ``create_app(settings)`` wires everything; nothing connects at import."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from est_shared.adapters.schema import drop_indexes, lock_schema
from est_shared.adapters.sqlite import checkpoint_loop
from est_shared.bus import (
    ORG_SNAPSHOTS,
    BusUnavailable,
    PoisonEvent,
    SnapshotMissing,
    delete_object,
    latest_org_change,
    load_org_snapshot,
    object_names,
    publish_event,
    put_object,
)
from est_shared.db import add_to_outbox, make_engine, session_factory, transaction
from est_shared.events import CloudEvent, OrgChanged
from est_shared.org import OrgSnapshot, SnapshotBlob, snapshot_version
from est_shared.runtime import ServiceRuntime
from est_shared.subjects import ORG_CHANGED
from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from est_intake.adapters.fastpath import ReportsFastPath
from est_intake.adapters.jetstream import JetStreamReports
from est_intake.adapters.ledger import ReportLedger
from est_intake.consumers import register as register_bus
from est_intake.forfeitures import db as fdb
from est_intake.forfeitures.api import build_forfeiture_router
from est_intake.forfeitures.handlers import (
    ForfeitureDeps,
    Publish,
    municipality_timezone,
    record_credential_changes,
    run_upkeep,
)
from est_intake.forfeitures.pii import load_cipher, secret_text
from est_intake.metrics import ForfeitureMetrics, IntakeMetrics
from est_intake.org import db
from est_intake.org.api import ORG_PATH, OrgContext
from est_intake.org.api import build_router as build_org_router
from est_intake.org.domain import parse_org_text, plain_token_count
from est_intake.org.handlers import OrgApplied, StartupFile, StoreSnapshot, apply_org, org_event, unchanged_startup_file
from est_intake.org.tokens import build_token_router
from est_intake.reports import db as reports_db
from est_intake.reports.api import BATCH_PATH, REPORTS_PATH, ReportsContext
from est_intake.reports.api import build_router as build_reports_router
from est_intake.settings import IntakeSettings

Settings = IntakeSettings

log = logging.getLogger("est.intake")

DESCRIPTION = """The front door of EST Lägesbild: authenticates reporters, validates checklist reports and
answers only once JetStream has stored them (`se.est.report.submitted`). System of record of the
organisation (municipalities, areas, places, actors, people, roles, tokens) and its history
(`se.est.org.changed`). Errors are application/problem+json with Swedish and English detail."""


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    """Build the intake app: runtime, database, ledger, publishers, routes, the fast path and start-up work."""
    settings = settings or IntakeSettings()
    engine = make_engine(settings.db_url())
    sessions = session_factory(engine)
    runtime = ServiceRuntime(name="intake", title="EST Lägesbild – inrapportering (intake)", description=DESCRIPTION,
                             settings=settings, engine=engine, max_body_bytes=settings.max_body_bytes,
                             body_limits={("PUT", ORG_PATH): settings.max_org_body_bytes})
    metrics = IntakeMetrics(runtime.registry)
    startup_file = StartupFileState(runtime)
    wake = runtime.wake_outbox

    async def publish(subject: str, event: CloudEvent[Any]) -> bool:
        try:
            connected = bool(runtime.broker.connection.is_connected)
        except Exception:
            connected = False
        if not connected:
            runtime.metrics.publish_failures.inc()
            raise BusUnavailable("not connected to NATS")
        started = time.perf_counter()
        try:
            ack = await publish_event(runtime.js, subject, event, timeout=settings.publish_timeout)
        except BusUnavailable:
            runtime.metrics.publish_failures.inc()
            raise
        metrics.publish_seconds.observe(time.perf_counter() - started)
        runtime.metrics.published.labels(event.type).inc()
        return bool(getattr(ack, "duplicate", False))

    async def store(snapshot: OrgSnapshot) -> SnapshotBlob:
        """Write a version's snapshot to the object store (before its event can exist), then drop old ones."""
        blob = await asyncio.to_thread(SnapshotBlob.of, snapshot)
        await put_object(runtime.js, ORG_SNAPSHOTS, blob.name, blob.data)
        await _prune_snapshots(runtime, newest=blob.version, keep=settings.org_snapshots_kept)
        return blob

    ledger = ReportLedger(engine)
    reports_bus = JetStreamReports(runtime, metrics, timeout=settings.publish_timeout)
    org = OrgContext(runtime=runtime, sessions=sessions, metrics=metrics, wake=wake, store_snapshot=store,
                     on_org_put=startup_file.applied_by_hand)
    reports = ReportsContext(runtime=runtime, metrics=metrics, ledger=ledger, publish=reports_bus.publish_many,
                             original=reports_bus.original, max_batch=settings.max_batch, sessions=sessions)
    runtime.app.include_router(build_org_router(org))
    runtime.app.include_router(build_token_router(org))
    reports_router = build_reports_router(reports)
    runtime.app.include_router(reports_router)
    posts = {r.path: r for r in reports_router.routes if isinstance(r, APIRoute) and "POST" in (r.methods or ())}
    runtime.app.add_middleware(ReportsFastPath, ctx=reports, route=posts[REPORTS_PATH],
                               batch_route=posts[BATCH_PATH], max_body=settings.max_body_bytes)
    runtime.app.state.org = org
    runtime.app.state.reports = reports
    register_bus(runtime)
    install_forfeitures(runtime, settings=settings, engine=engine, sessions=sessions, publish=publish)

    async def start() -> None:
        async with engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(db.metadata.create_all)
            await conn.run_sync(reports_db.metadata.create_all)
            await conn.run_sync(drop_indexes, reports_db.DROPPED_INDEXES)
        relay = runtime.outbox_relay(sessions=sessions, table=db.outbox,
                                     on_published=lambda subject: runtime.metrics.published.labels("outbox").inc())
        # the snapshot store of a cluster that has just started times out until its stream has a leader;
        # both steps store before they commit, so running one again is safe
        await runtime.until_ready("store the organisation", lambda: _reconcile_org(runtime, sessions, store))
        if settings.org_file:
            org_file = settings.org_file
            await runtime.until_ready("store the organisation file", lambda: startup_file.apply(
                org_file, sessions=sessions, wake=wake, store=store, metrics=metrics))
        await relay.flush()
        relay.start()
        if ledger.local is not None:
            runtime.spawn(checkpoint_loop(engine), "wal-checkpoint")

    async def stop() -> None:
        ledger.close()

    runtime.on_start(start)
    runtime.on_stop(stop)
    return runtime.app


class StartupFileState:
    """The start-up organisation file (see the rule in ``est_intake.org.domain``): applied or skipped at start, and
    whether it waits to be applied by hand (``est_intake_org_file_skipped``, ``/readyz`` degraded)."""

    def __init__(self, runtime: ServiceRuntime) -> None:
        self.runtime = runtime
        self.skipped: StartupFile | None = None
        self.gauge = Gauge("est_intake_org_file_skipped", "1 while the start-up organisation file is not applied "
                           "because the organisation was changed since a start-up file last took effect (apply "
                           "it with est org apply FILE)", registry=runtime.registry)
        runtime.add_check("org_file", self.check)

    def check(self) -> bool | str:
        if self.skipped is None:
            return True
        name = self.skipped.name
        return (f"organisationsfilen {name} tillämpades inte vid start: organisationen har ändrats sedan en "
                f"startfil sist tillämpades; kör `est org apply {name}` om den ska gälla / the organisation file "
                f"{name} was not applied at start: the organisation was changed since a start-up file last took "
                f"effect; run `est org apply {name}` to apply it")

    async def apply(self, path: Path, *, sessions: Any, wake: Any, store: Any, metrics: IntakeMetrics) -> None:
        """Apply the start-up file as the rule says."""
        raw = await asyncio.to_thread(path.read_bytes)
        startup = StartupFile.of(raw, path.name)
        plain = await asyncio.to_thread(plain_token_count, raw.decode("utf-8", errors="replace"))
        if plain:  # how many, never which
            log.warning(f"the organisation file gives {plain} people a plain-text token (token:): fine for a demo; "
                        "otherwise give token_sha256 or issue tokens with `est token issue`",
                        extra={"file": path.name, "plain_tokens": plain})
        if await unchanged_startup_file(startup, sessions=sessions):
            log.info("organisation file unchanged since it last took effect; not applied again",
                     extra={"file": path.name})
            return
        doc = await asyncio.to_thread(parse_org_text, raw.decode("utf-8"))
        applied = await apply_org(doc, sessions=sessions, applied_by=f"file:{path.name}",
                                  on_applied=self.runtime.apply_org, wake=wake, store=store, metrics=metrics,
                                  startup=startup)
        if applied.outcome == "skipped":
            self.skipped = startup
            self.gauge.set(1)
        log.info("organisation file at start", extra={"file": path.name, "outcome": applied.outcome,
                                                      "version": applied.snapshot.version})

    async def applied_by_hand(self, raw: bytes, applied: OrgApplied, sessions: Any) -> None:
        """After ``PUT /v1/admin/org``: the skipped start-up file sent as it is (``est org apply FILE``) now took
        effect, so it no longer waits."""
        if self.skipped is None or StartupFile.of(raw, self.skipped.name).sha256 != self.skipped.sha256:
            return
        async with transaction(sessions) as s:
            await db.record_startup_file(s, sha256=self.skipped.sha256, file_name=self.skipped.name,
                                         version=applied.snapshot.version, outcome="applied")
        self.skipped = None
        self.gauge.set(0)


async def _prune_snapshots(runtime: ServiceRuntime, *, newest: int, keep: int) -> None:
    """Delete the snapshot objects of all but the ``keep`` newest versions (the database keeps every version)."""
    try:
        for name in await object_names(runtime.js, ORG_SNAPSHOTS):
            version = snapshot_version(name)
            if version is not None and version <= newest - keep:
                await delete_object(runtime.js, ORG_SNAPSHOTS, name)
    except Exception as exc:  # tried again at the next version
        log.warning("could not delete old organisation snapshots", extra={"error": exc.__class__.__name__})


async def _announced_snapshot(runtime: ServiceRuntime, data: OrgChanged, attempts: int = 20) -> OrgSnapshot:
    """The snapshot of an announced version; its object is written before its event, so a short wait covers a
    replica that is writing it; after that, the start fails loudly."""
    for attempt in range(attempts):
        try:
            return await load_org_snapshot(runtime.js, data)
        except (SnapshotMissing, BusUnavailable) as exc:
            if attempt == attempts - 1:
                raise
            log.warning("organisation snapshot on the bus not readable yet", extra={"error": str(exc)[:300]})
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def _reconcile_org(runtime: ServiceRuntime, sessions: Any, store: StoreSnapshot) -> None:
    """Load the stored organisation; make sure the bus has the latest version (and the DB the bus's)."""
    async with sessions() as s:
        stored = await db.latest_org(s)
    data: OrgChanged | None = None
    try:
        data = await latest_org_change(runtime.js)
    except PoisonEvent:
        log.exception("latest organisation event on the stream is unreadable")
    stream_version = data.version if data is not None else 0
    if data is not None and (stored is None or data.version > stored.version):
        # the bus knows a newer organisation than our database (restored or new database): adopt it, so
        # that the next version we store continues the numbering the other services follow
        adopted = await _announced_snapshot(runtime, data)
        async with transaction(sessions) as s:
            await db.add_org_version(s, adopted, applied_by="recovered-from-stream",
                                     changes=["recovered from est.org.changed"])
        stored = adopted
    if stored is None:
        return
    await runtime.apply_org(stored)
    if stream_version < stored.version:
        async with sessions() as s:
            history = await db.org_history(s, limit=1)
        changes = history[0]["changes"] if history else []
        blob = await store(stored)
        event = org_event(blob, changes, history[0]["applied_at"] if history else datetime.now(UTC))
        try:
            await publish_event(runtime.js, ORG_CHANGED, event)
        except BusUnavailable:
            async with transaction(sessions) as s:  # leave it to the outbox relay
                await add_to_outbox(s, db.outbox, ORG_CHANGED, event.model_copy(update={"id": f"{event.id}:r"}))


def install_forfeitures(runtime: ServiceRuntime, *, settings: IntakeSettings, engine: AsyncEngine,
                        sessions: async_sessionmaker[AsyncSession], publish: Publish) -> ForfeitureDeps:
    """Wire forfeiture protocols into the intake: routes, tables and key at start, the upkeep job."""
    deps = ForfeitureDeps(sessions=sessions, publish=publish, metrics=ForfeitureMetrics(runtime.registry),
                          retention=timedelta(days=settings.forfeiture_retention_days),
                          timezone_of=lambda m: municipality_timezone(runtime.directory.snapshot, m))
    runtime.app.include_router(build_forfeiture_router(deps, runtime))
    app: FastAPI = runtime.app
    app.state.forfeitures = deps

    async def start() -> None:
        deps.cipher = load_cipher(secret_text(settings.pii_key), data_dir=settings.data_dir)
        async with engine.begin() as conn:
            await fdb.create_tables(conn)
        runtime.spawn(run_upkeep(deps=deps, interval=settings.forfeiture_upkeep_interval), "forfeiture-upkeep")

    async def org_changed(snapshot: OrgSnapshot) -> None:
        await record_credential_changes(snapshot, deps=deps)

    runtime.on_start(start)
    runtime.on_org_changed(org_changed)
    return deps
