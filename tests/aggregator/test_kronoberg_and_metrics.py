"""Kronoberg aggregates in pictures (exact for police/social services, coarsened for others and in events)
and the business metrics on /metrics."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl
from est_aggregator.pictures.domain.kronoberg import coarsen_kronoberg, kronoberg_aggregates, merge_kronoberg
from est_shared.bus import publish_event
from est_shared.events import ForfeitureRecorded, new_event
from est_shared.org import Area, Person, hash_token, period_deadline
from est_shared.periods import Period

from tests.aggregator.support import Bus, World, eventually, picture_when, report, running, settings_for

FRI_2230 = datetime(2026, 3, 6, 21, 30, tzinfo=UTC)  # fredag 22:30 Stockholm, ISO week 2026-W10


def protocol(i: int, band: str = "15_17", *, at: datetime = FRI_2230, place: str | None = "centrum",
             beverage: str = "starköl", litres: float = 1.5, containers: int = 3, **over: Any) -> dict[str, Any]:
    return {"protocol_id": f"p{i}", "occurred_at": at, "age_band": band, "place": place,
            "items": [{"beverage": beverage, "volume_liters": litres, "containers": containers}], **over}


def test_kronoberg_aggregates_count_beverages_ages_guardians_sources_places_weekdays_and_times() -> None:
    k = kronoberg_aggregates([
        protocol(1, "under_15", guardian_contacted=True, guardian_came=True, source="förälder"),
        protocol(2, "15_17", guardian_contacted=True, direct_forfeiture=True, source="langare"),
        protocol(3, "18_19", beverage="vin", litres=0.75, containers=1, place=None, source="langare",
                 at=datetime(2026, 3, 7, 13, 0, tzinfo=UTC)),
    ])
    assert k is not None
    assert k["interventions"] == 3 and k["litres_by_beverage"] == {"starköl": 3.0, "vin": 0.75}
    assert k["litres_total"] == 3.75 and k["containers"] == 7
    assert k["containers_by_beverage"] == {"starköl": 6, "vin": 1}
    assert k["age_bands"] == {"under_15": 1, "15_17": 1, "18_19": 1} and k["share_under_18"] == 0.67
    assert (k["guardian_contacted"], k["guardian_came"], k["direct_forfeiture"]) == (2, 1, 1)
    assert k["sources"] == {"förälder": 1, "langare": 2} and k["by_place"] == {"centrum": 2}
    assert k["by_weekday"] == {"fre": 2, "lör": 1} and k["by_time_of_day"] == {"18-24": 2, "12-18": 1}
    assert kronoberg_aggregates([]) is None


def test_small_counts_are_coarsened_litres_rounded_and_shares_hidden_below_the_threshold() -> None:
    exact = kronoberg_aggregates([protocol(i, "15_17" if i else "18_19", guardian_contacted=i == 0,
                                           litres=1.4) for i in range(4)])
    c = coarsen_kronoberg(exact)
    assert c is not None and c["coarsened"] is True
    assert c["interventions"] == 4 and c["guardian_contacted"] == "<3" and c["guardian_came"] == 0
    assert c["age_bands"] == {"under_15": 0, "15_17": 3, "18_19": "<3"} and c["share_under_18"] == 0.75
    assert c["litres_by_beverage"] == {"starköl": 6} and c["litres_total"] == 6
    few = coarsen_kronoberg(kronoberg_aggregates([protocol(1), protocol(2)]))
    assert few is not None and few["interventions"] == "<3" and few["by_weekday"] == {"fre": "<3"}
    assert few["litres_total"] == "<3 interventions" and few["litres_by_beverage"] == "<3 interventions"
    assert few["share_under_18"] == "<3 interventions"
    five = coarsen_kronoberg(kronoberg_aggregates([protocol(1), protocol(2)]), 5)
    assert five is not None and five["interventions"] == "<5"
    assert coarsen_kronoberg(few) == few  # coarsening twice changes nothing


def test_municipality_totals_merge_the_areas_exactly() -> None:
    a = kronoberg_aggregates([protocol(1, "under_15")])
    b = kronoberg_aggregates([protocol(2, "18_19", beverage="sprit", litres=0.5)])
    m = merge_kronoberg([a, None, b])
    assert m is not None and m["interventions"] == 2 and m["share_under_18"] == 0.5
    assert m["litres_by_beverage"] == {"sprit": 0.5, "starköl": 1.5} and m["by_place"] == {"centrum": 2}
    assert merge_kronoberg([None]) is None


def _with_police(world: World) -> World:
    pol = Person(id="pol", name="Polis", actor="polis", roles=["key_function"], areas=[world.area],
                 token_sha256=hash_token(f"tok-pol-{world.muni}"))
    org = world.org.model_copy(update={"people": {**world.org.people, "pol": pol}})
    return World(world.muni, world.area, org)


async def _forfeit(bus: Bus, world: World, i: int, band: str, **over: Any) -> None:
    data = ForfeitureRecorded(protocol_id=f"{world.muni}-{i}", municipality_id=world.muni, area_id=world.area,
                              place="centrum", age_band=band, occurred_at=FRI_2230,  # type: ignore[arg-type]
                              items=[{"beverage": "starköl", "volume_liters": 1.5, "containers": 3}], **over)
    ev = new_event(type="se.est.forfeiture.recorded", source="/test", data=data, id=data.protocol_id)
    await publish_event(bus.js, f"est.forfeiture.recorded.{world.muni}", ev)


async def _two_protocols(c: httpx.AsyncClient, base: str, bus: Bus, world: World, second_band: str) -> None:
    """A report and two protocols of week 2026-W10 (guardians contacted for both, came for the first)."""
    await bus.send(report(world, f"{world.muni}-r", {"berusning": 2}))
    for i, band in enumerate(["15_17", second_band]):
        await _forfeit(bus, world, i, band, guardian_contacted=True, guardian_came=i == 0)
    await picture_when(c, base, world, "2026-W10", lambda p: (p.get("kronoberg") or {}).get("interventions") == 2,
                       who="pol")


async def test_police_see_exact_kronoberg_figures_others_and_events_see_them_coarsened(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    world = _with_police(world)
    updated = await bus.tap(f"est.picture.updated.{world.muni}.>", "EST_PICTURES")
    published = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")
    settings = settings_for(world, nats_url, tmp_path, forfeiture_subject=f"est.forfeiture.recorded.{world.muni}")
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, f"{world.muni}-r", {"berusning": 2}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1)
        await _forfeit(bus, world, 0, "15_17", guardian_contacted=True, guardian_came=True, source="langare")
        k = (await picture_when(c, base, world, "2026-W10", lambda p: p.get("kronoberg") is not None,
                                who="pol"))["kronoberg"]
        assert k["interventions"] == 1 and k["litres_total"] == 1.5 and k["guardian_came"] == 1
        assert k["sources"] == {"langare": 1} and k["coarsened"] is False
        k = (await picture_when(c, base, world, "2026-W10", lambda p: True))["kronoberg"]
        assert k["interventions"] == "<3" and k["litres_total"] == "<3 interventions"
        assert k["share_under_18"] == "<3 interventions" and k["sources"] == {"langare": "<3"}
        assert k["by_weekday"] == {"fre": "<3"} and k["by_time_of_day"] == {"18-24": "<3"}

        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers(),
                         json={"confirm_incomplete": True})
        assert r.status_code == 200
        [ev] = await Bus.take(published)
        assert ev["data"]["picture"]["kronoberg"]["interventions"] == "<3"  # leaves coarsened, whoever gets it
        # the published picture: exact for the police, coarsened for the key function, also by version
        for params in ({}, {"version": 1}):
            url = f"{base}/v1/areas/{world.area}/pictures/2026-W10"
            pol = (await c.get(url, params=params, headers=world.headers("pol"))).json()
            kf = (await c.get(url, params=params, headers=world.headers())).json()
            assert pol["kronoberg"]["interventions"] == 1 and kf["kronoberg"]["interventions"] == "<3"
            assert "kronoberg_exact" not in pol and "kronoberg_exact" not in kf
        muni_url = f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10"
        pol_m = (await c.get(muni_url, headers=world.headers("pol"))).json()
        kf_m = (await c.get(muni_url, headers=world.headers())).json()
        assert pol_m["totals"]["kronoberg"]["interventions"] == 1
        assert kf_m["totals"]["kronoberg"]["interventions"] == "<3"
        assert kf_m["areas"][0]["kronoberg"]["interventions"] == "<3"
    for ev in await Bus.take(updated, 5, timeout=1.0):
        k = ev["data"]["picture"].get("kronoberg")
        assert k is None or k["coarsened"] is True


async def test_three_interventions_show_exact_totals_with_small_parts_coarsened(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    settings = settings_for(world, nats_url, tmp_path, forfeiture_subject=f"est.forfeiture.recorded.{world.muni}")
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, f"{world.muni}-r", {"berusning": 2}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1)
        for i, band in enumerate(["15_17", "18_19", "under_15"]):
            await _forfeit(bus, world, i, band, guardian_contacted=band != "18_19")
        pic = await picture_when(c, base, world, "2026-W10",
                                 lambda p: (p.get("kronoberg") or {}).get("interventions") == 3)
        k = pic["kronoberg"]
        assert k["litres_by_beverage"] == {"starköl": 4} and k["share_under_18"] == 0.67
        assert k["guardian_contacted"] == "<3" and k["by_weekday"] == {"fre": 3} and k["by_place"] == {"centrum": 3}
        assert k["age_bands"] == {"under_15": "<3", "15_17": "<3", "18_19": "<3"} and k["containers"] == 9


async def test_a_protocol_recorded_after_its_week_was_published_makes_a_revision(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    world = _with_police(world)
    settings = settings_for(world, nats_url, tmp_path, forfeiture_subject=f"est.forfeiture.recorded.{world.muni}")
    tap = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await _two_protocols(c, base, bus, world, "18_19")
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers(),
                         json={"confirm_incomplete": True})
        assert r.status_code == 200 and r.json()["version"] == 1, r.text
        # pictures publish at their deadline, so a protocol written up afterwards is the normal case
        await _forfeit(bus, world, 2, "under_15", guardian_contacted=True, guardian_came=True)
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["version"] == 2, who="pol", timeout=30)
        k = pic["kronoberg"]
        assert (k["interventions"], k["guardian_contacted"], k["guardian_came"]) == (3, 3, 2), k
        assert "Kronobergsmodellens siffror har ändrats / The Kronoberg figures changed" in pic["changes"]
        first, second = await Bus.take(tap, 2, timeout=30)
        assert (first["data"]["picture"]["version"], second["data"]["picture"]["version"]) == (1, 2)
        assert second["data"]["revision"] is True
        assert second["data"]["picture"]["kronoberg"]["interventions"] == 3
        assert not any(ch for ch in second["data"]["changes"] if "2 →" in ch or "→ 3" in ch), \
            "the change list names no small Kronoberg numbers"
        r = await c.get(f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10", headers=world.headers("pol"))
        assert r.json()["totals"]["kronoberg"]["interventions"] == 3


def _sample(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_metrics_show_reports_expected_received_late_and_the_publish_delay(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    period = "2026-W48"
    deadline = period_deadline(world.org.municipalities[world.muni], Period.parse(period))
    settings = settings_for(world, nats_url, tmp_path, business_metrics_interval=0)
    async with running(world, settings) as (base, app), httpx.AsyncClient() as c:
        agg = app.state.aggregator
        agg.clock = lambda: deadline + timedelta(minutes=10)
        await bus.send(report(world, f"{world.muni}-a", {"brand": 1}, period=period))  # anna, on time
        late = report(world, f"{world.muni}-b", {"brand": 1}, period=period, reporter="bo")
        late = late.model_copy(update={"data": late.data.model_copy(update={"late": True})})
        await bus.send(late)
        await picture_when(c, base, world, period, lambda p: p["reports"] == 2)
        assert [r.version for r in await agg.auto_publish_once()] == [1]
        tallies = await agg.business_metrics_once()
        assert tallies[world.muni].expected == 3 and tallies[world.muni].received == 2
        assert tallies[world.muni].late == 1
        text = (await c.get(f"{base}/metrics")).text
        assert _sample(text, "est_aggregator_reports_expected", municipality=world.muni) == 3
        assert _sample(text, "est_aggregator_reports_received", municipality=world.muni) == 2
        assert _sample(text, "est_aggregator_reports_late", municipality=world.muni) == 1
        assert _sample(text, "est_aggregator_publish_delay_seconds_count", mode="auto") == 1
        assert _sample(text, "est_aggregator_publish_delay_seconds_sum", mode="auto") == 600
        assert _sample(text, "est_aggregator_publish_delay_seconds_bucket", le="300.0", mode="auto") == 0
        assert _sample(text, "est_aggregator_publish_delay_seconds_bucket", le="900.0", mode="auto") == 1


async def test_business_gauges_refresh_in_the_background(world: World, nats_url: str, tmp_path: Path) -> None:
    settings = settings_for(world, nats_url, tmp_path, business_metrics_interval=0.1)
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        async def shown() -> bool:
            text = (await c.get(f"{base}/metrics")).text
            return _sample(text, "est_aggregator_reports_expected", municipality=world.muni) == 3

        await eventually(shown)
        await asyncio.sleep(0)


async def test_a_forfeiture_table_from_an_older_version_gets_the_new_columns(tmp_path: Path) -> None:
    from est_aggregator.pictures import db
    from est_shared.db import make_engine
    from sqlalchemy import inspect, text

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/old.db")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE forfeitures (protocol_id VARCHAR(100) PRIMARY KEY, "
                                "municipality_id VARCHAR(100) NOT NULL)"))
        await conn.run_sync(db.add_missing_columns)
        await conn.run_sync(db.add_missing_columns)  # twice: nothing more to add
        cols = await conn.run_sync(lambda c: {col["name"] for col in inspect(c).get_columns("forfeitures")})
    await engine.dispose()
    assert {"guardian_came", "source"} <= cols


async def test_a_reports_table_from_an_older_version_gets_the_new_index(tmp_path: Path) -> None:
    """The refresher's look-up of an area's corrections needs (area_id, supersedes); older files lack it."""
    from est_aggregator.pictures import db
    from est_shared.db import make_engine
    from sqlalchemy import inspect

    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path}/old.db")
    async with engine.begin() as conn:
        await conn.run_sync(db.metadata.create_all)
        await conn.exec_driver_sql("DROP INDEX ix_reports_area_supersedes")
        await conn.run_sync(db.add_missing_columns)
        await conn.run_sync(db.add_missing_columns)  # twice: nothing more to add
        names = await conn.run_sync(lambda c: {ix["name"] for ix in inspect(c).get_indexes("reports")})
        plan = (await conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT area_id, supersedes FROM reports "
            "WHERE area_id IN ('a', 'b') AND supersedes IS NOT NULL")).all()
    await engine.dispose()
    assert "ix_reports_area_supersedes" in names
    assert "ix_reports_area_supersedes" in str(plan)


async def test_the_municipalitys_kronoberg_figures_per_area_and_as_csv_and_xlsx(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    import csv
    import io

    import openpyxl

    world = _with_police(world)
    settings = settings_for(world, nats_url, tmp_path, forfeiture_subject=f"est.forfeiture.recorded.{world.muni}")
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await _two_protocols(c, base, bus, world, "under_15")
        url = f"{base}/v1/municipalities/{world.muni}/kronoberg/2026-W10"
        pol = (await c.get(url, headers=world.headers("pol"))).json()
        assert pol["period"] == "2026-W10" and pol["totals"]["interventions"] == 2
        assert pol["totals"]["guardian_came"] == 1 and pol["totals"]["litres_by_beverage"] == {"starköl": 3.0}
        [area] = pol["areas"]
        assert area["area_id"] == world.area and area["area_name"] and area["kronoberg"]["interventions"] == 2
        kf = (await c.get(url, headers=world.headers())).json()
        assert kf["totals"]["interventions"] == "<3" and kf["areas"][0]["kronoberg"]["guardian_came"] == "<3"

        r = await c.get(url, params={"format": "csv"}, headers=world.headers("pol"))
        assert r.status_code == 200, r.text
        assert r.headers["content-disposition"] == f'attachment; filename="kronoberg-{world.muni}-2026-W10.csv"'
        rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline=""), delimiter=";"))
        whole = rows[0]
        assert whole["Område"].startswith("Hela ") and whole["Ingripanden"] == "2"
        assert whole["Vårdnadshavare kom"] == "1" and whole["Liter starköl"] in ("3", "3.0", "3,0")
        assert whole["Förpackningar starköl"] == "6" and whole["Från"] == "2026-03-02"
        assert rows[1]["Område"] == area["area_name"] and rows[1]["Ingripanden"] == "2"
        r = await c.get(url, params={"format": "xlsx"}, headers={**world.headers("pol"), "Accept-Language": "en"})
        assert r.status_code == 200, r.text
        sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
        assert sheet is not None
        values = [[cell.value for cell in row] for row in sheet.iter_rows()]
        assert "Interventions" in values[0] and "Litres strong beer" in values[0]
        assert values[1][values[0].index("Interventions")] == 2
        # what the JSON coarsens for others, the download coarsens too
        r = await c.get(url, params={"format": "csv"}, headers=world.headers())
        others = csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline=""), delimiter=";")
        assert next(iter(others))["Ingripanden"] == "<3"
        assert (await c.get(url, params={"format": "csv"})).status_code == 401
        assert (await c.get(f"{base}/v1/municipalities/nowhere/kronoberg/2026-W10",
                            headers=world.headers("pol"))).status_code == 404


async def test_kronoberg_figures_over_a_range_of_weeks_and_a_tertial_add_up_the_weeks(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    """A police officer's figures of weeks 10-12, of a tertial and of a year are the sums of the weeks' figures
    (from the protocols themselves), with the dates they cover; as CSV and XLSX too."""
    world = _with_police(world)
    settings = settings_for(world, nats_url, tmp_path, forfeiture_subject=f"est.forfeiture.recorded.{world.muni}")
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await _two_protocols(c, base, bus, world, "under_15")
        for i, (at, period) in enumerate([(FRI_2230 + timedelta(days=14), "2026-W12"),
                                          (datetime(2026, 5, 13, 10, 0, tzinfo=UTC), "2026-W20")], start=2):
            data = ForfeitureRecorded(protocol_id=f"{world.muni}-{i}", municipality_id=world.muni,
                                      area_id=world.area, place="torget", age_band="18_19", occurred_at=at,
                                      items=[{"beverage": "vin", "volume_liters": 0.75, "containers": 1}])
            ev = new_event(type="se.est.forfeiture.recorded", source="/test", data=data, id=data.protocol_id)
            await publish_event(bus.js, f"est.forfeiture.recorded.{world.muni}", ev)
            await picture_when(c, base, world, period, lambda p: p.get("kronoberg") is not None, who="pol")
        muni = f"{base}/v1/municipalities/{world.muni}"
        pol = world.headers("pol")

        def week(p: str) -> Any:
            return c.get(f"{muni}/kronoberg/{p}", headers=pol)

        weeks = {p: (await week(p)).json()["totals"] for p in ("2026-W10", "2026-W11", "2026-W12", "2026-W20")}
        assert weeks["2026-W11"] is None and weeks["2026-W10"]["interventions"] == 2
        r = await c.get(f"{muni}/kronoberg", params={"from": "2026-W10", "to": "2026-W12"}, headers=pol)
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["period"], body["from"], body["to"]) == ("2026-W10–2026-W12", "2026-W10", "2026-W12")
        assert (body["start"], body["end"]) == ("2026-03-02", "2026-03-22")
        assert body["weeks"] == ["2026-W10", "2026-W11", "2026-W12"]
        total = body["totals"]
        assert total["interventions"] == weeks["2026-W10"]["interventions"] + weeks["2026-W12"]["interventions"] == 3
        assert total["litres_by_beverage"] == {"starköl": 3.0, "vin": 0.75}
        assert body["areas"][0]["kronoberg"]["interventions"] == 3

        t1 = (await week("2026-T1")).json()
        t2 = (await week("2026-T2")).json()
        assert t1["weeks"][0] == "2026-W01" and t1["weeks"][-1] == "2026-W18" and t1["totals"]["interventions"] == 3
        assert t2["totals"]["interventions"] == weeks["2026-W20"]["interventions"] == 1
        assert (await week("2026")).json()["totals"]["interventions"] == 4
        # others see the range coarsened, as they see a week
        kf = (await c.get(f"{muni}/kronoberg/2026-T1", headers=world.headers())).json()
        assert kf["totals"]["interventions"] == 3 and kf["totals"]["guardian_came"] == "<3"

        r = await c.get(f"{muni}/kronoberg/2026-T1", params={"format": "csv"}, headers=pol)
        assert r.headers["content-disposition"] == f'attachment; filename="kronoberg-{world.muni}-2026-T1.csv"'
        rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline=""), delimiter=";"))
        assert (rows[0]["Period"], rows[0]["Från"], rows[0]["Till"]) == ("2026-T1", "2025-12-29", "2026-05-03")
        assert rows[0]["Ingripanden"] == "3" and rows[0]["Liter vin"] == "0,75"
        r = await c.get(f"{muni}/kronoberg", params={"from": "2026-W10", "to": "2026-W12", "format": "xlsx"},
                        headers=pol)
        assert r.headers["content-disposition"] == (
            f'attachment; filename="kronoberg-{world.muni}-2026-W10-2026-W12.xlsx"')
        sheet = openpyxl.load_workbook(io.BytesIO(r.content)).active
        assert sheet is not None
        values = [[cell.value for cell in row] for row in sheet.iter_rows()]
        assert values[1][values[0].index("Ingripanden")] == 3 and values[1][values[0].index("Från")] == "2026-03-02"

        for params in ({"from": "2026-W12", "to": "2026-W10"}, {"from": "2026-T1", "to": "2026-W10"},
                       {"from": "2020-W01", "to": "2026-W10"}, {"from": "2026-W10"}):
            r = await c.get(f"{muni}/kronoberg", params=params, headers=pol)
            assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), params
        assert (await c.get(f"{muni}/kronoberg", params={"from": "2026-W10", "to": "2026-W12"})).status_code == 401


async def test_protocols_recorded_outside_every_area_count_in_the_municipalitys_kronoberg_figures(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    """A protocol recorded without an area (a festival outside the areas, say) is in no area's picture, but the
    municipality's Kronoberg figures of its week, range and tertial hold it, as a row "Utanför områdena", for
    those who see every area of the municipality; someone who sees only some of them does not get it."""
    world = _with_police(world)
    other = Area(id=f"{world.area}-b", name="Område B", municipality_id=world.muni)
    muni = world.org.municipalities[world.muni]
    partial = Person(id="pol2", name="Polis två", actor="polis", roles=["key_function"], areas=[world.area],
                     token_sha256=hash_token(f"tok-pol2-{world.muni}"))
    both = world.org.people["pol"].model_copy(update={"areas": [world.area, other.id]})
    org = world.org.model_copy(update={
        "areas": {**world.org.areas, other.id: other},
        "municipalities": {world.muni: muni.model_copy(update={"area_ids": [*muni.area_ids, other.id]})},
        "people": {**world.org.people, "pol": both, "pol2": partial}})
    world = World(world.muni, world.area, org)
    settings = settings_for(world, nats_url, tmp_path, forfeiture_subject=f"est.forfeiture.recorded.{world.muni}")
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await _two_protocols(c, base, bus, world, "under_15")
        data = ForfeitureRecorded(protocol_id=f"{world.muni}-outside", municipality_id=world.muni, area_id=None,
                                  place=None, age_band="15_17", occurred_at=FRI_2230 + timedelta(hours=1),
                                  items=[{"beverage": "vin", "volume_liters": 0.75, "containers": 1}])
        ev = new_event(type="se.est.forfeiture.recorded", source="/test", data=data, id=data.protocol_id)
        await publish_event(bus.js, f"est.forfeiture.recorded.{world.muni}", ev)
        url = f"{base}/v1/municipalities/{world.muni}/kronoberg"

        async def week() -> Any:
            body = (await c.get(f"{url}/2026-W10", headers=world.headers("pol"))).json()
            return body if (body["totals"] or {}).get("interventions") == 3 else None

        body = await eventually(week)
        rows = {a["area_id"]: a for a in body["areas"]}
        assert rows[world.area]["kronoberg"]["interventions"] == 2
        assert rows[None]["area_name"] == "Utanför områdena" and rows[None]["kronoberg"]["interventions"] == 1
        assert body["totals"]["litres_by_beverage"] == {"starköl": 3.0, "vin": 0.75}
        for path in ("2026-T1", "?from=2026-W09&to=2026-W11"):
            got = (await c.get(f"{url}/{path}" if not path.startswith("?") else f"{url}{path}",
                               headers=world.headers("pol"))).json()
            assert got["totals"]["interventions"] == 3 and got["areas"][-1]["area_id"] is None, got
        # in the CSV too, as a row of its own
        r = await c.get(f"{url}/2026-W10", params={"format": "csv"}, headers=world.headers("pol"))
        assert "Utanför områdena;" in r.content.decode("utf-8-sig")
        # the area's own picture is unchanged
        picture = (await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", headers=world.headers("pol"))).json()
        assert picture["kronoberg"]["interventions"] == 2
        # someone who sees only one of the areas gets neither the row nor the protocol in the totals
        some = (await c.get(f"{url}/2026-W10", headers={"Authorization": f"Bearer tok-pol2-{world.muni}"})).json()
        assert [a["area_id"] for a in some["areas"]] == [world.area] and some["totals"]["interventions"] == 2
