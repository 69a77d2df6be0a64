"""Webhook deliveries end to end: real NATS, the notifier app, a real HTTP receiver."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats
from est_notifier.deliveries.domain import delivery_id, verify
from est_shared.bus import encode, publish_raw

from tests.notifier.support import (
    Org,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    receiver,
    running_notifier,
)
from tests.support import eventually


async def test_published_picture_reaches_webhook_with_valid_signature(nats_url: str, tmp_path: Path,
                                                                      org: Org) -> None:
    async with receiver() as rx, running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "s3cret"})
        event = picture_event(org)
        await publish(nats_url, picture_subject(org), event)
        await eventually(lambda: _ok(rx.requests))
        headers, body = rx.requests[0]
        assert headers["content-type"] == "application/cloudevents+json"
        assert verify("s3cret", body, headers["x-est-signature"])
        did = delivery_id(sub["id"], event.id)
        assert headers["x-est-delivery"] == did
        assert headers["idempotency-key"] == did
        doc = json.loads(body)
        assert doc["specversion"] == "1.0"
        assert doc["id"] == event.id
        assert doc["type"] == "se.est.picture.published"
        assert doc["data"]["picture"]["area_id"] == org.a1
        ledger = await eventually(lambda: _delivered(n, sub["id"]))
        assert ledger[0]["delivery_id"] == did
        assert [a["status"] for a in ledger[0]["attempt_log"]] == ["delivered"]
        assert ledger[0]["attempt_log"][0]["response_code"] == 200
        metrics = (await n.http.get("/metrics")).text
        assert 'est_notifier_deliveries_total{channel="webhook",outcome="delivered"} 1.0' in metrics


async def _ok(requests: list[object]) -> bool:
    return bool(requests)


async def _delivered(n: object, sub_id: str, who: str = "owner") -> list[dict[str, object]] | None:
    rows = await n.ledger(who, subscription_id=sub_id)  # type: ignore[attr-defined]
    return rows if rows and rows[0]["status"] == "delivered" else None


async def _finished(n: object, sub_id: str, status: str) -> list[dict[str, object]] | None:
    rows = await n.ledger(subscription_id=sub_id)  # type: ignore[attr-defined]
    return rows if rows and rows[0]["status"] == status else None


async def test_503_twice_then_200_retries_with_same_id_and_bytes(nats_url: str, tmp_path: Path, org: Org) -> None:
    async with receiver([503, 503]) as rx, running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "k"})
        event = picture_event(org)
        await publish(nats_url, picture_subject(org), event)
        ledger = await eventually(lambda: _finished(n, sub["id"], "delivered"))
        attempts = ledger[0]["attempt_log"]
        assert [(a["attempt"], a["status"], a["response_code"]) for a in attempts] == [
            (1, "retry", 503), (2, "retry", 503), (3, "delivered", 200)]
        assert len(rx.requests) == 3
        assert len({h["x-est-delivery"] for h, _ in rx.requests}) == 1
        assert len({h["idempotency-key"] for h, _ in rx.requests}) == 1
        assert len({b for _, b in rx.requests}) == 1
        assert len({h["x-est-signature"] for h, _ in rx.requests}) == 1
        assert {a["delivery_id"] for a in attempts} == {ledger[0]["delivery_id"]}


async def test_400_fails_without_retry(nats_url: str, tmp_path: Path, org: Org) -> None:
    async with receiver([400]) as rx, running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "k"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        ledger = await eventually(lambda: _finished(n, sub["id"], "failed"))
        assert [(a["status"], a["response_code"]) for a in ledger[0]["attempt_log"]] == [("failed", 400)]
        await asyncio.sleep(0.4)
        assert len(rx.requests) == 1


async def test_retry_cap_dead_letters_the_delivery(nats_url: str, tmp_path: Path, org: Org) -> None:
    settings = notifier_settings(nats_url, tmp_path, org, max_attempts=3)
    async with receiver([500, 429, 500, 500]) as rx, running_notifier(settings, org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "k"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        ledger = await eventually(lambda: _finished(n, sub["id"], "dead"))
        assert [a["status"] for a in ledger[0]["attempt_log"]] == ["retry", "retry", "dead"]
        assert len(rx.requests) == 3
        metrics = (await n.http.get("/metrics")).text
        assert 'est_notifier_dead_deliveries_total{channel="webhook"} 1.0' in metrics

        async def backlog_empty() -> bool:  # the gauge is read from the database after the round: a moment later
            return 'est_notifier_backlog_deliveries{channel="webhook"} 0.0' in (await n.http.get("/metrics")).text

        await eventually(backlog_empty)


async def test_connection_refused_is_retried(nats_url: str, tmp_path: Path, org: Org) -> None:
    from est_shared.testing import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    async with running_notifier(notifier_settings(nats_url, tmp_path, org, max_attempts=2), org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": url, "secret": "k"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        ledger = await eventually(lambda: _finished(n, sub["id"], "dead"))
        assert [a["status"] for a in ledger[0]["attempt_log"]] == ["retry", "dead"]
        assert ledger[0]["attempt_log"][0]["error"].startswith("connection")


async def test_redelivered_event_creates_one_delivery(nats_url: str, tmp_path: Path, org: Org) -> None:
    async with receiver() as rx, running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "k"})
        event = picture_event(org)
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            # the same event twice under different message ids gets past JetStream's de-duplication
            await publish_raw(js, picture_subject(org), encode(event), msg_id=event.id)
            await publish_raw(js, picture_subject(org), encode(event), msg_id=event.id + "-resent")
        finally:
            await nc.close()
        await eventually(lambda: _delivered(n, sub["id"]))
        await asyncio.sleep(0.5)
        assert len(await n.ledger(subscription_id=sub["id"])) == 1
        assert len(rx.requests) == 1


async def test_overlapping_subscriptions_to_same_url_deliver_once(nats_url: str, tmp_path: Path, org: Org) -> None:
    async with receiver() as rx, running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        first = await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "k"})
        second = await n.subscribe("admin", name="Kommunen", scope={"municipality_id": org.m},
                                   channel={"type": "webhook", "url": rx.url, "secret": "k2"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        await eventually(lambda: _delivered(n, first["id"]))
        await asyncio.sleep(0.5)
        assert len(rx.requests) == 1
        assert await n.ledger("admin", subscription_id=second["id"]) == []
        # the municipality-wide subscription still gets the other area's picture
        await publish(nats_url, picture_subject(org, org.a2), picture_event(org, org.a2))
        await eventually(lambda: _delivered(n, second["id"], "admin"))
        assert len(rx.requests) == 2


async def test_paused_subscription_gets_nothing_until_resumed(nats_url: str, tmp_path: Path, org: Org) -> None:
    async with receiver() as rx, running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "k"})
        r = await n.http.patch(f"/v1/subscriptions/{sub['id']}", json={"paused": True}, headers=org.auth("owner"))
        assert r.status_code == 200 and r.json()["paused"] is True
        await publish(nats_url, picture_subject(org), picture_event(org, version=1))
        await asyncio.sleep(0.6)
        assert rx.requests == []
        r = await n.http.patch(f"/v1/subscriptions/{sub['id']}", json={"paused": False}, headers=org.auth("owner"))
        assert r.json()["paused"] is False
        await publish(nats_url, picture_subject(org), picture_event(org, version=2))
        await eventually(lambda: _ok(rx.requests))
        assert json.loads(rx.requests[0][1])["data"]["picture"]["version"] == 2


async def test_a_dead_endpoint_is_paused_and_its_owner_told_by_email(nats_url: str, tmp_path: Path, org: Org) -> None:
    from est_shared.testing import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    settings = notifier_settings(nats_url, tmp_path, org, max_attempts=1, pause_after_dead=1)
    async with running_notifier(settings, org) as n:
        sub = await n.subscribe(channel={"type": "webhook", "url": url, "secret": "k"})
        await publish(nats_url, picture_subject(org), picture_event(org))
        await eventually(lambda: _finished(n, sub["id"], "dead"))

        async def paused() -> bool:
            r = await n.http.get(f"/v1/subscriptions/{sub['id']}", headers=org.auth("owner"))
            return bool(r.json().get("paused"))

        await eventually(paused)

        def notice() -> list[Path]:
            return [p for p in (tmp_path / "outbox").glob("*.eml") if "Pausad" in p.read_text(errors="replace")
                    or b"Pausad" in p.read_bytes()]

        async def told() -> list[Path]:
            return notice()

        mails = await eventually(told)
        text = mails[0].read_text(errors="replace")
        assert "olle@example.org" in text
        assert url in text or "Subject:" in text
        metrics = (await n.http.get("/metrics")).text
        assert "est_notifier_subscriptions_paused_total 1.0" in metrics
