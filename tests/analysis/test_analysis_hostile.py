"""Hostile input to the analysis service: picture events with absurd values (published straight onto
EST_PICTURES), personal data in measures, and bad input that must never answer 5xx."""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any

import httpx
import nats
import pytest
from est_analysis.app import rebuild
from est_analysis.strategic import db
from est_analysis.strategic.domain import picture_faults, picture_value
from est_shared.bus import publish_event, publish_raw
from est_shared.clock import utcnow
from est_shared.db import transaction
from est_shared.periods import Period
from est_shared.subjects import picture_published

from tests.analysis.support import auth, org, picture_event, unique
from tests.support import eventually

T3_WEEKS = [p.id for p in Period.parse("2026-T3").reporting_periods("weekly")]  # 2026-W36 … 2026-W53
PERSONAL = "Testa Testsson 20100515-2382 ring 070-123 45 67"


def absurd(m: str, a: str, week: str, change: dict[str, Any], item: dict[str, Any] | None = None) -> bytes:
    """A published picture as a hand-publisher writes it: valid, then ``change``d (``item``: klotter's fields)."""
    body = json.loads(picture_event(m, a, week, {"klotter": (1, None)}).model_dump_json())
    body["id"] = f"absurd:{uuid.uuid4().hex}"
    pic = body["data"]["picture"]
    for key, value in change.items():
        target, _, name = key.rpartition(".")
        (pic[target] if target else pic)[name] = value
    if item:
        pic["items"]["klotter"].update(item)
    return json.dumps(body).encode()  # NaN and Infinity as JavaScript writes them


def absurd_pictures(m: str, a: str) -> dict[str, bytes]:
    w = T3_WEEKS[6]
    return {
        "nan": absurd(m, a, w, {}, {"value": math.nan}),
        "infinity": absurd(m, a, w, {}, {"value": math.inf}),
        "huge": absurd(m, a, w, {}, {"value": 1e308}),
        "negative": absurd(m, a, w, {}, {"value": -5}),
        "many_items": absurd(m, a, w, {"items": {f"punkt_{i}": {"item": f"punkt_{i}", "answer": "count",
                                                                 "value": 1, "reports": 1} for i in range(300)}}),
        "personal_code": absurd(m, a, w, {"items": {PERSONAL: {"item": PERSONAL, "answer": "count", "value": 1,
                                                                "reports": 1}}}),
        "long_name": absurd(m, a, w, {"area_name": "x" * 10_000}),
        "version": absurd(m, a, w, {"version": 10**12}),
        "year_zero": absurd(m, a, "2026-W40", {"period": "0000-W01"}),
        "completeness": absurd(m, a, w, {"completeness.expected": 10**30}),
    }


