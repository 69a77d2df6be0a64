"""The strategic report tells the truth: the area it names, the weeks it names, what is ongoing, what lies
inside the analysed period, the measures' decisions, and charts a person can read.

Each test builds a history whose right answer is known; the handler tests compile through the real use case
on SQLite at a fixed moment (2026-12-02, a Wednesday of week 49)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from est_analysis.documents.report import render_report
from est_analysis.metrics import AnalysisMetrics
from est_analysis.settings import AnalysisSettings
from est_analysis.strategic import db
from est_analysis.strategic.domain import AreaNeed, Rule, persistent_problems, rank_areas, summary_text
from est_analysis.strategic.handlers import (
    Context,
    compile_analysis,
    create_measure,
    handle_picture_published,
    update_measure,
)
from est_shared.checklists import EST_STANDARD_1
from est_shared.clock import SettableClock
from est_shared.db import make_engine, session_factory
from est_shared.org import Principal
from est_shared.periods import Period
from prometheus_client import CollectorRegistry

from tests.analysis.support import org, picture_event, unique

DEFAULT = Rule(3, 4)
TODAY = datetime(2026, 12, 2, 10, tzinfo=UTC)  # week 49 (30 nov – 6 dec) of 2026-T3 (W36 – W53)
T3 = Period.parse("2026-T3").reporting_periods("weekly")


def _history(flags: dict[str, str | None], item: str = "klotter") -> dict[str, dict[str, dict[str, Any]]]:
    return {pid: {item: {"value": 3.0 if f else 1.0, "flag": f, "label_sv": "Klotter", "label_en": "Graffiti"}}
            for pid, f in flags.items()}


# --- the area of greatest need ---------------------------------------------------------------------------

def test_greatest_need_is_the_area_with_persistent_problems_not_the_most_single_flags() -> None:
    alvesta = AreaNeed("alvesta", "Alvesta centrum", 0, 6, 3)  # many single flags, no persistent problem
    berga = AreaNeed("berga", "Berga", 1, 0, 0)
    ranked = rank_areas([alvesta, berga])
    [problem] = persistent_problems(_history({"2026-W40": "high", "2026-W41": "high", "2026-W42": "high"}),
                                    T3[:8], default=DEFAULT)
    text = summary_text("Alvesta kommun", "2026-T3", ranked, {"alvesta": [], "berga": [problem]}, 0)
    assert ranked[0].area_id == "berga"
    assert "Störst behov: Berga (Klotter)." in text["sv"] and "Alvesta centrum" not in text["sv"]
    assert "Greatest need: Berga (Graffiti)." in text["en"]


def test_no_persistent_problem_anywhere_names_no_area() -> None:
    ranked = rank_areas([AreaNeed("alvesta", "Alvesta centrum", 0, 6, 3), AreaNeed("berga", "Berga", 0, 1, 0)])
    text = summary_text("Alvesta kommun", "2026-T3", ranked, {"alvesta": [], "berga": []}, 0)
    assert "Inget område sticker ut." in text["sv"] and "Störst behov" not in text["sv"]
    assert "No area stands out." in text["en"] and "Alvesta" not in text["en"].split("areas.")[1]


def test_the_summary_names_the_period_in_words_and_counts_in_good_grammar() -> None:
    one = rank_areas([AreaNeed("berga", "Berga", 1, 0, 0)])
    [problem] = persistent_problems(_history({"2026-W40": "high", "2026-W41": "high", "2026-W42": "high"}),
                                    T3[:8], default=DEFAULT)
    text = summary_text("Alvesta kommun", "2026-T3", one, {"berga": [problem]}, 1)
    assert text["sv"].startswith("Strategisk analys för Alvesta kommun, tertial 3 2026 (sep–dec): 1 bestående "
                                 "problem i 1 av 1 område."), text["sv"]
    assert text["en"].startswith("Strategic analysis for Alvesta kommun, T3 2026 (Sep–Dec): 1 persistent problem "
                                 "in 1 of 1 area."), text["en"]
    assert text["sv"].endswith("1 åtgärd i kraft under perioden.") and text["en"].endswith("1 measure in force "
                                                                                          "during the period.")
    assert "2026-T3" not in text["sv"] + text["en"]
    year = summary_text("Alvesta kommun", "2026", one, {"berga": []}, 2)
    assert "Alvesta kommun, år 2026:" in year["sv"] and "Alvesta kommun, year 2026:" in year["en"]
    assert "2 åtgärder" in year["sv"] and "2 measures" in year["en"]


# --- the weeks a persistent problem is named with ----------------------------------------------------------

def test_persistent_problem_is_never_dated_in_a_week_without_data() -> None:
    # flagged W47–W49, the latest week with data; k of n would still hold at W50 (W47–W50 has three flags)
    h = _history({"2026-W46": None, "2026-W47": "high", "2026-W48": "high", "2026-W49": "high"})
    [p] = persistent_problems(h, T3, default=DEFAULT)
    assert p.held_at == ["2026-W49"]
    assert [pt.period for pt in p.trend][-1] == "2026-W49"


def test_persistent_problem_is_never_dated_in_a_week_not_yet_begun() -> None:
    # a picture of week 50 (it begins on 7 dec) read on 2 dec names nothing of that week
    h = _history({"2026-W47": "high", "2026-W48": "high", "2026-W49": "high", "2026-W50": "high"})
    [p] = persistent_problems(h, T3, default=DEFAULT, as_of=date(2026, 12, 2))
    assert p.held_at == ["2026-W49"]
    assert p.periods_flagged == ["2026-W47", "2026-W48", "2026-W49"]


def test_problem_flagged_through_the_latest_week_is_ongoing() -> None:
    h = _history({"2026-W46": None, "2026-W47": "high", "2026-W48": "high", "2026-W49": "high"})
    [p] = persistent_problems(h, T3, default=DEFAULT, resolve_after=2)
    assert p.ongoing
    # one quiet week after it held: with resolve_after=2 the episode is still open; after two it is not
    quiet = {**h, "2026-W50": {"klotter": {"value": 1.0, "flag": None}}}
    assert persistent_problems(quiet, T3, default=DEFAULT, resolve_after=2)[0].ongoing
    quieter = {**quiet, "2026-W51": {"klotter": {"value": 1.0, "flag": None}},
               "2026-W52": {"klotter": {"value": 1.0, "flag": None}}}
    assert not persistent_problems(quieter, T3, default=DEFAULT, resolve_after=2)[0].ongoing


def test_flagged_periods_lie_inside_the_analysed_tertial() -> None:
    t2 = Period.parse("2026-T2").reporting_periods("weekly")  # 2026-W19 … 2026-W35
    h = _history({"2026-W16": None, "2026-W17": "high", "2026-W18": "high", "2026-W19": "high",
                  "2026-W20": "high", "2026-W21": None})
    [p] = persistent_problems(h, t2, default=DEFAULT)
    assert p.periods_flagged == ["2026-W19", "2026-W20"]  # W17 and W18 only feed k of n at W19 and W20
    assert p.held_at == ["2026-W19", "2026-W20", "2026-W21"]
    assert all(pid >= "2026-W19" for pid in p.held_at)


# --- through the use case and into the report --------------------------------------------------------------

@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[Context]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'truth.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(db.metadata.create_all)
    empty = org("m", [])
    yield Context(sessions=session_factory(engine), settings=AnalysisSettings(data_dir=tmp_path, durable="t"),
                  metrics=AnalysisMetrics(CollectorRegistry()), snapshot=lambda: empty, clock=SettableClock(TODAY))
    await engine.dispose()


async def _feed(ctx: Context, m: str, area: str, weeks: dict[str, dict[str, tuple[float, str | None]]]) -> None:
    for week, items in weeks.items():
        assert await handle_picture_published(picture_event(m, area, week, items), ctx=ctx) == "applied"


async def _scenario(ctx: Context) -> tuple[str, str, str]:
    """Area ``calm`` has its three items flagged every second week W40–W49 (never 3 of 4) and so the higher
    need score; ``hot`` has klotter flagged W34–W36 (two of them before the tertial) and W47–W49, the latest
    week, and a picture dated week 50, which has not begun."""
    m, calm, hot = unique("m"), unique("calm"), unique("hot")
    snap = org(m, [calm, hot])
    ctx.snapshot = lambda: snap
    await _feed(ctx, m, calm, {w.id: {code: (3, "high") if i % 2 else (1, None) for code in ("klotter", "brand",
                                                                                            "samling")}
                               for i, w in enumerate(T3[4:14])})
    await _feed(ctx, m, hot, {"2026-W34": {"klotter": (3, "high")}, "2026-W35": {"klotter": (3, "high")},
                              "2026-W36": {"klotter": (3, "high")}, "2026-W37": {"klotter": (1, None)}})
    await _feed(ctx, m, hot, {w: {"klotter": (3, "high"), "samling": (1, None)}
                              for w in ("2026-W47", "2026-W48", "2026-W49", "2026-W50")})
    return m, calm, hot


async def test_compiled_tertial_names_the_right_area_weeks_and_ongoing(ctx: Context) -> None:
    m, calm, hot = await _scenario(ctx)
    body = await compile_analysis(ctx=ctx, municipality_id=m, period="2026-T3")
    ranked = {a["area_id"]: a for a in body["areas_ranked"]}
    assert ranked[calm]["score"] > ranked[hot]["score"] and ranked[calm]["persistent_problems"] == 0
    assert [a["area_id"] for a in body["areas_ranked"]] == [hot, calm]
    assert f"Störst behov: Område {hot} (Klotter)." in body["summary"]["sv"]
    assert f"Område {calm}" not in body["summary"]["sv"]
    area = next(a for a in body["areas"] if a["area_id"] == hot)
    [problem] = area["persistent_problems"]
    assert problem["ongoing"] is True
    assert problem["held_at"] == ["2026-W36", "2026-W37", "2026-W49"]  # weeks with data, none not yet begun
    assert problem["periods_flagged"] == ["2026-W36", "2026-W47", "2026-W48", "2026-W49"]  # inside the tertial
    assert area["periods_begun"][-1] == "2026-W49"
    assert area["completeness"]["periods"] == 14  # W36 … W49: the weeks of the tertial that have begun

    html = render_report(body)
    assert "W50" not in html and "W34" not in html and "W35" not in html
    assert "2026-W36 – 2026-W53 (31 aug – 3 jan)" in html  # the tertial's reporting periods, with their days
    assert "2026-W47 – 2026-W49 (16 nov – 6 dec)" in html and "2026-W36 – 2026-W37 (31 aug – 13 sep)" in html
    assert "<td>ja</td></tr>" in html
    # what the charts say on hovering is in the reader's language with dated weeks, too
    assert "Klotter 2026-W49 (30 nov – 6 dec): 3 (hög)" in html and "(high)" not in html
    assert "Graffiti 2026-W49 (30 Nov – 6 Dec): 3 (high)" in render_report(body, lang="en")


async def test_report_shows_small_multiples_and_each_measures_decisions(ctx: Context) -> None:
    m, calm, hot = await _scenario(ctx)
    snap = ctx.snapshot()
    person = snap.people[f"styr-{m}"]
    styr = Principal(person_id=person.id, name=person.name, actor_id=person.actor, actor_kind="property_company",
                     roles=["styrgrupp"], areas=[calm, hot], municipalities=[m])
    measure = await create_measure(ctx=ctx, principal=styr, values={
        "title": "Klottersanering", "area_id": hot, "items": ["klotter"], "responsible_actor": f"actor-{m}",
        "decided_by": "Styrgruppen 2026-11-02", "start": date(2026, 11, 2), "end": None, "status": "active",
        "reason": "Klotter tre veckor i rad"})
    await update_measure(ctx=ctx, principal=styr, measure_id=measure["id"], reason="Utökad till helger",
                         changes={"title": "Klottersanering alla dagar", "end": date(2026, 12, 31)})
    await update_measure(ctx=ctx, principal=styr, measure_id=measure["id"], reason="Målet nått",
                         changes={"status": "completed"})
    body = await compile_analysis(ctx=ctx, municipality_id=m, period="2026-T3")
    html = render_report(body)

    items_with_data = sum(len(a["trends"]) for a in body["areas"])
    assert items_with_data == 5  # calm: brand, klotter, samling; hot: klotter, samling
    assert len(re.findall(r"<svg class='multiple'", html)) == items_with_data
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", html)
    # the labels of the municipality's checklist in force (est-standard@1), not the pictures' own
    labels = {i.code: i.label_sv for i in EST_STANDARD_1.items}
    brand, klotter, samling = labels["brand"], labels["klotter"], labels["samling"]
    assert sorted(captions) == [brand, klotter, klotter, samling, samling]
    assert "…" not in "".join(captions) and "<polyline" in html
    for svg in re.findall(r"<svg class='multiple'.*?</svg>", html, flags=re.S):
        assert "<rect" not in svg  # no legend inside a chart to be cut off
        assert ">1.5</text>" in svg and ">3</text>" in svg  # one shared value axis (samling alone stays at 1)

    decisions = re.findall(r"<li class=\"decision\">(.*?)</li>", html, flags=re.S)
    assert len(decisions) == 3
    assert "Beslutad" in decisions[0] and "av Styr" in decisions[0] and "Klotter tre veckor i rad" in decisions[0]
    assert "Omprövad" in decisions[1] and "Titel: Klottersanering → Klottersanering alla dagar" in decisions[1]
    assert "Slut: – → 2026-12-31" in decisions[1] and "Utökad till helger" in decisions[1]
    assert "Avslutad" in decisions[2] and "Status: pågående → genomförd" in decisions[2]
    assert f"styr-{m}" not in html
    en = render_report(body, lang="en")
    assert "Re-decided" in en and "Status: active → completed" in en and "Trend by item" in en
