"""Corrections (``supersedes``): only the original's sender, a key function of its municipality or an admin.

A correction is judged by the original as the ledger recorded it (its sender and municipality), not
by the corrector's current areas; anyone else gets a 403 that tells nothing about the original.
"""

from __future__ import annotations

import copy
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from est_shared.natsserver import NatsServer

from tests.intake.support import auth, last_event, make_org, report, running, settings_for

SUBJECT = "est.report.submitted.vaxjo.araby"
MORE = {"cilla": "tok-cilla", "kim": "tok-kim"}


def org() -> dict[str, Any]:
    """The test organisation with a second reporter in Araby and a key function of another municipality."""
    doc = make_org()
    doc["municipalities"].append({"id": "alvesta", "name": "Alvesta kommun", "areas": [
        {"id": "moheda", "name": "Moheda", "places": ["torget"]}]})
    doc["people"] += [
        {"id": "cilla", "name": "Cilla Ceder", "actor": "vaxjohem", "roles": ["reporter"], "areas": ["araby"],
         "token": MORE["cilla"]},
        {"id": "kim", "name": "Kim Kask", "actor": "kommunen", "roles": ["reporter", "key_function"],
         "areas": ["alvesta"], "token": MORE["kim"]}]
    return doc


def who(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {MORE[name]}"} if name in MORE else auth(name)


def without_instance(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k != "instance"}


async def post(client: httpx.AsyncClient, body: dict[str, Any], name: str) -> httpx.Response:
    return await client.post("/v1/reports", json=body, headers=who(name))


async def test_a_reporter_cannot_correct_another_reporters_report(tmp_path: Path, fresh_nats: NatsServer) -> None:
    """Cilla sends ``supersedes=<Anna's report>`` with nothing in it, which would take Araby's total
    from 9 to 0: a 403 on every way in, and no event is published."""
    async with running(settings_for(tmp_path, fresh_nats.url, org())) as (client, _app):
        annas = report(answers={"skadegorelse": {"value": 9}})
        assert (await post(client, annas, "anna")).status_code == 202
        hostile = report(answers={}, nothing_to_report=True, supersedes=annas["report_id"])
        r = await post(client, hostile, "cilla")
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["detail"].startswith("Du kan bara rätta dina egna rapporter") and " / You can only" in \
            problem["detail"]
        assert problem["errors"] == [{"field": "supersedes", "message": "not a report you may correct"}]
        b = await client.post("/v1/reports:batch", json={"reports": [hostile]}, headers=who("cilla"))
        assert b.json()["results"][0]["status"] == 403
        imported = {**hostile, "reporter_id": "cilla", "submitted_at": datetime.now(UTC).isoformat()}
        i = await client.post("/v1/admin/import", json={"reports": [imported]}, headers=auth("admin"))
        assert i.json()["results"][0]["status"] == 403  # an import is judged as its reporter's own
        _, event = await last_event(fresh_nats.url, SUBJECT)
        assert event["id"] == annas["report_id"]  # nothing after Anna's report reached the bus

        # an id that does not exist gets the very same answer: the 403 tells nothing about the original
        unknown = await post(client, {**hostile, "supersedes": str(uuid.uuid4())}, "cilla")
        assert unknown.status_code == 403 and without_instance(unknown.json()) == without_instance(problem)
        # nor does a correction from another area: the rights come first
        braas = report("braas", answers={"tillhall": {"value": True}}, supersedes=annas["report_id"])
        assert (await post(client, braas, "cilla")).json() == problem

        own = report(answers={"skadegorelse": {"value": 8}}, supersedes=annas["report_id"])
        assert (await post(client, own, "anna")).status_code == 202  # her own: fine
        metrics = (await client.get("/metrics")).text
        assert 'est_intake_reports_rejected_total{reason="correction_forbidden"} 5.0' in metrics


async def test_a_reporter_moved_to_another_area_can_still_correct_her_own_report(tmp_path: Path,
                                                                                 fresh_nats: NatsServer) -> None:
    doc = org()
    async with running(settings_for(tmp_path, fresh_nats.url, doc)) as (client, _app):
        annas = report(answers={"skadegorelse": {"value": 3}})
        assert (await post(client, annas, "anna")).status_code == 202
        moved = copy.deepcopy(doc)
        next(p for p in moved["people"] if p["id"] == "anna")["areas"] = ["braas"]
        r = await client.put("/v1/admin/org", content=yaml.safe_dump(moved, allow_unicode=True),
                             headers={**auth("admin"), "Content-Type": "application/yaml"})
        assert r.status_code == 200, r.text
        assert (await post(client, report(), "anna")).status_code == 403  # no new reports for Araby
        fix = report(answers={"skadegorelse": {"value": 2}}, supersedes=annas["report_id"])
        r = await post(client, fix, "anna")
        assert r.status_code == 202, r.text
        _, event = await last_event(fresh_nats.url, SUBJECT)
        assert event["data"]["supersedes"] == annas["report_id"] and event["data"]["reporter_id"] == "anna"
        elsewhere = report("braas", answers={"tillhall": {"value": True}}, supersedes=annas["report_id"])
        r = await post(client, elsewhere, "anna")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "area_id"  # still about Araby


async def test_after_a_move_the_sender_corrects_her_report_and_the_areas_other_reporter_still_cannot(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    """The rights to a correction are the original's: its sender (moved from Araby to Braås by the
    organisation) corrects her Araby report, alone and in a batch; Cilla, a reporter of Araby now as then,
    is refused, and so is Anna for a report of Cilla's."""
    doc = org()
    async with running(settings_for(tmp_path, fresh_nats.url, doc)) as (client, _app):
        annas = report(answers={"skadegorelse": {"value": 6}})
        cillas = report(answers={"skadegorelse": {"value": 1}})
        assert (await post(client, annas, "anna")).status_code == 202
        assert (await post(client, cillas, "cilla")).status_code == 202
        moved = copy.deepcopy(doc)
        next(p for p in moved["people"] if p["id"] == "anna")["areas"] = ["braas"]
        r = await client.put("/v1/admin/org", json=moved, headers=auth("admin"))
        assert r.status_code == 200 and r.json()["changes"] == ["person anna changed (areas)"], r.text
        me = (await client.get("/v1/me", headers=who("anna"))).json()
        assert [a["id"] for a in me["areas"]] == ["braas"]

        hostile = report(answers={"skadegorelse": {"value": 0}}, supersedes=annas["report_id"])
        r = await post(client, hostile, "cilla")
        assert r.status_code == 403 and r.json()["errors"] == [{"field": "supersedes",
                                                               "message": "not a report you may correct"}]
        fix = report(answers={"skadegorelse": {"value": 5}}, supersedes=annas["report_id"])
        assert (await post(client, fix, "anna")).status_code == 202, fix
        again = report(answers={"skadegorelse": {"value": 4}}, supersedes=fix["report_id"])
        not_hers = report(answers={"skadegorelse": {"value": 0}}, supersedes=cillas["report_id"])
        r = await client.post("/v1/reports:batch", json={"reports": [again, not_hers]}, headers=who("anna"))
        assert [x["status"] for x in r.json()["results"]] == [202, 403]
        _, event = await last_event(fresh_nats.url, SUBJECT)
        assert event["id"] == again["report_id"] and event["data"]["supersedes"] == fix["report_id"]
        assert event["data"]["reporter_id"] == "anna" and event["data"]["area_id"] == "araby"


async def test_a_key_function_corrects_the_reports_of_her_own_municipality_only(tmp_path: Path,
                                                                                fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, org())) as (client, _app):
        annas = report(answers={"skadegorelse": {"value": 9}})
        assert (await post(client, annas, "anna")).status_code == 202
        by_kim = report(answers={"skadegorelse": {"value": 0}}, supersedes=annas["report_id"])
        assert (await post(client, by_kim, "kim")).status_code == 403  # key function of Alvesta
        by_bo = report(answers={"skadegorelse": {"value": 1}}, supersedes=annas["report_id"])
        assert (await post(client, by_bo, "bo")).status_code == 202  # key function of Växjö
        _, event = await last_event(fresh_nats.url, SUBJECT)
        assert event["data"]["reporter_id"] == "bo" and event["data"]["supersedes"] == annas["report_id"]
        by_admin = report(answers={"skadegorelse": {"value": 2}}, supersedes=by_bo["report_id"])
        assert (await post(client, by_admin, "admin")).status_code == 202
        unknown = await post(client, report(supersedes=str(uuid.uuid4())), "admin")
        assert unknown.status_code == 422  # an admin may see every report: told it is unknown
        itself = report()
        r = await post(client, {**itself, "supersedes": itself["report_id"]}, "anna")
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "supersedes"


async def test_a_correction_in_the_same_batch_as_its_original_is_judged_alike(tmp_path: Path,
                                                                              fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, org())) as (client, _app):
        first = report(answers={"skadegorelse": {"value": 4}})
        fix = report(answers={"skadegorelse": {"value": 5}}, supersedes=first["report_id"])
        r = await client.post("/v1/reports:batch", json={"reports": [first, fix]}, headers=who("anna"))
        assert [x["status"] for x in r.json()["results"]] == [202, 202]
        second = report(answers={"skadegorelse": {"value": 4}})
        hostile = report(answers={"skadegorelse": {"value": 0}}, supersedes=second["report_id"])
        await client.post("/v1/reports", json=second, headers=who("anna"))
        r = await client.post("/v1/reports:batch", json={"reports": [hostile]}, headers=who("cilla"))
        assert [x["status"] for x in r.json()["results"]] == [403]


