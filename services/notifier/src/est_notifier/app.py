"""Composition root of the notifier: the only place that reads settings and builds adapters."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta
from typing import Any

from est_shared.adapters.schema import lock_schema
from est_shared.clock import SettableClock
from est_shared.db import make_engine, session_factory
from est_shared.events import CloudEvent
from est_shared.org import OrgSnapshot, period_deadline
from est_shared.periods import Period, PeriodError
from est_shared.runtime import ServiceRuntime
from est_shared.sealed import PiiCipher, load_cipher
from est_shared.subjects import PICTURES
from fastapi import FastAPI

from est_notifier.adapters import outbox
from est_notifier.adapters.catchup import CatchUp
from est_notifier.adapters.smtp import EmailSender, parse_smtp_url
from est_notifier.adapters.webhook import Egress, Resolver, WebhookSender, system_resolver
from est_notifier.consumers import register
from est_notifier.deliveries import api as deliveries_api
from est_notifier.deliveries import due, notices, reminders
from est_notifier.deliveries import handlers as deliveries
from est_notifier.deliveries.domain import ReminderTimes
from est_notifier.deliveries.personal import PersonalDeliveries
from est_notifier.deliveries.worker import DeliveryWorker, RetryPolicy, Sender
from est_notifier.metrics import NotifierMetrics
from est_notifier.settings import NotifierSettings
from est_notifier.stream import api as stream_api
from est_notifier.stream.handlers import StreamHub
from est_notifier.subscriptions import api as subscriptions_api
from est_notifier.subscriptions import handlers as subscriptions
from est_notifier.subscriptions.egress import TargetRefused
from est_notifier.tables import ensure_schema, make_tables

log = logging.getLogger("est.notifier")

Settings = NotifierSettings

DESCRIPTION = """Subscriptions to situational pictures, alerts and strategic analyses, delivered as signed
CloudEvents webhooks (`X-EST-Signature: sha256=…`, `X-EST-Delivery`, `Idempotency-Key`) or e-mail, with
retries, dead-lettering and a per-attempt delivery ledger. Notifications of forfeitures concerning a young
person (`forfeiture.notification_due`) reach only social services of the municipality, with the personal data
opened at sending time and every opening logged (`/v1/admin/personal-data-deliveries`)."""


def create_app(settings: NotifierSettings | None = None, *, resolver: Resolver | None = None) -> FastAPI:
    """Build the notifier app; nothing connects until its lifespan starts. ``resolver`` replaces the
    system's name resolution of webhook hosts (tests of DNS rebinding)."""
    settings = settings or NotifierSettings()
    url = settings.database_url or settings.sqlite_url("notifier")
    # SQLite has one writer: one pooled connection makes tasks queue in asyncio instead of sleeping in
    # SQLite's busy handler (the fan-out and the delivery worker write at the same time)
    engine = make_engine(url, pool_size=1, max_overflow=0) if url.startswith("sqlite") else make_engine(url)
    runtime = ServiceRuntime(name="notifier", title="EST Lägesbild – utskick (notifier)", description=DESCRIPTION,
                             settings=settings, engine=engine)
    sessions = session_factory(engine)
    tables = make_tables()
    metrics = NotifierMetrics(runtime.registry)
    smtp = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
    mail_dir = settings.data_dir / "outbox"
    senders: dict[str, Sender] = {"email": EmailSender(smtp=smtp, outbox=mail_dir, timeout=settings.smtp_timeout)}
    webhook_allow = settings.webhook_allow_list
    egress = Egress(webhook_allow, resolver=resolver or system_resolver,
                    resolve_timeout=min(5.0, settings.http_timeout))

    async def check_target(url: str) -> None:
        """A subscription's webhook target against the egress policy; each refusal counted."""
        try:
            await egress.vet(url)
        except TargetRefused as exc:
            metrics.refused.labels("subscribe", exc.reason).inc()
            raise

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
        return await deliveries.flush_digests(now, sessions=sessions, tables=tables, sender_address=settings.mail_from,
                                   max_items=settings.digest_max_items, snapshot=runtime.directory.snapshot,
                                   metrics=metrics)

    def cipher() -> PiiCipher:
        """The personal-data keys, read when a notification for social services is first sent."""
        secret = settings.pii_key.get_secret_value() if settings.pii_key is not None else None
        return load_cipher(secret, data_dir=settings.data_dir, log=log, create=False)

    personal = PersonalDeliveries(sessions=sessions, tables=tables, load_cipher=cipher,
                                  snapshot=lambda: runtime.directory.snapshot, sender=settings.mail_from,
                                  public_url=settings.public_url, webhook_allow=webhook_allow)
    async def tell_owner_paused(s: Any, sub_id: str, dead: int) -> None:
        """Queue an e-mail to the owner of a subscription that was paused for a dead endpoint."""
        await notices.queue_paused_notice(s, tables=tables, snapshot=runtime.directory.snapshot,
                                           sender=settings.mail_from, subscription_id=sub_id, dead=dead)

    worker = DeliveryWorker(
        sessions=sessions, tables=tables, senders=senders, metrics=metrics,
        policy=RetryPolicy(base=settings.retry_base_delay, cap=settings.retry_max_delay,
                           max_attempts=settings.max_attempts),
        poll_interval=settings.poll_interval, lease=settings.lease_seconds, batch=settings.worker_batch,
        pause_after_dead=settings.pause_after_dead, digests=digests, personal=personal,
        on_paused=tell_owner_paused,
    )
    state: dict[str, Any] = {}
    runtime.tables_after_start = False  # opened by start() as soon as the tables exist, before it reconciles

    async def handle(event: CloudEvent[Any]) -> None:
        if not runtime.tables.is_open:
            raise RuntimeError("database not ready yet")  # nacked with backoff, redelivered later
        if event.type == "se.est.picture.published" and settings.reminders_enabled:
            await reminders.record_missing(event, sessions=sessions, tables=tables)
        await due.record_due(event, sessions=sessions, tables=tables)
        channels = await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="notifier.fanout",
                                          sender=settings.mail_from, digest_due=digest_due,
                                          snapshot=runtime.directory.snapshot,
                                          on_withheld=lambda kind: metrics.withheld.labels(kind).inc())
        for channel in channels:
            metrics.created.labels(channel).inc()
        if channels:
            worker.wake()

    clock = SettableClock()
    times = ReminderTimes(before=settings.reminder_before, after=settings.reminder_after,
                          late_limit=settings.reminder_late_limit)

    # who has reported comes from both picture durables (updated and published pictures)
    caught_up = CatchUp(lambda: runtime.js, PICTURES.name, [settings.durable_updates, settings.durable_pictures])

    async def check_reminders(now: datetime) -> int:
        if not runtime.tables.is_open:
            return 0
        made = await reminders.send_due_reminders(
            now, sessions=sessions, tables=tables, snapshot=runtime.directory.snapshot, sender=settings.mail_from,
            times=times, on_reminder=lambda kind, outcome: metrics.reminders.labels(kind, outcome).inc(),
            caught_up=caught_up)
        if made:
            metrics.created.labels("email").inc(len(made))
            worker.wake()
        return len(made)

    reminder_loop = reminders.ReminderLoop(clock=clock, check=check_reminders, interval=settings.reminder_interval)

    async def handle_update(event: CloudEvent[Any]) -> None:
        if not runtime.tables.is_open:
            raise RuntimeError("database not ready yet")
        await reminders.record_missing(event, sessions=sessions, tables=tables)

    register(runtime, settings=settings, handle=handle,
             handle_update=handle_update if settings.reminders_enabled else None)
    hub = StreamHub(js=lambda: runtime.js, heartbeat=settings.stream_heartbeat,
                    resume_window=settings.stream_resume_window, resume_margin=settings.stream_resume_margin,
                    max_replay=settings.stream_max_replay, max_per_person=settings.stream_max_per_person,
                    on_event=metrics.stream_events.inc)
    subscriptions_api.add_routes(runtime.app, principal=runtime.principal, sessions=sessions, tables=tables,
                                 snapshot=lambda: runtime.directory.snapshot, check_target=check_target,
                                 webhook_allow=webhook_allow,
                                 on_handover=lambda via: metrics.handed_over.labels(via).inc())
    deliveries_api.add_routes(runtime.app, principal=runtime.principal, sessions=sessions, tables=tables,
                              snapshot=lambda: runtime.directory.snapshot)
    stream_api.add_routes(runtime.app, principal=runtime.principal, snapshot=lambda: runtime.directory.snapshot,
                          hub=hub, on_stream=metrics.stream_clients.inc,
                          on_stream_refused=lambda reason: metrics.stream_refused.labels(reason).inc())

    async def reconcile(snapshot: OrgSnapshot) -> None:
        """Declared subscriptions and owners who left: applied for every newer organisation snapshot."""
        if not runtime.tables.is_open:
            state["pending_org"] = snapshot  # the runtime loads the organisation before on_start hooks run
            return
        if settings.reminders_enabled:
            try:  # reminders expect what the organisation held in a period: its history, from now on
                await reminders.record_org(snapshot, clock.now(), sessions=sessions, tables=tables)
            except Exception:
                log.exception("could not record the organisation for reminders; retried at the next change")
        try:
            result = await subscriptions.reconcile_org(
                sessions=sessions, tables=tables, snapshot=snapshot, env=os.environ, webhook_allow=webhook_allow,
                on_invalid=lambda reason: metrics.declared_invalid.labels(reason).inc(), check_target=check_target)
            told = await notices.notify_credential_changes(sessions=sessions, tables=tables, snapshot=snapshot,
                                                            sender=settings.mail_from)
        except Exception:
            log.exception("could not apply the organisation to subscriptions; retried at the next change")
            return
        if told:
            metrics.credential_notices.inc(len(told))
            metrics.created.labels("email").inc(len(told))
            worker.wake()
        for reason, n in result["ended"].items():
            metrics.ended.labels(reason).inc(n)
        if result["handed_over"]:
            metrics.handed_over.labels("org").inc(result["handed_over"])
        log.info("organisation applied to subscriptions", extra={
            "org_version": snapshot.version,
            **{f"declared_{k}": v for k, v in result.items() if k not in ("ended", "handed_over")},
            "ended": sum(result["ended"].values()), "handed_over": result["handed_over"]})

    runtime.on_org_changed(reconcile)

    async def start() -> None:
        async with engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(ensure_schema, tables)
        runtime.tables.open()
        await worker.refresh_metrics()  # backlog gauges from the database, before the first round
        pending = state.pop("pending_org", None)
        if pending is not None:
            await reconcile(pending)
        webhooks = WebhookSender(egress=egress, timeout=settings.http_timeout)
        state["webhooks"] = webhooks
        senders["webhook"] = webhooks
        state["worker"] = runtime.spawn(worker.run(), "notifier-delivery-worker")
        state["outbox"] = runtime.spawn(outbox.retention_loop(
            mail_dir, older_than_days=settings.outbox_retention_days, on_pruned=metrics.outbox_pruned.inc),
            "notifier-outbox-retention")
        if settings.reminders_enabled:
            state["reminders"] = runtime.spawn(reminder_loop.run(), "notifier-reminders")

    async def stop() -> None:
        for name in ("reminders", "worker", "outbox"):
            task = state.get(name)
            if task is not None:
                task.cancel()
                try:
                    await task
                except BaseException:
                    pass
        webhooks = state.get("webhooks")
        if webhooks is not None:
            await webhooks.aclose()

    runtime.on_start(start)
    runtime.on_stop(stop)
    app = runtime.app
    app.state.notifier = {"sessions": sessions, "tables": tables, "worker": worker, "metrics": metrics,
                          "settings": settings, "hub": hub, "clock": clock, "reminders": reminder_loop,
                          "caught_up": caught_up, "egress": egress}
    return app