async def test_picture_events_with_absurd_values_are_dead_lettered_and_the_analysis_still_compiles(
        service: Any, nats_url: str) -> None:
    m, a = unique("m"), unique("a")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        async with service(m) as (base, app), httpx.AsyncClient(base_url=base, timeout=30) as c:
            await app.state.runtime.apply_org(org(m, [a]))
            dlq = await js.pull_subscribe(f"est.dlq.analysis.est.picture.published.{m}.>", stream="EST_DLQ")
            poison = absurd_pictures(m, a)
            for i, week in enumerate(T3_WEEKS[:6]):  # klotter high in six weeks: a persistent problem
                await publish_event(js, picture_published(m, a), picture_event(m, a, week, {"klotter": (3, "high")}))
                if i == 2:
                    for name, payload in poison.items():
                        await publish_raw(js, picture_published(m, a), payload, msg_id=f"{m}-{name}")
            await publish_event(js, picture_published(m, a), picture_event(m, a, T3_WEEKS[7], {"klotter": (2, None)}))

            dead: list[Any] = []

            async def all_dead() -> bool:
                try:
                    for msg in await dlq.fetch(len(poison), timeout=1.0):
                        await msg.ack()
                        dead.append(msg)
                except nats.errors.TimeoutError:
                    pass
                return len(dead) >= len(poison)

            await eventually(all_dead, timeout=20)
            errors = sorted(msg.headers["EST-DLQ-Error"] for msg in dead)
            assert {msg.headers["EST-DLQ-Reason"] for msg in dead} == {"poison"}
            assert "items.klotter.value: out_of_range" in errors and "items: too_many" in errors
            assert "items: not_an_item_code" in errors and "area_name: too_long" in errors
            assert "period: not_a_period" in errors and "version: out_of_range" in errors
            assert "completeness.expected: out_of_range" in errors
            assert not any("20100515" in e or "xxxx" in e for e in errors)  # reasons, never the event's text

            async def applied() -> bool:
                text = (await c.get("/metrics")).text
                return 'est_analysis_pictures_consumed_total{outcome="applied"} 7.0' in text
            await eventually(applied)
            metrics = (await c.get("/metrics")).text
            assert f'est_analysis_dead_lettered_total{{reason="poison"}} {float(len(poison))}' in metrics

            r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"}, headers=auth("kf", m))
            assert r.status_code == 201, r.text
            area = r.json()["areas"][0]
            [problem] = area["persistent_problems"]
            assert problem["item"] == "klotter" and problem["periods_flagged"] == T3_WEEKS[:6]
            assert [pt["value"] for pt in problem["trend"][:8]] == [3, 3, 3, 3, 3, 3, None, 2]
            html = await c.get(f"/v1/analyses/{r.json()['id']}/report.html", headers=auth("styr", m))
            assert html.status_code == 200 and "20100515" not in html.text
            settings = app.state.analysis.settings
        # the rebuild replays the same stream and skips the same events
        result = await rebuild(settings)
        assert (result.applied, result.skipped, result.pictures) == (7, len(poison), 7)
    finally:
        await nc.close()


async def test_absurd_values_stored_before_the_check_count_as_no_value_in_the_analysis_and_its_report(
        service: Any, nats_url: str) -> None:
    """A database may hold pictures stored before events were checked (NaN, infinity, 1e308): the analysis
    treats those values as missing, so its JSON, its report and the measure's effect still come out."""
    m, a = unique("m"), unique("a")
    async with service(m) as (base, app), httpx.AsyncClient(base_url=base, timeout=30) as c:
        await app.state.runtime.apply_org(org(m, [a]))
        ctx = app.state.analysis
        for i, (week, value) in enumerate(zip(T3_WEEKS[:6], [math.nan, math.inf, 1e308, 3, 3, 3], strict=True)):
            period = Period.parse(week)
            async with transaction(ctx.sessions) as s:
                await db.put_picture(s, {
                    "area_id": a, "period": week, "municipality_id": m, "area_name": f"Område {a}", "kind": "week",
                    "period_start": period.start, "version": 1, "event_id": f"old-{i}-{m}",
                    "items": {"klotter": {"value": value, "flag": "high", "trend": "up", "answer": "level",
                                          "label_sv": "Klotter", "label_en": "Graffiti"}},
                    "completeness": {"expected": 3, "received": 3, "on_time": 3, "late": 0}, "updated_at":
                        utcnow()}, exists=False)
        r = await c.post("/v1/measures", headers=auth("styr", m), json={
            "title": "Klottersanering", "area_id": a, "items": ["klotter"], "responsible_actor": f"actor-{m}",
            "decided_by": "Styrgruppen", "start": Period.parse(T3_WEEKS[3]).start.isoformat(), "status": "active"})
        assert r.status_code == 201, r.text
        r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"}, headers=auth("kf", m))
        assert r.status_code == 201, r.text
        area = r.json()["areas"][0]
        assert [pt["value"] for pt in area["persistent_problems"][0]["trend"][:6]] == [None, None, None, 3, 3, 3]
        [effect] = area["measures"][0]["effect"]
        assert effect["before_periods"] == [] and effect["direction"] == "insufficient_data"
        assert (await c.get(f"/v1/analyses/{r.json()['id']}", headers=auth("kf", m))).status_code == 200
        html = await c.get(f"/v1/analyses/{r.json()['id']}/report.html", headers=auth("styr", m))
        assert html.status_code == 200 and "<svg" in html.text
        assert re.search(r"=['\"][^'\"]*(nan|inf)", html.text) is None  # no chart coordinate from those values


