"""Unit tests of the aggregator's picture rules (pure functions, no broker, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from est_aggregator.pictures.domain.alerts import Earlier, OpenAlert, alert_transitions
from est_aggregator.pictures.domain.picture import build_picture, item_summary, picture_changes
from est_aggregator.pictures.domain.reports import ExpectedReporter, ReportRecord, effective_reports
from est_aggregator.pictures.domain.tally import PeriodTally, Rules, assess, completeness, item_totals, period_totals
from est_shared.checklists import EST_STANDARD_1
from est_shared.events import ItemSummary
from est_shared.periods import Period
from hypothesis import given, settings
from hypothesis import strategies as st

P = Period.parse("2026-W48")
T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)
DEADLINE = datetime(2026, 11, 30, 8, tzinfo=UTC)


def rep(rid: str, answers: dict[str, Any], *, reporter: str = "anna", actor: str = "hem", period: str = "2026-W48",
        supersedes: str | None = None, received: datetime = T0, nothing: bool = False, late: bool = False
        ) -> ReportRecord:
    return ReportRecord(report_id=rid, municipality_id="m", area_id="a", period=period, checklist="est-standard@1",
                        answers={k: (v if isinstance(v, dict) else {"value": v}) for k, v in answers.items()},
                        reporter_id=reporter, actor_id=actor, received_at=received, nothing_to_report=nothing,
                        supersedes=supersedes, late=late)


def item(code: str) -> Any:
    found = EST_STANDARD_1.item(code)
    assert found is not None
    return found


def test_count_items_are_summed_and_places_counted() -> None:
    reports = [rep("1", {"skadegorelse": {"value": 2, "places": ["centrum"]}}),
               rep("2", {"skadegorelse": {"value": 3, "places": ["centrum", "torget"]}}, reporter="bo"),
               rep("3", {"skadegorelse": 0}, reporter="cy")]
    t = item_totals(item("skadegorelse"), reports)
    assert t.value == 5
    assert t.reports == 2
    assert t.places == {"centrum": 2, "torget": 1}


def test_level_items_take_the_max_and_keep_the_mean() -> None:
    t = item_totals(item("klotter"), [rep("1", {"klotter": 1}), rep("2", {"klotter": 3}), rep("3", {"klotter": 2})])
    assert t.value == 3
    assert t.mean == 2.0


def test_boolean_items_count_yes_answers() -> None:
    t = item_totals(item("tillhall"), [rep("1", {"tillhall": True}), rep("2", {"tillhall": False}),
                                       rep("3", {"tillhall": True})])
    assert t.value == 2
    assert t.reports == 2


def test_superseded_report_never_counts_whatever_the_order() -> None:
    original = rep("orig", {"skadegorelse": 4})
    correction = rep("fix", {"skadegorelse": 1}, supersedes="orig")
    for order in ([original, correction], [correction, original]):
        eff = effective_reports(order)
        assert [r.report_id for r in eff] == ["fix"]
        assert item_totals(item("skadegorelse"), eff).value == 1
    # the correction stored in another period still removes the original here
    assert effective_reports([original], superseded={"orig"}) == []


def test_baseline_trend_and_flags() -> None:
    rules = Rules()
    # count: high at max(3, 2 x baseline)
    a = assess("count", 6, [1, 2, 1, 2, 1, 2, 1, 2], rules)
    assert a.previous == 2 and a.baseline == 1.5 and a.trend == "up" and a.flag == "high"
    # rising: above previous and >= 1.5 x baseline, but not high
    a = assess("count", 2, [1, 1, 1, 1, 1, 1, 1, 1], rules)
    assert a.trend == "up" and a.flag == "rising"
    # level >= 2 is high
    assert assess("level", 2, [2] * 8, rules).flag == "high"
    assert assess("level", 2, [2] * 8, rules).trend == "flat"
    # new: non-zero after a quiet history
    a = assess("count", 1, [0] * 8, rules)
    assert a.trend == "new" and a.flag == "new"
    # too little history to call it new, but the trend says so
    a = assess("count", 1, [None] * 7 + [0], rules)
    assert a.trend == "new" and a.flag == "rising"
    # down and nothing flagged; missing periods are not zeros
    a = assess("count", 1, [None, None, 4, None, 2, None, None, 3], rules)
    assert a.baseline == 3 and a.trend == "down" and a.flag is None
    # no history, zero: flat, no flag
    a = assess("count", 0, [None] * 8, rules)
    assert a.previous is None and a.baseline is None and a.trend == "flat" and a.flag is None


def test_completeness_counts_expected_on_time_late_and_missing() -> None:
    expected = [ExpectedReporter("anna", "hem"), ExpectedReporter("bo", "hem"), ExpectedReporter("cy", "polis"),
                ExpectedReporter("di", "polis")]
    reports = [rep("1", {}, reporter="anna"),
               rep("2", {}, reporter="bo", received=DEADLINE + timedelta(hours=1)),
               rep("3", {}, reporter="cy", actor="polis", nothing=True),
               rep("4", {}, reporter="eve", actor="other")]  # left the organisation: still counted
    c = completeness(reports, expected, deadline=DEADLINE)
    assert (c.expected, c.received, c.on_time, c.late, c.nothing_to_report) == (4, 4, 3, 1, 1)
    assert c.rate == 0.75
    assert c.missing_reporters == ["di"]
    assert c.per_actor["hem"] == {"expected": 2, "received": 2, "on_time": 1, "late": 1, "nothing_to_report": 0}
    assert c.per_actor["polis"]["expected"] == 2 and c.per_actor["polis"]["received"] == 1


def _history(values: list[int]) -> dict[Period, list[ReportRecord]]:
    out: dict[Period, list[ReportRecord]] = {}
    for i, v in enumerate(values):
        p = P.shift(i - len(values))
        out[p] = [rep(f"h{i}", {"skadegorelse": v}, period=p.id)]
    return out


def test_picture_has_totals_history_and_a_first_analysis_naming_the_item() -> None:
    by_period = _history([1, 1, 1, 1, 1, 1, 1, 1])
    by_period[P] = [rep("1", {"skadegorelse": {"value": 5, "places": ["centrum"]}, "klotter": 2}),
                    rep("2", {"skadegorelse": 1, "klotter": 1}, reporter="bo")]
    built = build_picture(municipality_id="m", area_id="a", area_name="Araby", period=P, reports_by_period=by_period,
                          superseded=set(), items=EST_STANDARD_1.items,
                          expected=[ExpectedReporter("anna", "hem"), ExpectedReporter("bo", "hem")],
                          deadline=DEADLINE)
    pic = built.picture
    s = pic.items["skadegorelse"]
    assert (s.value, s.previous, s.baseline, s.trend, s.flag) == (6, 1, 1, "up", "high")
    assert s.places == {"centrum": 1}
    assert pic.items["klotter"].value == 2 and pic.items["klotter"].flag == "high"
    assert built.means["klotter"] == 1.5
    assert pic.reports == 2 and pic.completeness.rate == 1.0
    assert "Skadegörelse" in pic.first_analysis["sv"] and "centrum" in pic.first_analysis["sv"]
    assert "Vandalism" in pic.first_analysis["en"] and "Measures should be considered" in pic.first_analysis["en"]
    assert len(pic.items) == len(EST_STANDARD_1.items)


def test_changes_between_versions_are_listed() -> None:
    base = dict(municipality_id="m", area_id="a", area_name="A", period=P, superseded=set(),
                items=EST_STANDARD_1.items, expected=[], deadline=DEADLINE)
    v1 = build_picture(reports_by_period={P: [rep("1", {"klotter": 1})]}, **base).picture  # type: ignore[arg-type]
    v2 = build_picture(reports_by_period={P: [rep("1", {"klotter": 1}), rep("2", {"klotter": 2}, reporter="bo")]},
                       **base).picture  # type: ignore[arg-type]
    changes = picture_changes(v1, v2)
    assert "klotter: 1 → 2" in changes and "reports: 1 → 2" in changes


def test_alerts_are_edge_triggered() -> None:
    raise_, resolve = alert_transitions({}, {"klotter": "high", "brand": None}, period="2026-W48")
    assert raise_ == {"klotter": "flag:high"} and resolve == {}
    still = {"klotter": OpenAlert("flag:high", "2026-W47")}
    raise_, resolve = alert_transitions(still, {"klotter": "rising"}, period="2026-W48")
    assert raise_ == {} and resolve == {}
    # quiet for three published periods (the default ``quiet_periods``): resolved at the third
    assert alert_transitions(still, {"klotter": None}, period="2026-W48") == ({}, {})
    assert alert_transitions(still, {"klotter": None}, period="2026-W49",
                             earlier=[Earlier("2026-W48", {"klotter": None})]) == ({}, {})
    raise_, resolve = alert_transitions(still, {"klotter": None}, period="2026-W50",
                                        earlier=[Earlier("2026-W49", {}), Earlier("2026-W48", {"klotter": None})])
    assert raise_ == {} and resolve == {"klotter": "flag:high"}


_PLACES = st.lists(st.sampled_from(["centrum", "torget", "skolan"]), max_size=3, unique=True)
_ANSWER = st.one_of(st.integers(0, 5), st.booleans()).flatmap(
    lambda v: st.fixed_dictionaries({"value": st.just(v), "places": _PLACES}))
_REPORTS = st.lists(st.dictionaries(st.sampled_from([i.code for i in EST_STANDARD_1.items] + ["unknown"]),
                                    _ANSWER, max_size=6), max_size=25)


def _reference_totals(it: Any, reports: list[ReportRecord]) -> tuple[float, float | None, int, list[tuple[str, int]]]:
    """The rule written the plain way, one item at a time (the oracle of the one-pass implementation)."""
    values = [float(r.answers[it.code]["value"]) for r in reports if it.code in r.answers]
    named = [r for r in reports if it.code in r.answers and float(r.answers[it.code]["value"]) > 0]
    counts: dict[str, int] = {}
    for r in named:
        for p in r.answers[it.code]["places"]:
            counts[p] = counts.get(p, 0) + 1
    places = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: ties keep first-named order
    if it.answer == "count":
        return sum(values), None, len(named), places
    if it.answer == "level":
        return max(values, default=0.0), (round(sum(values) / len(values), 2) if values else None), len(named), places
    return float(sum(1 for v in values if v > 0)), None, len(named), places


@settings(max_examples=150, deadline=None)
@given(_REPORTS)
def test_period_totals_follow_the_rule_for_every_item(answer_sets: list[dict[str, Any]]) -> None:
    """The one-pass totals (what pictures use) equal the rule item by item, places in the same order."""
    reports = [rep(str(i), answers) for i, answers in enumerate(answer_sets)]
    together = period_totals(EST_STANDARD_1.items, reports)
    for it in EST_STANDARD_1.items:
        t = together[it.code]
        assert (t.value, t.mean, t.reports, list(t.places.items())) == _reference_totals(it, reports)
        assert item_totals(it, reports) == t


_TALLIED = st.lists(st.tuples(
    st.dictionaries(st.sampled_from(["skadegorelse", "klotter", "tillhall", "unknown"]), _ANSWER, max_size=3),
    st.sampled_from(["anna", "bo", "cy"]),  # reporter
    st.sampled_from(["hem", "polisen"]),  # their actor then (a reporter may change employer)
    st.booleans(),  # nothing to report
    st.integers(-3, 3),  # hours from the deadline (after it: late)
    st.one_of(st.none(), st.integers(0, 30)),  # supersedes report number (earlier, later or unknown)
    st.integers(1, 4),  # reports in the same batch as this one
), max_size=30)


@settings(max_examples=150, deadline=None)
@given(_TALLIED, st.sets(st.integers(0, 40), max_size=3))
def test_a_tally_added_to_batch_by_batch_equals_one_built_from_all_reports(
        steps: list[tuple[Any, ...]], gone_elsewhere: set[int]) -> None:
    """What the refresher keeps (a tally only added to, built again when it no longer fits) gives the
    same picture as the reports computed from scratch: corrections in any order, late reports,
    reports superseded from another period ("gone_elsewhere"), reports stored out of the order of
    their reception (the database gives them by reception; the tally gets them as they come)."""
    expected = [ExpectedReporter("anna", "hem"), ExpectedReporter("dora", "polisen")]
    reports = [rep(str(i), answers, reporter=who, actor=actor, nothing=nothing,
                   received=DEADLINE + timedelta(hours=h), supersedes=None if sup is None else str(sup))
               for i, (answers, who, actor, nothing, h, sup, _) in enumerate(steps)]

    def picture(**kw: Any) -> str:
        built = build_picture(municipality_id="m", area_id="a", area_name="A", period=P, superseded=kw.pop("gone"),
                              items=EST_STANDARD_1.items, expected=expected, deadline=DEADLINE, **kw).picture
        for summary in built.items.values():  # built unvalidated: it must be what validation would make
            assert ItemSummary(**summary.model_dump()).model_dump_json() == summary.model_dump_json()
        return built.model_dump_json()

    kept: PeriodTally | None = None
    done: list[ReportRecord] = []
    i = 0
    while i < len(reports):
        batch = reports[i:i + steps[i][6]]
        i += len(batch)
        done += batch
        if kept is not None:
            for r in batch:
                kept.add(r)
        # the area's superseded ids as the database gives them after this batch
        gone = {r.supersedes for r in done if r.supersedes} | {str(g) for g in gone_elsewhere if g < i}
        stored = sorted(done, key=lambda r: (r.received_at, r.report_id))  # as reports_for gives them
        if kept is None or not kept.fits(gone):
            kept = PeriodTally.of(stored, gone, DEADLINE)
        assert picture(tallies={P: kept}, reports_by_period={}, gone=gone) == \
            picture(reports_by_period={P: stored}, gone=gone)
        counted = effective_reports(stored, gone)
        for it in EST_STANDARD_1.items:
            t = kept.sums.totals(it)
            assert (t.value, t.mean, t.reports, list(t.places.items())) == _reference_totals(it, counted)
        assert kept.completeness(expected) == completeness(counted, expected, deadline=DEADLINE, all_reports=stored)


def test_item_summary_is_what_model_construct_builds() -> None:
    """``item_summary`` sets what ``model_construct`` sets, without its per-field loop; it holds only for
    a model without aliases, extra fields, private attributes or a post-init hook (checked here, so a
    change of ``ItemSummary`` or of pydantic shows up as a failing test, not as a wrong picture)."""
    assert not ItemSummary.__private_attributes__ and not ItemSummary.__pydantic_post_init__
    assert ItemSummary.model_config.get("extra") in (None, "ignore", "forbid")
    assert all(f.alias is None and f.validation_alias is None for f in ItemSummary.model_fields.values())
    values = {"item": "klotter", "answer": "level", "label_sv": "Klotter", "label_en": "Graffiti", "value": 2.0,
              "reports": 3, "places": {"torget": 2, "skolan": 1}, "previous": 1.0, "baseline": None, "trend": "up",
              "flag": "high"}
    assert list(values) == list(ItemSummary.model_fields)  # every field, in order
    fast, slow = item_summary(dict(values)), ItemSummary.model_construct(**values)
    assert fast == slow == ItemSummary.model_validate(values)
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_fields_set == slow.model_fields_set and fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.model_copy(update={"value": 3.0}).value == 3.0 and fast.value == 2.0
