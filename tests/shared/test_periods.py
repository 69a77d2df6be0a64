"""Period arithmetic: ISO weeks, biweekly pairs, quarters, tertials and the Thursday rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from est_shared.periods import (
    Period,
    PeriodError,
    current_period,
    deadline,
    normalise,
    period_label,
    weeks_in_year,
)
from hypothesis import given
from hypothesis import strategies as st

days = st.dates(min_value=date(2001, 1, 1), max_value=date(2099, 12, 31))


@given(days)
def test_week_contains_day_and_starts_monday(day: date) -> None:
    w = Period.week_containing(day)
    assert w.start.weekday() == 0
    assert w.contains(day)
    assert (w.end - w.start).days == 7
    assert Period.parse(w.id) == w


@given(days)
def test_week_id_is_the_iso_week(day: date) -> None:
    iso = day.isocalendar()
    assert Period.week_containing(day).id == f"{iso.year}-W{iso.week:02d}"


@given(days)
def test_biweek_is_two_consecutive_weeks_and_round_trips(day: date) -> None:
    b = Period.biweek_containing(day)
    assert b.contains(day)
    assert (b.end - b.start).days == 14
    assert [w.start for w in b.weeks()] == [b.start, b.start + timedelta(weeks=1)]
    assert Period.parse(b.id) == b
    assert b.next().start == b.end
    assert b.next().prev() == b


@given(days)
def test_next_and_prev_are_adjacent_for_every_kind(day: date) -> None:
    for kind in ("week", "biweek", "quarter", "tertial"):
        p = Period.containing(kind, day)  # type: ignore[arg-type]
        assert p.next().start == p.end
        assert p.prev().end == p.start
        assert p.next().prev() == p
        assert Period.parse(p.id) == p


@given(st.integers(min_value=2001, max_value=2098))
def test_every_week_of_a_year_belongs_to_exactly_one_quarter_and_one_tertial(year: int) -> None:
    quarters = [Period.parse(f"{year}-Q{q}") for q in range(1, 5)]
    tertials = [Period.parse(f"{year}-T{t}") for t in range(1, 4)]
    weeks = [w for q in quarters for w in q.weeks()]
    assert weeks == [w for t in tertials for w in t.weeks()]
    assert len(weeks) == weeks_in_year(year)
    assert weeks[0].id == f"{year}-W01"
    assert weeks[-1].id == f"{year}-W{weeks_in_year(year):02d}"
    assert len(set(weeks)) == len(weeks)


@given(days)
def test_a_week_counts_to_the_quarter_of_its_thursday(day: date) -> None:
    w = Period.week_containing(day)
    thursday = w.start + timedelta(days=3)
    assert w in Period.quarter_containing(thursday).weeks()
    assert w in Period.tertial_containing(thursday).weeks()


def test_53_week_year_and_year_boundaries() -> None:
    assert weeks_in_year(2026) == 53
    assert weeks_in_year(2027) == 52
    assert Period.parse("2026-W53").start == date(2026, 12, 28)
    # 2027-01-01 is a Friday: it lies in 2026-W53, which counts to 2026-Q4 (Thursday 2026-12-31)
    assert Period.week_containing(date(2027, 1, 1)).id == "2026-W53"
    assert Period.parse("2026-W53") in Period.parse("2026-Q4").weeks()
    assert Period.parse("2026-W53") in Period.parse("2026-T3").weeks()
    # 2021-01-01 is a Friday in 2020-W53; 2020 Q4 holds it
    assert Period.parse("2020-W53") in Period.parse("2020-Q4").weeks()
    assert Period.parse("2021-W01") in Period.parse("2021-Q1").weeks()
    with pytest.raises(PeriodError):
        Period.parse("2027-W53")


def test_tertials_are_four_months() -> None:
    assert Period.parse("2026-T1").start == date(2026, 1, 1)
    assert Period.parse("2026-T2").start == date(2026, 5, 1)
    assert Period.parse("2026-T3").end == date(2027, 1, 1)
    assert Period.tertial_containing(date(2026, 8, 31)).id == "2026-T2"


@pytest.mark.parametrize("bad", ["2026-W54", "2026-Q5", "2026-T4", "2026-T0", "W48", "2026-X1", "", "2026-w48"])
def test_bad_period_ids_are_refused(bad: str) -> None:
    with pytest.raises(PeriodError):
        Period.parse(bad)


def test_biweek_id_must_start_a_pair() -> None:
    b = Period.biweek_containing(date(2026, 11, 25))
    second = b.weeks()[1].id.replace("W", "B")
    with pytest.raises(PeriodError, match="belongs to"):
        Period.parse(second)


@given(days)
def test_normalise_maps_a_week_into_its_biweekly_period(day: date) -> None:
    w = Period.week_containing(day)
    assert normalise(w.id, "weekly") == w
    assert normalise(w.id, "biweekly") == Period.biweek_containing(day)


def test_current_period_uses_stockholm_time() -> None:
    # Sunday 23:30 UTC in winter is Monday 00:30 in Stockholm: already the next week
    moment = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert current_period("weekly", moment).id == "2026-W49"
    assert current_period("weekly", moment, tz="UTC").id == "2026-W48"


def test_deadline_is_monday_nine_after_the_week() -> None:
    d = deadline(Period.parse("2026-W48"))
    assert d.isoformat() == "2026-11-30T09:00:00+01:00"


@given(st.integers(min_value=2001, max_value=2098), st.sampled_from(["weekly", "biweekly"]))
def test_reporting_periods_partition_the_year(year: int, cadence: str) -> None:
    parts = [p for t in range(1, 4) for p in Period.parse(f"{year}-T{t}").reporting_periods(cadence)]  # type: ignore[arg-type]
    assert len(parts) == len(set(parts))
    for p in parts:
        assert p.next() in parts or p.next().start.year > year or p.next().start + timedelta(days=3) >= date(
            year + 1, 1, 1)


LABELS = {  # period id → (Swedish, English) as a reader names it
    "2026-W49": ("v. 49 (30 nov–6 dec 2026)", "week 49 (30 Nov–6 Dec 2026)"),
    "2026-W10": ("v. 10 (2–8 mar 2026)", "week 10 (2–8 Mar 2026)"),
    "2026-W01": ("v. 1 (29 dec 2025–4 jan 2026)", "week 1 (29 Dec 2025–4 Jan 2026)"),
    "2026-B47": ("v. 47–48 (16–29 nov 2026)", "weeks 47–48 (16–29 Nov 2026)"),
    "2026-Q4": ("kv. 4 2026 (okt–dec)", "Q4 2026 (Oct–Dec)"),
    "2026-T3": ("tertial 3 2026 (sep–dec)", "T3 2026 (Sep–Dec)"),
    "not-a-period": ("not-a-period", "not-a-period"),
}


def test_period_label_names_and_dates_a_period_in_swedish_and_english() -> None:
    for period_id, (sv, en) in LABELS.items():
        assert (period_label(period_id, "sv"), period_label(period_id, "en")) == (sv, en), period_id
        assert period_label(period_id, "de") == sv  # another language: Swedish
    assert period_label(Period.parse("2026-W53")) == "v. 53 (28 dec 2026–3 jan 2027)"
