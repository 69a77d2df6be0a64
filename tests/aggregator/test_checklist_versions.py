"""Own checklists per municipality and checklist versions: a picture holds its municipality's items, and an
item that continues an earlier code (a rename) keeps one series, with its history, flags and trend.
Real NATS JetStream, real SQLite, HTTP via httpx; the rules in ``domain.lineage`` on plain values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
from est_aggregator.pictures.domain.alerts import carried_alerts
from est_aggregator.pictures.domain.lineage import history_codes, picture_items
from est_aggregator.pictures.domain.picture import build_picture
from est_aggregator.pictures.domain.reports import ReportRecord
from est_shared.bus import ensure_streams
from est_shared.checklists import EST_STANDARD_1, Checklist, ChecklistItem, items_by_code
from est_shared.natsserver import NatsServer
from est_shared.org import AlertRule, AlertRules, Area, Municipality, OrgSnapshot
from est_shared.periods import Period

from tests.aggregator.support import Bus, World, make_world, picture_when, report, running, settings_for

CONFIRM = {"confirm_incomplete": True}


def item(code: str, sv: str, en: str, answer: str = "count", continues: list[str] | None = None) -> ChecklistItem:
    return ChecklistItem.model_validate({"code": code, "label_sv": sv, "label_en": en, "answer": answer,
                                         "continues": continues or []})


def checklist(cid: str, version: int, *items: ChecklistItem) -> Checklist:
    return Checklist(id=cid, version=version, name_sv=cid, name_en=cid, items=list(items))


ORT_1 = checklist("ort", 1, item("klotter", "Klotter", "Graffiti"), item("skadegorelse", "Skadegörelse", "Damage"))
ORT_2 = checklist("ort", 2, item("klotter_tagg", "Klotter och tagg", "Graffiti and tags", continues=["klotter"]),
                  item("skadegorelse", "Skadegörelse på egendom", "Damage to property"))


# --- the rules on plain values ---------------------------------------------------------------------------

def test_history_codes_follow_renames_splits_and_merges_transitively_and_end_a_cycle() -> None:
    v3 = checklist("ort", 3, item("klotter_alla", "Allt klotter", "All graffiti", continues=["klotter_tagg"]),
                   item("mur", "Mur", "Wall", continues=["klotter"]), item("fordon", "Fordon", "Vehicles",
                                                                               continues=["klotter"]),
                   item("skada", "Skada", "Damage", continues=["skadegorelse", "brand"]),
                   item("a", "A", "A", continues=["b"]), item("b", "B", "B", continues=["a"]))
    known = items_by_code([v3, ORT_2, ORT_1])  # the newest version of each code first
    assert history_codes("klotter_alla", known) == ("klotter_alla", "klotter_tagg", "klotter")
    assert history_codes("mur", known) == ("mur", "klotter") and history_codes("fordon", known) == ("fordon", "klotter")
    assert history_codes("skada", known) == ("skada", "skadegorelse", "brand")
    assert history_codes("a", known) == ("a", "b")
    assert history_codes("skadegorelse", known) == ("skadegorelse",)

    chosen = picture_items([v3, ORT_2, ORT_1], [ORT_1])
    codes = [i.code for i in chosen.items]
    # the continued codes are no items of their own; a cycle folds neither of its codes
    assert codes == ["klotter_alla", "mur", "fordon", "skada", "a", "b"]
    assert chosen.continues["klotter_alla"] == ["klotter_tagg", "klotter"]
    assert chosen.continues["mur"] == ["klotter"] and chosen.continues["fordon"] == ["klotter"]
    # the folded codes' items (their notes keep their labels); brand: no checklist here names it
    assert {i.code for i in chosen.folded} == {"klotter_tagg", "klotter", "skadegorelse"}


def _record(rid: str, period: str, checklist_ref: str, answers: dict[str, int]) -> ReportRecord:
    return ReportRecord(report_id=rid, municipality_id="m", area_id="a", period=period, checklist=checklist_ref,
                        answers={k: {"value": v} for k, v in answers.items()}, reporter_id=rid, actor_id="hem",
                        received_at=datetime(2026, 3, 1, tzinfo=UTC))


def test_a_split_gives_each_successor_the_old_whole_value_and_a_merge_sums_the_counts() -> None:
    v2 = checklist("ort", 2, item("mur", "Klotter på mur", "On walls", continues=["klotter"]),
                   item("fordon", "Klotter på fordon", "On vehicles", continues=["klotter"]),
                   item("skada", "Skada och brand", "Damage and fire", continues=["skadegorelse", "brand"]))
    v1 = checklist("ort", 1, *ORT_1.items, item("brand", "Brand", "Fire"))
    chosen = picture_items([v2, v1])
    week = Period.parse("2026-W10")
    by_period = {week.shift(-i): [_record(f"r{i}", week.shift(-i).id, "ort@1",
                                          {"klotter": 2, "skadegorelse": 1, "brand": 1})] for i in range(1, 5)}
    by_period[week] = [_record("now", week.id, "ort@2", {"mur": 2, "fordon": 0, "skada": 2})]
    built = build_picture(municipality_id="m", area_id="a", area_name="A", period=week, superseded=(),
                          items=chosen.items, lineage=chosen.lineage, expected=[], deadline=None,
                          reports_by_period=by_period)
    items = built.picture.items
    assert set(items) == {"mur", "fordon", "skada"}
    assert (items["mur"].previous, items["mur"].baseline, items["mur"].trend) == (2.0, 2.0, "flat")
    assert (items["fordon"].previous, items["fordon"].trend) == (2.0, "down")
    assert (items["skada"].previous, items["skada"].baseline, items["skada"].trend) == (2.0, 2.0, "flat")
    assert built.continues == {"mur": ["klotter"], "fordon": ["klotter"], "skada": ["skadegorelse", "brand"]}
    assert built.continued == {}  # this week's answers were all given to the new codes


# --- two municipalities, each with its own checklist ------------------------------------------------------

NORR_1 = checklist("norr", 1, item("cykelstold", "Cykelstöld", "Bicycle theft"),
                   item("klotter", "Klotter på fasader", "Graffiti on facades", answer="level"))


def two_municipalities() -> tuple[World, str, str]:
    world = make_world()
    other, other_area = f"{world.muni}b", f"{world.area}b"
    munis = {world.muni: Municipality(id=world.muni, name="Norrkommun", area_ids=[world.area],
                                      checklist=NORR_1.ref, accepted_checklists=[EST_STANDARD_1.ref]),
             other: Municipality(id=other, name="Sydkommun", area_ids=[other_area])}
    areas = {**world.org.areas, other_area: Area(id=other_area, name="Sydområdet", municipality_id=other)}
    people = {pid: p.model_copy(update={"areas": [*p.areas, other_area]}) if p.areas else p
              for pid, p in world.org.people.items()}
    world.org = world.org.model_copy(update={"municipalities": munis, "areas": areas, "people": people,
                                             "checklists": {**world.org.checklists, NORR_1.ref: NORR_1}})
    return world, other, other_area


async def test_each_municipalitys_picture_holds_its_own_checklists_items_and_labels(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()  # one stream of its own: the consumer reads every municipality
    try:
        world, other, other_area = two_municipalities()
        nc = await nats.connect(server.url)
        await ensure_streams(nc.jetstream())
        bus = Bus(nc)
        settings = settings_for(world, server.url, tmp_path, report_subject="est.report.submitted.>")
        async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
            await bus.send(report(world, "n1", {"cykelstold": 2, "klotter": 1}, checklist=NORR_1.ref))
            await bus.send(report(world, "n2", {"brand": 1}, checklist=EST_STANDARD_1.ref, reporter="bo"))
            await bus.send(report(world, "s1", {"klotter": 2, "skadegorelse": 1}, area=other_area,
                                  municipality=other))
            north = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
            # its checklist in force first, then what its reports answered against another version it accepts
            assert list(north["items"]) == ["cykelstold", "klotter", *(i.code for i in EST_STANDARD_1.items
                                                                       if i.code != "klotter")]
            assert north["items"]["klotter"]["label_sv"] == "Klotter på fasader"
            assert north["items"]["klotter"]["answer"] == "level" and north["items"]["brand"]["value"] == 1
            assert north["items"]["cykelstold"]["value"] == 2
            south_pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1, area=other_area)
            assert list(south_pic["items"]) == [i.code for i in EST_STANDARD_1.items]
            assert south_pic["items"]["klotter"]["label_sv"] == "Klotter"
            assert "cykelstold" not in south_pic["items"]
            # a period without reports: the checklist in force alone
            quiet = await picture_when(c, base, world, "2026-W11", lambda p: True)
            assert list(quiet["items"]) == ["cykelstold", "klotter"]
            assert quiet["continues"] == {} and north["continued"] == {}
        await nc.close()
    finally:
        server.kill()


# --- a version change in the middle of a tertial ------------------------------------------------------------

def versioned(world: World, *, changed: bool) -> OrgSnapshot:
    """The world's organisation on ``ort@1``, or (``changed``) on ``ort@2`` still accepting ``ort@1``."""
    muni = world.org.municipalities[world.muni]
    muni = muni.model_copy(update={"checklist": ORT_2.ref if changed else ORT_1.ref,
                                   "accepted_checklists": [ORT_1.ref] if changed else []})
    lists = {ORT_1.ref: ORT_1, **({ORT_2.ref: ORT_2} if changed else {})}
    return world.org.model_copy(update={"version": world.org.version + (1 if changed else 0),
                                        "municipalities": {world.muni: muni},
                                        "checklists": {**world.org.checklists, **lists}})


