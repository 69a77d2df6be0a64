"""Composition root of the notifier: the only place that reads settings and builds adapters."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import httpx
from est_shared.db import make_engine, session_factory
from est_shared.events import CloudEvent
from est_shared.org import period_deadline
from est_shared.periods import Period, PeriodError
from est_shared.runtime import ServiceRuntime
from fastapi import FastAPI

from est_notifier import handlers
from est_notifier.api import add_routes
from est_notifier.consumers import register
from est_notifier.db import make_tables
from est_notifier.delivery import DeliveryWorker, EmailSender, RetryPolicy, Sender, WebhookSender, flush_digests
from est_notifier.domain import parse_smtp_url
from est_notifier.metrics import NotifierMetrics
from est_notifier.settings import NotifierSettings

log = logging.getLogger("est.notifier")

Settings = NotifierSettings

DESCRIPTION = """Subscriptions to situational pictures, alerts and strategic analyses, delivered as signed
CloudEvents webhooks (`X-EST-Signature: sha256=…`, `X-EST-Delivery`, `Idempotency-Key`) or e-mail, with
retries, dead-lettering and a per-attempt delivery ledger."""


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    """Build the notifier app; nothing connects until its lifespan starts."""
    settings = settings or NotifierSettings()
    engine = make_engine(settings.database_url or settings.sqlite_url("notifier"))
    runtime = ServiceRuntime(name="notifier", title="EST Lägesbild notifier", description=DESCRIPTION,
                             settings=settings, engine=engine)
    sessions = session_factory(engine)
    tables = make_tables()
    metrics = NotifierMetrics(runtime.registry)
    smtp = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
    senders: dict[str, Sender] = {
        "email": EmailSender(smtp=smtp, outbox=settings.data_dir / "outbox", timeout=settings.smtp_timeout)}

    def digest_due(municipality_id: str, period: str) -> float:
        """When a digest window closes: the period's deadline plus grace (now + grace if unknown)."""
        mun = runtime.directory.snapshot.municipalities.get(municipality_id)
        try:
            if mun is not None:
                return (period_deadline(mun, Period.parse(period))
                        + timedelta(seconds=settings.digest_grace_seconds)).timestamp()
        except PeriodError:
            pass
        return time.time() + settings.digest_grace_seconds

    async def digests(now: float) -> int:
        return await flush_digests(now, sessions=sessions, tables=tables, sender_address=settings.mail_from,
                                   max_items=settings.digest_max_items, metrics=metrics)

    worker = DeliveryWorker(
        sessions=sessions, tables=tables, senders=senders, metrics=metrics,
        policy=RetryPolicy(base=settings.retry_base_delay, cap=settings.retry_max_delay,
                           max_attempts=settings.max_attempts),
        poll_interval=settings.poll_interval, lease=settings.lease_seconds, batch=settings.worker_batch,
        pause_after_dead=settings.pause_after_dead, digests=digests,
    )
    state: dict[str, Any] = {"tables_ready": False}

    async def handle(event: CloudEvent[Any]) -> None:
        if not state["tables_ready"]:
            raise RuntimeError("database not ready yet")  # nacked with backoff, redelivered later
        channels = await handlers.fan_out(event, sessions=sessions, tables=tables, consumer="notifier.fanout",
                                          sender=settings.mail_from, digest_due=digest_due)
        for channel in channels:
            metrics.created.labels(channel).inc()
        if channels:
            worker.wake()

    register(runtime, settings=settings, handle=handle)
    add_routes(runtime.app, principal=runtime.principal, sessions=sessions, tables=tables,
               snapshot=lambda: runtime.directory.snapshot)

    async def start() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(tables.metadata.create_all)
        state["tables_ready"] = True
        client = httpx.AsyncClient(timeout=settings.http_timeout, follow_redirects=False)
        state["client"] = client
        senders["webhook"] = WebhookSender(client)
        state["worker"] = runtime.spawn(worker.run(), "notifier-delivery-worker")

    async def stop() -> None:
        task = state.get("worker")
        if task is not None:
            task.cancel()
            try:
                await task
            except BaseException:
                pass
        client = state.get("client")
        if client is not None:
            await client.aclose()

    runtime.on_start(start)
    runtime.on_stop(stop)
    app = runtime.app
    app.state.notifier = {"sessions": sessions, "tables": tables, "worker": worker, "metrics": metrics,
                          "settings": settings}
    return app
