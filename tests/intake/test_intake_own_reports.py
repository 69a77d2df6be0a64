"""A sender's own reports (``GET /v1/me/reports``) and withdrawing one (``POST /v1/reports/{id}/withdraw``):
only one's own, from the intake's database, through real NATS JetStream and HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from est_shared.natsserver import NatsServer

from tests.intake.support import auth, last_event, make_org, report, running, settings_for

SUBJECT = "est.report.submitted.vaxjo.araby"


async def mine(client: httpx.AsyncClient, who: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/me/reports", headers=auth(who), params=params)
    assert r.status_code == 200, r.text
    reports: list[dict[str, Any]] = r.json()["reports"]
    return reports


def problem_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert " / " in body["detail"]  # Swedish, then English
    return body


async def test_own_reports_are_listed_newest_first_and_only_the_callers(tmp_path: Path,
                                                                          fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        first = report(period="2026-W10", answers={"skadegorelse": {"value": 3}})
        second = report(period="2026-W11")
        bos = report(period="2026-W11", answers={"skadegorelse": {"value": 7}})
        for body, who in ((first, "anna"), (second, "anna"), (bos, "bo")):
            assert (await client.post("/v1/reports", json=body, headers=auth(who))).status_code == 202
        listed = await mine(client, "anna")
        assert [r["report_id"] for r in listed] == [second["report_id"], first["report_id"]]
        one = listed[1]
        assert one["area_id"] == "araby" and one["area_name"] == "Araby" and one["period"] == "2026-W10"
        assert one["answers"] == {"skadegorelse": {"value": 3, "places": [], "note": ""}}
        assert one["checklist"] == "est-standard@1" and one["late"] is True
        assert (one["superseded_by"], one["withdrawn"], one["withdrawn_by"]) == (None, False, None)
        assert [r["report_id"] for r in await mine(client, "bo")] == [bos["report_id"]]
        assert await mine(client, "admin") == []  # an admin sees their own here, never others'
        assert [r["report_id"] for r in await mine(client, "anna", **{"from": "2026-W11"})] == [second["report_id"]]
        assert [r["report_id"] for r in await mine(client, "anna", to="2026-W10")] == [first["report_id"]]
        assert await mine(client, "anna", area_id="braas") == []
        r = await client.get("/v1/me/reports", headers=auth("anna"), params={"limit": 1})
        assert r.json()["next_offset"] == 1 and len(r.json()["reports"]) == 1
        r = await client.get("/v1/me/reports", headers=auth("anna"), params={"limit": 1, "offset": 1})
        assert r.json()["reports"][0]["report_id"] == first["report_id"] and r.json()["next_offset"] is None
        assert (await client.get("/v1/me/reports")).status_code == 401
        problem_of(await client.get("/v1/me/reports", headers=auth("anna"), params={"limit": 0}), 422)

        # a correction: listed, and the original says which report replaced it
        fix = report(period="2026-W10", answers={"skadegorelse": {"value": 1}}, supersedes=first["report_id"])
        assert (await client.post("/v1/reports", json=fix, headers=auth("anna"))).status_code == 202
        by_id = {r["report_id"]: r for r in await mine(client, "anna")}
        assert by_id[first["report_id"]]["superseded_by"] == fix["report_id"]
        assert by_id[fix["report_id"]]["supersedes"] == first["report_id"]


async def test_withdrawing_ones_own_report_once(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        annas = report(period="2026-W10")
        bos = report(period="2026-W10")
        assert (await client.post("/v1/reports", json=annas, headers=auth("anna"))).status_code == 202
        assert (await client.post("/v1/reports", json=bos, headers=auth("bo"))).status_code == 202

        # another's report, an unknown one, a malformed id: a problem answer, nothing published
        problem_of(await client.post(f"/v1/reports/{bos['report_id']}/withdraw", headers=auth("anna")), 404)
        problem_of(await client.post(f"/v1/reports/{bos['report_id']}/withdraw", headers=auth("admin")), 404)
        problem_of(await client.post("/v1/reports/nothing-here/withdraw", headers=auth("anna")), 404)
        assert (await client.post(f"/v1/reports/{annas['report_id']}/withdraw")).status_code == 401
        problem_of(await client.post(f"/v1/reports/{annas['report_id']}/withdraw", headers=auth("lena")), 403)

        r = await client.post(f"/v1/reports/{annas['report_id']}/withdraw", headers=auth("anna"))
        assert r.status_code == 202, r.text
        withdrawal = r.json()["report_id"]
        assert r.json()["period"] == "2026-W10" and r.json()["status"] == "accepted"
        _, event = await last_event(fresh_nats.url, SUBJECT)
        data = event["data"]
        assert event["id"] == withdrawal and data["withdrawn"] is True
        assert data["supersedes"] == annas["report_id"] and data["answers"] == {}
        assert data["nothing_to_report"] is False and data["reporter_id"] == "anna"

        [listed] = await mine(client, "anna")  # the withdrawal itself is not a report of the list
        assert listed["report_id"] == annas["report_id"]
        assert listed["withdrawn"] is True and listed["withdrawn_by"] == withdrawal

        again = problem_of(await client.post(f"/v1/reports/{annas['report_id']}/withdraw", headers=auth("anna")), 409)
        assert "redan" in again["detail"]
        problem_of(await client.post(f"/v1/reports/{withdrawal}/withdraw", headers=auth("anna")), 404)
        # an ordinary report claiming to be a withdrawal is refused by the schema
        problem_of(await client.post("/v1/reports", headers=auth("anna"),
                                     json={**report(), "supersedes": bos["report_id"], "withdrawn": True}), 422)
        _, still = await last_event(fresh_nats.url, SUBJECT)
        assert still["id"] == withdrawal

        # a corrected report is withdrawn through its correction
        first = report(period="2026-W11")
        assert (await client.post("/v1/reports", json=first, headers=auth("bo"))).status_code == 202
        fix = report(period="2026-W11", answers={"skadegorelse": {"value": 2}}, supersedes=first["report_id"])
        assert (await client.post("/v1/reports", json=fix, headers=auth("bo"))).status_code == 202
        problem_of(await client.post(f"/v1/reports/{first['report_id']}/withdraw", headers=auth("bo")), 409)
        r = await client.post(f"/v1/reports/{fix['report_id']}/withdraw", headers=auth("bo"))
        assert r.status_code == 202, r.text


async def test_a_report_has_one_successor_so_it_never_counts_twice(tmp_path: Path, fresh_nats: NatsServer) -> None:
    """A correction of a report corrected already, of a withdrawn report or of a withdrawal is 409 and publishes
    nothing: each would make two reports of one that count (the aggregator counts every report no stored report
    supersedes). Resending the accepted correction is still its replay, and the latest version can be corrected."""
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        first = report(period="2026-W12", answers={"skadegorelse": {"value": 3}})
        assert (await client.post("/v1/reports", json=first, headers=auth("anna"))).status_code == 202
        fix = report(period="2026-W12", answers={"skadegorelse": {"value": 1}}, supersedes=first["report_id"])
        assert (await client.post("/v1/reports", json=fix, headers=auth("anna"))).status_code == 202
        assert (await client.post("/v1/reports", json=fix, headers=auth("anna"))).status_code == 202  # a replay

        other = report(period="2026-W12", answers={"skadegorelse": {"value": 5}}, supersedes=first["report_id"])
        body = problem_of(await client.post("/v1/reports", json=other, headers=auth("anna")), 409)
        assert "redan rättad" in body["detail"] and body["errors"][0]["latest"] == fix["report_id"]
        # a key function correcting it is refused alike
        problem_of(await client.post("/v1/reports", json={**other, "report_id": report()["report_id"]},
                                     headers=auth("bo")), 409)
        # the latest version can be corrected
        again = report(period="2026-W12", answers={"skadegorelse": {"value": 2}}, supersedes=fix["report_id"])
        assert (await client.post("/v1/reports", json=again, headers=auth("anna"))).status_code == 202

        # withdrawn: neither it nor its withdrawal can be corrected
        gone = report(period="2026-W13")
        assert (await client.post("/v1/reports", json=gone, headers=auth("anna"))).status_code == 202
        w = await client.post(f"/v1/reports/{gone['report_id']}/withdraw", headers=auth("anna"))
        assert w.status_code == 202
        body = problem_of(await client.post("/v1/reports", headers=auth("anna"), json=report(
            period="2026-W13", supersedes=gone["report_id"])), 409)
        assert "tillbakatagen" in body["detail"]
        body = problem_of(await client.post("/v1/reports", headers=auth("anna"), json=report(
            period="2026-W13", supersedes=w.json()["report_id"])), 409)
        assert "tillbakatagande kan inte rättas" in body["detail"]
        _, last = await last_event(fresh_nats.url, SUBJECT)
        assert last["id"] == w.json()["report_id"]  # nothing refused was published

        # two corrections of one report in one batch: the first is accepted, the second refused
        base = report(period="2026-W14")
        assert (await client.post("/v1/reports", json=base, headers=auth("anna"))).status_code == 202
        pair = [report(period="2026-W14", answers={"skadegorelse": {"value": v}}, supersedes=base["report_id"])
                for v in (1, 2)]
        r = await client.post("/v1/reports:batch", json={"reports": pair}, headers=auth("anna"))
        assert r.status_code in (200, 207), r.text
        statuses = [x["status"] for x in r.json()["results"]]
        assert statuses == [202, 409], r.json()
