"""The forfeiture access log under hostile use, against real NATS JetStream and SQLite (one on PostgreSQL).

What it keeps (never personal data, never an id that is not a UUID), what it cannot be made to keep
(rows from callers without a token beyond a small budget), what it shows beside reads (a token an
administrator has just set), and answers that do not tell another municipality's protocols from unknown ones.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from est_intake.forfeitures.db import access_log, credential_changes
from est_intake.forfeitures.handlers import record_credential_changes
from est_intake.forfeitures.pii import generate_key
from est_shared.natsserver import NatsServer
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from tests.intake.support import running, settings_for
from tests.security.support import TOKENS, auth, forfeiture_org, protocol

NAME_AND_NUMBER = "Testa Testsson 20100515-2382"


def _settings(tmp_path: Path, url: str, **kw: Any):
    return settings_for(tmp_path, url, forfeiture_org(), pii_key=generate_key(), **kw)


async def _log(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/v1/admin/forfeiture-access-log", params=params, headers=auth("admin"))
    assert r.status_code == 200, r.text
    return r.json()


@asynccontextmanager
async def recorded(tmp_path: Path, nats_url: str, **kw: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any, str]]:
    """A running intake with one protocol recorded by petra: client, app and the protocol's URL."""
    body = protocol()
    async with running(_settings(tmp_path, nats_url, **kw)) as (client, app):
        assert (await client.post("/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
        yield client, app, f"/v1/forfeitures/{body['protocol_id']}"


async def _rows(app: Any) -> int:
    async with app.state.forfeitures.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(access_log)))