async def test_a_measure_with_personal_data_is_refused_and_nothing_is_stored(service: Any, nats_url: str) -> None:
    m, a = unique("m"), unique("a")
    async with service(m) as (base, app), httpx.AsyncClient(base_url=base, timeout=30) as c:
        await app.state.runtime.apply_org(org(m, [a]))
        good = {"title": "Bättre belysning vid centrum", "area_id": a, "items": ["belysning"],
                "responsible_actor": f"actor-{m}", "decided_by": "Styrgruppen 2026-09-15", "start": "2026-09-21"}
        for field in ("title", "description", "decided_by", "reason"):
            r = await c.post("/v1/measures", headers=auth("styr", m), json={**good, field: PERSONAL})
            assert r.status_code == 422, (field, r.text)
            body = r.json()
            assert body["detail"].startswith("Fritext får inte innehålla personuppgifter")
            assert "/ Free text must not contain personal data" in body["detail"]
            assert {e["field"] for e in body["errors"]} == {f"body.{field}"}
            assert {e["reason"] for e in body["errors"]} == {"personal_identity_number", "phone_number"}
            assert "20100515" not in r.text
        r = await c.post("/v1/measures", headers=auth("styr", m), json={**good, "title": "Belysning\nvid torget"})
        assert r.status_code == 422 and r.json()["errors"][0]["reason"] == "control_character"
        assert (await c.get("/v1/measures", params={"area_id": a}, headers=auth("styr", m))).json() == []

        r = await c.post("/v1/measures", headers=auth("styr", m),
                         json={**good, "description": "Nya armaturer.\nKlart i oktober.", "reason": "Mörkt."})
        assert r.status_code == 201, r.text
        measure = r.json()
        for change in ({"title": PERSONAL, "reason": "Ny titel"}, {"status": "active", "reason": PERSONAL},
                       {"description": "Ring 070-123 45 67", "reason": "Kontakt"}):
            r = await c.patch(f"/v1/measures/{measure['id']}", headers=auth("styr", m), json=change)
            assert r.status_code == 422 and "20100515" not in r.text and "070-123" not in r.text
        after = (await c.get(f"/v1/measures/{measure['id']}", headers=auth("styr", m))).json()
        assert after == measure  # nothing re-decided, nothing in its history


def _hostile_requests(m: str, a: str, measure: str) -> list[tuple[str, str, dict[str, Any], str]]:
    good = {"title": "T", "area_id": a, "items": ["klotter"], "responsible_actor": f"actor-{m}",
            "decided_by": "Styrgruppen", "start": "2026-10-01"}
    raw = json.dumps({**good, "resources": {"hours": math.inf, "money_sek": math.nan}})
    return [
        ("POST", "/v1/analyses", {"json": {"municipality_id": m, "period": "9999-T3"}}, "styr"),
        ("POST", "/v1/analyses", {"json": {"municipality_id": m, "period": "0000-Q1"}}, "styr"),
        ("POST", "/v1/analyses", {"json": {"municipality_id": m, "period": "0001-Q1"}}, "styr"),
        ("POST", "/v1/analyses", {"json": {"municipality_id": "m\x00", "period": "2026-T3"}}, "admin"),
        ("GET", "/v1/analyses/%00", {}, "admin"),
        ("GET", "/v1/analyses/a%00:b", {}, "admin"),
        ("GET", f"/v1/analyses/{'x' * 5000}", {}, "admin"),
        ("GET", "/v1/analyses/%00/report.html", {}, "admin"),
        ("GET", "/v1/analyses/%00/report.pdf", {}, "admin"),
        ("GET", "/v1/measures/%00", {}, "admin"),
        ("PATCH", "/v1/measures/%00", {"json": {"reason": "x"}}, "admin"),
        ("POST", "/v1/measures", {"json": {**good, "start": "0001-01-01"}}, "styr"),
        ("POST", "/v1/measures", {"json": {**good, "start": "9999-12-31"}}, "styr"),
        ("POST", "/v1/measures", {"json": {**good, "responsible_actor": "x\x00"}}, "admin"),
        ("POST", "/v1/measures", {"content": raw, "headers": {"content-type": "application/json"}}, "styr"),
        ("POST", "/v1/measures", {"json": {**good, "resources": {"hours": 1e308}}}, "styr"),
        ("PATCH", f"/v1/measures/{measure}", {"json": {"reason": "r", "start": "0001-01-01"}}, "styr"),
        ("PATCH", f"/v1/measures/{measure}", {"json": {"reason": "r", "end": "9999-12-31"}}, "styr"),
    ]


