"""Unit tests of the analysis rules: k of n, episodes, ranking, measure effect, the Thursday rule."""

from __future__ import annotations

from datetime import date

import pytest
from est_analysis.strategic.domain import (
    AreaNeed,
    Episode,
    Rule,
    analysis_period_of,
    episodes,
    holds,
    holds_series,
    measure_effect,
    need_score,
    persistent_problems,
    rank_areas,
    rule_for,
)
from est_analysis.strategic.handlers import due_period
from est_shared.periods import Period
from hypothesis import given
from hypothesis import strategies as st

DEFAULT = Rule(3, 4)


def weeks(first: str, count: int) -> list[Period]:
    p = Period.parse(first)
    out = [p]
    while len(out) < count:
        out.append(out[-1].next())
    return out


def history(flags: dict[str, str | None], item: str = "klotter") -> dict[str, dict[str, dict[str, object]]]:
    return {pid: {item: {"value": 2.0 if f else 0.0, "flag": f, "label_sv": "Klotter", "label_en": "Graffiti"}}
            for pid, f in flags.items()}


def test_exactly_k_of_n_is_persistent() -> None:
    h = history({"2026-W10": "high", "2026-W11": None, "2026-W12": "rising", "2026-W13": "new"})
    assert holds(h, "klotter", Period.parse("2026-W13"), DEFAULT)
    assert not holds(h, "klotter", Period.parse("2026-W12"), DEFAULT)


def test_k_minus_one_flags_is_not_persistent() -> None:
    h = history({"2026-W10": "high", "2026-W11": None, "2026-W12": None, "2026-W13": "new"})
    assert not holds(h, "klotter", Period.parse("2026-W13"), DEFAULT)


def test_gaps_without_pictures_count_as_not_flagged() -> None:
    h = history({"2026-W10": "high", "2026-W12": "high", "2026-W13": "high"})  # W11 missing
    assert holds(h, "klotter", Period.parse("2026-W13"), DEFAULT)
    h2 = history({"2026-W09": "high", "2026-W12": "high", "2026-W13": "high"})  # W09 outside the window
    assert not holds(h2, "klotter", Period.parse("2026-W13"), DEFAULT)


def test_fewer_than_n_periods_of_history_still_needs_k_flags() -> None:
    assert holds_series([True, True, True], DEFAULT) == [False, False, True]
    assert holds_series([True, True], DEFAULT) == [False, False]


def test_window_crosses_year_end() -> None:
    h = history({"2026-W52": "high", "2026-W53": "high", "2027-W01": "high"})
    assert holds(h, "klotter", Period.parse("2027-W01"), DEFAULT)


def test_biweekly_periods_are_counted_as_pairs() -> None:
    b = weeks("2026-B47", 1)[0]
    ids = [b.shift(-i).id for i in range(4)][::-1]
    h = history({ids[0]: "high", ids[1]: "high", ids[3]: "rising"})
    assert holds(h, "klotter", b, DEFAULT)
    assert not holds(h, "klotter", b.prev(), DEFAULT)


def test_per_item_override() -> None:
    assert rule_for("brand", DEFAULT, {"brand": {"k": 2, "n": 3}}) == Rule(2, 3)
    assert rule_for("klotter", DEFAULT, {"brand": {"k": 2}}) == DEFAULT
    with pytest.raises(ValueError):
        Rule(5, 4)


def test_episode_opens_once_and_resolves_after_quiet_periods() -> None:
    flags = [True, True, True, True, False, False, False, False, True, True, True]
    eps = episodes(flags, DEFAULT, resolve_after=2)
    # holds at 2..4 (windows with >=3 flags), quiet at 5 and 6 -> resolved at 6; reopens at 10
    assert eps == [Episode(2, 6), Episode(10, None)]


def test_persistent_problems_report_periods_and_trend() -> None:
    ps = weeks("2026-W10", 6)
    h = history({"2026-W10": "high", "2026-W11": "high", "2026-W12": None, "2026-W13": "rising",
                 "2026-W14": None, "2026-W15": None})
    [p] = persistent_problems(h, ps, default=DEFAULT)
    assert p.item == "klotter" and (p.k, p.n) == (3, 4)
    assert p.held_at == ["2026-W13"]
    assert p.periods_flagged == ["2026-W10", "2026-W11", "2026-W13"]
    assert not p.ongoing
    assert [t.value for t in p.trend] == [2.0, 2.0, 0.0, 2.0, 0.0, 0.0]


def test_areas_ranked_by_persistent_problems_then_need_score() -> None:
    ranked = rank_areas([AreaNeed("a", "A", 0, 5, 1), AreaNeed("b", "B", 1, 0, 0), AreaNeed("c", "C", 0, 0, 0),
                         AreaNeed("d", "D", 1, 1, 0)])
    assert [a.area_id for a in ranked] == ["d", "b", "a", "c"]  # many single flags never outrank a problem
    assert [a.score for a in ranked] == [12, 10, 11, 0]
    assert [a.rank for a in ranked] == [1, 2, 3, 4]
    assert need_score(2, 3, 4) == 30


def test_measure_effect_compares_equal_numbers_of_periods() -> None:
    ps = weeks("2026-W01", 10)
    values = [4, 4, 6, 6, 2, 2, 1, 1, 1, 1]
    start = Period.parse("2026-W05").start  # W05 counts as "after"
    e = measure_effect("klotter", list(zip(ps, values, strict=True)), start, max_periods=8)
    assert e.periods_compared == 4
    assert e.before_periods == ["2026-W01", "2026-W02", "2026-W03", "2026-W04"]
    assert e.after_periods == ["2026-W05", "2026-W06", "2026-W07", "2026-W08"]
    assert (e.before_mean, e.after_mean, e.direction) == (5.0, 1.5, "fell")
    assert e.change_pct == -70.0


