"""Composition root of the intake service: ``create_app(settings)`` wires everything; nothing connects at import."""

from __future__ import annotations

import logging
import time
from typing import Any

from est_shared.bus import BusUnavailable, latest_on_subject, parse_event, publish_event
from est_shared.db import (
    OutboxRelay,
    add_to_outbox,
    checkpoint_loop,
    lock_schema,
    make_engine,
    session_factory,
    transaction,
)
from est_shared.events import CloudEvent
from est_shared.org import OrgSnapshot
from est_shared.runtime import ServiceRuntime
from est_shared.subjects import ORG, ORG_CHANGED
from fastapi import FastAPI

from est_intake import db
from est_intake.api import IntakeContext, build_router
from est_intake.consumers import register_consumers
from est_intake.domain import load_org_file
from est_intake.forfeitures import install_forfeitures
from est_intake.handlers import IntakeMetrics, apply_org, org_event
from est_intake.settings import IntakeSettings

Settings = IntakeSettings

log = logging.getLogger("est.intake")

DESCRIPTION = """The front door of EST Lägesbild: authenticates reporters, validates checklist reports and
answers only once JetStream has stored them (`se.est.report.submitted`). System of record of the
organisation (municipalities, areas, places, actors, people, roles, tokens) and its history
(`se.est.org.changed`). Errors are application/problem+json with Swedish and English detail."""


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    """Build the intake app: runtime, database, outbox relay, routes and start-up work."""
    settings = settings or IntakeSettings()
    engine = make_engine(settings.db_url())
    sessions = session_factory(engine)
    runtime = ServiceRuntime(name="intake", title="EST Lägesbild – intake", description=DESCRIPTION,
                             settings=settings, engine=engine, max_body_bytes=settings.max_body_bytes)
    metrics = IntakeMetrics(runtime.registry)
    relay: dict[str, OutboxRelay] = {}

    def wake() -> None:
        if "r" in relay:
            relay["r"].wake()

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

    ctx = IntakeContext(runtime=runtime, sessions=sessions, metrics=metrics, publish=publish, wake=wake,
                        concurrency=settings.publish_concurrency, max_batch=settings.max_batch)
    runtime.app.include_router(build_router(ctx))
    runtime.app.state.intake = ctx
    register_consumers(runtime)
    install_forfeitures(runtime, settings=settings, engine=engine, sessions=sessions, publish=publish)

    async def start() -> None:
        async with engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(db.metadata.create_all)
            await conn.run_sync(db.drop_unused_indexes)
        r = OutboxRelay(sessions=sessions, table=db.outbox, js=runtime.js,
                        on_published=lambda subject: runtime.metrics.published.labels("outbox").inc())
        relay["r"] = r
        await _reconcile_org(runtime, sessions)
        if settings.org_file:
            applied = await apply_org(load_org_file(settings.org_file), sessions=sessions,
                                      applied_by=f"file:{settings.org_file.name}", on_applied=runtime.apply_org,
                                      wake=wake, metrics=metrics)
            log.info("organisation file applied at start", extra={"version": applied.snapshot.version,
                                                                  "changed": applied.changed})
        await r.flush()
        r.start()
        if ctx.ledger is not None and ctx.ledger.local is not None:
            runtime.spawn(checkpoint_loop(engine), "wal-checkpoint")

    async def stop() -> None:
        if "r" in relay:
            await relay["r"].stop()
        if ctx.ledger is not None:
            ctx.ledger.close()

    runtime.on_start(start)
    runtime.on_stop(stop)
    return runtime.app


async def _reconcile_org(runtime: ServiceRuntime, sessions: Any) -> None:
    """Load the stored organisation; make sure the stream has the latest version (and the DB the stream's)."""
    async with sessions() as s:
        stored = await db.latest_org(s)
    stream_version = 0
    stream_snapshot: OrgSnapshot | None = None
    raw = await latest_on_subject(runtime.js, ORG.name, ORG_CHANGED)
    if raw:
        try:
            event = parse_event(raw)
            stream_snapshot = OrgSnapshot.model_validate(event.data.snapshot)  # type: ignore[attr-defined]
            stream_version = stream_snapshot.version
        except Exception:
            log.exception("latest organisation event on the stream is unreadable")
    if stream_snapshot is not None and (stored is None or stream_version > stored.version):
        # the bus knows a newer organisation than our database (restored or new database): adopt it, so
        # that the next version we store continues the numbering the other services follow
        async with transaction(sessions) as s:
            await db.add_org_version(s, stream_snapshot, applied_by="recovered-from-stream",
                                     changes=["recovered from est.org.changed"])
        stored = stream_snapshot
    if stored is None:
        return
    await runtime.apply_org(stored)
    if stream_version < stored.version:
        async with sessions() as s:
            history = await db.org_history(s, limit=1)
        changes = history[0]["changes"] if history else []
        event = org_event(stored, changes, history[0]["applied_at"] if history else None)  # type: ignore[arg-type]
        try:
            await publish_event(runtime.js, ORG_CHANGED, event)
        except BusUnavailable:
            async with transaction(sessions) as s:  # leave it to the outbox relay
                await add_to_outbox(s, db.outbox, ORG_CHANGED, event.model_copy(update={"id": f"{event.id}:r"}))