V1_WEEKS = [f"2026-W{w:02d}" for w in range(2, 8)]  # klotter = 2 each week, on ort@1


async def test_a_renamed_item_continues_its_series_flags_and_trend_across_a_version_change(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    world.org = versioned(world, changed=False)
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, app), httpx.AsyncClient() as c:
        for week in V1_WEEKS:
            await bus.send(report(world, f"{world.muni}-{week}", {"klotter": 2, "skadegorelse": 0}, period=week,
                                  checklist=ORT_1.ref))
        before = await picture_when(c, base, world, V1_WEEKS[-1], lambda p: p["reports"] == 1)
        assert list(before["items"]) == ["klotter", "skadegorelse"]
        url = f"{base}/v1/areas/{world.area}/pictures"
        assert (await c.post(f"{url}/{V1_WEEKS[-1]}/publish", headers=world.headers(),
                             json=CONFIRM)).status_code == 200

        # the municipality moves to ort@2 in the middle of the tertial; one reporter still sends ort@1
        world.org = versioned(world, changed=True)
        await app.state.runtime.apply_org(world.org)
        await bus.send(report(world, f"{world.muni}-w8a", {"klotter_tagg": 2}, period="2026-W08",
                              checklist=ORT_2.ref))
        await bus.send(report(world, f"{world.muni}-w8b", {"klotter": 1}, period="2026-W08", reporter="bo",
                              checklist=ORT_1.ref))
        await bus.send(report(world, f"{world.muni}-w9", {"klotter_tagg": 5}, period="2026-W09",
                              checklist=ORT_2.ref))
        w8 = await picture_when(c, base, world, "2026-W08", lambda p: p["reports"] == 2)
        assert list(w8["items"]) == ["klotter_tagg", "skadegorelse"]  # klotter lives on in klotter_tagg
        it = w8["items"]["klotter_tagg"]
        assert it["label_sv"] == "Klotter och tagg" and w8["items"]["skadegorelse"]["label_sv"] == \
            "Skadegörelse på egendom"
        # both codes' answers this week, assessed against klotter's weeks: not "new" but rising
        assert (it["value"], it["previous"], it["baseline"], it["trend"], it["flag"]) == (3, 2, 2, "up", "rising")
        assert w8["continues"] == {"klotter_tagg": ["klotter"]} and w8["continued"] == {"klotter_tagg": ["klotter"]}
        w9 = await picture_when(c, base, world, "2026-W09", lambda p: p["reports"] == 1)
        it9 = w9["items"]["klotter_tagg"]
        assert (it9["value"], it9["previous"], it9["flag"]) == (5, 3, "high") and w9["continued"] == {}

        # one continuous series per item code, with klotter's earlier values
        r = await c.get(url, params={"from": "2026-W02", "to": "2026-W09"}, headers=world.headers())
        assert r.status_code == 200
        series = r.json()
        assert series["continues"] == {"klotter_tagg": {
            "label_sv": "Klotter och tagg", "label_en": "Graffiti and tags",
            "continues": [{"item": "klotter", "label_sv": "Klotter", "label_en": "Graffiti"}]}}
        points: list[dict[str, Any]] = [p["items"]["klotter_tagg"] for p in series["pictures"]]
        assert [p["value"] for p in points] == [2, 2, 2, 2, 2, 2, 3, 5]
        assert [p.get("continued") for p in points] == [["klotter"]] * 7 + [None]
        assert [p["flag"] for p in points][-2:] == ["rising", "high"]
        assert all("klotter" not in p["items"] for p in series["pictures"])
        # the version published under ort@1 is kept as it was sent
        sent = (await c.get(f"{url}/{V1_WEEKS[-1]}", headers=world.headers())).json()
        assert list(sent["items"]) == ["klotter", "skadegorelse"]
        # a late report revises it under ort@2: the rename is named once, the value held against klotter's
        await bus.send(report(world, f"{world.muni}-late", {"klotter": 1}, period=V1_WEEKS[-1], reporter="cy",
                              actor="polis", checklist=ORT_1.ref))
        revised = await picture_when(c, base, world, V1_WEEKS[-1], lambda p: p["version"] == 2)
        assert list(revised["items"]) == ["klotter_tagg", "skadegorelse"]
        assert revised["changes"] == ["reports: 1 → 2", "klotter → klotter_tagg", "klotter_tagg: 2 → 3",
                                      "klotter_tagg flag: - → rising", "completeness.received: 1 → 2"]