async def _bad_input_gets_4xx(service: Any, nats_url: str, **settings: Any) -> None:
    m, a = unique("m"), unique("a")
    nc = await nats.connect(nats_url)
    try:
        async with service(m, **settings) as (base, app), httpx.AsyncClient(base_url=base, timeout=30) as c:
            await app.state.runtime.apply_org(org(m, [a]))
            await publish_event(nc.jetstream(), picture_published(m, a),
                                picture_event(m, a, T3_WEEKS[0], {"klotter": (3, "high")}))
            r = await c.post("/v1/measures", headers=auth("styr", m), json={
                "title": "T", "area_id": a, "items": ["klotter"], "responsible_actor": f"actor-{m}",
                "decided_by": "Styrgruppen", "start": "2026-10-01"})
            assert r.status_code == 201
            answers = []
            for method, path, kwargs, who in _hostile_requests(m, a, r.json()["id"]):
                kwargs = dict(kwargs)
                headers = {**auth(who, m), **kwargs.pop("headers", {})}
                got = await c.request(method, path, headers=headers, **kwargs)
                answers.append((got.status_code, method, path[:50], got.headers.get("content-type", "")))
            assert [x for x in answers if not 400 <= x[0] < 500] == []
            assert all(x[3].startswith("application/problem+json") for x in answers)
            for path, params in (("/v1/analyses", {"municipality_id": "m\x00"}), ("/v1/measures", {"area_id": "a\x00"}),
                                 ("/v1/measures", {"municipality_id": "m\x00"})):
                got = await c.get(path, params=params, headers=auth("admin", m))
                assert got.status_code == 400 and got.json()["errors"][0]["field"] == "query"  # refused at the edge
            r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"}, headers=auth("kf", m))
            assert r.status_code == 201, r.text  # nothing hostile was stored that breaks the analysis
    finally:
        await nc.close()


async def test_bad_periods_dates_numbers_and_nul_bytes_get_4xx_never_5xx(service: Any, nats_url: str) -> None:
    await _bad_input_gets_4xx(service, nats_url)


@pytest.mark.postgres
async def test_bad_input_gets_4xx_on_postgresql_too(service: Any, nats_url: str, postgres_url: str) -> None:
    """PostgreSQL refuses a NUL byte in a query: ids that no row can have are not looked up."""
    await _bad_input_gets_4xx(service, nats_url, database_url=postgres_url)


def test_picture_faults_pass_a_sane_picture_and_stored_values_outside_the_bounds_count_as_none() -> None:
    assert picture_faults(picture_event("m", "a", "2026-W40", {"klotter": (3, "high")}).data.picture) == []
    assert [picture_value({"value": v}) for v in (2, 2.5, math.nan, math.inf, -1, 1e308, True, "3", None)] == [
        2.0, 2.5, None, None, None, None, None, None, None]
    assert picture_value(None) is None