async def test_personal_data_in_the_purpose_or_the_id_never_reaches_the_access_log(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with recorded(tmp_path, fresh_nats.url) as (client, _app, url):
        pid = url.rsplit("/", 1)[1]
        refused = [
            (url, auth("anna"), NAME_AND_NUMBER, 403, "forbidden_role"),  # refused for the role: purpose checked too
            (url, auth("sara"), NAME_AND_NUMBER, 422, "purpose_personal_data"),
            (url, auth("sara"), "uppföljning\r\nX-Injected: ja", 400, "refused at the edge: nothing logged"),
            (url, auth("sara"), "a\x00b-uppföljning", 400, "refused at the edge: nothing logged"),
            (f"/v1/forfeitures/{NAME_AND_NUMBER}", {}, None, 401, "unauthenticated"),
            (f"/v1/forfeitures/{NAME_AND_NUMBER}", auth("sara"), "uppföljning", 422, "malformed_id"),
            (f"/v1/forfeitures/{NAME_AND_NUMBER}", auth("anna"), "uppföljning", 403, "forbidden_role"),
        ]
        for path, headers, purpose, status, _ in refused:
            r = await client.get(path, params={"purpose": purpose} if purpose else {}, headers=headers)
            assert r.status_code == status, (path, purpose, r.text)
            assert "20100515" not in r.text and "Testsson" not in r.text
        r = await client.get(url, params={"purpose": "x" * 5000}, headers=auth("sara"))
        assert r.status_code == 414  # a query past the edge's bound never reaches the route or the log
        r = await client.get(url, params={"purpose": "x" * 3000}, headers=auth("sara"))
        assert r.status_code == 422 and r.json()["errors"][0]["reason"] == "too_long"
        entries = (await _log(client))["entries"]
        raw = json.dumps(entries)
        assert "20100515" not in raw and "Testsson" not in raw and "X-Injected" not in raw and "\\u0000" not in raw
        logged = [(e["outcome"], e["protocol_id"], e["purpose"]) for e in reversed(entries)]
        assert logged == [
            ("forbidden_role", pid, "[refused: personal data]"),
            ("purpose_personal_data", pid, "[refused: personal data]"),
            ("unauthenticated", "[malformed id]", None),
            ("malformed_id", "[malformed id]", "uppföljning"),
            ("forbidden_role", "[malformed id]", "uppföljning"),
            ("purpose_too_long", pid, "x" * 200),
        ]


async def test_three_hundred_requests_without_a_valid_token_add_few_rows_and_real_reads_are_still_logged(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with recorded(tmp_path, fresh_nats.url) as (client, app, url):
        r = await client.get(f"/v1/forfeitures/{'x' * 12_000}", params={"purpose": "uppföljning"})
        assert r.status_code == 414  # a 12 KB id does not even reach the route (the edge's path bound)
        before = await _rows(app)
        for i in range(300):
            headers = {} if i % 2 else {"Authorization": f"Bearer guess-{i}"}
            r = await client.get(f"/v1/forfeitures/{'x' * 1_500}{i}", params={"purpose": "p" * 2000},
                                 headers=headers)
            assert r.status_code == 401 and "xxxx" not in r.text
        added = await _rows(app) - before
        assert 1 <= added <= 2  # one per client address and minute (two if the minute turned meanwhile)
        metrics = (await client.get("/metrics")).text
        assert 'est_intake_forfeiture_reads_total{outcome="unauthenticated"} 300.0' in metrics
        assert f"est_intake_forfeiture_unlogged_attempts_total {300.0 - added}" in metrics

        assert (await client.get(url, params={"purpose": "uppföljning"}, headers=auth("sara"))).status_code == 200
        for _ in range(3):  # refused reads with a valid token are logged one by one
            r = await client.get(f"/v1/forfeitures/{'x' * 1_500}", params={"purpose": "uppföljning"},
                                 headers=auth("petra"))
            assert r.status_code == 422
        entries = (await _log(client, limit=4))["entries"]
        assert [(e["person_id"], e["outcome"]) for e in entries] == [
            ("petra", "malformed_id")] * 3 + [("sara", "granted")]
        async with app.state.forfeitures.sessions() as s:
            longest = await s.scalar(select(func.max(func.length(access_log.c.protocol_id))))
            purpose = await s.scalar(select(func.max(func.length(access_log.c.purpose))))
        assert longest == 36 and purpose <= 200


async def test_another_municipalitys_protocol_answers_like_an_unknown_one(tmp_path: Path,
                                                                          fresh_nats: NatsServer) -> None:
    body = protocol()

    def same(r: httpx.Response, *ids: str) -> tuple[int, str]:
        """Status and body with the protocol ids (which the caller sent) taken out."""
        doc = r.json()
        doc.pop("instance", None)
        raw = json.dumps(doc)
        for pid in (body["protocol_id"], unknown, *ids):
            raw = raw.replace(pid, "ID")
        return r.status_code, raw

    unknown = str(uuid.uuid4())
    async with running(_settings(tmp_path, fresh_nats.url)) as (client, _app):
        assert (await client.post("/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
        params = {"purpose": "utredning"}
        elsewhere = await client.get(f"/v1/forfeitures/{body['protocol_id']}", params=params, headers=auth("olle"))
        missing = await client.get(f"/v1/forfeitures/{unknown}", params=params, headers=auth("olle"))
        assert elsewhere.status_code == 404 and same(elsewhere) == same(missing)

        # recording in a municipality one does not work in: 403 whether the id is taken there or not
        taken = await client.post("/v1/forfeitures", json={**body, "place": "torget"}, headers=auth("olle"))
        fresh = await client.post("/v1/forfeitures", json={**body, "protocol_id": unknown, "place": "torget"},
                                  headers=auth("olle"))
        assert taken.status_code == 403 and same(taken) == same(fresh)
        # in one's own municipality a taken id is a conflict, the same one as for a changed resend of one's own
        mine = protocol("ljungby", None, place="torget")
        assert (await client.post("/v1/forfeitures", json=mine, headers=auth("olle"))).status_code == 202
        theirs = await client.post("/v1/forfeitures", json={**mine, "protocol_id": body["protocol_id"]},
                                   headers=auth("olle"))
        changed = await client.post("/v1/forfeitures", json={**mine, "place": "centrum"}, headers=auth("olle"))
        assert theirs.status_code == 409
        assert same(theirs) == same(changed, mine["protocol_id"])
        outcomes = [e["outcome"] for e in (await _log(client))["entries"]]
        assert outcomes == ["not_found", "other_municipality"]  # the log tells them apart; the answer does not


async def test_a_token_an_administrator_gives_an_officer_shows_beside_the_reads_that_follow(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with recorded(tmp_path, fresh_nats.url) as (client, app, url):
        assert (await client.get(url, params={"purpose": "utredning"}, headers=auth("petra"))).status_code == 200

        org = copy.deepcopy(forfeiture_org())
        people = {p["id"]: p for p in org["people"]}
        people["petra"]["token"] = "admin-chose-this"
        people["admin"]["roles"] = ["admin", "social_services"]
        people["admin"]["areas"] = ["vaxjo"]
        org["people"].append({"id": "ghost", "name": "Ny Polis", "actor": "polisen", "roles": ["police"],
                              "areas": ["vaxjo"], "token": "tok-ghost"})
        people["anna"]["token"] = "tok-anna-2"  # a reporter's new token is no way into protocols
        put = await client.put("/v1/admin/org", json=org, headers=auth("admin"))
        assert put.status_code == 200, put.text
        version = put.json()["version"]
        assert (await client.put("/v1/admin/org", json=org, headers=auth("admin"))).json()["changed"] is False

        new_petra = {"Authorization": "Bearer admin-chose-this"}
        assert (await client.get(url, params={"purpose": "kontroll"}, headers=new_petra)).status_code == 200
        assert (await client.get(url, params={"purpose": "kontroll"}, headers=auth("petra"))).status_code == 401
        admin_now = {"Authorization": f"Bearer {TOKENS['admin']}"}
        assert (await client.get(url, params={"purpose": "kontroll"}, headers=admin_now)).status_code == 200

        doc = await _log(client)
        changes = {(c["person_id"], c["kind"]) for c in doc["credential_changes"]}
        assert changes == {("petra", "token_changed"), ("admin", "read_role_granted"), ("ghost", "person_added")}
        assert all(c["org_version"] == version and c["applied_by"] == "admin" for c in doc["credential_changes"])
        by_reader = [(e["person_id"], e["outcome"], e["credential_change"]) for e in reversed(doc["entries"])]
        first, *after = by_reader
        assert first[:2] == ("petra", "granted") and first[2] is None  # before the change
        assert [(p, o, c and (c["kind"], c["org_version"], c["applied_by"])) for p, o, c in after] == [
            ("petra", "granted", ("token_changed", version, "admin")),
            ("-", "unauthenticated", None),
            ("admin", "granted", ("read_role_granted", version, "admin")),
        ]
        only = await _log(client, person_id="petra")
        assert [c["kind"] for c in only["credential_changes"]] == ["token_changed"]

        deps = app.state.forfeitures
        snapshot = app.state.runtime.directory.snapshot
        assert await record_credential_changes(snapshot, deps=deps) == 0  # another replica hearing it: no twin
        metrics = (await client.get("/metrics")).text
        assert 'est_intake_forfeiture_credential_changes_total{kind="token_changed"} 1.0' in metrics
        with pytest.raises(DBAPIError):
            async with deps.sessions() as s, s.begin():
                await s.execute(text("DELETE FROM forfeiture_credential_changes"))


@pytest.mark.postgres
async def test_credential_changes_are_append_only_on_postgresql(tmp_path: Path, fresh_nats: NatsServer,
                                                                 postgres_url: str) -> None:
    settings = _settings(tmp_path, fresh_nats.url, database_url=postgres_url)
    async with running(settings) as (client, app):
        org = copy.deepcopy(forfeiture_org())
        next(p for p in org["people"] if p["id"] == "sara")["token"] = "tok-sara-2"
        assert (await client.put("/v1/admin/org", json=org, headers=auth("admin"))).status_code == 200
        assert [c["person_id"] for c in (await _log(client))["credential_changes"]] == ["sara"]
        sessions = app.state.forfeitures.sessions
        async with sessions() as s:
            assert await s.scalar(select(func.count()).select_from(credential_changes)) == 1
        for stmt in ("UPDATE forfeiture_credential_changes SET kind = 'x'", "DELETE FROM forfeiture_credential_changes",
                     "TRUNCATE forfeiture_credential_changes"):
            with pytest.raises(DBAPIError):
                async with sessions() as s, s.begin():
                    await s.execute(text(stmt))


async def test_a_token_issued_to_an_officer_through_the_api_shows_beside_the_reads_that_follow(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    """An administrator who issues an officer a token could read protocols under her name: the issue is a
    credential change like a new token in the file (a reporter's issued token is none)."""
    async with recorded(tmp_path, fresh_nats.url) as (client, _app, url):
        r = await client.post("/v1/admin/people/petra/tokens", json={"name": "laptop"}, headers=auth("admin"))
        assert r.status_code == 201, r.text
        version = r.json()["org_version"]
        issued = {"Authorization": f"Bearer {r.json()['token']}"}
        assert (await client.post("/v1/admin/people/anna/tokens", json={"name": "telefon"},
                                  headers=auth("admin"))).status_code == 201
        assert (await client.get(url, params={"purpose": "kontroll"}, headers=issued)).status_code == 200
        doc = await _log(client)
        assert [(c["person_id"], c["kind"], c["org_version"], c["applied_by"]) for c in doc["credential_changes"]] \
            == [("petra", "token_issued", version, "admin")]
        assert doc["entries"][0]["person_id"] == "petra"
        assert doc["entries"][0]["credential_change"]["kind"] == "token_issued"
