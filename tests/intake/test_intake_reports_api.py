"""Integration tests of report intake against a real NATS JetStream server and SQLite."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from est_shared.natsserver import NatsServer
from est_shared.periods import Period, current_period

from tests.intake.support import (
    TRYGG_1,
    auth,
    last_event,
    make_org,
    report,
    running,
    settings_for,
    two_municipalities_org,
)


def this_week() -> Period:
    return current_period("weekly", datetime.now(UTC), "Europe/Stockholm")


async def test_report_accepted_publishes_event_then_replays(tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org())
    body = report(note="allt lugnt annars")
    async with running(settings) as (client, _app):
        r = await client.post("/v1/reports", json=body, headers=auth("anna"))
        assert r.status_code == 202, r.text
        answer = r.json()
        assert answer == {"report_id": body["report_id"], "period": this_week().id, "status": "accepted",
                          "late": False}
        headers, event = await last_event(fresh_nats.url, "est.report.submitted.vaxjo.araby")
        assert headers["Nats-Msg-Id"] == body["report_id"] == event["id"]
        assert event["type"] == "se.est.report.submitted" and event["source"] == "/est/intake"
        data = event["data"]
        assert data["reporter_id"] == "anna" and data["actor_id"] == "vaxjohem"
        assert data["municipality_id"] == "vaxjo" and data["period"] == this_week().id
        assert data["answers"]["klotter"] == {"value": 2, "places": ["centrum"], "note": "nytt på garaget"}
        assert data["checklist"] == "est-standard@1" and data["late"] is False
        assert "received_at" in data

        again = await client.post("/v1/reports", json=body, headers=auth("anna"))
        assert again.status_code == 202 and again.json() == answer
        other = await client.post("/v1/reports", json={**body, "note": "annat"}, headers=auth("anna"))
        assert other.status_code == 409
        assert other.headers["content-type"].startswith("application/problem+json")
        by_bo = await client.post("/v1/reports", json=body, headers=auth("bo"))
        assert by_bo.status_code == 409  # same id and content but another reporter

        metrics = (await client.get("/metrics")).text
        assert 'est_intake_reports_accepted_total{via="api"} 1.0' in metrics
        assert "est_intake_reports_replayed_total 1.0" in metrics
        assert 'est_intake_reports_rejected_total{reason="conflict"} 2.0' in metrics
        assert "est_intake_publish_seconds_count 1.0" in metrics

    async with running(settings) as (client, _app):  # same SQLite file after a restart
        again = await client.post("/v1/reports", json=body, headers=auth("anna"))
        assert again.status_code == 202 and again.json() == answer
        assert (await client.post("/v1/reports", json={**body, "note": "x"}, headers=auth("anna"))).status_code == 409


async def test_refusals_401_403_422_400(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        assert (await client.post("/v1/reports", json=report())).status_code == 401
        r = await client.post("/v1/reports", json=report(), headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        assert (await client.post("/v1/reports", json=report(), headers=auth("lena"))).status_code == 403
        assert (await client.post("/v1/reports", json=report("braas"), headers=auth("anna"))).status_code == 403
        assert (await client.post("/v1/reports", json=report("nowhere"), headers=auth("anna"))).status_code == 403
        assert (await client.post("/v1/reports", json=report("nowhere"), headers=auth("admin"))).status_code == 422

        async def refused(body: dict, field: str, who: str = "anna") -> dict:
            r = await client.post("/v1/reports", json=body, headers=auth(who))
            assert r.status_code == 422, (body, r.text)
            problem = r.json()
            assert any(field in e["field"] for e in problem["errors"]), problem
            return problem

        await refused(report(answers={"klotter": {"value": 4}}), "answers.klotter.value")
        await refused(report(answers={"skadegorelse": {"value": True}}), "answers.skadegorelse.value")
        await refused(report(answers={"skadegorelse": {"value": -1}}), "answers.skadegorelse.value")
        await refused(report(answers={"skadegorelse": {"value": 1.5}}), "value")
        await refused(report(answers={"tillhall": {"value": 1}}), "answers.tillhall.value")
        await refused(report(answers={"graffiti": {"value": 1}}), "answers.graffiti")
        await refused(report(answers={"klotter": {"value": 1, "places": ["torget"]}}), "answers.klotter.places")
        await refused(report(colour="red"), "colour")
        await refused(report(note="x" * 501), "note")
        await refused(report(checklist="est-standard@9"), "checklist")
        await refused(report(answers={}), "answers")
        await refused(report(period="2026-W99"), "period")
        await refused(report(report_id="bad id with spaces"), "report_id")
        await refused(report(supersedes="never-seen"), "supersedes")
        many = {f"x{i}": {"value": 1} for i in range(51)}
        await refused(report(answers=many), "answers")
        pii = await refused(report(answers={"klotter": {"value": 1, "note": "ring 070-123 45 67"}}),
                            "answers.klotter.note")
        assert "telefonnummer" in pii["detail"] + json.dumps(pii["errors"], ensure_ascii=False)
        assert pii["errors"][0]["reason"] == "phone_number" and pii["errors"][0]["message_en"]
        await refused(report(note="pojken 050505-1234"), "note")
        await refused(report(note="skriv till kalle@example.se"), "note")

        r = await client.post("/v1/reports", content=b"{not json", headers={**auth("anna"),
                                                                           "Content-Type": "application/json"})
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
        no_type = await client.post("/v1/reports", content=json.dumps(report()), headers=auth("anna"))
        assert no_type.status_code == 202, no_type.text  # a JSON body without Content-Type is still JSON
        nothing = report(answers={}, nothing_to_report=True)
        assert (await client.post("/v1/reports", json=nothing, headers=auth("anna"))).status_code == 202


async def test_periods_late_future_and_biweekly(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        past = this_week().shift(-3).id
        r = await client.post("/v1/reports", json=report(period=past), headers=auth("anna"))
        assert r.status_code == 202 and r.json()["late"] is True and r.json()["period"] == past
        now = await client.post("/v1/reports", json=report(period=this_week().id), headers=auth("anna"))
        assert now.json()["late"] is False
        future = await client.post("/v1/reports", json=report(period=this_week().next().id), headers=auth("anna"))
        assert future.status_code == 422 and "future" in future.text
        bi = report("braas", answers={"klotter": {"value": 1, "places": ["torget"]}}, period=this_week().id)
        r = await client.post("/v1/reports", json=bi, headers=auth("bo"))
        assert r.status_code == 202, r.text
        assert r.json()["period"] == Period.biweek_containing(this_week().start).id
        assert r.json()["period"].split("-")[1].startswith("B")

        first = report()
        assert (await client.post("/v1/reports", json=first, headers=auth("anna"))).status_code == 202
        fix = report(supersedes=first["report_id"])
        assert (await client.post("/v1/reports", json=fix, headers=auth("anna"))).status_code == 202
        wrong_area = report("braas", answers={"tillhall": {"value": True}}, supersedes=first["report_id"])
        assert (await client.post("/v1/reports", json=wrong_area, headers=auth("bo"))).status_code == 422

        metrics = (await client.get("/metrics")).text
        assert "est_intake_reports_late_total 1.0" in metrics
        assert 'est_intake_reports_rejected_total{reason="future_period"} 1.0' in metrics


async def test_batch_partial_success(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        ok1, ok2 = report(), report(period=this_week().shift(-1).id)
        fix = report(supersedes=ok1["report_id"])
        bad = report(answers={"klotter": {"value": 7}})
        reports = [ok1, bad, ok2, {"report_id": "x", "answers": "nope"}, fix, ok1, {**ok2, "note": "changed"}]
        r = await client.post("/v1/reports:batch", json={"reports": reports}, headers=auth("anna"))
        assert r.status_code == 200, r.text
        out = r.json()
        assert [x["status"] for x in out["results"]] == [202, 422, 202, 422, 202, 202, 409]
        assert out["results"][0]["body"]["status"] == "accepted"
        assert out["results"][1]["problem"]["errors"][0]["field"] == "answers.klotter.value"
        assert out["accepted"] == 4 and out["rejected"] == 3
        single = await client.post("/v1/reports", json=ok2, headers=auth("anna"))
        assert single.status_code == 202 and single.json() == out["results"][2]["body"]

        too_many = {"reports": [report() for _ in range(501)]}
        r = await client.post("/v1/reports:batch", json=too_many, headers=auth("anna"))
        assert r.status_code in (413, 422)
        big = {"reports": [report() for _ in range(500)]}
        r = await client.post("/v1/reports:batch", json=big, headers=auth("anna"))
        assert r.status_code == 200 and r.json()["accepted"] == 500


async def test_import_historical_reports(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        week = this_week().shift(-10)
        on_time = datetime.combine(week.start + timedelta(days=4), datetime.min.time(), UTC)
        late_at = on_time + timedelta(days=7)
        items = [
            {**report(period=week.id), "reporter_id": "anna", "submitted_at": on_time.isoformat()},
            {**report(period=week.id), "reporter_id": "anna", "submitted_at": late_at.isoformat()},
            {**report(), "reporter_id": "anna", "submitted_at": on_time.isoformat()},  # period from submitted_at
            {**report(period=week.id), "reporter_id": "ghost", "submitted_at": on_time.isoformat()},
            {**report("braas", answers={"tillhall": {"value": True}}), "reporter_id": "anna",
             "submitted_at": on_time.isoformat()},  # not anna's area
            {**report(), "reporter_id": "anna", "submitted_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
            {**report(period=week.next().id), "reporter_id": "anna", "submitted_at": on_time.isoformat()},
            {**report(), "reporter_id": "anna"},  # no submitted_at
        ]
        assert (await client.post("/v1/admin/import", json={"reports": items}, headers=auth("anna"))).status_code == 403
        r = await client.post("/v1/admin/import", json={"reports": items}, headers=auth("admin"))
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["status"] for x in res] == [202, 202, 202, 422, 403, 422, 422, 422]
        assert res[0]["body"]["late"] is False and res[1]["body"]["late"] is True
        assert res[2]["body"]["period"] == week.id
        _, event = await last_event(fresh_nats.url, "est.report.submitted.vaxjo.araby")
        assert event["data"]["reporter_id"] == "anna"
        again = await client.post("/v1/admin/import", json={"reports": items[:3]}, headers=auth("admin"))
        assert [x["status"] for x in again.json()["results"]] == [202, 202, 202]
        assert [x["body"] for x in again.json()["results"]] == [x["body"] for x in res[:3]]


async def test_bus_down_gives_503_then_accepts(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        body = report()
        fresh_nats.stop()
        r = await client.post("/v1/reports", json=body, headers=auth("anna"))
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.headers["content-type"].startswith("application/problem+json")
        b = await client.post("/v1/reports:batch", json={"reports": [report()]}, headers=auth("anna"))
        assert b.json()["results"][0]["status"] == 503
        fresh_nats.start()
        for _ in range(100):
            r = await client.post("/v1/reports", json=body, headers=auth("anna"))
            if r.status_code != 503:
                break
            await asyncio.sleep(0.1)
        assert r.status_code == 202, r.text
        _, event = await last_event(fresh_nats.url, "est.report.submitted.vaxjo.araby")
        assert event["id"] == body["report_id"]


@pytest.mark.postgres
async def test_reports_on_postgresql(tmp_path: Path, fresh_nats: NatsServer, postgres_url: str) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org(), database_url=postgres_url)
    body = report()
    async with running(settings) as (client, _app):
        r = await client.post("/v1/reports", json=body, headers=auth("anna"))
        assert r.status_code == 202, r.text
        assert (await client.post("/v1/reports", json=body, headers=auth("anna"))).json() == r.json()
        assert (await client.post("/v1/reports", json={**body, "note": "y"}, headers=auth("anna"))).status_code == 409
        h = await client.get("/v1/admin/org/history", headers=auth("admin"))
        assert h.json()["versions"][0]["version"] == 1
        assert (await client.get("/readyz")).status_code == 200


async def test_concurrent_resends_and_body_limit(tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org(), max_body_bytes=50_000)
    async with running(settings) as (client, _app):
        body = report()
        answers = await asyncio.gather(*(client.post("/v1/reports", json=body, headers=auth("anna"))
                                         for _ in range(8)))
        assert {r.status_code for r in answers} == {202}
        assert len({r.text for r in answers}) == 1
        clash = report()
        answers = await asyncio.gather(*(client.post("/v1/reports", json={**clash, "note": f"n{i}"},
                                                     headers=auth("anna")) for i in range(6)))
        assert sorted(r.status_code for r in answers) == [202] + [409] * 5
        big = {"reports": [report(note="x" * 400) for _ in range(200)]}
        r = await client.post("/v1/reports:batch", json=big, headers=auth("anna"))
        assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")


async def test_the_batch_fast_path_answers_as_the_route_does(tmp_path: Path, fresh_nats: NatsServer) -> None:
    """A batch of valid reports from a reporter is answered ahead of routing (read once, from the
    bytes into the reports); everything else goes to the route with the body as it came. Both give
    the same answers: a body sent without Content-Length (chunked) always takes the route."""
    async def chunked(body: bytes) -> Any:
        yield body[:10]
        yield body[10:]

    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        answers = []
        for via in ("fast", "route"):
            batch = [report(answers={"klotter": {"value": i}}) for i in range(3)]
            body = json.dumps({"reports": batch}).encode()
            if via == "fast":
                r = await client.post("/v1/reports:batch", content=body, headers=auth("anna"))
            else:
                r = await client.post("/v1/reports:batch", content=chunked(body), headers=auth("anna"))
            assert r.status_code == 200, r.text
            out = r.json()
            assert [x["report_id"] for x in out["results"]] == [b["report_id"] for b in batch]
            for x in out["results"]:
                x["report_id"] = x["body"]["report_id"] = "-"
            answers.append(out)
            again = await client.post("/v1/reports:batch", content=body, headers=auth("anna"))
            assert [x["replayed"] for x in again.json()["results"]] == [True] * 3
        assert answers[0] == answers[1] and answers[0]["accepted"] == 3
        valid = json.dumps({"reports": [report()]}).encode()
        # the route's own refusals: a wrong token, a caller who may not report, an invalid report
        r = await client.post("/v1/reports:batch", content=valid, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        r = await client.post("/v1/reports:batch", content=valid, headers=auth("lena"))
        assert r.status_code == 403
        mixed = {"reports": [report(), report(answers={"klotter": {"value": -1}})]}
        r = await client.post("/v1/reports:batch", json=mixed, headers=auth("anna"))
        assert [x["status"] for x in r.json()["results"]] == [202, 422]
        r = await client.post("/v1/reports:batch", content=b'{"reports": [', headers=auth("anna"))
        assert r.status_code == 400
        metrics = (await client.get("/metrics")).text
        assert 'route="/v1/reports:batch"' in metrics


async def test_the_unused_area_index_of_an_older_ledger_is_dropped(tmp_path: Path, fresh_nats: NatsServer) -> None:
    """Older versions indexed the ledger by area; nothing reads it that way, and every accepted report
    paid an index insert for it (a fifth of the ledger's write cost). The intake drops it at start."""
    import sqlite3

    settings = settings_for(tmp_path, fresh_nats.url, make_org())
    (tmp_path / "var").mkdir()
    path = tmp_path / "var" / "intake.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE reports (report_id VARCHAR(128) PRIMARY KEY, content_sha256 VARCHAR(64) NOT NULL, "
                    "response TEXT NOT NULL, municipality_id VARCHAR(100) NOT NULL, area_id VARCHAR(100) NOT NULL, "
                    "period VARCHAR(20) NOT NULL, reporter_id VARCHAR(100) NOT NULL, received_at DATETIME NOT NULL, "
                    "recorded_at DATETIME NOT NULL)")
        old.execute("CREATE INDEX ix_reports_area_id ON reports (area_id)")
    assert settings.db_url().endswith(str(path))
    async with running(settings) as (client, _app):
        r = await client.post("/v1/reports", json=report(), headers=auth("anna"))
        assert r.status_code == 202, r.text
    with sqlite3.connect(path) as db:
        indexes = {row[1] for row in db.execute("PRAGMA index_list(reports)")}
        stored = db.execute("SELECT count(*) FROM reports").fetchone()[0] + \
            db.execute("SELECT count(*) FROM reports_recent").fetchone()[0]  # a new row starts in the latter
        assert "ix_reports_area_id" not in indexes and stored == 1


