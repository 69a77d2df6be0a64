"""Pictures expect the reporters the organisation had in their period: organisation versions applied while
reports flow (a reporter moves, one is added later, an area is split with ``replaces``); real NATS, SQLite."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
from est_aggregator.pictures.gauges import ReportingTally
from est_aggregator.rebuild import rebuild_async
from est_shared.bus import ORG_SNAPSHOTS, encode, ensure_streams, put_object
from est_shared.events import OrgChanged, new_event
from est_shared.natsserver import NatsServer
from est_shared.org import Area, OrgSnapshot, Person, SnapshotBlob, period_deadline
from est_shared.periods import Period
from est_shared.subjects import ORG_CHANGED

from tests.aggregator.support import Bus, World, eventually, picture_when, report, running, settings_for

MID_W45 = Period.parse("2026-W45").start_at() + timedelta(days=2, hours=12)
MID_W47 = Period.parse("2026-W47").start_at() + timedelta(days=2, hours=12)


def _version(org: OrgSnapshot, *, at: Any, areas: dict[str, Area], people: dict[str, Person]) -> OrgSnapshot:
    """The next version, taking effect ``at``, with these areas and the people replaced or added."""
    muni = next(iter(org.municipalities.values()))
    return org.model_copy(update={
        "version": org.version + 1, "applied_at": at, "areas": areas,
        "municipalities": {muni.id: muni.model_copy(update={"area_ids": sorted(areas)})},
        "people": {**org.people, **people}})


def _comp(pic: dict[str, Any]) -> tuple[int, list[str]]:
    return pic["completeness"]["expected"], pic["completeness"]["missing_reporters"]


async def _picture(c: httpx.AsyncClient, base: str, world: World, area: str, period: str,
                   cond: Any = lambda p: True) -> dict[str, Any]:
    return await picture_when(c, base, world, period, cond, area=area, who="adm")


async def test_past_periods_expect_the_reporters_they_had_across_moves_additions_and_a_split(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    a, m = world.area, world.muni
    norr, oster, vaster = f"{a}-norr", f"{a}-oster", f"{a}-vaster"
    updated = await bus.tap(f"est.picture.updated.{m}.{a}", "EST_PICTURES")
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, app), httpx.AsyncClient() as c:
        runtime = app.state.runtime
        await bus.send(report(world, f"{m}-a40", {"klotter": 1}, period="2026-W40"))
        pic = await _picture(c, base, world, a, "2026-W40", lambda p: p["reports"] == 1)
        assert _comp(pic) == (3, ["bo", "cy"])

        # mid W45 Bo moves to a new area, Norr (begun then), and Dan becomes a reporter of the area
        v2 = _version(world.org, at=MID_W45, areas={
            a: world.org.areas[a], norr: Area(id=norr, name="Norr", municipality_id=m, since=MID_W45)}, people={
            "bo": world.org.people["bo"].model_copy(update={"areas": [norr]}),
            "dan": Person(id="dan", name="Dan", actor="hem", roles=["reporter"], areas=[a])})
        await runtime.apply_org(v2)
        # Cy's late W40 report: the refresher recomputes W40, which still expects Bo (not Dan)
        await bus.send(report(world, f"{m}-c40", {"klotter": 2}, period="2026-W40", reporter="cy", actor="polis"))
        events = await eventually(lambda: _updates(updated, "2026-W40", received=2))
        assert (events["completeness"]["expected"], events["completeness"]["missing_reporters"]) == (3, ["bo"])
        pic = await _picture(c, base, world, a, "2026-W40", lambda p: p["reports"] == 2)
        assert _comp(pic) == (3, ["bo"])
        # W45: Bo left and Dan came during it, both were reporters then; W46: Dan, not Bo
        await bus.send(report(world, f"{m}-a46", {"klotter": 1}, period="2026-W46"))
        assert _comp(await _picture(c, base, world, a, "2026-W45")) == (4, ["anna", "bo", "cy", "dan"])
        assert _comp(await _picture(c, base, world, a, "2026-W46", lambda p: p["reports"] == 1)) == (3, ["cy", "dan"])
        # Norr expects nobody before its first period (W46) and Bo from then on
        await bus.send(report(world, f"{m}-b45", {"klotter": 1}, period="2026-W45", reporter="bo", area=norr))
        assert _comp(await _picture(c, base, world, norr, "2026-W45", lambda p: p["reports"] == 1)) == (0, [])
        assert _comp(await _picture(c, base, world, norr, "2026-W46")) == (1, ["bo"])

        # mid W47 the area is split in two; each new one replaces it and begins then
        v3 = _version(v2, at=MID_W47, areas={
            norr: v2.areas[norr],
            oster: Area(id=oster, name="Öster", municipality_id=m, replaces=[a], since=MID_W47),
            vaster: Area(id=vaster, name="Väster", municipality_id=m, replaces=[a], since=MID_W47)}, people={
            "anna": v2.people["anna"].model_copy(update={"areas": [oster]}),
            "cy": v2.people["cy"].model_copy(update={"areas": [vaster]}),
            "dan": v2.people["dan"].model_copy(update={"areas": [vaster]})})
        await runtime.apply_org(v3)
        await bus.send(report(world, f"{m}-a48", {"klotter": 3}, period="2026-W48", area=oster))
        assert _comp(await _picture(c, base, world, oster, "2026-W48", lambda p: p["reports"] == 1)) == (1, [])
        assert _comp(await _picture(c, base, world, vaster, "2026-W48")) == (2, ["cy", "dan"])
        assert _comp(await _picture(c, base, world, oster, "2026-W47")) == (0, [])  # before its first period
        # the old area: its last period is W47, its past ones keep who they expected
        assert _comp(await _picture(c, base, world, a, "2026-W47")) == (3, ["anna", "cy", "dan"])
        assert _comp(await _picture(c, base, world, a, "2026-W48")) == (0, [])
        assert _comp(await _picture(c, base, world, a, "2026-W40")) == (3, ["bo"])

        # the new area's series shows the old area's history beside its own
        r = await c.get(f"{base}/v1/areas/{oster}/pictures", params={"from": "2026-W45", "to": "2026-W48"},
                        headers=world.headers("adm"))
        assert r.status_code == 200
        body = r.json()
        assert [(p["period"], p["reports"], p["completeness_rate"]) for p in body["pictures"]] == [
            ("2026-W45", 0, 0.0), ("2026-W46", 0, 0.0), ("2026-W47", 0, 0.0), ("2026-W48", 1, 1.0)]
        [old] = body["replaces"]
        assert (old["area_id"], old["area_name"]) == (a, "Testområdet")
        assert [(p["period"], p["reports"], p["completeness_rate"]) for p in old["pictures"]] == [
            ("2026-W45", 0, 0.0), ("2026-W46", 1, round(1 / 3, 4)), ("2026-W47", 0, 0.0)]

        # the reporting gauges count W48 (the latest closed period) against the reporters it expected
        deadline = period_deadline(v3.municipalities[m], Period.parse("2026-W48"))
        app.state.aggregator.clock = lambda: deadline + timedelta(hours=1)
        assert (await app.state.aggregator.business_metrics_once())[m] == ReportingTally(4, 1, 0)


async def _updates(sub: Any, period: str, *, received: int, expected: int | None = None) -> dict[str, Any] | None:
    """The picture of ``period`` in the next picture.updated events once it has ``received`` reporters (of
    ``expected``, if given)."""
    for ev in await Bus.take(sub, 20, timeout=1.0):
        pic = ev["data"]["picture"]
        if pic["period"] == period and pic["completeness"]["received"] == received and (
                expected is None or pic["completeness"]["expected"] == expected):
            return pic  # type: ignore[no-any-return]
    return None


async def test_a_version_announced_on_the_bus_is_recorded_from_when_it_took_effect(
        world: World, fresh_nats: NatsServer, tmp_path: Path) -> None:
    nc = await nats.connect(fresh_nats.url)
    bus = Bus(nc)
    await ensure_streams(bus.js)
    updated = await bus.tap(f"est.picture.updated.{world.muni}.{world.area}", "EST_PICTURES")
    try:
        async with running(world, settings_for(world, fresh_nats.url, tmp_path)) as (base, app), \
                httpx.AsyncClient() as c:
            await bus.send(report(world, f"{world.muni}-a40", {"klotter": 1}, period="2026-W40"))
            await bus.send(report(world, f"{world.muni}-a46", {"klotter": 1}, period="2026-W46"))
            first = await eventually(lambda: _updates(updated, "2026-W46", received=1))
            assert (first["completeness"]["expected"], first["completeness"]["missing_reporters"]) == (3, ["bo", "cy"])

            v2 = _version(world.org, at=MID_W45, areas=dict(world.org.areas), people={
                "bo": world.org.people["bo"].model_copy(update={"roles": ["key_function"]})})
            blob = SnapshotBlob.of(v2)
            await put_object(bus.js, ORG_SNAPSHOTS, blob.name, blob.data)
            await bus.js.publish(ORG_CHANGED, encode(new_event(
                type="se.est.org.changed", source="/test", id=f"org:v{v2.version}", subject="org",
                data=OrgChanged(version=v2.version, snapshot_object=blob.name, snapshot_sha256=blob.sha256,
                                snapshot_bytes=len(blob.data)))))
            # no report came, yet the open W46 picture is recomputed: Bo is no reporter of that week
            again = await eventually(lambda: _updates(updated, "2026-W46", received=1, expected=2))
            assert (again["completeness"]["expected"], again["completeness"]["missing_reporters"]) == (2, ["cy"])
            assert app.state.runtime.directory.snapshot.version == v2.version
            # Bo was a reporter until mid W45: still expected in W40 and W45
            assert _comp(await _picture(c, base, world, world.area, "2026-W40", lambda p: p["reports"] == 1)
                         ) == (3, ["bo", "cy"])
            assert _comp(await _picture(c, base, world, world.area, "2026-W45")) == (3, ["anna", "bo", "cy"])
            assert _comp(await _picture(c, base, world, world.area, "2026-W46")) == (2, ["cy"])
    finally:
        await nc.close()


async def test_a_rebuild_on_a_new_database_records_the_versions_the_object_store_holds(
        world: World, fresh_nats: NatsServer, tmp_path: Path) -> None:
    nc = await nats.connect(fresh_nats.url)
    bus = Bus(nc)
    await ensure_streams(bus.js)
    try:
        v2 = _version(world.org, at=MID_W45, areas=dict(world.org.areas), people={
            "bo": world.org.people["bo"].model_copy(update={"roles": ["key_function"]})})
        for snap in (world.org, v2):
            blob = SnapshotBlob.of(snap)
            await put_object(bus.js, ORG_SNAPSHOTS, blob.name, blob.data)
        await bus.send(report(world, f"{world.muni}-a40", {"klotter": 1}, period="2026-W40"))
        await bus.send(report(world, f"{world.muni}-a46", {"klotter": 1}, period="2026-W46"))
        settings = settings_for(world, fresh_nats.url, tmp_path / "new")
        result = await rebuild_async(settings)
        assert result.reports_stored == 2
        # the service starts on today's version (v2): W40 still expects Bo, who left in W45
        async with running(World(world.muni, world.area, v2), settings) as (base, _app), httpx.AsyncClient() as c:
            assert _comp(await _picture(c, base, world, world.area, "2026-W40")) == (3, ["bo", "cy"])
            assert _comp(await _picture(c, base, world, world.area, "2026-W46")) == (2, ["cy"])
    finally:
        await nc.close()
