"""Delivery under failure: a flaky webhook receiver, a notifier killed with SIGKILL, an SMTP server down."""

from __future__ import annotations

import asyncio
import collections
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
from aiosmtpd.controller import Controller
from est_cli.procs import ServiceProcess
from est_notifier.deliveries.domain import delivery_id, verify
from est_notifier.subscriptions.handlers import declared_id
from est_shared.bus import ensure_streams, publish_event
from est_shared.events import OrgChanged, new_event
from est_shared.natsserver import NatsServer
from est_shared.subjects import ORG_CHANGED
from est_shared.testing import free_port, serve
from fastapi import FastAPI, Request, Response

from tests.notifier.support import (
    LOOPBACK_RECEIVERS,
    Org,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    running_notifier,
)
from tests.support import eventually


class FlakyReceiver:
    """Answers 500 to every second request and hangs (longer than the notifier waits) on every tenth."""

    def __init__(self, *, hang: float = 0.0, delay: float = 0.0) -> None:
        self.hang, self.delay, self.n = hang, delay, 0
        self.arrivals: list[tuple[str, bytes, str, int]] = []  # delivery id, body, signature, answer

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.n += 1
            n = self.n
            body = await request.body()
            status = 200
            if self.hang and n % 10 == 0:
                await asyncio.sleep(self.hang)
            elif self.hang and n % 2 == 0:
                status = 500
            elif self.delay:
                await asyncio.sleep(self.delay)
            self.arrivals.append((request.headers["x-est-delivery"], body, request.headers["x-est-signature"], status))
            return Response(status_code=status)

        return app

    def ok(self) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = collections.defaultdict(list)
        for did, body, _sig, status in self.arrivals:
            if status == 200:
                out[did].append(body)
        return out


def _check_arrivals(rx: FlakyReceiver, expected: set[str], secret: str) -> None:
    ok = rx.ok()
    assert set(ok) == expected, f"missing {len(expected - set(ok))}, unexpected {len(set(ok) - expected)}"
    for did, body, sig, _status in rx.arrivals:
        assert verify(secret, body, sig), did
        assert json.loads(body)["specversion"] == "1.0"
    bodies: dict[str, set[bytes]] = collections.defaultdict(set)
    for did, body, _sig, _status in rx.arrivals:
        bodies[did].add(body)
    assert all(len(b) == 1 for b in bodies.values())  # a retry carries the same bytes


async def test_flaky_receiver_gets_every_delivery_with_intact_signature(nats_url: str, tmp_path: Path,
                                                                        org: Org) -> None:
    rx = FlakyReceiver(hang=1.0)
    settings = notifier_settings(nats_url, tmp_path, org, http_timeout=0.3, retry_base_delay=0.05,
                                 retry_max_delay=0.3, max_attempts=30, pause_after_dead=0)
    async with serve(rx.app()) as base, running_notifier(settings, org) as n:
        subs = [await n.subscribe(channel={"type": "webhook", "url": f"{base}/hook?s={i}", "secret": "k3y"})
                for i in range(3)]
        events = [picture_event(org, version=v) for v in range(1, 21)]
        for e in events:
            await publish(nats_url, picture_subject(org), e)
        expected = {delivery_id(s["id"], e.id) for s in subs for e in events}

        async def all_delivered() -> list[dict[str, Any]] | None:
            rows = await n.ledger(limit="1000")
            done = len(rows) == 60 and {r["status"] for r in rows} == {"delivered"}
            return rows if done and expected <= set(rx.ok()) else None

        ledger = await eventually(all_delivered, timeout=40)
        assert rx.n > len(expected)  # there were failures and retries
        _check_arrivals(rx, expected, "k3y")
        statuses = collections.Counter(a["status"] for r in ledger for a in r["attempt_log"])
        assert statuses["delivered"] == 60 and statuses["retry"] > 0
        assert any((a["error"] or "").startswith("timeout") for r in ledger for a in r["attempt_log"])


