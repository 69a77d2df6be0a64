"""Publishing by hand against a running aggregator: the gate (deadline, completeness threshold, a period not
begun) and a publication with nothing new, each watched on the bus (what is refused or unchanged sends
no se.est.picture.published)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from est_aggregator.pictures.domain.publishing import period_begun
from est_shared.org import period_deadline
from est_shared.periods import Period

from tests.aggregator.support import Bus, World, picture_when, report, running, settings_for

CONFIRM = {"confirm_incomplete": True}


def only_anna(world: World) -> World:
    """The world with one expected reporter (anna)."""
    people = {k: p for k, p in world.org.people.items() if k not in ("bo", "cy")}
    return World(world.muni, world.area, world.org.model_copy(update={"people": people}))


async def published(bus: Bus, world: World) -> Any:
    return await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")


async def test_a_picture_below_the_threshold_needs_a_confirmation(world: World, bus: Bus, nats_url: str,
                                                                  tmp_path: Path) -> None:
    world = only_anna(world)
    tap = await published(bus, world)
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        url = f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish"
        r = await c.post(url, headers=world.headers(), json={"comment": "Lugnt."})  # 0 of 1, past its deadline
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["detail"].startswith(
            "Lägesbilden är inte klar att skickas: 0 av 1 förväntade rapportör har rapporterat")
        assert " / The picture is not ready to be sent: 0 of 1 expected reporter has reported" in problem["detail"]
        assert problem["reasons"] == ["below_threshold"] and problem["confirm_field"] == "confirm_incomplete"
        assert problem["completeness"] == {"expected": 1, "received": 0, "rate": 0.0, "threshold": 0.5}
        assert problem["missing_reporters"] == [{"id": "anna", "name": "Anna", "actor": "Hem AB"}]
        assert problem["seconds_to_deadline"] == 0
        assert await Bus.take(tap, timeout=1.5) == []  # refused: nothing sent
        pic = await picture_when(c, base, world, "2026-W10", lambda p: True)
        assert pic["status"] == "open" and pic["comments"] == []  # the refused request stored nothing

        r = await c.post(url, headers=world.headers(), json={"comment": "Lugnt.", **CONFIRM})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 1 and r.json()["unchanged"] is False
        assert r.json()["completeness"] == {"expected": 1, "received": 0, "rate": 0.0, "complete": False,
                                            "threshold": 0.5, "below_threshold": True}
        [ev] = await Bus.take(tap)
        badge = ev["data"]["picture"]["completeness"]
        assert badge["rate"] == 0.0 and badge["complete"] is False and badge["below_threshold"] is True
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["status"] == "published")
        assert pic["completeness"]["complete"] is False and [x["text"] for x in pic["comments"]] == ["Lugnt."]


async def test_at_the_threshold_after_the_deadline_no_confirmation_is_asked(world: World, bus: Bus, nats_url: str,
                                                                            tmp_path: Path) -> None:
    tap = await published(bus, world)
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, None, {"klotter": 1}))
        await bus.send(report(world, None, {"klotter": 1}, reporter="bo"))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers())
        assert r.status_code == 200, r.text  # 2 of 3 ≥ 0.5, deadline passed
        [ev] = await Bus.take(tap)
        badge = ev["data"]["picture"]["completeness"]
        assert badge["complete"] is False and badge["below_threshold"] is False and badge["threshold"] == 0.5


async def test_the_threshold_is_a_setting(world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    settings = settings_for(world, nats_url, tmp_path, publish_min_completeness=0.8)
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, None, {"klotter": 1}))
        await bus.send(report(world, None, {"klotter": 1}, reporter="bo"))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers())
        assert r.status_code == 409 and r.json()["completeness"]["threshold"] == 0.8, r.text
        assert [m["id"] for m in r.json()["missing_reporters"]] == ["cy"]


async def test_a_municipality_sets_its_own_threshold(world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    """``publish_min_completeness`` of the municipality in the organisation file wins over the setting."""
    muni = world.org.municipalities[world.muni].model_copy(update={"publish_min_completeness": 0.9})
    strict = World(world.muni, world.area, world.org.model_copy(
        update={"municipalities": {**world.org.municipalities, world.muni: muni}}))
    settings = settings_for(strict, nats_url, tmp_path, publish_min_completeness=0.2)
    tap = await published(bus, strict)
    async with running(strict, settings) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(strict, None, {"klotter": 1}))
        await bus.send(report(strict, None, {"klotter": 1}, reporter="bo"))
        await picture_when(c, base, strict, "2026-W10", lambda p: p["reports"] == 2)
        url = f"{base}/v1/areas/{strict.area}/pictures/2026-W10/publish"
        r = await c.post(url, headers=strict.headers())
        assert r.status_code == 409 and r.json()["completeness"]["threshold"] == 0.9, r.text
        assert "gränsen är 90 %" in r.json()["detail"]
        r = await c.post(url, headers=strict.headers(), json=CONFIRM)
        assert r.status_code == 200, r.text
        [ev] = await Bus.take(tap)
        assert ev["data"]["picture"]["completeness"]["threshold"] == 0.9


async def test_the_current_week_before_its_deadline_needs_a_confirmation(world: World, bus: Bus, nats_url: str,
                                                                         tmp_path: Path) -> None:
    period = "2026-W48"
    deadline = period_deadline(world.org.municipalities[world.muni], Period.parse(period))
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # Wednesday of the week
    tap = await published(bus, world)

    def freeze(app: Any) -> None:
        app.state.aggregator.clock = lambda: now

    async with running(world, settings_for(world, nats_url, tmp_path), before=freeze) as (base, _app), \
            httpx.AsyncClient() as c:
        url = f"{base}/v1/areas/{world.area}/pictures/{period}/publish"
        await bus.send(report(world, None, {"klotter": 1}, period=period))
        await picture_when(c, base, world, period, lambda p: p["reports"] == 1)
        r = await c.post(url, headers=world.headers())
        assert r.status_code == 409, r.text
        problem = r.json()
        assert problem["reasons"] == ["before_deadline", "below_threshold"]
        assert problem["seconds_to_deadline"] == int((deadline - now).total_seconds())
        assert problem["deadline"] == deadline.isoformat()
        assert "4 dygn 20 tim kvar till deadline" in problem["detail"]
        assert "4 days 20 h left to the deadline" in problem["detail"]
        assert sorted(m["name"] for m in problem["missing_reporters"]) == ["Bo", "Cy"]

        # every report in, but days before the deadline: still asked
        await bus.send(report(world, None, {"klotter": 1}, period=period, reporter="bo"))
        await bus.send(report(world, None, {"klotter": 1}, period=period, reporter="cy", actor="polis"))
        await picture_when(c, base, world, period, lambda p: p["reports"] == 3)
        r = await c.post(url, headers=world.headers())
        assert r.status_code == 409 and r.json()["reasons"] == ["before_deadline"], r.text
        assert r.json()["missing_reporters"] == []
        assert await Bus.take(tap, timeout=1.5) == []

        r = await c.post(url, headers=world.headers(), json=CONFIRM)
        assert r.status_code == 200 and r.json()["completeness"]["complete"] is True, r.text
        [ev] = await Bus.take(tap)
        assert ev["data"]["picture"]["completeness"]["complete"] is True


async def test_a_period_that_has_not_begun_is_refused(world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    tap = await published(bus, world)

    def freeze(app: Any) -> None:
        app.state.aggregator.clock = lambda: datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    async with running(world, settings_for(world, nats_url, tmp_path), before=freeze) as (base, _app), \
            httpx.AsyncClient() as c:
        for body in (None, CONFIRM):
            r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W52/publish", headers=world.headers(),
                             json=body)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["detail"].startswith("Perioden har inte börjat")
            assert [e["field"] for e in r.json()["errors"]] == ["period"]
        assert await Bus.take(tap, timeout=1.5) == []
        # the week after the clock's one begins on its Monday (in the municipality's timezone)
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W49/publish", headers=world.headers(),
                         json=CONFIRM)
        assert r.status_code == 422, r.text


async def test_publishing_nothing_new_sends_nothing(world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    tap = await published(bus, world)
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        url = f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish"
        await bus.send(report(world, None, {"klotter": 1}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1)
        first = await c.post(url, headers=world.headers(), json={"comment": "Lugnt läge.", **CONFIRM})
        assert first.status_code == 200 and first.json()["version"] == 1, first.text
        [ev1] = await Bus.take(tap)

        # the same again, and again with the same comment: the existing version, nothing sent
        for body in (CONFIRM, {"comment": "Lugnt läge.", **CONFIRM}):
            again = await c.post(url, headers=world.headers(), json=body)
            assert again.status_code == 200, again.text
            assert again.json() == {**first.json(), "unchanged": True}
        assert await Bus.take(tap, timeout=1.5) == []

        # a new comment alone is a new version that says so
        r = await c.post(url, headers=world.headers(), json={"comment": "Fastighetsbolaget sanerar.", **CONFIRM})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2 and r.json()["changes"] == ["Ny kommentar / New comment"]
        [ev2] = await Bus.take(tap)
        assert ev2["data"]["changes"] == ["Ny kommentar / New comment"] and ev2["data"]["revision"] is True
        assert [x["text"] for x in ev2["data"]["picture"]["comments"]] == ["Lugnt läge.", "Fastighetsbolaget sanerar."]

        # each version shows what it changed
        v2 = (await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", params={"version": 2},
                          headers=world.headers())).json()
        assert v2["changes"] == ["Ny kommentar / New comment"] and v2["revision"] is True and v2["version"] == 2
        v1 = (await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", params={"version": 1},
                          headers=world.headers())).json()
        assert v1["changes"] == [] and v1["revision"] is False and v1["published_at"]
        assert {k: v for k, v in v1.items() if k not in ("changes", "revision", "published_at")} \
            == ev1["data"]["picture"]
        assert (await c.post(url, headers=world.headers(), json=CONFIRM)).json()["unchanged"] is True
        assert await Bus.take(tap, timeout=1.5) == []


def test_a_threshold_outside_zero_to_one_is_refused(world: World, tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError):
        settings_for(world, "nats://127.0.0.1:1", tmp_path, publish_min_completeness=1.5)
    assert settings_for(world, "nats://127.0.0.1:1", tmp_path).publish_min_completeness == 0.5


def test_a_period_begins_on_its_first_day_in_the_municipalitys_timezone() -> None:
    week = Period.parse("2026-W49")  # Monday 30 November, Stockholm (UTC+1)
    assert not period_begun(week, datetime(2026, 11, 29, 22, 59, tzinfo=UTC), "Europe/Stockholm")
    assert period_begun(week, datetime(2026, 11, 29, 23, 0, tzinfo=UTC), "Europe/Stockholm")
    assert not period_begun(week, datetime(2026, 11, 29, 23, 0, tzinfo=UTC), "UTC")
