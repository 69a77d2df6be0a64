"""Reminders go to the people the organisation expected in that period, once the notifier knows who reported;
the ledger says who was reminded of what."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from est_notifier.deliveries import reminders
from est_shared.events import Completeness, PictureUpdated, new_event
from est_shared.org import Area, Person, period_deadline
from est_shared.orghistory import Held, expected_in_period
from est_shared.periods import Period
from est_shared.subjects import picture_updated
from sqlalchemy import select

from tests.notifier.support import (
    Org,
    Running,
    notifier_db,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    running_notifier,
)
from tests.support import eventually

WEEK = Period.parse("2026-W48")


def _person(org: Org, name: str, areas: list[str], *, email: bool = True) -> Person:
    return Person(id=f"{name}{org.m}", name=name.capitalize(), actor="vaxjohem",
                  email=f"{name}@example.org" if email else None, roles=["reporter"], areas=areas,
                  municipalities=[org.m])


def _changed(org: Org, *people: Person, areas: dict[str, Area] | None = None, version: int = 1) -> Org:
    """The organisation with people added or replaced (and areas added or replaced), at ``version``."""
    snap = org.snapshot
    areas = {**snap.areas, **(areas or {})}
    mun = snap.municipalities[org.m].model_copy(update={"area_ids": sorted(areas)})
    snap = snap.model_copy(update={"version": version, "areas": areas, "municipalities": {org.m: mun},
                                   "people": {**snap.people, **{p.id: p for p in people}}})
    return Org(org.m, org.a1, org.a2, snap, org.tokens)


def _settings(nats_url: str, tmp_path: Path, org: Org) -> Any:
    # the loop checks only when a test asks it to (check()), so each check happens at a known moment
    return notifier_settings(nats_url, tmp_path, org, reminders_enabled=True, reminder_interval=3600,
                             reminder_late_limit=6 * 3600)


async def _reminded(n: Running, **params: str) -> list[dict[str, Any]]:
    """Whom the ledger says reminders went to (an admin reads it)."""
    return [d["reminder"] for d in await n.ledger("admin", **params) if d["reminder"]]


def _who(rows: list[dict[str, Any]]) -> set[tuple[str, str, str, tuple[str, ...]]]:
    return {(r["person_id"], r["period"], r["kind"], tuple(r["areas"])) for r in rows}


async def _check(n: Running) -> int:
    """One reminder check at the notifier's clock, once it has read the picture events in its stream."""
    state = n.app.state.notifier
    await eventually(state["caught_up"])
    return await state["reminders"].check(state["clock"].now())  # type: ignore[no-any-return]


def test_expected_follows_the_organisation_as_it_was_in_the_period() -> None:
    start, end = WEEK.start_at(), WEEK.end_at()
    always = [Held(None, None)]
    # an area made during the week: its first period is the next one; one made before it: this one
    assert not expected_in_period([Held(start + timedelta(days=2), None, "weekly")], always, "weekly", start, end)
    assert expected_in_period([Held(start - timedelta(days=1), None, "weekly")], always, "weekly", start, end)
    # the cadence in force when the period began
    switched = [Held(None, start + timedelta(days=3), "weekly"), Held(start + timedelta(days=3), None, "biweekly")]
    assert expected_in_period(switched, always, "weekly", start, end)
    assert not expected_in_period(switched, always, "biweekly", start, end)
    # a reporter of the area at some time in the period: not one who came after it, nor one who left before
    area = [Held(None, None, "weekly")]
    assert expected_in_period(area, [Held(start + timedelta(days=4), None)], "weekly", start, end)
    assert not expected_in_period(area, [Held(end + timedelta(hours=1), None)], "weekly", start, end)
    assert not expected_in_period(area, [Held(None, start - timedelta(hours=1))], "weekly", start, end)
    assert not expected_in_period(area, [], "weekly", start, end)