async def test_a_report_accepted_before_the_upgrade_is_corrected_only_by_its_sender(tmp_path: Path,
                                                                                    fresh_nats: NatsServer) -> None:
    """The ledger has kept each report's sender and municipality since its first version: a database
    made by that version (its table as it created it, with a row in it) is judged the same way."""
    settings = settings_for(tmp_path, fresh_nats.url, org())
    (tmp_path / "var").mkdir()
    old_id, at = str(uuid.uuid4()), (datetime.now(UTC) - timedelta(days=1)).isoformat(" ")
    with sqlite3.connect(tmp_path / "var" / "intake.db") as old:
        old.execute("CREATE TABLE reports (report_id VARCHAR(128) PRIMARY KEY, content_sha256 VARCHAR(64) NOT NULL, "
                    "response TEXT NOT NULL, municipality_id VARCHAR(100) NOT NULL, area_id VARCHAR(100) NOT NULL, "
                    "period VARCHAR(20) NOT NULL, reporter_id VARCHAR(100) NOT NULL, received_at DATETIME NOT NULL, "
                    "recorded_at DATETIME NOT NULL)")
        old.execute("INSERT INTO reports VALUES (?, ?, ?, 'vaxjo', 'araby', '2026-W48', 'anna', ?, ?)",
                    (old_id, "0" * 64, f'{{"report_id": "{old_id}", "period": "2026-W48", "status": "accepted", '
                                       f'"late": false}}', at, at))
    async with running(settings) as (client, _app):
        fix = report(answers={"skadegorelse": {"value": 1}}, supersedes=old_id)
        assert (await post(client, fix, "cilla")).status_code == 403
        r = await post(client, fix, "anna")
        assert r.status_code == 202, r.text


@pytest.mark.postgres
async def test_corrections_are_judged_by_the_original_on_postgresql(tmp_path: Path, fresh_nats: NatsServer,
                                                                    postgres_url: str) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, org(), database_url=postgres_url)
    async with running(settings) as (client, _app):
        annas = report(answers={"skadegorelse": {"value": 9}})
        assert (await post(client, annas, "anna")).status_code == 202
        hostile = report(answers={"skadegorelse": {"value": 0}}, supersedes=annas["report_id"])
        assert (await post(client, hostile, "cilla")).status_code == 403
        assert (await post(client, hostile, "anna")).status_code == 202
