"""The organisation as it was (est_shared.orghistory): versions recorded as they arrive, read back over a time
span, and who each period expected; on SQLite and once on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from est_shared.db import make_engine, session_factory, transaction
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person
from est_shared.orghistory import Held, add_org_history, expected_reporters, held_over, record_org
from est_shared.periods import Period
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

W40, W45, W46, W47, W48 = (Period.parse(f"2026-W{n}") for n in (40, 45, 46, 47, 48))
MID_W45 = W45.start_at() + timedelta(days=2)
MID_W47 = W47.start_at() + timedelta(days=2)


def _reporter(pid: str, areas: list[str], actor: str = "hem") -> Person:
    return Person(id=pid, name=pid.capitalize(), actor=actor, roles=["reporter"], areas=areas)


def org(version: int, areas: dict[str, Area], people: list[Person], at: datetime | None = None) -> OrgSnapshot:
    return OrgSnapshot(version=version, applied_at=at,
                       municipalities={"m": Municipality(id="m", name="Ljungby", area_ids=sorted(areas))},
                       areas=areas,
                       actors={"hem": Actor(id="hem", name="Hem AB"), "pol": Actor(id="pol", name="Polis")},
                       people={p.id: p for p in people})


def area(aid: str, name: str, *, replaces: list[str] | None = None, since: datetime | None = None) -> Area:
    return Area(id=aid, name=name, municipality_id="m", replaces=replaces or [], since=since)


CENTRUM = area("centrum", "Ljungby centrum")
V1 = org(1, {"centrum": CENTRUM}, [_reporter("anna", ["centrum"]), _reporter("bo", ["centrum"])])
# mid W45: Bo moves away (to a new area Norr, begun then), Dan comes, Anna changes organisation
V2 = org(2, {"centrum": CENTRUM, "norr": area("norr", "Norr", since=MID_W45)},
         [_reporter("anna", ["centrum"], "pol"), _reporter("bo", ["norr"]), _reporter("dan", ["centrum"])], MID_W45)
# mid W47: Ljungby centrum is split in two; it is gone
V3 = org(3, {"norr": area("norr", "Norr", since=MID_W45),
             "oster": area("oster", "Öster", replaces=["centrum"], since=MID_W47),
             "vaster": area("vaster", "Väster", replaces=["centrum"], since=MID_W47)},
         [_reporter("anna", ["oster"], "pol"), _reporter("bo", ["norr"]), _reporter("dan", ["vaster"])], MID_W47)


async def _db(url: str) -> tuple[Any, async_sessionmaker[AsyncSession], Table]:
    md = MetaData()
    table = add_org_history(md)
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(md.create_all)
    return engine, session_factory(engine), table


def _expected(h: Any, area_id: str, period: Period) -> dict[str, str | None]:
    return expected_reporters(h, area_id, "weekly", period.start_at(), period.end_at())


async def test_each_period_expects_the_reporters_the_organisation_had_then(tmp_path: Path) -> None:
    await _versions_over_time(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")


@pytest.mark.postgres
async def test_each_period_expects_the_reporters_it_had_on_postgresql(postgres_url: str) -> None:
    await _versions_over_time(postgres_url)


async def _versions_over_time(url: str) -> None:
    engine, sessions, table = await _db(url)
    try:
        await _record_and_read(sessions, table)
    finally:
        await engine.dispose()


async def _record_and_read(sessions: async_sessionmaker[AsyncSession], table: Table) -> None:
    async with transaction(sessions) as s:
        assert await record_org(V1, datetime(2026, 9, 1, tzinfo=UTC), session=s, table=table) == 3
    async with transaction(sessions) as s:  # the same version again changes nothing
        assert await record_org(V1, datetime(2026, 9, 2, tzinfo=UTC), session=s, table=table) == 0
    async with transaction(sessions) as s:
        # Bo's stretch of Ljungby centrum ends; Norr, Bo of Norr and Dan of Ljungby centrum begin;
        # Anna's new organisation is kept in place
        assert await record_org(V2, MID_W45, session=s, table=table) == 4
    async with transaction(sessions) as s:
        assert await record_org(V3, MID_W47, session=s, table=table) == 3 + 4
    async with sessions() as s:
        h = await held_over(s, table, ["centrum", "norr", "oster", "vaster"])
        assert (await held_over(s, table, ["centrum"], start=W48.start_at())).areas == {}
        assert set((await held_over(s, table, ["centrum"], end=W45.start_at())).reporters) == {
            ("centrum", "anna"), ("centrum", "bo")}

    # W40, recomputed today: Anna and Bo (who has moved away since), not Dan (who came in W45)
    assert _expected(h, "centrum", W40) == {"anna": "pol", "bo": "hem"}
    # W45: Bo left and Dan came during it: both were reporters of it at some time
    assert set(_expected(h, "centrum", W45)) == {"anna", "bo", "dan"}
    assert set(_expected(h, "centrum", W46)) == {"anna", "dan"}
    # Norr begins in W45: its first period is W46; nothing before it
    assert _expected(h, "norr", W45) == {} and _expected(h, "norr", W40) == {}
    assert _expected(h, "norr", W46) == {"bo": "hem"}
    # the split: the old area is held until W47 began (its last period), the new ones from W48
    assert set(_expected(h, "centrum", W47)) == {"anna", "dan"} and _expected(h, "centrum", W48) == {}
    assert _expected(h, "oster", W47) == {} and _expected(h, "oster", W48) == {"anna": "pol"}
    assert _expected(h, "vaster", W48) == {"dan": "hem"}
    assert h.name_of("centrum") == "Ljungby centrum" and h.first_held("oster") == Held(
        MID_W47, None, "weekly", None, "Öster")


async def test_the_first_version_recorded_holds_from_before_any_period_an_area_from_its_since(
        tmp_path: Path) -> None:
    engine, sessions, table = await _db(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    try:
        late = org(7, {"centrum": CENTRUM, "oster": area("oster", "Öster", since=MID_W47)},
                   [_reporter("anna", ["centrum", "oster"])], datetime(2026, 12, 1, tzinfo=UTC))
        async with transaction(sessions) as s:
            await record_org(late, late.applied_at or datetime.now(UTC), session=s, table=table)
        async with sessions() as s:
            h = await held_over(s, table, ["centrum", "oster"])
        assert _expected(h, "centrum", W40) == {"anna": "hem"}  # before the first version seen: as it is
        assert _expected(h, "oster", W47) == {} and _expected(h, "oster", W48) == {"anna": "hem"}
    finally:
        await engine.dispose()



async def test_an_undated_area_seen_only_in_a_later_version_holds_from_before_any_period(tmp_path: Path) -> None:
    engine, sessions, table = await _db(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    try:
        elsewhere = org(1, {"norr": area("norr", "Norr")}, [_reporter("bo", ["norr"])])
        async with transaction(sessions) as s:
            await record_org(elsewhere, datetime(2026, 9, 1, tzinfo=UTC), session=s, table=table)
            # Ljungby centrum has no since: the intake held it from its first version
            await record_org(V1, MID_W47, session=s, table=table)
        async with sessions() as s:
            h = await held_over(s, table, ["centrum", "norr"])
        assert _expected(h, "centrum", W40) == {"anna": "hem", "bo": "hem"}
        assert _expected(h, "norr", W48) == {}  # gone from the version in force since W47
    finally:
        await engine.dispose()
