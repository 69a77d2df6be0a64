"""Composition root of the aggregator: ``create_app(settings)`` builds every adapter; nothing connects at import."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from est_shared.adapters.browser import ChromiumPrinter
from est_shared.adapters.schema import lock_schema
from est_shared.adapters.sqlite import InLoopSqlite, checkpoint_loop, in_loop_sqlite
from est_shared.clock import utcnow
from est_shared.db import OutboxRelay, make_engine, session_factory
from est_shared.org import OrgSnapshot
from est_shared.runtime import ServiceRuntime
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from est_aggregator import consumers
from est_aggregator.adapters.postgres_queries import PostgresBatchStore
from est_aggregator.adapters.sqlite_queries import SqliteBatchStore
from est_aggregator.adapters.unit_of_work import InLoopUnitOfWork, PooledUnitOfWork
from est_aggregator.metrics import AggregatorMetrics
from est_aggregator.pictures import api, db
from est_aggregator.pictures.cache import ReportCache
from est_aggregator.pictures.deps import BatchStore, Deps, UnitOfWork
from est_aggregator.pictures.domain.tally import Rules
from est_aggregator.pictures.gauges import ReportingTally, refresh_business_metrics
from est_aggregator.pictures.organisation import record_org_version
from est_aggregator.pictures.publish import PublishResult, auto_publish_due
from est_aggregator.pictures.refresh import RefreshOutcome, refresh_dirty
from est_aggregator.settings import AggregatorSettings

log = logging.getLogger("est.aggregator")

Settings = AggregatorSettings


CATCH_UP_SHARE = 0.1


class Aggregator:
    """Process-level state reachable as ``app.state.aggregator``: deps, the outbox relay and a settable clock."""

    def __init__(self, *, runtime: ServiceRuntime, deps: Deps, settings: AggregatorSettings,
                 local: InLoopSqlite | None = None) -> None:
        self.runtime, self.deps, self.settings, self.local = runtime, deps, settings, local
        self.clock: Callable[[], datetime] = utcnow
        self.relay: OutboxRelay | None = None
        self._dirty = asyncio.Event()
        deps.wake_refresher = self._dirty.set

    async def refresh_once(self) -> RefreshOutcome:
        """One pass of the coalescing refresher (picture.updated for open pictures, revisions for published)."""
        return await refresh_dirty(deps=self.deps, org=self.runtime.directory.snapshot,
                                   revise_after=self.settings.revise_delay)

    async def _refresh_loop(self) -> None:
        """Run ``refresh_once`` when woken by a commit (or every interval, for other replicas' marks).

        Passes start at least ``update_interval`` apart (so at most one update per picture per
        interval), at once after a quiet spell (low latency), and at least their own duration divided
        by ``refresh_share`` apart (the refresher never takes more than that share of the process;
        a tenth while the report consumer works off a backlog).
        """
        loop = asyncio.get_running_loop()
        interval = self.settings.update_interval
        share = min(1.0, max(0.05, self.settings.refresh_share))
        last_start, gap = -1e9, interval
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), timeout=max(interval, self.settings.revise_delay / 4))
            except TimeoutError:
                pass
            wait = last_start + gap - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            last_start = loop.time()
            busy = None
            try:
                busy = (await self.refresh_once()).busy
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("picture refresh failed; will retry")
            if busy is None:
                busy = loop.time() - last_start
            self.deps.metrics.refresh_seconds.observe(busy)
            # while the consumer works off a backlog, pictures recomputed now are outdated at once:
            # the refresher then keeps to a tenth of the time, and to its share once caught up
            now_share = min(share, CATCH_UP_SHARE) if self.deps.catching_up() else share
            gap = max(interval, busy / now_share)

    async def auto_publish_once(self) -> list[PublishResult]:
        """Publish the open pictures whose deadline (by ``clock``) has passed."""
        return await auto_publish_due(deps=self.deps, org=self.runtime.directory.snapshot, now=self.clock())

    async def _auto_publish_loop(self) -> None:
        interval = self.settings.auto_publish_interval
        while True:
            await asyncio.sleep(interval)
            try:
                if await self.auto_publish_once() and self.settings.business_metrics_interval > 0:
                    await self.business_metrics_once()  # a period just closed: the gauges move now
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("automatic publishing failed; will retry")

    async def _gauge_loop(self) -> None:
        while True:
            try:
                if self.relay is not None:
                    self.deps.metrics.outbox_pending.set(await self.relay.pending())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not read the outbox backlog")
            await asyncio.sleep(5.0)

    async def business_metrics_once(self) -> dict[str, ReportingTally]:
        """Refresh the reports expected / received / late gauges (latest closed period, by ``clock``)."""
        return await refresh_business_metrics(deps=self.deps, org=self.runtime.directory.snapshot,
                                              now=self.clock())

    async def _business_loop(self) -> None:
        while True:
            try:
                await self.business_metrics_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not refresh the business gauges")
            await asyncio.sleep(self.settings.business_metrics_interval)

    async def record_org(self, snapshot: OrgSnapshot) -> int:
        """Record an organisation version as it arrives (``est.org.changed``): past periods expect the reporters
        they had. Before the tables exist nothing is recorded; ``start`` records the version then in use."""
        if not self.runtime.tables.is_open:
            return 0
        try:
            return await record_org_version(deps=self.deps, snapshot=snapshot, now=self.clock())
        except Exception:  # the next version records what this one changed, from its own time
            log.exception("could not record the organisation version", extra={"org_version": snapshot.version})
            return 0

    async def start(self) -> None:
        """Create the tables, start the outbox relay and the background loops."""
        engine = self.runtime.engine
        assert engine is not None
        async with engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(db.metadata.create_all)
            await conn.run_sync(db.add_missing_columns)
        metrics = self.runtime.metrics
        self.relay = self.runtime.outbox_relay(sessions=self.deps.sessions, table=db.outbox,
                                               interval=self.settings.outbox_interval, local=self.local,
                                 on_published=lambda subject: metrics.published.labels(subject.split(".")[1]).inc())
        self.deps.wake = self.runtime.wake_outbox
        self.relay.start()
        self.runtime.tables.open()  # the consumers wait for it: the tables exist now
        if self.runtime.directory.loaded:  # the version read at start, before the tables existed
            await self.record_org(self.runtime.directory.snapshot)
        if self.settings.auto_publish_interval > 0:
            self.runtime.spawn(self._auto_publish_loop(), "auto-publish")
        self.runtime.spawn(self._gauge_loop(), "outbox-gauge")
        if self.local is not None:
            self.runtime.spawn(checkpoint_loop(engine), "wal-checkpoint")
        if self.settings.business_metrics_interval > 0:
            self.runtime.spawn(self._business_loop(), "business-gauges")
        self.runtime.spawn(self._refresh_loop(), "picture-refresh")

    async def stop(self) -> None:
        """Stop the relay (background loops are cancelled by the runtime)."""
        if self.relay is not None:
            await self.relay.stop()
        if self.local is not None:
            self.local.dispose()


def build_deps(settings: AggregatorSettings, engine: AsyncEngine, metrics: AggregatorMetrics
               ) -> tuple[Deps, InLoopSqlite | None]:
    """The use cases' collaborators for the database URL, and the in-loop connection if there is one.

    A SQLite file: report batches run in-loop with the raw sqlite3 statements, and pictures keep their
    tallies in a ``ReportCache`` (kept honest by report tokens). PostgreSQL through asyncpg: pooled sessions,
    the batch's set-based statements of ``PostgresBatchStore`` and the same ``ReportCache`` (its tokens read
    locked by every batch, and each refresher pass reading one snapshot). Anything else: pooled SQLAlchemy
    sessions.
    """
    sessions = session_factory(engine)
    local = in_loop_sqlite(settings.db_url())
    dialect = engine.dialect

    def deps(units: UnitOfWork, store: BatchStore, cached: bool) -> Deps:
        return Deps(sessions=sessions, metrics=metrics, units=units, store=store,
                    rules=Rules(window=settings.baseline_periods), consumer=settings.durable,
                    emit_updates=settings.emit_updates, kronoberg_min_count=settings.kronoberg_min_count,
                    publish_min_completeness=settings.publish_min_completeness,
                    cache=ReportCache() if cached else None, report_tokens=cached)

    if local is not None:
        return deps(InLoopUnitOfWork(sessions, local), SqliteBatchStore(), True), local
    if (dialect.name, dialect.driver) == ("postgresql", "asyncpg"):
        return deps(PooledUnitOfWork(sessions, serialise_writes=False, snapshot_reads=True),
                    PostgresBatchStore(dialect), True), None
    return deps(PooledUnitOfWork(sessions, serialise_writes=dialect.name == "sqlite"), db.SqlBatchStore(),
                False), None


def create_app(settings: AggregatorSettings | None = None) -> FastAPI:
    """Build the aggregator: runtime, database, consumer, relay, background publishing and routes."""
    settings = settings or AggregatorSettings()
    engine = make_engine(settings.db_url())
    runtime = ServiceRuntime(
        name="aggregator", title="EST Lägesbild – sammanställning (aggregator)",
        description="Situational pictures (lägesbilder) per area and period: totals, trends, flags, completeness, "
                    "a drafted first analysis; publishing, revisions and alerts.",
        settings=settings, engine=engine)
    deps, local = build_deps(settings, engine, AggregatorMetrics(runtime.registry))
    aggregator = Aggregator(runtime=runtime, deps=deps, settings=settings, local=local)
    runtime.on_start(aggregator.start)
    runtime.on_stop(aggregator.stop)

    async def org_changed(snapshot: OrgSnapshot) -> None:  # each version, as the runtime applies it
        await aggregator.record_org(snapshot)

    runtime.on_org_changed(org_changed)
    runtime.tables_after_start = False  # opened by aggregator.start once the tables exist
    consumers.register(runtime, settings=settings, deps=deps)  # starts after, stops first
    printer = ChromiumPrinter(settings.browser, timeout=settings.browser_timeout_seconds,
                              concurrency=settings.browser_concurrency)
    runtime.app.include_router(api.build_router(
        deps=deps, org=lambda: runtime.directory.snapshot, principal=runtime.principal,
        clock=lambda: aggregator.clock(), max_series_periods=settings.max_series_periods, printer=printer))
    runtime.app.state.aggregator = aggregator
    return runtime.app