async def test_no_reminder_goes_before_the_notifier_has_read_who_reported(
        nats_url: str, tmp_path: Path, org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    anna, bo = _person(org, "anna", [org.a1]), _person(org, "bo", [org.a1])
    org = _changed(org, anna, bo)
    deadline = period_deadline(org.snapshot.municipalities[org.m], WEEK)
    # the notifier is slow to read its picture events (a backlog at start-up): hold each until released
    release, reading = asyncio.Event(), asyncio.Event()
    record = reminders.record_missing

    async def slow_record(event: Any, **kwargs: Any) -> bool:
        reading.set()
        await release.wait()
        return await record(event, **kwargs)

    monkeypatch.setattr(reminders, "record_missing", slow_record)
    async with running_notifier(_settings(nats_url, tmp_path, org), org) as n:
        state = n.app.state.notifier
        state["clock"].set(deadline - timedelta(hours=23))
        pic = picture_event(org, period=WEEK.id).data.picture.model_copy(update={
            "status": "open", "version": 0,
            "completeness": Completeness(expected=2, received=1, missing_reporters=[bo.id])})
        await publish(nats_url, picture_updated(org.m, org.a1), new_event(
            type="se.est.picture.updated", source="/est/aggregator", data=PictureUpdated(picture=pic),
            subject=org.a1, id=f"picture-updated:{org.a1}:{WEEK.id}:1", time=datetime.now(UTC)))
        await eventually(reading.is_set)

        # anna has reported, the notifier just has not read it yet: nobody is reminded on an empty view
        assert await state["reminders"].check(state["clock"].now()) == 0
        assert await _reminded(n) == []

        release.set()
        assert await eventually(lambda: _check(n)) == 1
        rows = await _reminded(n)
        assert {r for r in _who(rows) if r[3] == ("Araby",)} == {(bo.id, WEEK.id, "before", ("Araby",))}
        assert anna.id not in {r["person_id"] for r in rows}


async def test_no_reminder_for_a_week_that_closed_before_the_area_or_the_reporter_came(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    anna, bo = _person(org, "anna", [org.a1]), _person(org, "bo", [org.a1])
    org = _changed(org, anna, bo)
    deadline = period_deadline(org.snapshot.municipalities[org.m], WEEK)
    a3 = f"a3{org.m}"
    async with running_notifier(_settings(nats_url, tmp_path, org), org) as n:
        clock = n.app.state.notifier["clock"]
        clock.set(deadline + timedelta(hours=1))  # the week has closed; then the organisation changes
        dora, eve = _person(org, "dora", [a3]), _person(org, "eve", [org.a1])
        bo_too = bo.model_copy(update={"areas": [org.a1, a3]})
        norr = Area(id=a3, name="Norr", municipality_id=org.m, since=clock.now())  # dated as the intake does
        await n.app.state.runtime.apply_org(_changed(org, dora, eve, bo_too, areas={a3: norr}, version=2).snapshot)

        clock.set(deadline + timedelta(hours=2, minutes=5))
        await eventually(lambda: _check(n))
        rows = await _reminded(n)
        # anna and bo were reporters of Araby that week; Norr did not exist then, eve was no reporter yet
        assert {r for r in _who(rows) if r[3] != ("Teleborg",)} == {
            (anna.id, WEEK.id, "after", ("Araby",)), (bo.id, WEEK.id, "after", ("Araby",))}
        assert not {dora.id, eve.id} & {r["person_id"] for r in rows}


async def test_no_reminder_for_a_biweekly_period_that_began_before_the_area(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    fia = _person(org, "fia", [org.a2])
    org = _changed(org, fia, areas={org.a2: org.snapshot.areas[org.a2].model_copy(update={"cadence": "biweekly"})})
    mun = org.snapshot.municipalities[org.m]
    pair = Period.biweek_containing(date(2026, 11, 23))
    a3 = f"a3{org.m}"
    async with running_notifier(_settings(nats_url, tmp_path, org), org) as n:
        clock = n.app.state.notifier["clock"]
        clock.set(pair.start_at(mun.timezone) + timedelta(days=8))  # in the pair's second week, a new area
        dora = _person(org, "dora", [a3])
        await n.app.state.runtime.apply_org(_changed(
            org, dora, areas={a3: Area(id=a3, name="Norr", municipality_id=org.m, cadence="biweekly",
                                       since=clock.now())},
            version=2).snapshot)

        clock.set(period_deadline(mun, pair) - timedelta(hours=23))
        await eventually(lambda: _check(n))
        rows = await _reminded(n)
        # Norr's first pair is the next one; Teleborg's reporter is reminded of this one
        assert (fia.id, pair.id, "before", ("Teleborg",)) in _who(rows)
        assert dora.id not in {r["person_id"] for r in rows}


async def test_an_area_that_replaces_another_is_reminded_from_its_first_period(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    anna, bo = _person(org, "anna", [org.a1]), _person(org, "bo", [org.a2])
    org = _changed(org, anna, bo)
    mun = org.snapshot.municipalities[org.m]
    deadline, following = period_deadline(mun, WEEK), period_deadline(mun, WEEK.next())
    split_at = WEEK.start_at(mun.timezone) + timedelta(days=2)
    a3 = f"a3{org.m}"
    async with running_notifier(_settings(nats_url, tmp_path, org), org) as n:
        clock = n.app.state.notifier["clock"]
        clock.set(deadline + timedelta(hours=2, minutes=5))
        # mid-week Araby was replaced by Norr (its first period is the next week), Anna reports for Norr; the
        # notifier learns of it after the week closed: Norr is held from when the version took effect
        changed = _changed(org, anna.model_copy(update={"areas": [a3]}), version=2, areas={
            a3: Area(id=a3, name="Norr", municipality_id=org.m, replaces=[org.a1], since=split_at)}).snapshot
        areas = {k: v for k, v in changed.areas.items() if k != org.a1}
        mun2 = changed.municipalities[org.m].model_copy(update={"area_ids": sorted(areas)})
        await n.app.state.runtime.apply_org(changed.model_copy(update={
            "areas": areas, "municipalities": {org.m: mun2}, "applied_at": split_at}))
        assert await eventually(lambda: _check(n)) == 1
        # Teleborg's reporter is reminded of the week; Anna is not: it began before Norr's first week
        assert _who(await _reminded(n)) == {(bo.id, WEEK.id, "after", ("Teleborg",))}

        clock.set(following - timedelta(hours=23))
        await eventually(lambda: _check(n))
        assert (anna.id, WEEK.next().id, "before", ("Norr",)) in _who(await _reminded(n))


async def test_the_ledger_shows_who_was_reminded_of_what(nats_url: str, tmp_path: Path, org: Org) -> None:
    anna, bo = _person(org, "anna", [org.a1]), _person(org, "bo", [org.a1, org.a2])
    org = _changed(org, anna, bo)
    deadline = period_deadline(org.snapshot.municipalities[org.m], WEEK)
    async with running_notifier(_settings(nats_url, tmp_path, org), org) as n:
        clock = n.app.state.notifier["clock"]
        clock.set(deadline - timedelta(hours=23))
        assert await eventually(lambda: _check(n)) == 2
        clock.set(deadline + timedelta(hours=2, minutes=5))
        assert await eventually(lambda: _check(n)) == 2

        ledger = await n.ledger("admin", person_id=anna.id)
        assert [(d["event_type"], d["target"], d["reminder"]) for d in ledger] == [
            ("se.est.notifier.reminder", "anna@example.org", {"person_id": anna.id, "person_name": "Anna",
                                                             "period": WEEK.id, "kind": kind, "areas": ["Araby"]})
            for kind in ("after", "before")]
        assert {(d["reminder"]["person_id"], d["reminder"]["kind"], tuple(d["reminder"]["areas"]))
                for d in await n.ledger("admin", period=WEEK.id)} == {
            (anna.id, "before", ("Araby",)), (anna.id, "after", ("Araby",)),
            (bo.id, "before", ("Araby", "Teleborg")), (bo.id, "after", ("Araby", "Teleborg"))}
        assert await n.ledger("admin", period="2026-W47") == []
        # other deliveries carry no reminder
        await n.subscribe(channel={"type": "email", "to": "olle@example.org"}, events=["picture.published"])
        await publish(nats_url, picture_subject(org), picture_event(org, period=WEEK.id))
        mine = await eventually(lambda: n.ledger("owner"))
        assert [d["reminder"] for d in mine] == [None]


async def test_the_history_keeps_each_area_cadence_and_reporter_with_when_it_held(tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path / 'n.db'}")
    try:
        other = org.snapshot.people[f"other{org.m[1:]}"]
        first, later = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)
        assert await reminders.record_org(org.snapshot, first, sessions=sessions, tables=tables) == 3
        assert await reminders.record_org(org.snapshot, later, sessions=sessions, tables=tables) == 0
        moved = _changed(org, other.model_copy(update={"areas": [org.a1]}), version=2,
                         areas={org.a2: org.snapshot.areas[org.a2].model_copy(update={"cadence": "biweekly"})})
        # Teleborg's cadence changes and its reporter moves to Araby: two stretches end, two begin
        assert await reminders.record_org(moved.snapshot, later, sessions=sessions, tables=tables) == 4
        c = tables.org_history.c
        async with sessions() as s:
            rows = {(r.area_id, r.person_id, r.cadence, r.since and r.since.replace(tzinfo=UTC),
                     r.until and r.until.replace(tzinfo=UTC))
                    for r in (await s.execute(select(c.area_id, c.person_id, c.cadence, c.since, c.until))).all()}
        assert rows == {(org.a1, None, "weekly", None, None), (org.a2, None, "weekly", None, later),
                        (org.a2, None, "biweekly", later, None), (org.a2, other.id, None, None, later),
                        (org.a1, other.id, None, later, None)}
    finally:
        await engine.dispose()
