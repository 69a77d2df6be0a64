"""A checklist version change in the middle of a tertial: the item that replaces an earlier one (``continues``)
keeps one series in the analysis, its persistent problem (and alert) goes on across the change, labels come
from the version in force and the report states the mapping. Real NATS JetStream, real SQLite."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import nats
from est_analysis.strategic import db
from est_analysis.strategic.domain import (
    continuations,
    continue_series,
    inherited_overrides,
    moved_problems,
    vocabulary,
)
from est_shared.bus import publish_event
from est_shared.checklists import Checklist, ChecklistItem
from est_shared.clock import SettableClock
from est_shared.org import OrgSnapshot
from est_shared.periods import Period
from est_shared.subjects import picture_published

from tests.analysis.support import auth, org, picture_event, unique
from tests.support import eventually


def item(code: str, sv: str, en: str, continues: list[str] | None = None) -> ChecklistItem:
    return ChecklistItem(code=code, label_sv=sv, label_en=en, answer="level", continues=continues or [])


ORT_1 = Checklist(id="ort", version=1, name_sv="Ort", name_en="Ort",
                  items=[item("klotter", "Klotter", "Graffiti"), item("brand", "Brand", "Fire")])
ORT_2 = Checklist(id="ort", version=2, name_sv="Ort", name_en="Ort",
                  items=[item("klotter_tagg", "Klotter och tagg", "Graffiti and tags", ["klotter"]),
                         item("brand", "Anlagd brand", "Arson")])
T1_WEEKS = [p.id for p in Period.parse("2026-T1").reporting_periods("weekly")]  # 2026-W01 … 2026-W18
V1_WEEKS = [f"2026-W{w:02d}" for w in range(2, 8)]
V2_WEEKS = [f"2026-W{w:02d}" for w in range(8, 13)]


def versioned(m: str, area: str, *, changed: bool) -> OrgSnapshot:
    base = org(m, [area], version=2 if changed else 1)
    muni = base.municipalities[m].model_copy(update={"checklist": (ORT_2 if changed else ORT_1).ref,
                                                     "accepted_checklists": [ORT_1.ref] if changed else []})
    lists = {ORT_1.ref: ORT_1, **({ORT_2.ref: ORT_2} if changed else {})}
    return base.model_copy(update={"municipalities": {m: muni}, "checklists": {**base.checklists, **lists}})


def test_the_series_continues_with_the_newest_labels_and_the_mapping_is_told() -> None:
    vocab = vocabulary([ORT_2, ORT_1])
    history = {"2026-W07": {"klotter": {"value": 2, "flag": "high", "label_sv": "Klotter"},
                            "brand": {"value": 1, "flag": None, "label_sv": "Brand"}},
               "2026-W08": {"klotter_tagg": {"value": 1, "flag": None}, "klotter": {"value": 3, "flag": "rising"}},
               "2026-W09": {"klotter_tagg": {"value": 1, "flag": None}}}
    out = continue_series(history, vocab)
    assert set(out["2026-W07"]) == {"klotter_tagg", "brand"}
    assert out["2026-W07"]["klotter_tagg"]["value"] == 2 and out["2026-W07"]["klotter_tagg"]["flag"] == "high"
    assert out["2026-W07"]["klotter_tagg"]["continued"] == ["klotter"]
    assert out["2026-W07"]["brand"]["label_sv"] == "Anlagd brand"  # the version in force names it
    # both codes in one picture (published before the aggregator continued them): a level is the highest
    assert (out["2026-W08"]["klotter_tagg"]["value"], out["2026-W08"]["klotter_tagg"]["flag"]) == (3, "rising")
    assert "continued" not in out["2026-W09"]["klotter_tagg"]
    [c] = continuations(history, vocab)
    assert c["since"] == "2026-W08"
    assert c["text"] == {"sv": "Klotter och tagg (ersätter Klotter från v. 8 2026)",
                         "en": "Graffiti and tags (replaces Graffiti from week 8 2026)"}
    assert continuations({"2026-W09": history["2026-W09"]}, vocab) == []  # nothing earlier to tell of
    open_state = {"status": "open", "alert_id": "persistent:a:klotter:2026-W04"}
    assert moved_problems({"klotter": open_state}, vocab) == [("klotter", "klotter_tagg")]
    assert moved_problems({"klotter": open_state, "klotter_tagg": open_state}, vocab) == []
    assert moved_problems({"klotter": open_state}, vocabulary([ORT_1])) == []


def test_an_item_takes_the_k_of_n_override_of_the_code_it_continues_unless_it_has_its_own() -> None:
    vocab = vocabulary([ORT_2, ORT_1])
    got = inherited_overrides({"klotter": {"k": 2, "n": 3}, "m1/klotter": {"k": 1, "n": 2}}, vocab, "m1")
    assert got["klotter_tagg"] == {"k": 2, "n": 3} and got["m1/klotter_tagg"] == {"k": 1, "n": 2}
    own = inherited_overrides({"klotter": {"k": 2, "n": 3}, "klotter_tagg": {"k": 4, "n": 6}}, vocab, None)
    assert own["klotter_tagg"] == {"k": 4, "n": 6}
    assert inherited_overrides({"brand": {"k": 2, "n": 2}}, vocab, "m1") == {"brand": {"k": 2, "n": 2}}


async def _collect(nc: Any, subject: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    async def cb(msg: Any) -> None:
        got.append(json.loads(msg.data))

    await nc.subscribe(subject, cb=cb)
    return got


async def test_a_version_change_mid_tertial_keeps_the_persistent_problem_and_the_report_tells_it(
        service: Any, nats_url: str) -> None:
    m, a = unique("m"), unique("a")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    alerts = await _collect(nc, f"est.alert.*.{m}.>")
    try:
        async with service(m) as (base, app):
            app.state.analysis.clock = SettableClock(datetime(2026, 5, 10, 12, tzinfo=UTC))
            await app.state.runtime.apply_org(versioned(m, a, changed=False))
            for week in V1_WEEKS:  # klotter high every week on ort@1
                await publish_event(js, picture_published(m, a), picture_event(
                    m, a, week, {"klotter": (3, "high"), "brand": (0, None)}))
            raised = await eventually(lambda: [e for e in alerts if e["type"] == "se.est.alert.raised"] or None)
            assert raised[0]["id"] == f"persistent:{a}:klotter:2026-W04"

            async def applied(week: str) -> bool | None:
                async with app.state.analysis.sessions() as s:
                    return await db.picture_version(s, a, week) is not None or None

            await eventually(lambda: applied(V1_WEEKS[-1]))  # every week of ort@1 is in before the change

            # the municipality moves to ort@2: klotter_tagg continues klotter, still high
            await app.state.runtime.apply_org(versioned(m, a, changed=True))
            for week in V2_WEEKS:
                await publish_event(js, picture_published(m, a), picture_event(
                    m, a, week, {"klotter_tagg": (3, "high"), "brand": (0, None)}))

            await eventually(lambda: applied(V2_WEEKS[-1]))
            await asyncio.sleep(0.5)  # any alert the change caused would be relayed by now
            # no resolution of klotter and no second alert: the problem goes on as klotter_tagg
            assert [e["type"] for e in alerts] == ["se.est.alert.raised"]
            async with app.state.analysis.sessions() as s:
                states = await db.area_problem_states(s, a)
            assert set(states) == {"klotter_tagg"}
            assert states["klotter_tagg"]["status"] == "open"
            assert states["klotter_tagg"]["alert_id"] == f"persistent:{a}:klotter:2026-W04"

            async with httpx.AsyncClient(base_url=base, timeout=10) as c:
                # a measure decided on klotter before the change: its effect reads klotter_tagg after it
                r = await c.post("/v1/measures", headers=auth("styr", m), json={
                    "title": "Sanering inom ett dygn", "area_id": a, "items": ["klotter"],
                    "responsible_actor": f"actor-{m}", "decided_by": "Styrgruppen 2026-02-20",
                    "start": Period.parse("2026-W10").start.isoformat(), "status": "active"})
                assert r.status_code == 201, r.text
                r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T1"},
                                 headers=auth("kf", m))
                assert r.status_code == 201, r.text
                body = r.json()
                [area] = body["areas"]
                [problem] = area["persistent_problems"]
                assert problem["item"] == "klotter_tagg" and problem["label_sv"] == "Klotter och tagg"
                assert problem["periods_flagged"] == V1_WEEKS + V2_WEEKS and problem["ongoing"]
                assert problem["held_at"] == [f"2026-W{w:02d}" for w in range(4, 13)]
                assert [t["item"] for t in area["trends"]] == ["klotter_tagg"]
                assert area["trends"][0]["continues"] == ["klotter"]
                assert area["trends"][0]["continued_in"] == V1_WEEKS  # marked: the weeks of klotter's values
                points = area["trends"][0]["points"]
                assert [(p["period"], p["value"]) for p in points] == [
                    (w, 3 if w in V1_WEEKS + V2_WEEKS else None) for w in T1_WEEKS]
                [effect] = area["measures"][0]["effect"]
                assert (effect["item"], effect["direction"], effect["periods_compared"]) == ("klotter", "unchanged", 3)
                assert (effect["before_mean"], effect["after_mean"]) == (3, 3)
                [mapping] = body["continuations"]
                assert mapping["item"] == "klotter_tagg" and mapping["since"] == "2026-W08"
                assert mapping["continues"] == [{"item": "klotter", "label_sv": "Klotter", "label_en": "Graffiti"}]
                sv = (await c.get(f"/v1/analyses/{body['id']}/report.html", headers=auth("kf", m))).text
                en = (await c.get(f"/v1/analyses/{body['id']}/report.html", params={"lang": "en"},
                                  headers=auth("kf", m))).text
                assert "Ändrade checklistpunkter" in sv
                assert "Klotter och tagg (ersätter Klotter från v. 8 2026)" in sv
                assert "Graffiti and tags (replaces Graffiti from week 8 2026)" in en
                assert ">Klotter<" not in sv  # the old code is no series of its own
    finally:
        await nc.close()
