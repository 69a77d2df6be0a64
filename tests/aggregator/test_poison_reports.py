"""Hostile report events published straight onto EST_REPORTS, past the intake (an old intake, a replay,
a hand-published event): what the aggregator cannot tally is dead-lettered, every picture keeps updating."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from est_aggregator.pictures.domain.reports import MAX_COUNT, report_faults
from est_aggregator.pictures.domain.tally import ItemSums
from est_aggregator.pictures.ingest import handle_report_submitted, record_of
from est_aggregator.rebuild import rebuild_async
from est_shared.bus import PoisonEvent, publish_raw
from est_shared.checklists import EST_STANDARD_1
from est_shared.events import Answer, ReportSubmitted
from est_shared.subjects import report_submitted

from tests.aggregator.support import Bus, World, eventually, make_world, picture_when, report, running, settings_for

PERSONAL = "Testa Testsson 20100515-2382 ring 070-123 45 67"


def two_areas() -> tuple[World, str]:
    """A world whose municipality has a second area ``b``, with the same people assigned to it."""
    world = make_world()
    b = f"b{uuid.uuid4().hex[:8]}"
    org = world.org
    areas = {**org.areas, b: org.areas[world.area].model_copy(update={"id": b, "name": "Andra området"})}
    munis = {world.muni: org.municipalities[world.muni].model_copy(update={"area_ids": [world.area, b]})}
    people = {pid: p.model_copy(update={"areas": [*p.areas, b]}) if world.area in p.areas else p
              for pid, p in org.people.items()}
    return World(world.muni, world.area, org.model_copy(update={"areas": areas, "municipalities": munis,
                                                                "people": people})), b


def hostile(world: World, rid: str, change: dict[str, Any], answers: dict[str, Any] | None = None,
            area: str | None = None) -> tuple[str, bytes]:
    """(subject, bytes) of a report event as a hand-publisher writes it: valid, then ``change``d."""
    body = json.loads(report(world, rid, {"skadegorelse": 1}, area=area).model_dump_json(exclude_none=True))
    body["data"].update(change)
    if answers is not None:
        body["data"]["answers"] = answers
    return report_submitted(world.muni, area or world.area), json.dumps(body).encode()


def poison_events(world: World) -> dict[str, tuple[str, bytes]]:
    """Every shape of a report the aggregator cannot tally, by name."""
    return {
        "huge": hostile(world, "bad-huge", {}, {"skadegorelse": {"value": 10**400}}),
        "negative": hostile(world, "bad-negative", {}, {"skadegorelse": {"value": -3}}),
        "float": hostile(world, "bad-float", {}, {"skadegorelse": {"value": 2.5}}),
        "level": hostile(world, "bad-level", {}, {"klotter": {"value": 99}}),
        "huge_string": hostile(world, "bad-string", {}, {"skadegorelse": {"value": "1" + "0" * 400}}),
        "long_id": hostile(world, "bad-long", {"reporter_id": "r" * 50_000}),
        "boolean": hostile(world, "bad-bool", {}, {"skadegorelse": {"value": True}}),
        "unknown_item": hostile(world, "bad-item", {}, {PERSONAL: {"value": 1}}),
    }


def _metric(text: str, sample: str) -> float:
    """The value of one sample (name with its labels, as Prometheus writes them) in /metrics; 0 when absent."""
    values = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.rsplit(" ", 1)[0] == sample]
    return float(values[0]) if values else 0.0


async def test_reports_that_cannot_be_tallied_are_dead_lettered_and_every_picture_keeps_updating(
        bus: Bus, nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    await _untallyable_reports_next_to_valid_ones(bus, nats_url, tmp_path, caplog)


@pytest.mark.postgres
async def test_reports_that_cannot_be_tallied_are_dead_lettered_at_once_on_postgresql(
        bus: Bus, nats_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, postgres_url: str) -> None:
    """An id longer than its column would fail the insert there (and be retried eight times): refused first."""
    await _untallyable_reports_next_to_valid_ones(bus, nats_url, tmp_path, caplog, database_url=postgres_url)


async def _untallyable_reports_next_to_valid_ones(bus: Bus, nats_url: str, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture, **database: Any) -> None:
    """Every poison shape in one batch with valid reports of two areas: the valid ones counted exactly, the
    pictures answer, the poison is in EST_DLQ with the metric counted, and the rebuild skips the same."""
    world, b = two_areas()
    dlq = await bus.tap(f"est.dlq.aggregator.est.report.submitted.{world.muni}.>", "EST_DLQ")
    poison = poison_events(world)
    # in the stream before the aggregator starts: poison and valid reports share its first batch
    await bus.send(report(world, f"{world.muni}-ok-a1", {"skadegorelse": 2, "klotter": 1}))
    for name, (subject, payload) in poison.items():
        await publish_raw(bus.js, subject, payload, msg_id=f"{world.muni}-{name}")
        if name == "level":
            await bus.send(report(world, f"{world.muni}-ok-b1", {"skadegorelse": 4}, area=b))
    await bus.send(report(world, f"{world.muni}-ok-a2", {"skadegorelse": 3, "klotter": 2}, reporter="bo"))
    settings = settings_for(world, nats_url, tmp_path, **database)

    def capture_logs(_app: Any) -> None:
        logging.getLogger().addHandler(caplog.handler)  # the service re-routes logging when it is built
        caplog.set_level(logging.INFO, logger="est")

    async with running(world, settings, before=capture_logs) as (base, _app), httpx.AsyncClient() as c:
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        assert pic["items"]["skadegorelse"]["value"] == 5 and pic["items"]["klotter"]["value"] == 2
        other = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1, area=b)
        assert other["items"]["skadegorelse"]["value"] == 4
        r = await c.get(f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10", headers=world.headers())
        assert r.status_code == 200, r.text
        assert r.json()["totals"]["items"]["skadegorelse"]["value"] == 9 and r.json()["unavailable"] == []

        dead = await Bus.take_messages(dlq, len(poison), timeout=10.0)
        assert sorted(json.loads(m.data)["id"] for m in dead) == sorted(
            json.loads(p)["id"] for _, p in poison.values())
        errors = {json.loads(m.data)["id"]: m.headers["EST-DLQ-Error"] for m in dead}
        assert errors["bad-huge"] == "answers.skadegorelse.value: count_out_of_range"
        assert errors["bad-level"] == "answers.klotter.value: level_out_of_range"
        assert errors["bad-bool"] == "answers.skadegorelse.value: not_a_count"
        assert errors["bad-long"] == "reporter_id: too_long"
        assert errors["bad-item"] == "answers: unknown_item"
        assert {m.headers["EST-DLQ-Reason"] for m in dead} == {"poison"}
        metrics = (await c.get(f"{base}/metrics")).text
        assert 'est_aggregator_dead_lettered_total{reason="poison"} 8.0' in metrics
        assert 'est_aggregator_reports_stored_total{outcome="refused"} 7.0' in metrics
        assert "retried" not in metrics  # refused at once: no event waited out its deliveries

        # the pictures keep updating afterwards, here and in the other area
        await bus.send(report(world, f"{world.muni}-ok-a3", {"skadegorelse": 1}, reporter="cy"))
        await bus.send(report(world, f"{world.muni}-ok-b2", {"skadegorelse": 1}, area=b, reporter="bo"))
        await picture_when(c, base, world, "2026-W10", lambda p: p["items"]["skadegorelse"]["value"] == 6)
        await picture_when(c, base, world, "2026-W10", lambda p: p["items"]["skadegorelse"]["value"] == 5, area=b)
        live = {area: (await c.get(f"{base}/v1/areas/{area}/pictures/2026-W10", headers=world.headers())).json()
                for area in (world.area, b)}
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "event dead-lettered" in logged
    assert "20100515-2382" not in logged and "r" * 100 not in logged  # no text of the events in the logs
    assert "20100515-2382" not in "".join(errors.values())

    # the rebuild replays the same stream: it skips the same events and builds the same pictures
    result = await rebuild_async(settings)
    assert (result.reports_stored, result.poison) == (5, 8)
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await asyncio.sleep(0.3)
        for area in (world.area, b):
            r = await c.get(f"{base}/v1/areas/{area}/pictures/2026-W10", headers=world.headers())
            assert r.status_code == 200 and r.json()["items"] == live[area]["items"]


async def test_a_report_that_cannot_be_tallied_alone_is_refused_as_poison(
        world: World, nats_url: str, tmp_path: Path) -> None:
    """The one-by-one path (a batch that failed as a whole is settled event by event) refuses it too."""
    event = report(world, f"{world.muni}-alone", {"skadegorelse": 1})
    bad = event.model_copy(update={"data": event.data.model_copy(update={
        "answers": {"skadegorelse": Answer(value=10**400)}})})
    async with running(world, settings_for(world, nats_url, tmp_path)) as (_base, app):
        deps = app.state.aggregator.deps
        with pytest.raises(PoisonEvent, match="count_out_of_range"):
            await handle_report_submitted(bad, deps=deps, org=world.org)
        assert await handle_report_submitted(event, deps=deps, org=world.org) is True


async def test_a_value_stored_before_ingest_checked_it_is_left_out_and_the_picture_still_computes(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    """An existing database may hold a count of 10**400 (stored by an older aggregator, which then failed
    every refresher pass with OverflowError): the picture leaves that value out and every picture updates."""
    old = report(world, f"{world.muni}-stored-long-ago", {"klotter": 1})
    old = old.model_copy(update={"data": old.data.model_copy(update={
        "answers": {"skadegorelse": Answer(value=10**400), "klotter": Answer(value=1)}})})
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, app), httpx.AsyncClient() as c:
        deps = app.state.aggregator.deps

        async def as_an_older_version_stored_it(s: Any) -> None:
            await deps.store.insert_reports(s, [(old.id, record_of(old.data))])
            await deps.store.touch_pictures(s, [(world.area, "2026-W10", world.muni)], uuid.uuid4().hex, tokens=True)

        await deps.write(as_an_older_version_stored_it)
        deps.wake_refresher()
        await bus.send(report(world, f"{world.muni}-new-one", {"skadegorelse": 2}, reporter="bo"))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        assert pic["items"]["skadegorelse"]["value"] == 2 and pic["items"]["klotter"]["value"] == 1
        r = await c.get(f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10", headers=world.headers())
        assert r.status_code == 200 and r.json()["totals"]["items"]["skadegorelse"]["value"] == 2
        assert _metric((await c.get(f"{base}/metrics")).text, "est_aggregator_pictures_failing") == 0


async def test_a_picture_that_cannot_be_computed_is_retried_with_backoff_while_the_others_update(
        bus: Bus, nats_url: str, tmp_path: Path) -> None:
    """A stored row this code cannot read (an answer no JSON reader takes) fails its picture only: the
    failure is counted and logged, the picture is tried again after a growing delay (not on every
    pass), the other area's picture and the municipality picture go on, and once the row is
    repaired the picture updates again."""
    world, b = two_areas()
    settings = settings_for(world, nats_url, tmp_path)
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, f"{world.muni}-a1", {"skadegorelse": 1}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1)
    path = tmp_path / "aggregator.db"
    unreadable = '{"skadegorelse": {"value": 1' + "0" * 5000 + ', "places": []}}'
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE reports SET answers = ? WHERE report_id = ?", (unreadable, f"{world.muni}-a1"))
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, f"{world.muni}-a2", {"skadegorelse": 1}, reporter="bo"))  # marks it dirty
        await bus.send(report(world, f"{world.muni}-b1", {"skadegorelse": 7}, area=b))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1, area=b)

        async def failing() -> float:
            return _metric((await c.get(f"{base}/metrics")).text, "est_aggregator_pictures_failing")

        await eventually(failing)
        await asyncio.sleep(2.5)
        text = (await c.get(f"{base}/metrics")).text
        tries = _metric(text, 'est_aggregator_picture_failures_total{stage="refresh"}')
        assert 1 <= tries <= 5, tries  # passes run every 0.1 s: without backoff it would be ~25
        await bus.send(report(world, f"{world.muni}-b2", {"skadegorelse": 1}, area=b, reporter="bo"))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2, area=b)
        r = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", headers=world.headers())
        assert r.status_code == 503 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"].startswith("Lägesbilden kan inte beräknas")
        r = await c.get(f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10", headers=world.headers())
        assert r.status_code == 200 and r.json()["unavailable"] == [world.area]
        assert r.json()["totals"]["items"]["skadegorelse"]["value"] == 8

        updates = await bus.tap(f"est.picture.updated.{world.muni}.{world.area}", "EST_PICTURES")
        with sqlite3.connect(path) as conn:  # repaired: the next try succeeds
            conn.execute("UPDATE reports SET answers = ? WHERE report_id = ?",
                         ('{"skadegorelse": {"value": 1, "places": []}}', f"{world.muni}-a1"))

        async def repaired() -> list[dict[str, Any]]:  # only the repair can give it both reports
            return [e for e in await Bus.take(updates, 10, timeout=1.0) if e["data"]["picture"]["reports"] == 2]

        await eventually(repaired, timeout=40)
        assert await failing() == 0
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        assert pic["items"]["skadegorelse"]["value"] == 2


def test_report_faults_name_each_value_that_cannot_be_tallied_and_pass_the_rest() -> None:
    def faults(answers: dict[str, Any], checklist: Any = EST_STANDARD_1, **data: Any) -> list[str]:
        base = report(make_world(), "x").data.model_dump()
        base.update(answers={k: Answer(value=v) for k, v in answers.items()}, **data)
        return report_faults(ReportSubmitted(**base), checklist)

    assert faults({"skadegorelse": MAX_COUNT, "klotter": 3, "tillhall": True, "brand": 0}) == []
    assert faults({"skadegorelse": MAX_COUNT + 1}) == ["answers.skadegorelse.value: count_out_of_range"]
    assert faults({"skadegorelse": -1}) == ["answers.skadegorelse.value: count_out_of_range"]
    assert faults({"klotter": 4}) == ["answers.klotter.value: level_out_of_range"]
    assert faults({"klotter": True}) == ["answers.klotter.value: not_a_level"]
    assert faults({"tillhall": 1}) == ["answers.tillhall.value: not_a_boolean"]
    assert faults({PERSONAL: 1}) == ["answers: unknown_item"]  # never the code: it is the sender's text
    # a checklist this aggregator does not know: any answer type, within the widest bound
    assert faults({"egen_punkt": 7, "annan": True}, None) == []
    assert faults({"egen_punkt": 10**400}, None) == ["answers.<item>.value: value_out_of_range"]
    assert faults({"klotter": 1}, area_id="a" * 101, period="2026-W10" * 3) == ["area_id: too_long",
                                                                                "period: too_long"]


def test_a_stored_value_that_cannot_be_tallied_is_left_out_of_the_sums() -> None:
    sums = ItemSums()
    sums.add({"skadegorelse": {"value": 10**400}, "klotter": {"value": float("nan")}})
    sums.add({"skadegorelse": {"value": 2, "places": ["centrum"]}, "klotter": {"value": 1}})
    items = {i.code: i for i in EST_STANDARD_1.items}
    totals = sums.totals(items["skadegorelse"])
    assert (totals.value, totals.reports, totals.places) == (2, 1, {"centrum": 1})
    assert sums.totals(items["klotter"]).value == 1.0


def test_a_count_is_bounded_by_its_checklist_items_own_bound() -> None:
    """A checklist item may allow more than the default 10,000; the aggregator reads that bound, not its own."""
    from est_aggregator.pictures.domain.reports import report_faults
    from est_shared.checklists import Checklist, ChecklistItem
    from est_shared.events import Answer, ReportSubmitted

    big = Checklist(id="stor", version=1, name_sv="Stor", name_en="Big", items=[
        ChecklistItem(code="nedskrapning_kg", label_sv="Skräp (kg)", label_en="Litter (kg)", answer="count",
                      max_count=50_000)])

    def report(value: int) -> ReportSubmitted:
        return ReportSubmitted(report_id="r", municipality_id="m", area_id="a", period="2026-W48",
                               checklist=big.ref, answers={"nedskrapning_kg": Answer(value=value)},
                               reporter_id="p", actor_id="x", received_at="2026-11-30T08:00:00Z")

    assert report_faults(report(40_000), big) == []
    assert report_faults(report(50_001), big) == ["answers.nedskrapning_kg.value: count_out_of_range"]
