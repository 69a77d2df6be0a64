"""An area split in two (``Area.replaces``): the analysis lists the new areas with what they replace and shows
the old area's earlier periods beside them; the new areas' completeness begins at their first period (real
NATS, SQLite)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import nats
from est_shared.bus import publish_event
from est_shared.org import Area
from est_shared.periods import Period
from est_shared.subjects import picture_published

from tests.analysis.support import T3_2026, auth, compile_after_t3, org, picture_event, unique
from tests.support import eventually

SPLIT_AT = Period.parse("2026-W47").start_at() + timedelta(days=2)  # mid W47: the new areas begin in W48
OLD_WEEKS = T3_2026[:T3_2026.index("2026-W47")]  # W36 … W46: the old area's pictures
NEW_WEEKS = T3_2026[T3_2026.index("2026-W48"):]  # W48 … W53


def _picture(m: str, a: str, week: str, name: str, **kw: Any) -> Any:
    high = week >= "2026-W44"
    ev = picture_event(m, a, week, {"klotter": (3 if high else 1, "high" if high else None)}, **kw)
    pic = ev.data.picture.model_copy(update={"area_name": name})
    return ev.model_copy(update={"data": ev.data.model_copy(update={"picture": pic})})


async def test_the_new_areas_show_the_old_area_they_replace_and_begin_at_their_first_period(
        service: Any, nats_url: str) -> None:
    m = unique("m")
    old, oster, vaster = f"centrum-{m}", f"oster-{m}", f"vaster-{m}"
    base_org = org(m, [oster, vaster])
    snap = base_org.model_copy(update={"areas": {
        oster: Area(id=oster, name="Ljungby öster", municipality_id=m, replaces=[old], since=SPLIT_AT),
        vaster: Area(id=vaster, name="Ljungby väster", municipality_id=m, replaces=[old], since=SPLIT_AT)}})
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        async with service(m) as (base, app):
            await app.state.runtime.apply_org(snap)
            compile_after_t3(app)
            for week in OLD_WEEKS:
                await publish_event(js, picture_published(m, old), _picture(m, old, week, "Ljungby centrum",
                                                                            expected=4, received=3))
            for week in NEW_WEEKS:
                for a, name in ((oster, "Ljungby öster"), (vaster, "Ljungby väster")):
                    await publish_event(js, picture_published(m, a), _picture(m, a, week, name, expected=2,
                                                                              received=2))
            async with httpx.AsyncClient(base_url=base, timeout=10) as c:
                async def compiled() -> dict[str, Any] | None:
                    r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"},
                                     headers=auth("kf", m))
                    assert r.status_code == 201, r.text
                    body: dict[str, Any] = r.json()
                    done = all(x["completeness"]["pictures"] == len(NEW_WEEKS) and x["replaces"]
                               and x["replaces"][0]["completeness"]["pictures"] == len(OLD_WEEKS)
                               for x in body["areas"])
                    return body if done else None

                body = await eventually(compiled, timeout=15)
                assert {x["area_id"] for x in body["areas"]} == {oster, vaster}  # the old area is gone
                for area in body["areas"]:
                    assert area["replaces_text"] == {"sv": "ersätter Ljungby centrum", "en": "replaces Ljungby centrum"}
                    # completeness counts from the area's first period (W48), not the tertial's start
                    comp = area["completeness"]
                    assert [p["period"] for p in comp["per_period"]] == NEW_WEEKS
                    assert (comp["periods"], comp["pictures"], comp["expected"], comp["received"]) == (
                        len(NEW_WEEKS), len(NEW_WEEKS), 2 * len(NEW_WEEKS), 2 * len(NEW_WEEKS))
                    assert comp["rate"] == 1.0
                    [earlier] = area["replaces"]
                    assert (earlier["area_id"], earlier["area_name"]) == (old, "Ljungby centrum")
                    assert earlier["periods"] == [*OLD_WEEKS, "2026-W47"]  # the periods before the split
                    assert (earlier["completeness"]["pictures"], earlier["completeness"]["expected"],
                            earlier["completeness"]["received"]) == (len(OLD_WEEKS), 4 * len(OLD_WEEKS),
                                                                     3 * len(OLD_WEEKS))
                    [klotter] = earlier["trends"]
                    assert klotter["item"] == "klotter" and klotter["flagged"] == 3  # W44, W45, W46
                html = (await c.get(f"/v1/analyses/{body['id']}/report.html", headers=auth("styr", m))).text
                assert html.count("ersätter Ljungby centrum") == 2
                assert "Före områdets första period: Ljungby centrum" in html
                en = (await c.get(f"/v1/analyses/{body['id']}/report.html", params={"lang": "en"},
                                  headers=auth("styr", m))).text
                assert "replaces Ljungby centrum" in en and "Before the area&#39;s first period" in en
    finally:
        await nc.close()
