"""Notifications to social services about a young person: intake and notifier on real NATS.

Only a social-services person of the municipality may subscribe; the personal data crosses the bus sealed,
is opened only to send it over https (or a plain-http target the operator allows), the opening is logged,
and nothing else (other subscribers, logs, metrics, stored payloads, the e-mail) ever sees it: the e-mail
only says that a protocol needs action and links to where it is read after sign-in.
"""

from __future__ import annotations

import asyncio
import email
import json
import logging
import stat
import uuid
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from est_intake.app import create_app as create_intake
from est_intake.forfeitures.pii import generate_key
from est_notifier.app import Settings, create_app
from est_notifier.deliveries.db import get_delivery
from est_notifier.deliveries.domain import verify
from est_notifier.subscriptions.db import insert_subscription
from est_notifier.subscriptions.egress import AllowList
from est_shared.bus import encode
from est_shared.natsserver import NatsServer
from est_shared.observability import JsonFormatter
from est_shared.org import Actor, Person, hash_token
from est_shared.testing import serve
from fastapi import FastAPI, Request, Response

from tests.intake.support import settings_for
from tests.notifier.support import Org, notification_event, notifier_db, running_notifier
from tests.notifier.support import notifier_settings as helper_settings
from tests.security.support import all_stream_messages, auth, born_years_ago, forfeiture_org, pnr, protocol
from tests.support import eventually

NAME = "Tindra Hemligdotter"


class Capture(logging.Handler):
    """Every log record as the service would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.fmt = JsonFormatter("notifier")

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.fmt.format(record) + repr(record.args))


def variants(number: str) -> list[str]:
    digits = number.replace("-", "")
    return [number, digits, digits[-10:], f"{digits[-10:-4]}-{digits[-4:]}"]


PUBLIC = "https://est.vaxjo.example"


def notifier_settings(url: str, data_dir: Path, key: str, **over: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "nats_url": url, "data_dir": data_dir, "log_level": "DEBUG", "pii_key": key, "municipality_filter": "vaxjo",
        "durable_pictures": f"p-{tag}", "durable_alerts": f"al-{tag}", "durable_analyses": f"an-{tag}",
        "durable_updates": f"up-{tag}", "durable_notifications": f"nf-{tag}", "reminders_enabled": False,
        "poll_interval": 0.1, "retry_base_delay": 0.05, "retry_max_delay": 0.2, "max_attempts": 3,
        "public_url": PUBLIC, "webhook_allow": "127.0.0.1/32"}  # the test's receivers are plain http on loopback
    values.update(over)
    return Settings(**values)


def read_as_recipient(raw: bytes) -> tuple[Any, str, str]:
    """The message, its plain-text part and its HTML part, decoded as a mail client shows them."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    return msg, text, html


