"""Hostile report bodies get a 422 that names the field, on every way in, and nothing reaches the bus.

The ways in: ``POST /v1/reports`` (answered by ``ReportsFastPath``), ``POST /v1/reports:batch`` (its
fast path for an all-valid body, the route for the rest) and ``POST /v1/admin/import``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from est_intake.errors import ReportRejected
from est_intake.org.domain import build_snapshot, principal_for
from est_intake.reports.domain import ReportIn, validate_report
from est_shared.checklists import DEFAULT_MAX_COUNT, EST_STANDARD_1, Checklist, ChecklistItem
from est_shared.natsserver import NatsServer
from pydantic import ValidationError

from tests.intake.support import auth, last_event, make_org, report, running, settings_for

SUBJECT = "est.report.submitted.vaxjo.araby"

Send = Callable[[dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """The intake's database: its SQLite default, or a fresh PostgreSQL database."""
    return "" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def ways_in(client: httpx.AsyncClient) -> dict[str, Send]:
    """One report sent each way the intake takes reports: (status, the report's answer or problem)."""
    async def single(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        r = await client.post("/v1/reports", content=json.dumps(body), headers=auth("anna"))
        if r.status_code != 202:
            assert r.headers["content-type"].startswith("application/problem+json"), r.text
        return r.status_code, r.json()

    async def batch(body: dict[str, Any], chunked: bool = False) -> tuple[int, dict[str, Any]]:
        raw = json.dumps({"reports": [body]}).encode()

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the route, not the fast path
            yield raw[:10]
            yield raw[10:]

        r = await client.post("/v1/reports:batch", content=chunks() if chunked else raw, headers=auth("anna"))
        assert r.status_code == 200, r.text
        [result] = r.json()["results"]
        return result["status"], result.get("body") or result["problem"]

    async def batch_route(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return await batch(body, chunked=True)

    async def imported(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        item = {**body, "reporter_id": "anna", "submitted_at": datetime.now(UTC).isoformat()}
        r = await client.post("/v1/admin/import", json={"reports": [item]}, headers=auth("admin"))
        assert r.status_code == 200, r.text
        [result] = r.json()["results"]
        return result["status"], result.get("body") or result["problem"]

    return {"single": single, "batch": batch, "batch route": batch_route, "import": imported}


def fields(problem: dict[str, Any]) -> set[str]:
    """The fields a problem names (a single report's schema errors say ``body.…``, as FastAPI's do)."""
    return {e["field"].removeprefix("body.") for e in problem.get("errors", [])}


def names(problem: dict[str, Any], field: str) -> bool:
    """Whether a problem names a field (or a part of it, as ``answers.x.value.int``)."""
    return any(f == field or f.startswith(field + ".") for f in fields(problem))


async def refused_everywhere(client: httpx.AsyncClient, nats_url: str, body: dict[str, Any], field: str) -> None:
    """The report is refused with 422 naming ``field`` on every way in, and no event of it is published."""
    for way, send in ways_in(client).items():
        status, problem = await send(body if field == "report_id" else {**body, "report_id": report()["report_id"]})
        assert status == 422, (way, problem)
        assert names(problem, field), (way, problem)
        assert " / " in problem["detail"], problem  # Swedish, then English
    ok = report()
    assert (await ways_in(client)["single"](ok))[0] == 202
    _, event = await last_event(nats_url, SUBJECT)
    assert event["id"] == ok["report_id"]  # the refused ones never reached the bus before it


async def test_a_count_above_its_items_bound_is_refused_on_every_way_in(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        for value in (DEFAULT_MAX_COUNT + 1, 10**400):
            await refused_everywhere(client, fresh_nats.url, report(answers={"skadegorelse": {"value": value}}),
                                     "answers.skadegorelse.value")
        await refused_everywhere(client, fresh_nats.url, report(answers={"klotter": {"value": 10**400}}),
                                 "answers.klotter.value")
        await refused_everywhere(client, fresh_nats.url, report(answers={"skadegorelse": {"value": -(10**400)}}),
                                 "answers.skadegorelse.value")
        status, problem = await ways_in(client)["single"](report(answers={"skadegorelse": {"value": 10_001}}))
        assert "at most 10000" in json.dumps(problem)
        for way, send in ways_in(client).items():
            status, body = await send(report(answers={"skadegorelse": {"value": DEFAULT_MAX_COUNT}}))
            assert status == 202, (way, body)
        checklist = (await client.get("/v1/checklists/current", headers=auth("anna"))).json()
        bounds = {i["code"]: i.get("max_count") for i in checklist["items"]}
        assert bounds["skadegorelse"] == DEFAULT_MAX_COUNT and bounds["klotter"] is None  # field apps see it


def test_a_checklist_item_sets_its_own_count_bound() -> None:
    small = Checklist(id="liten", version=1, name_sv="Liten", name_en="Small", items=[
        ChecklistItem(code="brand", label_sv="Brand", label_en="Fire", answer="count", max_count=5),
        ChecklistItem(code="klotter", label_sv="Klotter", label_en="Graffiti", answer="count")])
    snap, _ = build_snapshot(make_org(), None)
    # the organisation's current checklist, so the municipality (which names none) fills it in
    snap = snap.model_copy(update={"checklists": {small.ref: small}, "current_checklist": small.ref})
    anna = principal_for(snap, "anna")
    assert anna is not None

    def check(answers: dict[str, Any]) -> None:
        req = ReportIn.model_validate(report(checklist=small.ref, answers=answers))
        validate_report(req, caller=anna, snapshot=snap, received_at=datetime.now(UTC), known_reports={})

    check({"brand": {"value": 5}, "klotter": {"value": DEFAULT_MAX_COUNT}})
    with pytest.raises(ReportRejected) as refused:
        check({"brand": {"value": 6}})
    assert refused.value.kind == "invalid" and refused.value.errors == [
        {"field": "answers.brand.value", "message": "at most 5 in one report (brand in liten@1)"}]
    with pytest.raises(ValidationError):  # a bound is for counts, and no bound is beyond the ceiling
        ChecklistItem(code="x", label_sv="x", label_en="x", answer="level", max_count=3)
    with pytest.raises(ValidationError):
        ChecklistItem(code="x", label_sv="x", label_en="x", answer="count", max_count=10**7)
    stored = Checklist.model_validate_json(EST_STANDARD_1.model_dump_json(exclude={"items": {0: {"max_count"}}}))
    assert stored == EST_STANDARD_1  # a checklist stored before the bound existed reads with the default


async def test_report_ids_that_are_not_uuids_are_refused(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        for bad in ("not-a-uuid", "imp-1", "r1", "00000000-0000-0000-0000-000000000000",
                    "8c0e2f8e6a5b4f0e9d520b7b1c2f9a11", "{8c0e2f8e-6a5b-4f0e-9d52-0b7b1c2f9a11}", "x" * 100_000):
            for way, send in ways_in(client).items():
                status, problem = await send(report(report_id=bad))
                assert status == 422 and "report_id" in fields(problem), (way, bad, problem)
                assert "expected a UUID" in json.dumps(problem) or len(bad) > 36, problem
        first = report()
        assert (await ways_in(client)["single"](first))[0] == 202
        for way, send in ways_in(client).items():
            status, problem = await send(report(supersedes="imp-1"))
            assert status == 422 and "supersedes" in fields(problem), (way, problem)
        upper = report(report_id=str(first["report_id"]).upper(), supersedes=first["report_id"])
        assert (await ways_in(client)["single"](upper))[0] == 202  # either case, as sent
        batch = await client.post("/v1/reports:batch", json={"reports": [report(report_id="x" * 100_000)]},
                                  headers=auth("anna"))
        assert batch.json()["results"][0]["report_id"] is None and len(batch.content) < 2_000  # not echoed


async def test_control_characters_are_refused_in_notes_and_ids(tmp_path: Path, fresh_nats: NatsServer,
                                                               database_url: str) -> None:
    """PostgreSQL cannot store NUL in text and SQLite can: the intake refuses it on both alike."""
    settings = settings_for(tmp_path, fresh_nats.url, make_org(), database_url=database_url)
    async with running(settings) as (client, _app):
        await refused_everywhere(client, fresh_nats.url, report(note="lugnt\x00"), "note")
        await refused_everywhere(client, fresh_nats.url, report(answers={"klotter": {"value": 1, "note": "a\x1bb"}}),
                                 "answers.klotter.note")
        await refused_everywhere(client, fresh_nats.url, report(area="araby\x00"), "area_id")
        await refused_everywhere(client, fresh_nats.url, report(checklist="est-standard@1\x00"), "checklist")
        await refused_everywhere(client, fresh_nats.url, report(period="2026-W01\x00"), "period")
        await refused_everywhere(client, fresh_nats.url, report(supersedes="8c0e2f8e-6a5b-4f0e-9d52-0b7b1c2f9a1\x00"),
                                 "supersedes")
        await refused_everywhere(client, fresh_nats.url, report(report_id="8c0e2f8e-6a5b-4f0e-9d52-0b7b1c2f9a1\x00"),
                                 "report_id")
        status, problem = await ways_in(client)["single"](report(note="lugnt\x00"))
        assert problem["errors"][0]["reason"] == "control_character" and "otillåtna tecken" in problem["detail"]
        lines = report(note="Trapphus B:\n\tklotter\r\nigen", answers={"klotter": {"value": 1, "note": "a\nb"}})
        for way, send in ways_in(client).items():
            status, body = await send({**lines, "report_id": report()["report_id"]})
            assert status == 202, (way, body)  # line breaks and tabs may stay in a note
        _, event = await last_event(fresh_nats.url, SUBJECT)
        assert event["data"]["note"] == "Trapphus B:\n\tklotter\r\nigen"


async def test_huge_places_codes_and_lists_are_refused_without_being_echoed(tmp_path: Path,
                                                                            fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        long = "x" * 100_000
        cases = [(report(answers={"klotter": {"value": 1, "places": [long]}}), "answers.klotter.places.0"),
                 (report(answers={"klotter": {"value": 1, "places": ["centrum"] * 101}}), "answers.klotter.places"),
                 (report(answers={long: {"value": 1}}), "answers." + "x" * 40 + "…"),
                 (report(answers={long: {"value": "many"}}), "answers." + "x" * 40 + "….value"),
                 (report(answers={f"x{i}": {"value": 1} for i in range(51)}), "answers")]
        for body, field in cases:
            for way, send in ways_in(client).items():
                status, problem = await send({**body, "report_id": report()["report_id"]})
                assert status == 422 and names(problem, field), (way, field, problem)
                assert len(json.dumps(problem)) < 5_000, (way, field)


async def test_periods_and_import_times_before_2000_are_refused(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        await refused_everywhere(client, fresh_nats.url, report(period="0001-W01"), "period")
        await refused_everywhere(client, fresh_nats.url, report(period="1999-W52"), "period")
        ancient = {**report(), "reporter_id": "anna", "submitted_at": "0001-01-01T00:00:00+00:00"}
        r = await client.post("/v1/admin/import", json={"reports": [ancient]}, headers=auth("admin"))
        assert r.status_code == 200, r.text  # was a 500: the period of year 1 has no deadline
        [result] = r.json()["results"]
        assert result["status"] == 422 and fields(result["problem"]) == {"submitted_at"}
        early = {**report(period="2000-W02"), "reporter_id": "anna",
                 "submitted_at": (datetime(2000, 1, 14, tzinfo=UTC) + timedelta(hours=8)).isoformat()}
        r = await client.post("/v1/admin/import", json={"reports": [early]}, headers=auth("admin"))
        assert r.json()["results"][0]["status"] == 202, r.text


async def test_batch_and_import_bodies_json_cannot_read_get_a_400_in_swedish_and_english(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        digits = "9" * 5_000  # beyond what a JSON reader turns into a number
        one = f'{{"report_id": "{report()["report_id"]}", "area_id": "araby", ' \
              f'"answers": {{"skadegorelse": {{"value": {digits}}}}}}}'
        for path, body, who in (("/v1/reports", one, "anna"), ("/v1/reports:batch", f'{{"reports": [{one}]}}', "anna"),
                                ("/v1/admin/import", f'{{"reports": [{one}]}}', "admin"),
                                ("/v1/reports:batch", '{"reports": [' + "[" * 5_000 + "]" * 5_000 + "]}", "anna")):
            r = await client.post(path, content=body, headers=auth(who))
            assert r.status_code == 400, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["detail"] == "Begärans innehåll är inte giltig JSON. / The request body is not valid JSON."
        r = await client.post("/v1/reports:batch", content=b'{"reports": [{}]}', headers={"Authorization": "Bearer x"})
        assert r.status_code == 401  # the caller first, then the body
        r = await client.post("/v1/reports:batch", json={"reports": "nope"}, headers=auth("anna"))
        assert r.status_code == 422 and "reports" in fields(r.json())
        docs = (await client.get("/openapi.json")).json()
        for path in ("/v1/reports:batch", "/v1/admin/import"):
            assert "reports" in docs["paths"][path]["post"]["requestBody"]["content"]["application/json"][
                "schema"]["properties"]

