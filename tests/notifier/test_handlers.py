"""Handler-level tests without a broker: fan-out idempotency, claiming across replicas, digests, declarations."""

from __future__ import annotations

import asyncio
import email
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from est_notifier.adapters.smtp import EmailSender
from est_notifier.adapters.webhook import Egress, WebhookSender
from est_notifier.deliveries import handlers as deliveries
from est_notifier.deliveries.handlers import flush_digests
from est_notifier.deliveries.worker import DeliveryWorker, RetryPolicy
from est_notifier.metrics import NotifierMetrics
from est_notifier.subscriptions import handlers
from est_notifier.subscriptions.domain import Caller
from est_notifier.subscriptions.egress import AllowList
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

from tests.notifier.support import LOOPBACK_RECEIVERS, Org, alert_event, notifier_db, picture_event, receiver

OWNER = "owner"


def _caller(org: Org, who: str = "owner") -> Caller:
    p = next(p for p in org.snapshot.people.values() if p.id.startswith(who))
    return Caller(person_id=p.id, roles=tuple(p.roles), areas=tuple(p.areas))


def _spec(org: Org, channel: dict[str, str], **over: Any) -> dict[str, Any]:
    spec = {"name": "x", "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
            "events": ["picture.published", "alert.raised"], "channel": channel, "digest": "immediate",
            "language": "sv", "min_severity": None}
    spec.update(over)
    return spec


@asynccontextmanager
async def _webhooks() -> AsyncIterator[WebhookSender]:
    """A webhook sender allowed to the loopback receivers."""
    sender = WebhookSender(egress=Egress(AllowList.parse(LOOPBACK_RECEIVERS)), timeout=5.0)
    try:
        yield sender
    finally:
        await sender.aclose()


async def _count(sessions: Any, table: Any) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(table)) or 0)


async def test_fan_out_is_idempotent_per_event(tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    await handlers.create_subscription(sessions=sessions, tables=tables, caller=_caller(org), snapshot=org.snapshot,
                                       spec=_spec(org, {"type": "webhook", "url": "http://h/x", "secret": "k"}))
    await handlers.create_subscription(sessions=sessions, tables=tables, caller=_caller(org), snapshot=org.snapshot,
                                       spec=_spec(org, {"type": "email", "to": "a@example.org"}))
    event = picture_event(org)
    first = await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="c1", sender="a@b.se",
                                     snapshot=org.snapshot)
    again = await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="c1", sender="a@b.se",
                                     snapshot=org.snapshot)
    # another consumer name (e.g. a rebuilt durable) still creates nothing new: unique per subscription+event
    other = await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="c2", sender="a@b.se",
                                     snapshot=org.snapshot)
    assert sorted(first) == ["email", "webhook"] and again == [] and other == []
    assert await _count(sessions, tables.deliveries) == 2
    await engine.dispose()