def test_measure_effect_capped_and_without_data() -> None:
    ps = weeks("2026-W01", 30)
    e = measure_effect("x", [(p, 1.0) for p in ps], Period.parse("2026-W15").start, max_periods=8)
    assert e.periods_compared == 8 and e.direction == "unchanged"
    none = measure_effect("x", [(p, 1.0) for p in ps[:5]], Period.parse("2026-W20").start)
    assert none.direction == "insufficient_data" and none.periods_compared == 0 and none.before_mean is None


@pytest.mark.parametrize(("week", "kind", "expected"), [
    ("2026-W53", "tertial", "2026-T3"),   # Mon 28 Dec 2026, Thursday 31 Dec
    ("2026-W53", "quarter", "2026-Q4"),
    ("2025-W01", "quarter", "2025-Q1"),   # Mon 30 Dec 2024, Thursday 2 Jan 2025
    ("2025-W01", "tertial", "2025-T1"),
    ("2020-W53", "quarter", "2020-Q4"),   # Thursday 31 Dec 2020
    ("2021-W52", "quarter", "2021-Q4"),   # Mon 27 Dec 2021, Thursday 30 Dec
    ("2026-W18", "tertial", "2026-T1"),   # Mon 27 Apr, Thursday 30 Apr -> T1
    ("2026-W36", "tertial", "2026-T3"),   # Mon 31 Aug, Thursday 3 Sep -> T3
    ("2026-W14", "quarter", "2026-Q2"),   # Mon 30 Mar, Thursday 2 Apr -> Q2
])
def test_thursday_rule_assigns_weeks_across_boundaries(week: str, kind: str, expected: str) -> None:
    p = Period.parse(week)
    assert analysis_period_of(p, kind).id == expected  # type: ignore[arg-type]
    assert p in Period.parse(expected).reporting_periods("weekly")


def test_biweekly_thursday_rule_across_year_end() -> None:
    b = Period.biweek_containing(date(2026, 12, 28))
    target = analysis_period_of(b, "quarter")
    assert b in target.reporting_periods("biweekly")
    nxt = target.next()
    assert b not in nxt.reporting_periods("biweekly")


@given(st.dates(min_value=date(2001, 1, 8), max_value=date(2099, 12, 1)), st.sampled_from(["quarter", "tertial"]))
def test_every_week_belongs_to_exactly_one_analysis_period(day: date, kind: str) -> None:
    w = Period.week_containing(day)
    home = analysis_period_of(w, kind)  # type: ignore[arg-type]
    assert w in home.reporting_periods("weekly")
    assert w not in home.prev().reporting_periods("weekly")
    assert w not in home.next().reporting_periods("weekly")


def test_auto_compile_waits_for_the_last_thursday_week() -> None:
    from datetime import UTC, datetime

    # T3 2026 ends 31 Dec but its last week (W53) runs to Sunday 3 Jan 2027
    early = due_period(kind="tertial", tz="Europe/Stockholm", cadences=["weekly"],
                       now=datetime(2027, 1, 2, 12, tzinfo=UTC), grace_hours=24)
    assert early is None
    late = due_period(kind="tertial", tz="Europe/Stockholm", cadences=["weekly"],
                      now=datetime(2027, 1, 5, 12, tzinfo=UTC), grace_hours=24)
    assert late is not None and late.id == "2026-T3"


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 6), st.integers(1, 6), st.integers(0, 45),
       st.integers(1, 3))
def test_holds_and_episodes_from_a_start_index_agree_with_the_full_run(
        flags: list[bool], k: int, n: int, start: int, resolve_after: int) -> None:
    rule = Rule(min(k, n), max(k, n))
    start = min(start, len(flags))
    full = holds_series(flags, rule)
    assert full == [sum(flags[max(0, i - rule.n + 1): i + 1]) >= rule.k for i in range(len(flags))]
    assert holds_series(flags, rule, start) == full[start:]
    eps = episodes(flags, rule, resolve_after)
    # the full run is closed before index `start` when no episode is open across it: then a late start agrees
    closed_before = all(e.opened >= start or (e.resolved is not None and e.resolved < start) for e in eps)
    if closed_before:
        late = episodes(flags, rule, resolve_after, start)
        assert late == [e for e in eps if e.opened >= start]


def test_rules_can_be_set_per_municipality_and_per_item() -> None:
    from est_analysis.strategic.domain import Rule, rule_for, scoped_overrides

    default = Rule(k=3, n=4)
    ov = {"brand": {"k": 2, "n": 4}, "vaxjo": {"k": 2, "n": 3}, "vaxjo/klotter": {"k": 4, "n": 6}}
    assert rule_for("klotter", default, ov, "vaxjo") == Rule(k=4, n=6)
    assert rule_for("brand", default, ov, "vaxjo") == Rule(k=2, n=4)
    assert rule_for("samling", default, ov, "vaxjo") == Rule(k=2, n=3)
    assert rule_for("samling", default, ov, "kalmar") == default
    assert rule_for("brand", default, ov, "kalmar") == Rule(k=2, n=4)
    scoped = scoped_overrides(ov, "vaxjo", ["klotter", "brand", "samling"])
    assert scoped == {"klotter": {"k": 4, "n": 6}, "brand": {"k": 2, "n": 4}, "samling": {"k": 2, "n": 3}}
