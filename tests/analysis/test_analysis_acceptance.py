"""The issue's acceptance test: persistent graffiti in one area, a measure that works in another.

History goes through real NATS JetStream as ``se.est.picture.published`` events; the measure is decided
over HTTP; the tertial and quarter analyses must show exactly the scenario.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import nats
from est_analysis.strategic import db
from est_shared.bus import publish_event
from est_shared.periods import Period
from est_shared.subjects import picture_published

from tests.analysis.support import (
    MEASURE_WEEK,
    PERSISTENT_WEEKS,
    T3_2026,
    acceptance_history,
    auth,
    compile_after_t3,
    org,
    unique,
)
from tests.support import eventually


async def test_persistent_graffiti_and_measure_effect_show_in_tertial_and_quarter_analysis(
        service: Any, nats_url: str) -> None:
    m, a, b = unique("m"), unique("hot"), unique("treated")
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    alerts: list[dict[str, Any]] = []

    async def on_alert(msg: Any) -> None:
        alerts.append(json.loads(msg.data))

    await nc.subscribe(f"est.alert.*.{m}.>", cb=on_alert)
    try:
        async with service(m) as (base, app), httpx.AsyncClient(base_url=base, timeout=20) as c:
            await app.state.runtime.apply_org(org(m, [a, b]))
            compile_after_t3(app)
            start = Period.parse(MEASURE_WEEK).start
            measure = {"title": "Klottersanering inom 24 timmar", "area_id": b, "items": ["klotter"],
                       "responsible_actor": f"actor-{m}", "decided_by": "Styrgruppen 2026-11-02",
                       "start": start.isoformat(), "end": "2027-06-30", "status": "active",
                       "resources": {"hours": 120, "money_sek": 60000}}
            r = await c.post("/v1/measures", json=measure, headers=auth("styr", m))
            assert r.status_code == 201, r.text
            measure_id = r.json()["id"]

            events = acceptance_history(m, a, b)
            for ev in events:
                await publish_event(js, picture_published(m, ev.data.picture.area_id), ev)

            async def all_consumed() -> bool:
                async with app.state.analysis.sessions() as s:
                    return len(await db.area_pictures(s, a)) + len(await db.area_pictures(s, b)) == len(events)

            await eventually(all_consumed, timeout=20)

            # --- the tertial (the municipality's own analysis period) ---
            r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"}, headers=auth("styr", m))
            assert r.status_code == 201, r.text
            t3 = r.json()
            hot = _area(t3, a)
            assert hot["reporting_periods"] == T3_2026
            [problem] = hot["persistent_problems"]
            assert problem["item"] == "klotter" and (problem["k"], problem["n"]) == (3, 4)
            assert problem["periods_flagged"] == PERSISTENT_WEEKS and len(problem["periods_flagged"]) == 12
            assert problem["held_at"][0] == PERSISTENT_WEEKS[2]  # k=3 is reached in the third flagged week
            assert [pt["value"] for pt in problem["trend"]] == [1] * 4 + [3] * 12 + [1] * 2
            assert [pt["flag"] for pt in problem["trend"]] == [None] * 4 + ["high"] * 12 + [None] * 2
            assert {pp["item"] for pp in t3["persistent_problems"] if pp["area_id"] == a} == {"klotter"}

            treated = _area(t3, b)
            [m_out] = treated["measures"]
            assert m_out["id"] == measure_id and m_out["start"] == start.isoformat()
            [effect] = m_out["effect"]
            assert effect["item"] == "klotter" and effect["direction"] == "fell"
            assert effect["before_mean"] > effect["after_mean"]
            assert (effect["before_mean"], effect["after_mean"], effect["periods_compared"]) == (3.0, 1.0, 8)
            assert effect["after_periods"][0] == MEASURE_WEEK  # the week holding the start counts as "after"
            assert effect["before_periods"][-1] == Period.parse(MEASURE_WEEK).prev().id
            assert effect["change_pct"] == -66.7

            ranked = [x["area_id"] for x in t3["areas_ranked"]]
            assert ranked == [a, b]
            assert t3["areas_ranked"][0]["score"] > t3["areas_ranked"][1]["score"]
            assert [x["area_id"] for x in t3["areas"]] == [a, b]  # areas listed by need too

            # --- the quarter holding the twelve weeks ---
            r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-Q4"}, headers=auth("kf", m))
            assert r.status_code == 201, r.text
            q4 = r.json()
            hot_q = _area(q4, a)
            assert hot_q["reporting_periods"][0] == "2026-W40" and hot_q["reporting_periods"][-1] == "2026-W53"
            [pq] = hot_q["persistent_problems"]
            assert pq["item"] == "klotter" and pq["periods_flagged"] == PERSISTENT_WEEKS
            [eq] = _area(q4, b)["measures"][0]["effect"]
            assert eq["direction"] == "fell" and eq["before_mean"] > eq["after_mean"]
            assert [x["area_id"] for x in q4["areas_ranked"]] == [a, b]

            # --- the readable report says the same in Swedish ---
            html = (await c.get(f"/v1/analyses/{t3['id']}/report.html", headers=auth("styr", m))).text
            assert "Klottersanering inom 24 timmar" in html and "minskade" in html and "3 → 1" in html
            assert html.index(f"Område {a}") < html.index(f"Område {b}")

            # --- and the persistent problem was raised once, on the bus, when k of n first held ---
            raised = await eventually(lambda: _raised(alerts, a))
            assert [x["id"] for x in raised] == [f"persistent:{a}:klotter:{PERSISTENT_WEEKS[2]}"]
    finally:
        await nc.close()


def _area(body: dict[str, Any], area_id: str) -> dict[str, Any]:
    return next(x for x in body["areas"] if x["area_id"] == area_id)


async def _raised(alerts: list[dict[str, Any]], area_id: str) -> list[dict[str, Any]]:
    return [x for x in alerts if x["type"] == "se.est.alert.raised" and x["data"]["area_id"] == area_id]
