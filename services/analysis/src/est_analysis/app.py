"""Composition root of the analysis service: the only place that reads settings and builds adapters."""

from __future__ import annotations

import asyncio
import logging
import time

from est_shared.adapters.browser import ChromiumPrinter
from est_shared.db import make_engine, session_factory
from est_shared.org import OrgSnapshot
from est_shared.runtime import ServiceRuntime
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from est_analysis.adapters.history import StreamHistory
from est_analysis.consumers import register as register_bus
from est_analysis.metrics import AnalysisMetrics
from est_analysis.settings import AnalysisSettings
from est_analysis.strategic import db
from est_analysis.strategic.api import build_router
from est_analysis.strategic.handlers import Context, auto_compile_due, picture_subject, refresh_open_gauge
from est_analysis.strategic.rebuild import Progress, RebuildResult, rebuild_projection

log = logging.getLogger("est.analysis")

Settings = AnalysisSettings

DESCRIPTION = """Strategic analyses for the beredningsgrupp and styrgrupp (EST cycle steps 5 and 6).

* **Persistent problems**: an item flagged in at least *k* of the last *n* reporting periods (defaults 3 of 4,
  `EST_ANALYSIS_PERSISTENT_K` / `_N`, per item `EST_ANALYSIS_PERSISTENT_OVERRIDES`). Raised and resolved as
  `se.est.alert.raised` / `se.est.alert.resolved` (kind `persistent`).
* **Analyses** per quarter or tertial: weeks count to the quarter/tertial that holds their Thursday (ISO 8601).
* **Measures** decided by the styrgrupp, with their effect (mean before vs after the start).
"""


def create_app(settings: AnalysisSettings | None = None) -> FastAPI:
    """Build the analysis service; nothing connects until the app's lifespan starts."""
    settings = settings or AnalysisSettings()
    engine = make_engine(settings.db_url())
    sessions = session_factory(engine)
    runtime = ServiceRuntime(name="analysis", title="EST Lägesbild – analys (analysis)", description=DESCRIPTION,
                             settings=settings, engine=engine)
    metrics = AnalysisMetrics(runtime.registry)
    printer = ChromiumPrinter(settings.browser, timeout=settings.browser_timeout_seconds,
                              concurrency=settings.browser_concurrency)
    ctx = Context(sessions=sessions, settings=settings, metrics=metrics,
                  snapshot=lambda: runtime.directory.snapshot, wake=runtime.wake_outbox, printer=printer)

    def _published(subject: str) -> None:
        runtime.metrics.published.labels(".".join(subject.split(".")[:3])).inc()

    async def auto_loop() -> None:
        while True:
            try:
                await auto_compile_due(ctx=ctx)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("automatic compilation failed; will retry")
            await asyncio.sleep(settings.compile_interval_seconds)

    async def start() -> None:
        await db.create_tables(engine)  # the tables gate opens after this hook: the consumer waits for it
        runtime.outbox_relay(sessions=sessions, table=db.outbox, interval=settings.outbox_interval_seconds,
                             on_published=_published).start()
        await refresh_open_gauge(ctx=ctx)
        if settings.auto_compile:
            runtime.spawn(auto_loop(), "analysis-auto-compile")

    runtime.on_start(start)
    register_bus(runtime, ctx=ctx)
    runtime.app.include_router(build_router(runtime=runtime, ctx=ctx))
    runtime.app.state.analysis = ctx
    return runtime.app


async def rebuild(settings: AnalysisSettings, progress: Progress | None = None, *, batch: int = 500,
                  fetch_timeout: float = 5.0) -> RebuildResult:
    """Rebuild pictures and problem states from the stream, with the service stopped
    (``est_analysis.strategic.rebuild``); ``progress(done, total)`` after each batch."""
    started = time.perf_counter()
    engine = make_engine(settings.db_url())
    ctx = Context(sessions=session_factory(engine), settings=settings, metrics=AnalysisMetrics(CollectorRegistry()),
                  snapshot=OrgSnapshot)
    try:
        async with StreamHistory(settings.nats_servers, picture_subject(settings.municipality_filter), batch=batch,
                                 fetch_timeout=fetch_timeout) as history:
            await db.create_tables(engine)
            result = await rebuild_projection(history, ctx=ctx, progress=progress)
    finally:
        await engine.dispose()
    result.seconds = time.perf_counter() - started
    log.info("analysis projection rebuilt", extra={"events": result.events, "pictures": result.pictures,
                                                   "seconds": round(result.seconds, 2)})
    return result
