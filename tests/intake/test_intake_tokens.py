"""Personal API tokens issued through the API: shown once, kept as SHA-256 in the organisation, accepted by
every service (here the intake and the aggregator, over the real organisation propagation) until revoked or
expired, and never written to a log or shown again."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from est_aggregator.app import create_app as aggregator_app
from est_aggregator.settings import AggregatorSettings
from est_intake.app import create_app as intake_app
from est_shared.clock import SettableClock
from est_shared.natsserver import NatsServer
from est_shared.periods import current_period
from est_shared.testing import serve
from fastapi import FastAPI

from tests.intake.support import auth, make_org, running, settings_for
from tests.support import eventually

ADMIN_TOKENS = "/v1/admin/people/{}/tokens"
WEEK = current_period("weekly", datetime.now(UTC), "Europe/Stockholm").id
PICTURE = f"/v1/areas/araby/pictures/{WEEK}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def intake_and_aggregator(tmp_path: Path, nats_url: str, caplog: pytest.LogCaptureFixture,
                                ) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, httpx.AsyncClient, FastAPI]]:
    """A running intake and aggregator on one NATS, with every log record of both captured (INFO and up)."""
    (tmp_path / "intake").mkdir()
    intake = intake_app(settings_for(tmp_path / "intake", nats_url, make_org()))
    agg = aggregator_app(AggregatorSettings(nats_url=nats_url, data_dir=tmp_path / "agg", auto_publish_interval=0,
                                            log_level="WARNING", business_metrics_interval=0))
    logging.getLogger().addHandler(caplog.handler)  # the services re-route logging when they are made
    caplog.set_level(logging.INFO)
    async with serve(intake) as intake_url, serve(agg) as agg_url, \
            httpx.AsyncClient(base_url=intake_url, timeout=15) as ic, httpx.AsyncClient(base_url=agg_url,
                                                                                       timeout=15) as ac:
        yield ic, intake, ac, agg


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record with its message and its extra fields."""
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