async def test_two_workers_never_attempt_the_same_delivery_twice(tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    async with receiver() as rx, _webhooks() as webhooks:
        for i in range(5):
            await handlers.create_subscription(
                sessions=sessions, tables=tables, caller=_caller(org), snapshot=org.snapshot,
                spec=_spec(org, {"type": "webhook", "url": f"{rx.url}?n={i}", "secret": "k"}))
        await deliveries.fan_out(picture_event(org), sessions=sessions, tables=tables, consumer="c", sender="a@b.se",
                                 snapshot=org.snapshot)
        workers = [DeliveryWorker(sessions=sessions, tables=tables, senders={"webhook": webhooks},
                                  policy=RetryPolicy(0.01, 0.05, 3), metrics=NotifierMetrics(CollectorRegistry()))
                   for _ in range(2)]
        claimed = await asyncio.gather(*(w.run_once() for w in workers), *(w.run_once() for w in workers))
        assert sum(claimed) == 5
        assert len(rx.requests) == 5
        assert len({h["x-est-delivery"] for h, _ in rx.requests}) == 5
        assert await _count(sessions, tables.attempts) == 5
    await engine.dispose()


async def test_period_digest_lists_each_event_once_with_a_more_line(tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    await handlers.create_subscription(
        sessions=sessions, tables=tables, caller=_caller(org), snapshot=org.snapshot,
        spec=_spec(org, {"type": "email", "to": "digest@example.org"}, digest="period", language="en"))
    due = time.time() + 60
    events = [picture_event(org), alert_event(org), alert_event(org), alert_event(org)]
    for e in [*events, events[0]]:
        made = await deliveries.fan_out(e, sessions=sessions, tables=tables, consumer="c", sender="a@b.se",
                                        digest_due=lambda m, p: due, snapshot=org.snapshot)
        assert made == []
    assert await flush_digests(time.time(), sessions=sessions, tables=tables, sender_address="a@b.se",
                               max_items=3, snapshot=org.snapshot) == 0
    assert await flush_digests(due + 1, sessions=sessions, tables=tables, sender_address="a@b.se",
                               max_items=3, snapshot=org.snapshot) == 1
    assert await flush_digests(due + 2, sessions=sessions, tables=tables, sender_address="a@b.se",
                               max_items=3, snapshot=org.snapshot) == 0
    worker = DeliveryWorker(sessions=sessions, tables=tables,
                            senders={"email": EmailSender(smtp=None, outbox=tmp_path / "outbox")},
                            policy=RetryPolicy(0.01, 0.05, 3), metrics=NotifierMetrics(CollectorRegistry()))
    assert await worker.run_once() == 1
    (path,) = list((tmp_path / "outbox").glob("*.eml"))
    msg = email.message_from_bytes(path.read_bytes(), policy=default)
    assert msg["Subject"].startswith("Digest:")
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert text.count("Situational picture") == 1
    assert "… and 1 more events" in text
    await engine.dispose()


async def test_declared_subscriptions_are_upserted_idempotently(tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    owner = _caller(org).person_id
    declared = [{"id": "drift", "owner": owner, **_spec(org, {"type": "email", "to": "d@example.org"})}]
    first = await handlers.upsert_declared_subscriptions(sessions=sessions, tables=tables, snapshot=org.snapshot,
                                                         declared=declared)
    second = await handlers.upsert_declared_subscriptions(sessions=sessions, tables=tables, snapshot=org.snapshot,
                                                          declared=declared)
    assert first["created"] == 1
    assert second == {"created": 0, "updated": 0, "unchanged": 1, "deleted": 0, "invalid": 0}
    subs = await handlers.list_subscriptions(sessions=sessions, tables=tables, caller=_caller(org))
    assert len(subs) == 1 and subs[0]["source"] == "org"
    gone = await handlers.upsert_declared_subscriptions(sessions=sessions, tables=tables, snapshot=org.snapshot,
                                                        declared=[])
    assert gone["deleted"] == 1
    assert await handlers.list_subscriptions(sessions=sessions, tables=tables, caller=_caller(org)) == []
    await engine.dispose()


@pytest.mark.postgres
async def test_delivery_flow_on_postgresql(postgres_url: str, tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(postgres_url)
    async with receiver([503]) as rx, _webhooks() as webhooks:
        sub = await handlers.create_subscription(
            sessions=sessions, tables=tables, caller=_caller(org), snapshot=org.snapshot,
            spec=_spec(org, {"type": "webhook", "url": rx.url, "secret": "k"}))
        await handlers.create_subscription(  # same target: deduplicated
            sessions=sessions, tables=tables, caller=_caller(org), snapshot=org.snapshot,
            spec=_spec(org, {"type": "webhook", "url": rx.url, "secret": "k2"}))
        event = picture_event(org)
        assert await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="c",
                                        sender="a@b.se", snapshot=org.snapshot) == ["webhook"]
        assert await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="c", sender="a@b.se",
                                        snapshot=org.snapshot) == []
        workers = [DeliveryWorker(sessions=sessions, tables=tables, senders={"webhook": webhooks},
                                  policy=RetryPolicy(0.01, 0.02, 3), metrics=NotifierMetrics(CollectorRegistry()))
                   for _ in range(2)]
        for _ in range(20):
            await asyncio.gather(*(w.run_once() for w in workers))
            rows = await deliveries.ledger(sessions=sessions, tables=tables, caller=_caller(org),
                                           subscription_id=sub["id"], event_id=event.id)
            if rows and rows[0]["status"] == "delivered":
                break
            await asyncio.sleep(0.03)
        assert [a["status"] for a in rows[0]["attempt_log"]] == ["retry", "delivered"]
        assert len(rx.requests) == 2 and rx.requests[0][1] == rx.requests[1][1]
    await engine.dispose()
