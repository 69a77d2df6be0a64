"""Integration tests of forfeiture protocols against real NATS JetStream and SQLite (one on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from est_intake.forfeitures.db import access_log
from est_intake.forfeitures.pii import generate_key
from est_shared.natsserver import NatsServer
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError

from tests.intake.support import running, settings_for
from tests.security.support import auth, born_years_ago, forfeiture_org, last_event, pnr, protocol


def _settings(tmp_path: Path, url: str, **kw: Any):
    kw.setdefault("pii_key", generate_key())
    return settings_for(tmp_path, url, forfeiture_org(), **kw)


async def test_protocol_is_accepted_after_the_ack_with_an_anonymous_event_and_replays(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    body = protocol()
    async with running(_settings(tmp_path, fresh_nats.url)) as (client, _app):
        r = await client.post("/v1/forfeitures", json=body, headers=auth("petra"))
        assert r.status_code == 202, r.text
        answer = r.json()
        assert answer == {"protocol_id": body["protocol_id"], "status": "accepted", "age_band": "15_17",
                          "warnings": []}
        event = await last_event(fresh_nats.url, "est.forfeiture.recorded.vaxjo")
        assert event["id"] == f"forfeiture:{body['protocol_id']}" and event["type"] == "se.est.forfeiture.recorded"
        data = event["data"]
        assert data["protocol_id"] == body["protocol_id"] and data["age_band"] == "15_17"
        assert data["items"][0] == {"beverage": "starköl", "volume_liters": 1.5, "containers": 3}
        assert data["place"] == "centrum" and data["area_id"] == "araby" and data["source"] == "adult_supplier"
        assert data["direct_forfeiture"] and data["guardian_contacted"] and data["social_services_notified"]
        raw = str(event)
        for secret in ("Kim Testsson", body["person"]["personal_number"], "4711", "Maxi"):
            assert secret not in raw

        assert (await client.post("/v1/forfeitures", json=body, headers=auth("petra"))).json() == answer
        for other in ({**body, "place": "torget"},
                      {**body, "person": {**body["person"], "name": "Någon Annan"}},
                      {**body, "source_details": "annat"}):
            c = await client.post("/v1/forfeitures", json=other, headers=auth("petra"))
            assert c.status_code == 409 and c.headers["content-type"].startswith("application/problem+json")
        young = protocol(number=pnr(born_years_ago(13)), guardian_contacted=False, guardian_came=False,
                         social_services_notified=False)
        y = await client.post("/v1/forfeitures", json=young, headers=auth("petra"))
        assert y.status_code == 202 and y.json()["age_band"] == "under_15"
        assert {w["code"] for w in y.json()["warnings"]} == {"guardian_not_contacted", "social_services_not_notified"}
        metrics = (await client.get("/metrics")).text
        assert 'est_intake_forfeitures_total{outcome="accepted"} 2.0' in metrics
        assert 'est_intake_forfeitures_total{outcome="conflict"} 3.0' in metrics


async def test_twenty_or_over_and_bad_numbers_are_refused_without_echo(tmp_path: Path, fresh_nats: NatsServer) -> None:
    adult = pnr(born_years_ago(20))
    bad = pnr(born_years_ago(16))[:-1] + "0"
    bad = bad if bad != pnr(born_years_ago(16)) else bad[:-1] + "1"
    async with running(_settings(tmp_path, fresh_nats.url)) as (client, _app):
        r = await client.post("/v1/forfeitures", json=protocol(number=adult), headers=auth("petra"))
        assert r.status_code == 422 and "20 or older" in r.json()["detail"] and "20 år" in r.json()["detail"]
        assert adult not in r.text and adult[2:8] not in r.text
        r = await client.post("/v1/forfeitures", json=protocol(number=bad), headers=auth("petra"))
        assert r.status_code == 422 and r.json()["errors"][0]["reason"] == "check_digit" and bad not in r.text
        r = await client.post("/v1/forfeitures", json=protocol(number="19x"), headers=auth("petra"))
        assert r.status_code == 422 and "19x" not in r.text
        r = await client.post("/v1/forfeitures", json=protocol(muni="ljungby", area=None), headers=auth("petra"))
        assert r.status_code == 403


async def test_reads_need_police_or_social_services_and_a_purpose_and_every_attempt_is_logged(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    body = protocol()
    async with running(_settings(tmp_path, fresh_nats.url)) as (client, app):
        now = app.state.forfeitures.clock()
        app.state.forfeitures.clock = lambda: now  # both attempts without a token fall in one minute
        assert (await client.post("/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
        url = f"/v1/forfeitures/{body['protocol_id']}"
        r = await client.get(url, params={"purpose": "uppföljningssamtal"}, headers=auth("sara"))
        assert r.status_code == 200, r.text
        p = r.json()
        assert p["person"] == {"name": "Kim Testsson", "personal_number": body["person"]["personal_number"],
                               "age": 16}
        assert p["officer"] == "inspektör 4711" and p["source_details"] == body["source_details"]
        assert p["guardian_came"] is True and p["recorded_by"] == "petra" and p["personal_data_deleted_at"] is None
        assert (await client.get(url, params={"purpose": "utredning langning"}, headers=auth("petra"))).status_code \
            == 200
        attempts = [
            (auth("anna"), {"purpose": "nyfiken"}, 403), (auth("bo"), {"purpose": "x" * 10}, 403),
            (auth("admin"), {"purpose": "kontroll"}, 403), (auth("sara"), {}, 422),
            (auth("sara"), {"purpose": "samtal 070-123 45 67"}, 422), (auth("olle"), {"purpose": "utredning"}, 404),
            ({}, {"purpose": "x"}, 401), ({"Authorization": "Bearer nope"}, {}, 401),
        ]
        for headers, params, status in attempts:
            r = await client.get(url, params=params, headers=headers)
            assert r.status_code == status, (headers, params, r.text)
        r = await client.get(f"/v1/forfeitures/{uuid.uuid4()}", params={"purpose": "uppföljning"},
                             headers=auth("petra"))
        assert r.status_code == 404
        r = await client.get("/v1/forfeitures/no-such", params={"purpose": "uppföljning"}, headers=auth("petra"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "protocol_id" and "no-such" not in r.text

        log = await client.get("/v1/admin/forfeiture-access-log", headers=auth("admin"))
        assert log.status_code == 200
        entries = log.json()["entries"]
        assert [(e["person_id"], e["outcome"]) for e in reversed(entries)] == [
            ("sara", "granted"), ("petra", "granted"), ("anna", "forbidden_role"), ("bo", "forbidden_role"),
            ("admin", "forbidden_role"), ("sara", "purpose_missing"), ("sara", "purpose_personal_data"),
            ("olle", "other_municipality"), ("-", "unauthenticated"), ("petra", "not_found"),
            ("petra", "malformed_id")]
        first = entries[-1]
        assert first["purpose"] == "uppföljningssamtal" and first["protocol_id"] == body["protocol_id"]
        assert first["roles"] == ["social_services"] and first["actor_id"] == "soc" and first["at"]
        assert [e["purpose"] for e in entries if e["outcome"] == "purpose_personal_data"] == [
            "[refused: personal data]"]
        assert entries[0]["protocol_id"] == "[malformed id]"
        only = await client.get("/v1/admin/forfeiture-access-log", params={"person_id": "petra", "limit": 1},
                                headers=auth("admin"))
        assert [e["outcome"] for e in only.json()["entries"]] == ["malformed_id"]
        assert (await client.get("/v1/admin/forfeiture-access-log", headers=auth("petra"))).status_code == 403

        sessions = app.state.forfeitures.sessions
        for stmt in (update(access_log).values(outcome="granted"), text("DELETE FROM forfeiture_access_log")):
            with pytest.raises(DBAPIError):
                async with sessions() as s, s.begin():
                    await s.execute(stmt)


async def test_bus_down_answers_503_and_nothing_is_stored(tmp_path: Path, fresh_nats: NatsServer) -> None:
    body = protocol()
    async with running(_settings(tmp_path, fresh_nats.url)) as (client, _app):
        await asyncio.to_thread(fresh_nats.stop)
        r = await client.post("/v1/forfeitures", json=body, headers=auth("petra"))
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        g = await client.get(f"/v1/forfeitures/{body['protocol_id']}", params={"purpose": "kontroll"},
                             headers=auth("petra"))
        assert g.status_code == 404
        await asyncio.to_thread(fresh_nats.start)
        for _ in range(100):
            r = await client.post("/v1/forfeitures", json=body, headers=auth("petra"))
            if r.status_code != 503:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 202, r.text
        assert (await last_event(fresh_nats.url, "est.forfeiture.recorded.vaxjo"))["data"]["protocol_id"] == \
            body["protocol_id"]


async def test_scheduled_job_deletes_personal_data_when_the_clock_moves_past_retention(
        tmp_path: Path, fresh_nats: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    from datetime import UTC, datetime

    body = protocol(occurred_at=(datetime.now(UTC) - timedelta(days=20)).isoformat())
    kept = protocol(name="Robin Kvar")
    settings = _settings(tmp_path, fresh_nats.url, forfeiture_retention_days=30, forfeiture_upkeep_interval=0.05)
    async with running(settings) as (client, app):
        logging.getLogger().addHandler(caplog.handler)  # the service re-routes logging at start
        caplog.set_level(logging.INFO, logger="est")
        for b in (body, kept):
            assert (await client.post("/v1/forfeitures", json=b, headers=auth("petra"))).status_code == 202
        deps = app.state.forfeitures
        real = deps.clock
        deps.clock = lambda: real() + timedelta(days=15)  # body is now 35 days old, kept 15
        for _ in range(100):
            if deps.metrics.deleted._value.get() >= 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # a few more runs: nothing else may go
        deps.clock = real

        async def read(pid: str) -> dict:
            r = await client.get(f"/v1/forfeitures/{pid}", params={"purpose": "statistik"}, headers=auth("sara"))
            assert r.status_code == 200
            return r.json()

        p = await read(body["protocol_id"])
        assert p["person"] is None and p["officer"] is None and p["source_details"] is None
        assert p["personal_data_deleted_at"] is not None
        assert p["age_band"] == "15_17" and p["items"][0]["beverage"] == "starköl" and p["place"] == "centrum"
        assert (await read(kept["protocol_id"]))["person"]["name"] == "Robin Kvar"
        again = await client.post("/v1/forfeitures", json=body, headers=auth("petra"))
        assert again.status_code == 409 and "deleted" in again.json()["detail"]
        entries = (await client.get("/v1/admin/forfeiture-access-log", headers=auth("admin"))).json()["entries"]
        assert entries[-1]["outcome"] == "granted_personal_data_deleted"
        deleted = [r for r in caplog.records if "deleted after retention" in r.getMessage()]
        assert len(deleted) == 1 and deleted[0].count == 1 and deleted[0].protocol_ids == body["protocol_id"]
        assert "Kim Testsson" not in caplog.text and body["person"]["personal_number"] not in caplog.text
        assert "est_intake_forfeiture_personal_data_deleted_total 1.0" in (await client.get("/metrics")).text


async def test_key_rotation_keeps_old_protocols_readable_and_reencrypts_them(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    key_a, key_b = generate_key(), generate_key()
    old, new = protocol(), protocol(name="Alex Nyare", number=pnr(born_years_ago(18), serial="411"))

    async def read(client: Any, pid: str) -> dict:
        r = await client.get(f"/v1/forfeitures/{pid}", params={"purpose": "kontroll"}, headers=auth("petra"))
        assert r.status_code == 200, r.text
        return r.json()["person"]

    async with running(_settings(tmp_path, fresh_nats.url, pii_key=key_a)) as (client, _app):
        assert (await client.post("/v1/forfeitures", json=old, headers=auth("petra"))).status_code == 202
        enc = (await client.get("/v1/admin/forfeitures/encryption", headers=auth("admin"))).json()
        id_a = enc["primary_key_id"]
        assert enc["rows_by_key"] == {id_a: 1} and key_a not in str(enc)
    async with running(_settings(tmp_path, fresh_nats.url, pii_key=f"{key_b},{key_a}")) as (client, _app):
        assert (await read(client, old["protocol_id"]))["name"] == "Kim Testsson"
        assert (await client.post("/v1/forfeitures", json=new, headers=auth("petra"))).status_code == 202
        assert (await client.post("/v1/forfeitures", json=old, headers=auth("petra"))).status_code == 202  # replay
        enc = (await client.get("/v1/admin/forfeitures/encryption", headers=auth("admin"))).json()
        id_b = enc["primary_key_id"]
        assert enc["key_ids"] == [id_b, id_a] and enc["rows_by_key"] == {id_a: 1, id_b: 1}
        assert (await client.post("/v1/admin/forfeitures/reencrypt", headers=auth("petra"))).status_code == 403
        r = await client.post("/v1/admin/forfeitures/reencrypt", headers=auth("admin"))
        assert r.status_code == 200
        assert r.json()["reencrypted"] == 1 and r.json()["rows_by_key"] == {id_b: 2}
    async with running(_settings(tmp_path, fresh_nats.url, pii_key=key_b)) as (client, _app):
        assert (await read(client, old["protocol_id"]))["name"] == "Kim Testsson"
        assert (await read(client, new["protocol_id"]))["name"] == "Alex Nyare"
    async with running(_settings(tmp_path, fresh_nats.url, pii_key=generate_key())) as (client, _app):
        r = await client.get(f"/v1/forfeitures/{old['protocol_id']}", params={"purpose": "kontroll"},
                             headers=auth("petra"))
        assert r.status_code == 500 and "EST_PII_KEY" in r.json()["detail"] and "Kim" not in r.text


async def test_embedded_default_encrypts_with_a_generated_key_file(tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, forfeiture_org())
    assert settings.pii_key is None
    body = protocol()
    async with running(settings) as (client, _app):
        assert (await client.post("/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
    key_file = tmp_path / "var" / "pii.key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    raw = (tmp_path / "var" / "intake.db").read_bytes()
    assert b"Kim Testsson" not in raw and body["person"]["personal_number"].encode() not in raw
    async with running(settings) as (client, _app):
        r = await client.get(f"/v1/forfeitures/{body['protocol_id']}", params={"purpose": "kontroll"},
                             headers=auth("petra"))
        assert r.json()["person"]["name"] == "Kim Testsson"


@pytest.mark.postgres
async def test_forfeitures_on_postgresql(tmp_path: Path, fresh_nats: NatsServer, postgres_url: str) -> None:
    key_a, key_b = generate_key(), generate_key()
    body = protocol()
    settings = _settings(tmp_path, fresh_nats.url, database_url=postgres_url, pii_key=key_a)
    async with running(settings) as (client, app):
        assert (await client.post("/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
        assert (await client.post("/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
        r = await client.get(f"/v1/forfeitures/{body['protocol_id']}", params={"purpose": "uppföljning"},
                             headers=auth("sara"))
        assert r.status_code == 200 and r.json()["person"]["age"] == 16
        assert (await client.get(f"/v1/forfeitures/{body['protocol_id']}", headers=auth("sara"))).status_code == 422
        entries = (await client.get("/v1/admin/forfeiture-access-log", headers=auth("admin"))).json()["entries"]
        assert [e["outcome"] for e in entries] == ["purpose_missing", "granted"]
        async with app.state.forfeitures.sessions() as s:
            stored = (await s.execute(text("SELECT person_name, personal_number FROM forfeiture_protocols"))).one()
        assert all(v.startswith("v1.") and "Kim" not in v for v in stored)
        for stmt in ("UPDATE forfeiture_access_log SET outcome = 'granted'", "DELETE FROM forfeiture_access_log",
                     "TRUNCATE forfeiture_access_log"):
            with pytest.raises(DBAPIError):
                async with app.state.forfeitures.sessions() as s, s.begin():
                    await s.execute(text(stmt))
    settings = _settings(tmp_path, fresh_nats.url, database_url=postgres_url, pii_key=f"{key_b},{key_a}")
    async with running(settings) as (client, app):
        r = await client.post("/v1/admin/forfeitures/reencrypt", headers=auth("admin"))
        assert r.json()["reencrypted"] == 1
        deps = app.state.forfeitures
        real = deps.clock
        deps.clock = lambda: real() + timedelta(days=366)
        from est_intake.forfeitures.handlers import delete_expired_personal_data

        assert await delete_expired_personal_data(deps=deps) == [body["protocol_id"]]
        deps.clock = real
        r = await client.get(f"/v1/forfeitures/{body['protocol_id']}", params={"purpose": "statistik"},
                             headers=auth("petra"))
        assert r.json()["person"] is None and r.json()["items"][1]["beverage"] == "sprit"


async def _post_hostile_bodies(client: Any) -> None:
    """Bodies a hostile or broken device might send: each gets a 422 naming the field, never a 5xx."""
    body = protocol()
    raw = json.dumps(body)
    as_json = {**auth("petra"), "Content-Type": "application/json"}
    for number in ("1e308", "1e999", "NaN", "Infinity", "-1", "1e-320"):
        r = await client.post("/v1/forfeitures", headers=as_json,
                              content=raw.replace('"volume_liters": 1.5', f'"volume_liters": {number}'))
        assert r.status_code == 422 and "volume_liters" in r.text, (number, r.text)
    r = await client.post("/v1/forfeitures", headers=as_json,
                          content=raw.replace('"containers": 3', f'"containers": {10 ** 400}'))
    assert r.status_code == 422 and "containers" in r.text and "0000000000" not in r.text
    many = {**body, "items": [body["items"][0]] * 20_000}
    r = await client.post("/v1/forfeitures", json=many, headers=auth("petra"))
    assert r.status_code == 422 and len(r.content) < 2000
    for change, field in (({"place": "centrum\x00"}, "place"), ({"unit": "Växjö\r\nBcc: x@example.org"}, "unit"),
                          ({"source_details": "\x00"}, "source_details"),
                          ({"person": {**body["person"], "name": "Kim\x00"}}, "person.name")):
        r = await client.post("/v1/forfeitures", json={**body, **change}, headers=auth("petra"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
    r = await client.get(f"/v1/forfeitures/{body['protocol_id']}", params={"purpose": "samtal\x00"},
                         headers=auth("petra"))
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "query"  # refused at the edge


async def test_hostile_protocol_bodies_get_422_not_5xx(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(_settings(tmp_path, fresh_nats.url)) as (client, _app):
        await _post_hostile_bodies(client)


@pytest.mark.postgres
async def test_hostile_protocol_bodies_get_422_not_5xx_on_postgresql(tmp_path: Path, fresh_nats: NatsServer,
                                                                       postgres_url: str) -> None:
    async with running(_settings(tmp_path, fresh_nats.url, database_url=postgres_url)) as (client, _app):
        await _post_hostile_bodies(client)