async def test_each_municipality_reports_against_its_own_checklist(tmp_path: Path, fresh_nats: NatsServer) -> None:
    """Växjö fills in its own checklist, Alvesta the standard one: each reporter's reports go against their
    area's municipality's checklist (left out, that one), another one is refused naming the accepted versions,
    answers are read by the report's own version, and an older version the municipality still accepts counts.
    The single report, the batch (its fast path too) and the import keep the same rules."""
    org = two_municipalities_org()
    own = {"klotter_tag": {"value": 2, "places": ["centrum"]}, "oro_natet": {"value": True}}
    async with running(settings_for(tmp_path, fresh_nats.url, org)) as (client, _app):
        async def post(body: dict[str, Any], who: str, status: int) -> dict[str, Any]:
            r = await client.post("/v1/reports", json=body, headers=auth(who))
            assert r.status_code == status, (body, r.text)
            answer: dict[str, Any] = r.json()
            return answer

        async def checklist_of(subject: str) -> str:
            _, event = await last_event(fresh_nats.url, f"est.report.submitted.{subject}")
            return str(event["data"]["checklist"])

        await post(report(checklist="vaxjo-trygg@1", answers=own), "anna", 202)
        await post(report(answers=own), "anna", 202)
        assert await checklist_of("vaxjo.araby") == "vaxjo-trygg@1"
        await post(report("alv-centrum", answers={"klotter": {"value": 1, "places": ["stationen"]}}), "olle", 202)
        assert await checklist_of("alvesta.alv-centrum") == "est-standard@1"

        # another municipality's checklist: refused, naming the versions accepted
        p = await post(report(checklist="est-standard@1"), "anna", 422)
        [e] = p["errors"]
        assert e["field"] == "checklist"
        assert e["message_sv"] == ("Växjö kommun tar inte emot rapporter mot checklistan est-standard@1; "
                                   "den tar emot vaxjo-trygg@1.")
        assert "does not accept reports against the checklist est-standard@1; it accepts vaxjo-trygg@1" in p["detail"]
        p = await post(report("alv-centrum", checklist="vaxjo-trygg@1", answers={"oro_natet": {"value": True}}),
                       "olle", 422)
        assert p["errors"][0]["field"] == "checklist" and "accepts est-standard@1" in p["detail"]
        # the answers are those of the report's own version
        p = await post(report(), "anna", 422)  # klotter and skadegorelse are the standard list's
        assert [e["field"] for e in p["errors"]] == ["answers.klotter", "answers.skadegorelse"]
        assert "unknown item 'klotter' in vaxjo-trygg@1" in p["errors"][0]["message"]
        p = await post(report(answers={"oro_natet": {"value": True, "places": ["centrum"]}}), "anna", 422)
        assert p["errors"][0]["field"] == "answers.oro_natet.places" and "takes no places" in json.dumps(p)
        # in two municipalities: each area its own
        await post(report(answers=own), "kim", 202)
        await post(report("alv-centrum", answers={"tillhall": {"value": True}}), "kim", 202)
        p = await post(report("alv-centrum", checklist="vaxjo-trygg@1", answers=own), "kim", 422)
        assert "Alvesta kommun does not accept" in p["detail"]

        # a new version; the older one is still accepted, an unknown one is refused with both named
        v2 = {**TRYGG_1, "version": 2, "items": [*TRYGG_1["items"], {
            "code": "samlingar", "label_sv": "Samlingar", "label_en": "Gatherings", "answer": "level"}]}
        org["checklists"] = [v2]
        org["municipalities"][0] |= {"checklist": "vaxjo-trygg@2", "accepted_checklists": ["vaxjo-trygg@1"]}
        r = await client.put("/v1/admin/org", json=org, headers=auth("admin"))
        assert r.status_code == 200, r.text
        await post(report(checklist="vaxjo-trygg@1", answers=own), "anna", 202)
        assert await checklist_of("vaxjo.araby") == "vaxjo-trygg@1"
        await post(report(answers={"samlingar": {"value": 1}}), "anna", 202)
        assert await checklist_of("vaxjo.araby") == "vaxjo-trygg@2"
        p = await post(report(checklist="vaxjo-trygg@1", answers={"samlingar": {"value": 1}}), "anna", 422)
        assert p["errors"][0]["field"] == "answers.samlingar"
        p = await post(report(checklist="vaxjo-trygg@7", answers=own), "anna", 422)
        assert p["errors"][0]["message_sv"] == "Okänd checklista 'vaxjo-trygg@7'; Växjö kommun tar emot " \
                                               "vaxjo-trygg@2, vaxjo-trygg@1."
        await post(report(checklist="est-standard@1"), "anna", 422)

        # a batch: every report on its own (and an all-valid one through the fast path)
        batch = [report(checklist="vaxjo-trygg@1", answers=own), report(checklist="est-standard@1"),
                 report(answers={"samlingar": {"value": 3}})]
        r = await client.post("/v1/reports:batch", json={"reports": batch}, headers=auth("anna"))
        assert [x["status"] for x in r.json()["results"]] == [202, 422, 202], r.text
        assert r.json()["results"][1]["problem"]["errors"][0]["field"] == "checklist"
        valid = [report(answers={"samlingar": {"value": i}}) for i in (1, 2)]
        r = await client.post("/v1/reports:batch", json={"reports": valid}, headers=auth("anna"))
        assert r.json()["accepted"] == 2, r.text
        assert await checklist_of("vaxjo.araby") == "vaxjo-trygg@2"
        # an import
        at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        items = [{**report("alv-centrum", checklist="vaxjo-trygg@1", answers=own), "reporter_id": "olle",
                  "submitted_at": at},
                 {**report(answers={"samlingar": {"value": 2}}), "reporter_id": "anna", "submitted_at": at},
                 {**report(checklist="vaxjo-trygg@1", answers={"samlingar": {"value": 2}}), "reporter_id": "anna",
                  "submitted_at": at}]
        r = await client.post("/v1/admin/import", json={"reports": items}, headers=auth("admin"))
        res = r.json()["results"]
        assert [x["status"] for x in res] == [422, 202, 422], r.text
        assert res[0]["problem"]["errors"][0]["field"] == "checklist"
        assert res[2]["problem"]["errors"][0]["field"] == "answers.samlingar"
        assert await checklist_of("vaxjo.araby") == "vaxjo-trygg@2"

        metrics = (await client.get("/metrics")).text
        assert 'est_intake_reports_rejected_total{reason="checklist_not_accepted"} 6.0' in metrics
        assert 'est_intake_reports_rejected_total{reason="unknown_checklist"} 1.0' in metrics