async def _apply_org(url: str, org: Org, declared: list[dict[str, Any]]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        snap = org.snapshot.model_copy(update={"version": 5, "subscriptions": declared})
        event = new_event(type="se.est.org.changed", source="/est/intake", id=f"org:{uuid.uuid4().hex}",
                          data=OrgChanged(version=5, snapshot=snap.model_dump(mode="json")))
        await publish_event(js, ORG_CHANGED, event)
    finally:
        await nc.close()


async def test_sigkill_mid_run_loses_and_duplicates_nothing(fresh_nats: NatsServer, tmp_path: Path, org: Org) -> None:
    rx = FlakyReceiver(delay=0.01)
    async with serve(rx.app()) as base:
        owner = next(p for p in org.snapshot.people if p.startswith("owner"))
        await _apply_org(fresh_nats.url, org, [{
            "id": "kill", "owner": owner, "name": "Krasch", "events": ["picture.published"],
            "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
            "channel": {"type": "webhook", "url": f"{base}/hook", "secret": "k1ll"}}])
        events = [picture_event(org, version=v) for v in range(1, 151)]
        for e in events:
            await publish(fresh_nats.url, picture_subject(org), e)
        env = {"EST_NATS_URL": fresh_nats.url, "EST_DATA_DIR": str(tmp_path / "data"), "EST_LOG_LEVEL": "WARNING",
               "EST_NOTIFIER_MUNICIPALITY_FILTER": org.m, "EST_NOTIFIER_POLL_INTERVAL": "0.1",
               "EST_NOTIFIER_RETRY_BASE_DELAY": "0.1", "EST_NOTIFIER_RETRY_MAX_DELAY": "0.5",
               "EST_NOTIFIER_LEASE_SECONDS": "2", "EST_NOTIFIER_REMINDERS_ENABLED": "false",
               "EST_NOTIFIER_CONSUMER_ACK_WAIT": "3", "EST_NOTIFIER_WEBHOOK_ALLOW": LOOPBACK_RECEIVERS}
        proc = ServiceProcess("notifier", env, tmp_path / "notifier.log")
        await asyncio.to_thread(proc.start)
        try:
            await eventually(lambda: _at_least(rx, 30), timeout=30)
            await asyncio.to_thread(proc.kill)
            at_kill = len(rx.arrivals)
            assert at_kill < len(events), "killed too late to test anything"
            await asyncio.to_thread(proc.start)
            expected = {delivery_id(declared_id("kill"), e.id) for e in events}

            async def all_delivered() -> bool:
                return expected <= set(rx.ok())

            await eventually(all_delivered, timeout=40)
            await asyncio.sleep(0.5)
            _check_arrivals(rx, expected, "k1ll")
            counts = collections.Counter(did for did, *_ in rx.arrivals)
            assert max(counts.values()) <= 2  # at most one resend (same id, same bytes) of what was in flight
            assert sum(1 for c in counts.values() if c == 2) <= 20  # at most one claimed batch
            async with httpx.AsyncClient(base_url=proc.url) as http:
                r = await http.get("/v1/deliveries", params={"limit": 1000}, headers=org.auth("admin"))
            assert r.status_code == 200
            assert len(r.json()) == 150 and {d["status"] for d in r.json()} == {"delivered"}
        finally:
            await asyncio.to_thread(proc.stop)


async def _at_least(rx: FlakyReceiver, n: int) -> bool:
    return len(rx.arrivals) >= n


class Collector:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 Message accepted"


async def test_smtp_down_for_ten_seconds_then_mails_go_out(nats_url: str, tmp_path: Path, org: Org) -> None:
    port = free_port()
    settings = notifier_settings(nats_url, tmp_path, org, smtp_url=f"smtp://127.0.0.1:{port}", smtp_timeout=2.0,
                                 retry_base_delay=0.5, retry_max_delay=2.0, max_attempts=40, pause_after_dead=0)
    handler = Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    async with running_notifier(settings, org) as n:
        sub = await n.subscribe(channel={"type": "email", "to": "drift@example.org"})
        events = [picture_event(org, version=v) for v in range(1, 6)]
        for e in events:
            await publish(nats_url, picture_subject(org), e)

        async def retried() -> bool:
            rows = await n.ledger(subscription_id=sub["id"])
            return len(rows) == 5 and all(r["attempts"] >= 1 for r in rows)

        await eventually(retried)
        await asyncio.sleep(10)
        assert handler.messages == []
        controller.start()
        try:
            await eventually(lambda: _async(len(handler.messages) >= 5), timeout=15)
            rows = await n.ledger(subscription_id=sub["id"])
            assert {r["status"] for r in rows} == {"delivered"}
            assert all(r["attempt_log"][0]["status"] == "retry" for r in rows)
            ids = {m.split(b"X-EST-Delivery: ", 1)[1].split(b"\r\n", 1)[0].decode() for m in handler.messages}
            assert ids == {delivery_id(sub["id"], e.id) for e in events}
        finally:
            controller.stop()


async def _async(value: bool) -> bool:
    return value
