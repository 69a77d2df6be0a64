"""Hostile HTTP input to the aggregator: personal data in a publish comment, and bad input that must
never answer 5xx (bad and out-of-range periods, huge ranges and versions, NUL bytes in ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from est_aggregator.pictures import db

from tests.aggregator.support import Bus, World, picture_when, report, running, settings_for

PERSONAL = "Testa Testsson 20100515-2382 ring 070-123 45 67"


async def test_a_publish_comment_with_personal_data_is_refused_and_nothing_is_published(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    published = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, app), httpx.AsyncClient() as c:
        await bus.send(report(world, None, {"klotter": 1}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1)
        url = f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish"
        r = await c.post(url, headers=world.headers(), json={"comment": PERSONAL})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert body["detail"].startswith("Fritext får inte innehålla personuppgifter")
        assert {(e["field"], e["reason"]) for e in body["errors"]} == {
            ("body.comment", "personal_identity_number"), ("body.comment", "phone_number")}
        assert "20100515" not in r.text and "070-123" not in r.text
        r = await c.post(url, headers=world.headers(), json={"comment": "Lugnt\x00 läge"})
        assert r.status_code == 422 and r.json()["errors"][0]["reason"] == "control_character"

        pic = await picture_when(c, base, world, "2026-W10", lambda p: True)
        assert (pic["status"], pic["version"], pic["comments"]) == ("open", 0, [])
        async with app.state.aggregator.deps.reading() as s:
            assert await db.comments_for(s, world.area, "2026-W10") == []
        assert await Bus.take(published, 1, timeout=1.0) == []

        # a comment of several lines about places and situations is published as written
        r = await c.post(url, headers=world.headers(), json={"comment": "Klotter vid centrum.\nSaneras i veckan.",
                                                           "confirm_incomplete": True})
        assert r.status_code == 200 and r.json()["version"] == 1
        [event] = await Bus.take(published, 1)
        assert event["data"]["picture"]["comments"][0]["text"] == "Klotter vid centrum.\nSaneras i veckan."


def hostile_requests(world: World) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, httpx arguments, who) of requests that must get a 4xx answer."""
    a, m = world.area, world.muni
    return [
        ("GET", f"/v1/areas/{a}/pictures/2026-W99", {}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures/0000-W01", {}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures/0001-W01", {}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures/9999-W52", {}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures/2026-W{'1' * 5000}", {}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures/%00", {}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures/2026-W10", {"params": {"version": str(10**30)}}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures/2026-W10", {"params": {"version": "99999999999"}}, "kf"),
        ("GET", "/v1/areas/a%00b/pictures/2026-W10", {}, "adm"),
        ("GET", f"/v1/areas/{'x' * 5000}/pictures/2026-W10", {}, "adm"),
        ("GET", f"/v1/areas/{a}/pictures", {"params": {"from": "1900-W01", "to": "2999-W52"}}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures", {"params": {"from": "0001-W01", "to": "0001-W05"}}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures", {"params": {"from": "9999-W50", "to": "9999-W52"}}, "kf"),
        ("GET", f"/v1/areas/{a}/pictures", {"params": {"from": "2026-W10\x00", "to": "2026-W11"}}, "kf"),
        ("GET", "/v1/areas/a%00b/pictures", {"params": {"from": "2026-W01", "to": "2026-W02"}}, "adm"),
        ("GET", f"/v1/municipalities/{m}/pictures/0001-W01", {}, "kf"),
        ("GET", f"/v1/municipalities/{m}/pictures/9999-W52", {}, "kf"),
        ("GET", f"/v1/municipalities/{m}/pictures/%00", {}, "kf"),
        ("GET", "/v1/municipalities/m%00/pictures/2026-W10", {}, "adm"),
        ("POST", f"/v1/areas/{a}/pictures/0001-W01/publish", {}, "kf"),
        ("POST", f"/v1/areas/{a}/pictures/9999-W52/publish", {}, "kf"),
        ("POST", f"/v1/areas/{a}/pictures/%00/publish", {}, "kf"),
        ("POST", "/v1/areas/a%00b/pictures/2026-W10/publish", {}, "adm"),
        ("POST", f"/v1/areas/{a}/pictures/2026-W10/publish", {"json": [1, 2]}, "kf"),
        ("POST", f"/v1/areas/{a}/pictures/2026-W10/publish", {"content": b"\xff\xfe"}, "kf"),
    ]


async def _bad_input_gets_4xx(world: World, bus: Bus, nats_url: str, tmp_path: Path, **database: Any) -> None:
    async with running(world, settings_for(world, nats_url, tmp_path, **database)) as (base, _app), \
            httpx.AsyncClient(timeout=30) as c:
        await bus.send(report(world, None, {"klotter": 1}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1)
        answers = []
        for method, path, kwargs, who in hostile_requests(world):
            r = await c.request(method, base + path, headers=world.headers(who), **kwargs)
            answers.append((r.status_code, method, path[:60], r.headers.get("content-type", "")))
        assert [x for x in answers if not 400 <= x[0] < 500] == []
        assert all(x[3].startswith("application/problem+json") for x in answers)
        r = await c.get(f"{base}/v1/areas/a%00b/alerts", headers=world.headers("adm"))
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "path"  # refused at the edge


async def test_bad_periods_versions_ranges_and_nul_bytes_get_4xx_never_5xx(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    await _bad_input_gets_4xx(world, bus, nats_url, tmp_path)


@pytest.mark.postgres
async def test_bad_input_gets_4xx_on_postgresql_too(world: World, bus: Bus, nats_url: str, tmp_path: Path,
                                                    postgres_url: str) -> None:
    """PostgreSQL refuses a NUL byte in a query and an integer beyond its range: checked before it is asked."""
    await _bad_input_gets_4xx(world, bus, nats_url, tmp_path, database_url=postgres_url)


async def test_answers_never_echo_an_id_or_period_that_looks_like_personal_data(
        world: World, nats_url: str, tmp_path: Path) -> None:
    """A caller may type a name and a personal identity number where an id or a period belongs: the
    problem+json answer names the refusal without repeating it."""
    pnr = "20100515-2382"
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), \
            httpx.AsyncClient(timeout=30) as c:
        for path, who, status in [(f"/v1/areas/Testa%20Testsson%20{pnr}/pictures/2026-W10", "adm", 404),
                                  (f"/v1/areas/{world.area}/pictures/{pnr}", "kf", 422),
                                  (f"/v1/municipalities/{world.muni}/pictures/{pnr}", "kf", 422)]:
            r = await c.get(base + path, headers=world.headers(who))
            assert r.status_code == status, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert pnr not in r.text and "2382" not in r.text, r.text