async def test_under_18_reaches_only_social_services_with_personal_data_sealed_on_the_bus(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    key = generate_key()
    minor = pnr(born_years_ago(15), serial="417")
    young_adult = pnr(born_years_ago(19), serial="528")
    secrets = [NAME, *variants(minor), *variants(young_adult)]
    received: list[tuple[dict[str, str], bytes]] = []
    others: list[bytes] = []
    receiver = FastAPI()

    @receiver.post("/soc")
    async def soc(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return Response(status_code=200)

    @receiver.post("/other")
    async def other(request: Request) -> Response:
        others.append(await request.body())
        return Response(status_code=200)

    capture = Capture()
    (tmp_path / "intake").mkdir()
    intake_app = create_intake(settings_for(tmp_path / "intake", fresh_nats.url, forfeiture_org(), pii_key=key))
    notifier_app = create_app(notifier_settings(fresh_nats.url, tmp_path / "notifier", key))
    logging.getLogger().addHandler(capture)
    try:
        async with serve(receiver) as hooks, serve(intake_app) as ibase, serve(notifier_app) as nbase, \
                httpx.AsyncClient(base_url=ibase, timeout=10) as intake, \
                httpx.AsyncClient(base_url=nbase, timeout=10) as notifier:
            runtime = notifier_app.state.runtime
            await eventually(lambda: _ready(runtime))
            spec = {"name": "Socialjouren", "scope": {"municipality_id": "vaxjo"},
                    "events": ["forfeiture.notification_due"],
                    "channel": {"type": "webhook", "url": f"{hooks}/soc", "secret": "soc-secret"}}
            r = await notifier.post("/v1/subscriptions", json=spec, headers=auth("sara"))
            assert r.status_code == 201, r.text
            sub_id = r.json()["id"]
            mail = {**spec, "name": "Socialjouren e-post", "channel": {"type": "email", "to": "soc@example.org"}}
            assert (await notifier.post("/v1/subscriptions", json=mail, headers=auth("sara"))).status_code == 201
            for who in ("petra", "bo", "admin", "anna"):  # police, key function, admin, reporter
                r = await notifier.post("/v1/subscriptions", headers=auth(who), json={
                    **spec, "channel": {"type": "webhook", "url": f"{hooks}/other", "secret": "x"}})
                assert r.status_code == 403, (who, r.text)
                assert "socialtjänsten" in r.json()["detail"]
            r = await notifier.post("/v1/subscriptions", headers=auth("bo"), json={
                "name": "Bo alla", "scope": {"municipality_id": "vaxjo"},
                "events": ["picture.published", "alert.raised", "analysis.published"],
                "channel": {"type": "webhook", "url": f"{hooks}/other", "secret": "x"}})
            assert r.status_code == 201, r.text
            r = await notifier.patch(f"/v1/subscriptions/{r.json()['id']}", headers=auth("bo"),
                                     json={"events": ["picture.published", "forfeiture.notification_due"]})
            assert r.status_code == 403

            body = protocol(name=NAME, number=minor, guardian_came=False)
            assert (await intake.post("/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
            await eventually(lambda: _len(received, 1))
            headers, raw = received[0]
            assert verify("soc-secret", raw, headers["x-est-signature"])
            event = json.loads(raw)
            assert event["type"] == "se.est.forfeiture.notification_due"
            data = event["data"]
            assert data["protocol_id"] == body["protocol_id"] and data["reason"] == "under_18"
            assert data["person"] == {"name": NAME, "personal_number": minor, "age": 15, "guardian_contacted": True,
                                      "guardian_came": False}
            assert "sealed_person" not in data and "key_id" not in data
            assert data["notice"]["title"] == "Förverkande av alkohol – ung person under 18 år"

            outbox = tmp_path / "notifier" / "outbox"
            emls = await eventually(lambda: _files(outbox))
            raw = emls[0].read_bytes()
            msg, text, html = read_as_recipient(raw)
            assert msg["Subject"] == "Förverkande av alkohol – ung person under 18 år"
            link = f"{PUBLIC}/app/#forfeitures/{body['protocol_id']}"
            for part in (text, html):
                assert link in part and "Skyldighet att agera" in part and "Växjö kommun" in part
                assert not [s for s in secrets if s in part], "personal data in the e-mail"
            assert f'href="{link}"' in html
            assert not [s for s in secrets if s in raw.decode("utf-8", "replace")]
            assert stat.S_IMODE(emls[0].stat().st_mode) == 0o600 and stat.S_IMODE(outbox.stat().st_mode) == 0o700

            log_rows = (await notifier.get("/v1/admin/personal-data-deliveries",
                                           params={"protocol_id": body["protocol_id"]}, headers=auth("admin"))).json()
            assert [(e["subscription_id"] == sub_id, e["owner_id"], e["outcome"], e["purpose"], e["channel"])
                    for e in log_rows] == [(True, "sara", "delivered", "social_services_notification", "webhook")]
            # the e-mail opened nothing: only the webhook's opening is logged
            assert (await notifier.get("/v1/admin/personal-data-deliveries", headers=auth("sara"))).status_code == 403
            ledger = (await notifier.get("/v1/deliveries", params={"subscription_id": sub_id},
                                         headers=auth("sara"))).json()
            assert [d["status"] for d in ledger] == ["delivered"]
            state = notifier_app.state.notifier
            async with state["sessions"]() as s:
                stored = await get_delivery(s, state["tables"], ledger[0]["delivery_id"])
            assert stored is not None and stored["payload"] == b""  # nothing kept once delivered

            # 18-19: no notification unless the officer asks for one
            adult = protocol(name=NAME, number=young_adult, guardian_contacted=False, guardian_came=False)
            assert (await intake.post("/v1/forfeitures", json=adult, headers=auth("petra"))).status_code == 202
            asked = protocol(name=NAME, number=young_adult, guardian_contacted=False, guardian_came=False,
                             notify_social_services=True)
            assert (await intake.post("/v1/forfeitures", json=asked, headers=auth("petra"))).status_code == 202
            await eventually(lambda: _len(received, 2))
            await asyncio.sleep(0.5)
            assert len(received) == 2
            second = json.loads(received[1][1])["data"]
            assert second["protocol_id"] == asked["protocol_id"] and second["reason"] == "requested_by_police"
            assert second["person"]["age"] == 19 and second["notice"]["title"].startswith("Förverkande av alkohol")
            assert others == []

            metrics = (await notifier.get("/metrics")).text
            assert 'est_notifier_personal_data_deliveries_total{outcome="delivered"} 2.0' in metrics
            messages = await all_stream_messages(fresh_nats.url)
    finally:
        logging.getLogger().removeHandler(capture)

    notifications = [m for m in messages if m[1] == "est.forfeiture.notification_due.vaxjo"]
    assert len(notifications) == 2
    leaks = []
    for stream, subject, data_bytes, hdrs in messages:
        text = data_bytes.decode("utf-8", "replace") + repr(hdrs)
        leaks += [f"{stream} {subject}: {s}" for s in secrets if s in text]
    for line in capture.lines:
        leaks += [f"log: {line[:100]}: {s}" for s in secrets if s in line]
    leaks += [f"/metrics: {s}" for s in secrets if s in metrics]
    assert any("personal data opened for social services" in line for line in capture.lines)
    assert not leaks, "\n".join(leaks[:20])


async def _ready(runtime: Any) -> bool:
    return "sara" in runtime.directory.snapshot.people


async def _len(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def _files(directory: Path) -> list[Path]:
    return await asyncio.to_thread(lambda: sorted(directory.glob("*.eml")) if directory.exists() else [])


def test_only_social_services_of_the_municipality_may_hold_the_personal_kind() -> None:
    from est_notifier.subscriptions.domain import Caller, end_reason
    from est_notifier.subscriptions.receipt import check_receipt
    from est_shared.errors import Forbidden

    soc = Caller("sara", ("social_services",), ("a1",), ("m1",))
    police = Caller("petra", ("police",), ("a1",), ("m1",))
    admin = Caller("adm", ("admin",), (), ("m1",))
    check_receipt(soc, "m1", ["a1"], ["forfeiture.notification_due"])
    check_receipt(police, "m1", ["a1"], ["picture.published"])
    for who, muni in ((police, "m1"), (admin, "m1"), (soc, "m2"), (None, "m1")):
        with pytest.raises(Forbidden, match="Only social services of"):
            check_receipt(who, muni, ["a1"], ["picture.published", "forfeiture.notification_due"])
    known = {"m1": ["a1"]}
    assert end_reason(soc, "m1", ["a1"], municipality_areas=known, events=["forfeiture.notification_due"]) is None
    lost = Caller("sara", ("reporter",), ("a1",), ("m1",))
    assert end_reason(lost, "m1", ["a1"], municipality_areas=known,
                      events=["forfeiture.notification_due"]) == "social_services_role_lost"
    assert end_reason(lost, "m1", ["a1"], municipality_areas=known, events=["picture.published"]) is None


async def test_declared_personal_subscriptions_of_others_are_skipped(tmp_path: Path) -> None:
    from est_notifier.subscriptions.handlers import upsert_declared_subscriptions
    from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person

    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path / 'n.db'}")
    snap = OrgSnapshot(version=1, municipalities={"m1": Municipality(id="m1", name="M", area_ids=["a1"])},
                       areas={"a1": Area(id="a1", name="A", municipality_id="m1")},
                       actors={"soc": Actor(id="soc", name="Soc", kind="social_services")},
                       people={"sara": Person(id="sara", name="S", actor="soc", roles=["social_services"],
                                              areas=["a1"], municipalities=["m1"]),
                               "bo": Person(id="bo", name="B", actor="soc", roles=["key_function", "admin"],
                                            areas=["a1"], municipalities=["m1"])})
    item = {"name": "Jour", "scope": {"municipality_id": "m1"}, "events": ["forfeiture.notification_due"],
            "channel": {"type": "email", "to": "jour@example.org"}}
    reasons: list[str] = []
    try:
        counts = await upsert_declared_subscriptions(
            sessions=sessions, tables=tables, snapshot=snap, on_invalid=reasons.append,
            declared=[{"id": "s1", "owner": "sara", **item}, {"id": "b1", "owner": "bo", **item}])
    finally:
        await engine.dispose()
    assert counts["created"] == 1 and reasons == ["personal_data"]


def _with_social_services(org: Org) -> tuple[Org, str]:
    """The test organisation plus Sara of social services in its municipality (and her token)."""
    sara = Person(id=f"sara{org.m}", name="Sara Social", actor="soc", roles=["social_services"], areas=[org.a1],
                  municipalities=[org.m], token_sha256=hash_token(f"tok-sara-{org.m}"))
    snap = org.snapshot.model_copy(update={
        "actors": {**org.snapshot.actors, "soc": Actor(id="soc", name="Socialtjänsten", kind="social_services")},
        "people": {**org.snapshot.people, sara.id: sara}})
    return Org(org.m, org.a1, org.a2, snap, {**org.tokens, "sara": f"tok-sara-{org.m}"}), sara.id


async def test_personal_data_goes_to_a_webhook_only_over_https_unless_the_operator_allows_the_target(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    org, _sara = _with_social_services(org)
    settings = helper_settings(nats_url, tmp_path, org, webhook_allow="hooks.internal, 10.0.0.0/8")
    async with running_notifier(settings, org) as n:
        def spec(url: str, events: list[str] | None = None) -> dict[str, Any]:
            return {"name": "Socialjouren", "scope": {"municipality_id": org.m},
                    "events": events or ["forfeiture.notification_due"],
                    "channel": {"type": "webhook", "url": url, "secret": "s"}}

        r = await n.http.post("/v1/subscriptions", json=spec("http://example.org/soc"), headers=org.auth("sara"))
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "channel.url" and "bara över https" in r.json()["detail"]
        for url in ("https://example.org/soc", "http://hooks.internal/soc", "http://10.1.2.3/soc"):
            r = await n.http.post("/v1/subscriptions", json=spec(url), headers=org.auth("sara"))
            assert r.status_code == 201, (url, r.text)
        made = r.json()["id"]
        r = await n.http.patch(f"/v1/subscriptions/{made}", headers=org.auth("sara"),
                               json={"channel": {"type": "webhook", "url": "http://example.org/soc"}})
        assert r.status_code == 422, r.text
        r = await n.http.post("/v1/subscriptions", json=spec("http://example.org/pics", ["picture.published"]),
                              headers=org.auth("sara"))
        assert r.status_code == 201, r.text  # no personal data: the https rule is not this one's


async def test_a_stored_plain_http_webhook_for_personal_data_is_never_opened(tmp_path: Path, org: Org) -> None:
    from est_notifier.deliveries.personal import NotOpened, PersonalDeliveries
    from est_shared.sealed import PiiCipher, parse_keys

    org, sara = _with_social_services(org)
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    cipher = PiiCipher(parse_keys(generate_key()))
    opened: list[bool] = []

    def load() -> PiiCipher:
        opened.append(True)
        return cipher

    event = notification_event(org, cipher, {"name": NAME, "personal_number": "20100101-0017"})
    channel = {"type": "webhook", "url": "http://example.org/soc", "secret": "s"}
    async with sessions() as s, s.begin():  # as a version before the https rule stored it
        await insert_subscription(s, tables, {
            "id": "old-sub", "owner_id": sara, "name": "jour", "municipality_id": org.m, "area_ids": [],
            "events": ["forfeiture.notification_due"], "channel": channel, "channel_target": "webhook:old",
            "digest": "immediate", "language": "sv", "min_severity": None, "source": "api", "declared_key": None})
    deliveries = PersonalDeliveries(sessions=sessions, tables=tables, load_cipher=load, snapshot=lambda: org.snapshot,
                                    sender="est@example.org", webhook_allow=AllowList.parse("10.0.0.0/8"))
    delivery = {"id": "d1", "subscription_id": "old-sub", "event_id": event.id, "event_type": event.type,
                "payload": encode(event), "channel": "webhook"}
    with pytest.raises(NotOpened) as refused:
        await deliveries.prepare(delivery)
    await engine.dispose()
    assert refused.value.outcome == "failed" and "https" in refused.value.error
    assert opened == []  # the key was not even loaded
