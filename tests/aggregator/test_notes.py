"""Reporters' notes (``answers.<item>.note``) reach the picture: stored with the report on every write path
(the in-loop SQLite batch's raw sqlite3 statements, the SQLAlchemy batch on SQLite and PostgreSQL, one report
at a time), gone with a superseded report, in the published event in full, and in a GET of the picture
for key functions, admins and police only; everyone else sees how many there are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from est_aggregator.pictures.compute import AreaInfo, compute_picture
from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.ingest import handle_report_batch, handle_report_submitted
from est_shared.org import Person, hash_token
from est_shared.periods import Period

from tests.aggregator.support import (
    Bus,
    World,
    built_deps,
    make_world,
    picture_when,
    report,
    running,
    settings_for,
)

WEEK = "2026-W10"
TAG = "Ny tagg på garagelängan"
GLASS = "krossade rutor"


async def _notes(deps: Deps, world: World, cache: bool = False) -> tuple[list[dict[str, Any]], int]:
    info = AreaInfo(world.area, world.muni, "Testområdet", "weekly", True)
    async with deps.reading() as s:
        built = await compute_picture(s, org=world.org, info=info, period=Period.parse(WEEK), rules=deps.rules,
                                      cache=deps.cache if cache else None)
    pic = built.picture.model_dump(mode="json")
    return [{k: n[k] for k in ("item", "label_sv", "place", "place_name", "text")} for n in pic["notes"]], \
        pic["note_count"]


def _noted(world: World, rid: str, **kw: Any) -> Any:
    return report(world, rid, {"klotter": {"value": 2, "places": ["torget"], "note": f"  {TAG} "},
                               "skadegorelse": {"value": 1, "places": ["centrum", "torget"], "note": GLASS},
                               "nedskrapning": {"value": 1, "note": "   "}}, **kw)


EXPECTED = [  # in the checklist's order: skadegörelse comes first
    {"item": "skadegorelse", "label_sv": "Skadegörelse", "place": None, "place_name": "centrum, torget",
     "text": GLASS},
    {"item": "klotter", "label_sv": "Klotter", "place": "torget", "place_name": "torget", "text": TAG},
]


async def _notes_kept_and_superseded(deps: Deps, world: World) -> None:
    # a batch of several (one with notes), then one report on its own (a batch of one)
    outcome = await handle_report_batch([_noted(world, "n1"), report(world, "n2", {"klotter": 1}, reporter="bo")],
                                        deps=deps, org=world.org)
    assert outcome.stored == 2
    assert await _notes(deps, world) == (EXPECTED, 2)
    assert await handle_report_submitted(
        report(world, "n3", {"klotter": {"value": 1, "places": ["centrum"], "note": "Ny tagg på skolan"}},
               reporter="cy", actor="polis"), deps=deps, org=world.org)
    notes, count = await _notes(deps, world)
    assert count == 3 and [n["text"] for n in notes] == [GLASS, TAG, "Ny tagg på skolan"]  # item order, then time
    # the correction of n1 says nothing more: n1's notes go with it
    assert await handle_report_submitted(report(world, "n4", {"klotter": 2}, supersedes="n1"),
                                         deps=deps, org=world.org)
    notes, count = await _notes(deps, world)
    assert count == 1 and [n["text"] for n in notes] == ["Ny tagg på skolan"]
    if deps.cache is not None:  # a picture computed through the report cache holds the same notes
        assert await _notes(deps, world, cache=True) == (notes, count)


async def test_notes_are_kept_by_the_in_loop_sqlite_batch(world: World, tmp_path: Path) -> None:
    async with built_deps(tmp_path) as deps:
        assert type(deps.store).__name__ == "SqliteBatchStore"  # the raw sqlite3 statements
        await _notes_kept_and_superseded(deps, world)


async def test_notes_are_kept_by_the_sqlalchemy_batch_on_sqlite(world: World, tmp_path: Path) -> None:
    async with built_deps(tmp_path, pooled=True) as deps:
        assert type(deps.store).__name__ == "SqlBatchStore"
        await _notes_kept_and_superseded(deps, world)


@pytest.mark.postgres
async def test_notes_are_kept_on_postgresql(world: World, tmp_path: Path, postgres_url: str) -> None:
    async with built_deps(tmp_path, postgres_url) as deps:
        await _notes_kept_and_superseded(deps, world)


def _reader_world() -> World:
    """The test world plus a police officer (role police) of the area."""
    world = make_world()
    people = dict(world.org.people)
    people["pol"] = Person(id="pol", name="Polis", actor="polis", roles=["police"], areas=[world.area],
                           token_sha256=hash_token(f"tok-pol-{world.muni}"))
    world.org = world.org.model_copy(update={"people": people})
    return world


async def test_notes_reach_key_functions_admins_and_police_and_only_their_count_others(
        bus: Bus, nats_url: str, tmp_path: Path) -> None:
    world = _reader_world()
    tap = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        # ids of this world only: the stream drops a message id another test sent within its duplicate window
        first, second = f"{world.muni}-r1", f"{world.muni}-r2"
        await bus.send(_noted(world, first))
        pic = await picture_when(c, base, world, WEEK, lambda p: p["reports"] == 1, timeout=30)
        assert [n["text"] for n in pic["notes"]] == [GLASS, TAG] and pic["note_count"] == 2
        assert pic["notes"][1]["label_sv"] == "Klotter" and pic["notes"][1]["place_name"] == "torget"

        async def seen_by(who: str, path: str = f"/v1/areas/{world.area}/pictures/{WEEK}") -> dict[str, Any]:
            r = await c.get(f"{base}{path}", headers=world.headers(who))
            assert r.status_code == 200, (who, r.text)
            body: dict[str, Any] = r.json()
            return body

        for who in ("kf", "adm", "pol"):  # key function, admin, police: the text
            assert [n["text"] for n in (await seen_by(who))["notes"]] == [GLASS, TAG], who
        anna = await seen_by("anna")  # a property company's reporter: only how many
        assert anna["notes"] == [] and anna["note_count"] == 2
        assert TAG not in str(anna)
        # the same rule as on every notifier channel: who has not reported is for key functions and admins
        assert (await seen_by("kf"))["completeness"]["missing_reporters"], "the key function sees who is missing"
        assert (await seen_by("adm"))["completeness"]["missing_reporters"]
        assert anna["completeness"]["missing_reporters"] == [] and anna["completeness"]["expected"] >= 2
        assert (await seen_by("pol"))["completeness"]["missing_reporters"] == []
        common = await seen_by("anna", f"/v1/municipalities/{world.muni}/pictures/{WEEK}")
        assert common["areas"][0]["notes"] == [] and common["areas"][0]["note_count"] == 2
        common = await seen_by("kf", f"/v1/municipalities/{world.muni}/pictures/{WEEK}")
        assert [n["text"] for n in common["areas"][0]["notes"]] == [GLASS, TAG]

        # the published event carries the notes in full (the notifier applies the rule per recipient)
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/{WEEK}/publish", headers=world.headers(),
                         json={"confirm_incomplete": True})
        assert r.status_code == 200, r.text
        [event] = await Bus.take(tap, 1, timeout=30)
        assert [n["text"] for n in event["data"]["picture"]["notes"]] == [GLASS, TAG]
        assert event["data"]["picture"]["note_count"] == 2
        # the published version, latest and by number, keeps the rule
        assert (await seen_by("anna"))["notes"] == []
        assert (await seen_by("anna", f"/v1/areas/{world.area}/pictures/{WEEK}?version=1"))["note_count"] == 2
        assert (await seen_by("anna", f"/v1/areas/{world.area}/pictures/{WEEK}?version=1"))["notes"] == []
        assert len((await seen_by("pol", f"/v1/areas/{world.area}/pictures/{WEEK}?version=1"))["notes"]) == 2

        # a correction without notes replaces the report: its notes leave the picture (a revision says so)
        await bus.send(report(world, second, {"klotter": 2}, supersedes=first))
        pic = await picture_when(c, base, world, WEEK, lambda p: p["version"] == 2, timeout=30)
        assert pic["notes"] == [] and pic["note_count"] == 0
        assert "Anteckningar / Notes: 2 → 0" in pic["changes"]