async def test_an_issued_token_works_in_the_intake_and_the_aggregator_until_it_is_revoked(
        tmp_path: Path, fresh_nats: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    async with intake_and_aggregator(tmp_path, fresh_nats.url, caplog) as (intake, _app, agg, _agg_app):
        r = await intake.post(ADMIN_TOKENS.format("anna"), json={"name": "rapportappen"}, headers=auth("admin"))
        assert r.status_code == 201, r.text
        issued = r.json()
        token, token_id = issued["token"], issued["id"]
        assert len(token) >= 40 and issued["person_id"] == "anna" and issued["expires_at"] is None
        me = await intake.get("/v1/me", headers=bearer(token))
        assert me.status_code == 200 and me.json()["id"] == "anna"  # at once in the intake

        async def admitted() -> bool:  # the aggregator learns it from est.org.changed
            return (await agg.get(PICTURE, headers=bearer(token))).status_code != 401
        await eventually(admitted, timeout=15)

        listed = (await intake.get(ADMIN_TOKENS.format("anna"), headers=auth("admin"))).json()["tokens"]
        assert [t["id"] for t in listed] == [token_id] and listed[0]["name"] == "rapportappen"
        assert listed[0]["last_used_at"] is not None and listed[0]["expired"] is False
        org = (await intake.get("/v1/admin/org", headers=auth("admin"))).text
        assert token not in org and token_id in org  # the organisation holds its SHA-256 only
        assert token not in (await intake.get(ADMIN_TOKENS.format("anna"), headers=auth("admin"))).text

        # an organisation file applied afterwards keeps the issued token (the file does not list them)
        doc = make_org()
        doc["municipalities"][0]["areas"][0]["places"].append("torget")
        r = await intake.put("/v1/admin/org", json=doc, headers=auth("admin"))
        assert r.status_code == 200 and r.json()["changes"] == ["area araby changed (places)"]
        assert (await intake.get("/v1/me", headers=bearer(token))).status_code == 200

        r = await intake.delete(f"{ADMIN_TOKENS.format('anna')}/{token_id}", headers=auth("admin"))
        assert r.status_code == 200 and r.json()["revoked"] is True
        revoked_at = datetime.now(UTC)
        assert (await intake.get("/v1/me", headers=bearer(token))).status_code == 401  # at once in the intake

        async def refused() -> bool:
            return (await agg.get(PICTURE, headers=bearer(token))).status_code == 401
        await eventually(refused, timeout=15)
        assert datetime.now(UTC) - revoked_at < timedelta(seconds=15)
        assert (await intake.get(ADMIN_TOKENS.format("anna"), headers=auth("admin"))).json()["tokens"] == []
        again = await intake.delete(f"{ADMIN_TOKENS.format('anna')}/{token_id}", headers=auth("admin"))
        assert again.status_code == 404

        history = (await intake.get("/v1/admin/org/history", headers=auth("admin"))).json()["versions"]
        assert history[0]["changes"] == [f"token {token_id} of person anna revoked"]
        assert f"token {token_id} issued to person anna" in history[2]["changes"]
        text = logged(caplog)
        assert "personal API token issued" in text and token_id in text
        assert token not in text


async def test_an_expired_token_is_refused_by_every_service(tmp_path: Path, fresh_nats: NatsServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    async with intake_and_aggregator(tmp_path, fresh_nats.url, caplog) as (intake, app, agg, agg_app):
        clocks = [SettableClock(), SettableClock()]
        app.state.runtime.directory.clock, agg_app.state.runtime.directory.clock = clocks
        expires = datetime.now(UTC) + timedelta(days=30)
        r = await intake.post("/v1/me/tokens", json={"name": "surfplattan", "expires_at": expires.isoformat()},
                              headers=auth("bo"))
        assert r.status_code == 201, r.text
        token = r.json()["token"]

        async def admitted() -> bool:
            return (await agg.get(PICTURE, headers=bearer(token))).status_code != 401
        await eventually(admitted, timeout=15)
        assert (await intake.get("/v1/me", headers=bearer(token))).status_code == 200
        for clock in clocks:
            clock.advance(timedelta(days=30, seconds=1))
        assert (await intake.get("/v1/me", headers=bearer(token))).status_code == 401
        assert (await agg.get(PICTURE, headers=bearer(token))).status_code == 401
        assert (await intake.get("/v1/me", headers=auth("bo"))).status_code == 200  # the file's token still works
        listed = (await intake.get("/v1/me/tokens", headers=auth("bo"))).json()["tokens"]
        assert listed[0]["expired"] is True

        past = await intake.post("/v1/me/tokens", json={"name": "x", "expires_at": "2020-01-01T00:00:00Z"},
                                 headers=auth("bo"))
        assert past.status_code == 422 and past.json()["errors"][0]["field"] == "expires_at"
        naive = await intake.post("/v1/me/tokens", json={"name": "x", "expires_at": "2030-01-01T00:00:00"},
                                  headers=auth("bo"))
        assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "body.expires_at"


async def test_only_an_admin_issues_or_revokes_another_persons_tokens(tmp_path: Path,
                                                                     fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        r = await client.post(ADMIN_TOKENS.format("bo"), json={"name": "stöld"}, headers=auth("anna"))
        assert r.status_code == 403
        assert (await client.get(ADMIN_TOKENS.format("bo"), headers=auth("anna"))).status_code == 403
        bos = (await client.post("/v1/me/tokens", json={"name": "telefonen"}, headers=auth("bo"))).json()
        assert (await client.delete(f"{ADMIN_TOKENS.format('bo')}/{bos['id']}", headers=auth("anna"))).status_code \
            == 403
        # a person's own routes reach only their own tokens: Bo's id is unknown to Anna
        assert (await client.delete(f"/v1/me/tokens/{bos['id']}", headers=auth("anna"))).status_code == 404
        assert (await client.get("/v1/me/tokens", headers=auth("anna"))).json()["tokens"] == []
        assert (await client.get("/v1/me", headers=bearer(bos["token"]))).status_code == 200
        r = await client.delete(f"/v1/me/tokens/{bos['id']}", headers=auth("bo"))
        assert r.status_code == 200
        assert (await client.get("/v1/me", headers=bearer(bos["token"]))).status_code == 401

        unknown = await client.post(ADMIN_TOKENS.format("nobody"), json={"name": "x"}, headers=auth("admin"))
        assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
        for bad, field in (({}, "body.name"), ({"name": ""}, "body.name"), ({"name": "x", "scope": "all"},
                                                                              "body.scope")):
            r = await client.post("/v1/me/tokens", json=bad, headers=auth("anna"))
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
        r = await client.post("/v1/me/tokens", json={"name": "a\x00b"}, headers=auth("anna"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "name"
        assert (await client.post("/v1/me/tokens", content=b"{", headers=auth("anna"))).status_code == 400
        assert (await client.post("/v1/me/tokens", json={"name": "x"})).status_code == 401


async def test_a_person_removed_from_the_organisation_loses_their_issued_tokens(tmp_path: Path,
                                                                              fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        annas = (await client.post("/v1/me/tokens", json={"name": "telefonen"}, headers=auth("anna"))).json()
        for n in range(19):
            assert (await client.post("/v1/me/tokens", json={"name": f"t{n}"}, headers=auth("bo"))).status_code == 201
        assert (await client.post("/v1/me/tokens", json={"name": "t19"}, headers=auth("bo"))).status_code == 201
        full = await client.post("/v1/me/tokens", json={"name": "one too many"}, headers=auth("bo"))
        assert full.status_code == 409
        doc = make_org()
        doc["people"] = [p for p in doc["people"] if p["id"] != "anna"]
        r = await client.put("/v1/admin/org", content=yaml.safe_dump(doc), headers={
            **auth("admin"), "Content-Type": "application/yaml"})
        assert r.status_code == 200 and r.json()["changes"] == ["person anna removed"]
        assert (await client.get("/v1/me", headers=bearer(annas["token"]))).status_code == 401
        snapshot: dict[str, Any] = (await client.get("/v1/admin/org", headers=auth("admin"))).json()
        assert annas["id"] not in snapshot["tokens"] and len(snapshot["tokens"]) == 20
        doc["people"].append(make_org()["people"][0])  # back again: the old token stays gone
        await client.put("/v1/admin/org", json=doc, headers=auth("admin"))
        assert (await client.get("/v1/me", headers=bearer(annas["token"]))).status_code == 401


async def test_plain_tokens_in_the_start_up_file_are_counted_in_a_warning_never_shown(
        tmp_path: Path, fresh_nats: NatsServer, caplog: pytest.LogCaptureFixture) -> None:
    doc = make_org()
    doc["people"][1] = {**doc["people"][1], "token": None,
                        "token_sha256": "a" * 64}  # Bo's is a hash: not counted
    del doc["people"][1]["token"]
    app = intake_app(settings_for(tmp_path, fresh_nats.url, doc))
    logging.getLogger().addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    async with serve(app):
        pass
    warnings = [r for r in caplog.records if "plain-text token" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "gives 3 people" in warnings[0].getMessage() and warnings[0].__dict__["plain_tokens"] == 3
    text = logged(caplog)
    assert all(p["token"] not in text for p in doc["people"] if "token" in p)


@pytest.mark.postgres
async def test_tokens_are_issued_and_revoked_on_postgresql(tmp_path: Path, fresh_nats: NatsServer,
                                                           postgres_url: str) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org(), database_url=postgres_url)
    async with running(settings) as (client, _app):
        r = await client.post(ADMIN_TOKENS.format("lena"), json={"name": "styrgruppsmötet"}, headers=auth("admin"))
        assert r.status_code == 201, r.text
        issued = r.json()
        assert (await client.get("/v1/me", headers=bearer(issued["token"]))).json()["id"] == "lena"
        r = await client.delete(f"{ADMIN_TOKENS.format('lena')}/{issued['id']}", headers=auth("admin"))
        assert r.status_code == 200 and r.json()["org_version"] == issued["org_version"] + 1
        assert (await client.get("/v1/me", headers=bearer(issued["token"]))).status_code == 401
