"""What the steering group's page reads of a measure: names on every measure answer, the effect so far
(values before and after its start, per item), and the actors a measure may name as responsible."""

from __future__ import annotations

from typing import Any

import httpx
import nats
from est_analysis.strategic import db
from est_shared.bus import publish_event
from est_shared.org import Actor, Person, hash_token
from est_shared.periods import Period
from est_shared.subjects import picture_published

from tests.analysis.support import auth, compile_after_t3, org, picture_event, unique
from tests.support import eventually

T3_WEEKS = [p.id for p in Period.parse("2026-T3").reporting_periods("weekly")]  # 2026-W36 … 2026-W53


async def test_a_measure_reads_with_names_and_its_effect_before_and_after_its_start(service: Any,
                                                                                   nats_url: str) -> None:
    m, a = unique("m"), unique("a")
    nc = await nats.connect(nats_url)
    try:
        async with service(m) as (base, app), httpx.AsyncClient(base_url=base, timeout=10) as c:
            await app.state.runtime.apply_org(org(m, [a]))
            compile_after_t3(app)
            values = [3, 3, 2, 3, 1, 0, 1]  # four weeks before the start, three from it on
            js = nc.jetstream()
            for week, v in zip(T3_WEEKS[:7], values, strict=True):
                await publish_event(js, picture_published(m, a), picture_event(m, a, week, {"samling": (v, None)}))

            async def pictures_in() -> bool:
                async with app.state.analysis.sessions() as s:
                    return len(await db.area_pictures(s, a)) == 7

            await eventually(pictures_in)
            measure = {"title": "Fältvandringar", "area_id": a, "items": ["samling", "klotter"],
                       "responsible_actor": f"actor-{m}", "decided_by": "Styrgruppen",
                       "start": Period.parse(T3_WEEKS[4]).start.isoformat(), "status": "active",
                       "resources": {"hours": 40}}
            r = await c.post("/v1/measures", json=measure, headers=auth("styr", m))
            assert r.status_code == 201, r.text
            made = r.json()
            assert made["area_name"] == f"Område {a}" and made["responsible_actor_name"] == "Bostadsbolaget"
            assert made["history"][0]["by_name"] == "Styr"
            assert made["item_labels"]["samling"]["sv"] == "Samling av personer som skapar otrygghet"
            r = await c.patch(f"/v1/measures/{made['id']}", json={"end": "2026-12-31", "reason": "Förlängd"},
                              headers=auth("styr", m))
            assert r.status_code == 200, r.text
            assert [h["by_name"] for h in r.json()["history"]] == ["Styr", "Styr"]
            got = (await c.get(f"/v1/measures/{made['id']}", headers=auth("kf", m))).json()
            assert got["history"][1]["reason"] == "Förlängd" and got["responsible_actor_name"] == "Bostadsbolaget"
            [listed] = (await c.get("/v1/measures", params={"area_id": a}, headers=auth("kf", m))).json()
            assert listed["area_name"] == f"Område {a}"

            r = await c.get(f"/v1/measures/{made['id']}/effect", headers=auth("kf", m))
            assert r.status_code == 200, r.text
            effect = r.json()
            assert effect["start"] == measure["start"]
            samling, klotter = effect["items"]
            assert samling["label_sv"] == "Samling av personer som skapar otrygghet"
            assert [(p["period"], p["value"], p["after"]) for p in samling["points"]] == [
                (w, float(v), i >= 4) for i, (w, v) in enumerate(zip(T3_WEEKS[:7], values, strict=True))]
            # three periods on each side: (3 + 2 + 3) / 3 before, (1 + 0 + 1) / 3 after
            assert samling["periods_compared"] == 3 and samling["direction"] == "fell"
            assert (samling["before_mean"], samling["after_mean"]) == (2.667, 0.667)
            assert samling["before_periods"] == T3_WEEKS[1:4] and samling["after_periods"] == T3_WEEKS[4:7]
            assert klotter["direction"] == "unchanged" and klotter["label_sv"] == "Klotter"  # never reported: 0

            assert (await c.get(f"/v1/measures/{made['id']}/effect", headers=auth("outsider", m))).status_code == 403
            assert (await c.get("/v1/measures/nope/effect", headers=auth("kf", m))).status_code == 404
    finally:
        await nc.close()


async def test_the_actors_a_measure_may_name_are_those_working_in_the_municipality(service: Any) -> None:
    m, a = unique("m"), unique("a")
    async with service(m) as (base, app), httpx.AsyncClient(base_url=base, timeout=10) as c:
        snap = org(m, [a])
        elsewhere = Person(id=f"x-{m}", name="X", actor="grannbolaget", roles=["reporter"], areas=[],
                           municipalities=[f"other-{m}"], token_sha256=hash_token(f"x-{m}"))
        snap = snap.model_copy(update={
            "actors": {**snap.actors, "grannbolaget": Actor(id="grannbolaget", name="Grannbolaget")},
            "people": {**snap.people, elsewhere.id: elsewhere}})
        await app.state.runtime.apply_org(snap)
        r = await c.get("/v1/actors", params={"municipality_id": m}, headers=auth("styr", m))
        assert r.status_code == 200, r.text
        assert r.json() == [{"id": f"actor-{m}", "name": "Bostadsbolaget", "kind": "property_company"}]
        assert (await c.get("/v1/actors", params={"municipality_id": m}, headers=auth("rep", m))).status_code == 403
        r = await c.get("/v1/actors", params={"municipality_id": m}, headers=auth("outsider", m))
        assert r.status_code == 403
