"""Analysis figures: a tertial analysis over years of weekly history, and how its cost scales.

History goes straight onto EST_PICTURES as ``se.est.picture.published`` events (publish_async), the analysis
service (a real process) consumes it, then ``POST /v1/analyses`` is timed for three municipalities:
25 areas × 5 years, 50 areas × 5 years and 50 areas × 2.5 years of weekly pictures.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import nats
from est_shared.bus import encode, ensure_streams, publish_event
from est_shared.checklists import EST_STANDARD_1
from est_shared.events import (
    Completeness,
    ItemSummary,
    OrgChanged,
    PictureData,
    PicturePublished,
    new_event,
)
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token
from est_shared.periods import Period
from est_shared.subjects import ORG_CHANGED, picture_published

from bench.common import Env, Row, metric_sum, record

TOKEN = "bench-analysis"
PERIOD = "2026-T3"
ITEMS = [i for i in EST_STANDARD_1.items if i.code in (
    "skadegorelse", "klotter", "nedskrapning", "brand", "samling", "narkotika", "buskorning", "berusning",
    "halvoffentligt", "samlad_bedomning")]


def _org(munis: dict[str, int]) -> OrgSnapshot:
    municipalities, areas = {}, {}
    for m, n in munis.items():
        ids = [f"{m}-a{i}" for i in range(n)]
        municipalities[m] = Municipality(id=m, name=f"Benchkommun {m}", analysis_period="tertial", area_ids=ids)
        areas.update({a: Area(id=a, name=f"Område {a}", municipality_id=m) for a in ids})
    boss = Person(id="bench-boss", name="Bench", actor="kommunen", roles=["admin", "styrgrupp"],
                  municipalities=list(munis), token_sha256=hash_token(TOKEN))
    return OrgSnapshot(version=1, municipalities=municipalities, areas=areas,
                       actors={"kommunen": Actor(id="kommunen", name="Kommunen", kind="municipality")},
                       people={boss.id: boss})


def _weeks(years: float) -> list[Period]:
    last = Period.parse(PERIOD).reporting_periods("weekly")[-1]
    count = round(52.18 * years)
    return [last.shift(-i) for i in range(count)][::-1]


def _history(m: str, areas: int, years: float, seed: int) -> list[tuple[str, bytes, str]]:
    """(subject, payload, id) of weekly published pictures, week by week across the areas."""
    rnd = random.Random(seed)
    out = []
    hot = {a: rnd.random() < 0.3 for a in range(areas)}  # some areas have recurring trouble
    for week in _weeks(years):
        for i in range(areas):
            a = f"{m}-a{i}"
            summaries = {}
            for it in ITEMS:
                base = 1.2 if hot[i] else 0.5
                v = max(0, round(rnd.gauss(base, 0.9))) if it.answer == "count" else max(0, min(3, round(
                    rnd.gauss(base, 0.8))))
                flag = "high" if v >= 3 else ("rising" if rnd.random() < 0.05 else None)
                summaries[it.code] = ItemSummary(item=it.code, answer=it.answer, label_sv=it.label_sv,
                                                 label_en=it.label_en, value=float(v), reports=1 if v else 0,
                                                 flag=flag)  # type: ignore[arg-type]
            data = PicturePublished(picture=PictureData(
                municipality_id=m, area_id=a, area_name=f"Område {a}", period=week.id, status="published",
                version=1, reports=4, items=summaries,
                completeness=Completeness(expected=4, received=4, on_time=4, rate=1.0)))
            ev = new_event(type="se.est.picture.published", source="/bench", data=data,
                           id=f"picture:{a}:{week.id}:v1", subject=a)
            out.append((picture_published(m, a), encode(ev), ev.id))
    return out


async def _load(url: str, org: OrgSnapshot, messages: list[tuple[str, bytes, str]]) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await ensure_streams(js)
    await publish_event(js, ORG_CHANGED, new_event(type="se.est.org.changed", source="/bench", id="org:bench:1",
                                                   data=OrgChanged(version=1, snapshot=org.model_dump(mode="json"))))
    t0 = time.perf_counter()
    for subject, body, msg_id in messages:
        await js.publish_async(subject, body, headers={"Nats-Msg-Id": msg_id})
    await js.publish_async_completed()
    dt = time.perf_counter() - t0
    await nc.close()
    return dt


def wait_consumed(url: str, pictures: int, *, timeout: float) -> float:
    """Seconds until the analysis service at ``url`` has consumed ``pictures`` pictures."""
    t0 = time.perf_counter()
    while metric_sum(url, "est_analysis_pictures_consumed_total") < pictures:
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("analysis did not consume the history in time")
        time.sleep(0.3)
    return time.perf_counter() - t0


def _compile(client: httpx.Client, m: str, repeats: int) -> tuple[float, dict[str, Any]]:
    times, body = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = client.post("/v1/analyses", json={"municipality_id": m, "period": PERIOD})
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
        body = r.json()
    return statistics.median(times), body


def fig_analysis(base: Path, quick: bool) -> None:
    years = 2.0 if quick else 5.0
    plan = {"s25": (25, years), "s50": (50, years), "h50": (50, years / 2)}
    env = Env(base, "analysis")
    try:
        org = _org({m: n for m, (n, _) in plan.items()})
        messages = []
        for seed, (m, (n, y)) in enumerate(plan.items()):
            messages += _history(m, n, y, seed)
        pub = asyncio.run(_load(env.nats.url, org, messages))
        print(f"  published {len(messages):,} pictures in {pub:.1f} s", flush=True)
        svc = env.service("analysis", EST_ANALYSIS_AUTO_COMPILE="false")
        consumed = wait_consumed(svc.url, len(messages), timeout=900)
        print(f"  consumed {len(messages):,} pictures in {consumed:.1f} s "
              f"({len(messages) / consumed:,.0f}/s, with k-of-n alerts)", flush=True)
        rps = len(Period.parse(PERIOD).reporting_periods("weekly"))
        with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120) as c:
            _compile(c, "s25", 1)  # warm-up
            t = {m: _compile(c, m, 3)[0] for m in plan}
        per = {m: t[m] / (n * rps) for m, (n, _) in plan.items()}
        print(f"  tertial analysis: 25 areas {t['s25'] * 1000:.0f} ms, 50 areas {t['s50'] * 1000:.0f} ms "
              f"({years:g} y history); 50 areas with {years / 2:g} y history {t['h50'] * 1000:.0f} ms", flush=True)
        record(Row(f"analysis: tertial, 50 areas × {years:g} years weekly", t["s50"] * 1000, "ms",
                   None, "", "< 2000 ms", t["s50"] < 2.0))
        ratio = per["s50"] / per["s25"]
        record(Row("analysis: time per area-period, 50 vs 25 areas", ratio, "× (ratio)", None, "",
                   "0.67–1.5 (linear in areas × periods)", 0.67 <= ratio <= 1.5))
        hist = t["s50"] / t["h50"]
        record(Row(f"analysis: {years:g} vs {years / 2:g} years of history (50 areas)", hist, "× (time ratio)", None,
                   "", "≤ 3 (at most linear in history; the window is bounded)", hist <= 3.0))
        record(Row("analysis: history consumed (pictures with k-of-n)", len(messages) / consumed, "pictures/s",
                   None, "", "(reported)", None))
        from est_analysis.app import rebuild
        from est_analysis.settings import AnalysisSettings

        fresh = env.dir / "rebuilt"
        fresh.mkdir()
        result = asyncio.run(rebuild(AnalysisSettings(nats_url=env.nats.url, data_dir=fresh), batch=1000))
        assert result.applied == len(messages), result
        record(Row("analysis: rebuild from EST_PICTURES (fresh SQLite)", result.events / result.seconds,
                   "pictures/s", len(messages) / consumed, "live consumption", "(reported)", None))
    finally:
        env.close()


FIGURES = {"analysis": fig_analysis}