LAG_1 = checklist("lag", 1, item("klotter", "Klotter", "Graffiti", answer="level"))
LAG_2 = checklist("lag", 2, item("klotter_tagg", "Klotter och tagg", "Graffiti and tags", answer="level",
                                 continues=["klotter"]))


def test_an_open_alert_of_an_earlier_code_goes_to_the_item_that_continues_it() -> None:
    assert carried_alerts(["klotter"], {"klotter_tagg": ["klotter"]}) == [("klotter", "klotter_tagg")]
    assert carried_alerts(["klotter", "mur"], {"mur": ["klotter"], "fordon": ["klotter"]}) == [("klotter", "fordon")]
    assert carried_alerts(["klotter"], {"brand": ["skadegorelse"]}) == []


async def test_an_alert_goes_on_across_a_rename_and_resolves_once(world: World, bus: Bus, nats_url: str,
                                                                  tmp_path: Path) -> None:
    raised = await bus.tap(f"est.alert.raised.{world.muni}.>", "EST_ALERTS")
    resolved = await bus.tap(f"est.alert.resolved.{world.muni}.>", "EST_ALERTS")
    # an alert ends at its first quiet period here (the default waits for three)
    muni = world.org.municipalities[world.muni].model_copy(
        update={"alerts": AlertRules(default=AlertRule(quiet_periods=1))})
    on = {ref: world.org.model_copy(update={
        "version": world.org.version + n, "checklists": {**world.org.checklists, LAG_1.ref: LAG_1, LAG_2.ref: LAG_2},
        "municipalities": {world.muni: muni.model_copy(update={"checklist": ref})}})
        for n, ref in enumerate((LAG_1.ref, LAG_2.ref))}
    world.org = on[LAG_1.ref]
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, app), httpx.AsyncClient() as c:
        url = f"{base}/v1/areas/{world.area}/pictures"
        await bus.send(report(world, "g1", {"klotter": 3}, period="2026-W20", checklist=LAG_1.ref))
        await picture_when(c, base, world, "2026-W20", lambda p: p["reports"] == 1)
        assert (await c.post(f"{url}/2026-W20/publish", headers=world.headers(), json=CONFIRM)).status_code == 200
        [ev] = await Bus.take(raised)
        assert ev["data"]["item"] == "klotter"

        await app.state.runtime.apply_org(on[LAG_2.ref])
        await bus.send(report(world, "g2", {"klotter_tagg": 3}, period="2026-W21", checklist=LAG_2.ref))
        await picture_when(c, base, world, "2026-W21", lambda p: p["reports"] == 1)
        assert (await c.post(f"{url}/2026-W21/publish", headers=world.headers(), json=CONFIRM)).status_code == 200
        # still high under its new code: neither resolved nor raised again
        assert await Bus.take(raised, timeout=1.0) == [] and await Bus.take(resolved, timeout=0.5) == []

        await bus.send(report(world, "g3", {"klotter_tagg": 0}, period="2026-W22", checklist=LAG_2.ref))
        await picture_when(c, base, world, "2026-W22", lambda p: p["reports"] == 1)
        assert (await c.post(f"{url}/2026-W22/publish", headers=world.headers(), json=CONFIRM)).status_code == 200
        [done] = await Bus.take(resolved)
        assert done["data"]["alert_id"] == ev["id"] and done["data"]["item"] == "klotter_tagg"
        assert "Klotter och tagg" in done["data"]["message"]["sv"]
        alerts = (await c.get(f"{base}/v1/areas/{world.area}/alerts", headers=world.headers())).json()
        assert [(a["item"], a["status"]) for a in alerts] == [("klotter", "resolved")]
