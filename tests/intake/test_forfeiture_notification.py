"""The intake's notification of social services: published with the protocol, the person sealed for one purpose."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from est_intake.forfeitures import db as fdb
from est_intake.forfeitures.domain import ForfeitureIn
from est_intake.forfeitures.handlers import ForfeitureDeps, record_protocol, upkeep_once
from est_intake.forfeitures.pii import PiiCipher, PiiDecryptError, generate_key, parse_keys
from est_intake.metrics import ForfeitureMetrics
from est_intake.org.domain import build_snapshot, principal_for
from est_shared.bus import BusUnavailable
from est_shared.db import make_engine, session_factory
from est_shared.events import CloudEvent
from est_shared.natsserver import NatsServer
from est_shared.sealed import open_json, purpose_context
from prometheus_client import CollectorRegistry

from tests.intake.support import running, settings_for
from tests.security.support import all_stream_messages, auth, born_years_ago, forfeiture_org, pnr, protocol

NAME = "Mira Förseglad"
SUBJECT = "est.forfeiture.notification_due.vaxjo"


async def test_under_18_publishes_a_sealed_notification_and_18_19_only_when_asked(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    key = generate_key()
    cipher = PiiCipher(parse_keys(key))
    minor, adult = pnr(born_years_ago(14), serial="341"), pnr(born_years_ago(18), serial="452")
    async with running(settings_for(tmp_path, fresh_nats.url, forfeiture_org(), pii_key=key)) as (client, _app):
        young = protocol(name=NAME, number=minor)
        r = await client.post("/v1/forfeitures", json=young, headers=auth("petra"))
        assert r.status_code == 202 and r.json()["age_band"] == "under_15"
        plain = protocol(name=NAME, number=adult)
        assert (await client.post("/v1/forfeitures", json=plain, headers=auth("petra"))).status_code == 202
        asked = protocol(name=NAME, number=adult, notify_social_services=True)
        assert (await client.post("/v1/forfeitures", json=asked, headers=auth("petra"))).status_code == 202
        assert (await client.post("/v1/forfeitures", json=asked, headers=auth("petra"))).status_code == 202  # replay
        metrics = (await client.get("/metrics")).text
    messages = await all_stream_messages(fresh_nats.url)
    notes = [json.loads(m[2]) for m in messages if m[1] == SUBJECT]
    assert [n["data"]["protocol_id"] for n in notes] == [young["protocol_id"], asked["protocol_id"]]
    first, second = notes
    assert first["id"] == f"forfeiture-notification:{young['protocol_id']}"
    assert first["type"] == "se.est.forfeiture.notification_due"
    d = first["data"]
    assert d["reason"] == "under_18" and d["age_band"] == "under_15" and d["area_id"] == "araby"
    assert d["key_id"] == cipher.primary_id and d["purpose"] == "social_services_notification"
    assert d["items"][0]["beverage"] == "starköl" and "guardian_came" not in d and "person" not in d
    person = open_json(cipher, d["sealed_person"], context=purpose_context(young["protocol_id"]))
    assert person == {"name": NAME, "personal_number": minor, "age": 14, "guardian_contacted": True,
                      "guardian_came": True}
    with pytest.raises(PiiDecryptError):  # bound to its protocol and purpose
        open_json(cipher, d["sealed_person"], context=purpose_context(asked["protocol_id"]))
    with pytest.raises(PiiDecryptError):
        open_json(cipher, d["sealed_person"], context=purpose_context(young["protocol_id"], "statistics"))
    assert second["data"]["reason"] == "requested_by_police" and second["data"]["age_band"] == "18_19"
    assert 'est_intake_forfeiture_notifications_total{reason="under_18"} 1.0' in metrics
    assert 'est_intake_forfeiture_notifications_total{reason="requested_by_police"} 1.0' in metrics
    digits = [minor, minor.replace("-", ""), adult, adult.replace("-", "")]
    for stream, subject, data, headers in messages:
        text = data.decode("utf-8", "replace") + repr(headers)
        assert not [s for s in (NAME, *digits) if s in text], (stream, subject)


class HalfBus:
    """Acknowledges the first ``ok`` publishes, then refuses (the bus goes down between the two events)."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.events: list[tuple[str, CloudEvent[Any]]] = []

    async def publish(self, subject: str, event: CloudEvent[Any]) -> bool:
        if len(self.events) >= self.ok:
            raise BusUnavailable("down")
        self.events.append((subject, event))
        return False


async def test_a_bus_failure_between_the_two_events_keeps_the_row_and_the_upkeep_job_sends_both(
        tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
    async with engine.begin() as conn:
        await fdb.create_tables(conn)
    bus = HalfBus(ok=1)
    cipher = PiiCipher(parse_keys(generate_key()))
    deps = ForfeitureDeps(sessions=session_factory(engine), publish=bus.publish,
                          metrics=ForfeitureMetrics(CollectorRegistry()), retention=timedelta(days=365), cipher=cipher)
    snap, _ = build_snapshot(forfeiture_org(), None)
    petra = principal_for(snap, "petra")
    assert petra is not None
    body = protocol(name=NAME, number=pnr(born_years_ago(16), serial="563"))
    try:
        r = await record_protocol(ForfeitureIn.model_validate(body), caller=petra, snapshot=snap, deps=deps)
        assert r.status == 503 and "stored" in r.body["detail"] and r.headers == {"Retry-After": "5"}
        async with deps.sessions() as s:
            row = await fdb.find_protocol(s, body["protocol_id"])
        assert row is not None and row["published_at"] is None
        assert NAME not in row["event"] and '"sealed_person":""' in row["event"].replace(" ", "")
        bus.ok = 10
        real = deps.clock
        deps.clock = lambda: real() + timedelta(minutes=2)
        assert (await upkeep_once(deps=deps))["published"] == [body["protocol_id"]]
        assert [e.id for _, e in bus.events] == [f"forfeiture:{body['protocol_id']}",
                                                 f"forfeiture:{body['protocol_id']}",
                                                 f"forfeiture-notification:{body['protocol_id']}"]
        sealed = bus.events[-1][1].data.sealed_person  # type: ignore[attr-defined]
        assert open_json(cipher, sealed, context=purpose_context(body["protocol_id"]))["name"] == NAME
        async with deps.sessions() as s:
            log = await fdb.access_entries(s, protocol_id=body["protocol_id"])
        assert [(e["person_id"], e["purpose"], e["outcome"]) for e in log] == [
            ("system:intake", "social_services_notification", "sealed_for_notification")]
    finally:
        await engine.dispose()
