"""Reporting and analysis periods: ISO weeks, biweekly pairs, quarters and tertials.

Rules (DOMAIN.md): weeks are ISO 8601 weeks starting Monday, in the municipality's timezone
(Europe/Stockholm by default). A biweekly period is two consecutive ISO weeks; pairs are counted
from ISO week 2001-W01 so that every pair is exactly 14 days, also across year ends and 53-week
years. A week belongs to the quarter or tertial that holds its Thursday (the ISO rule).

Period ids: ``2026-W48`` (week), ``2026-B47`` (the biweekly period starting in week 47),
``2026-Q4`` (quarter), ``2026-T3`` (tertial: T1 Jan-Apr, T2 May-Aug, T3 Sep-Dec).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

PeriodKind = Literal["week", "biweek", "quarter", "tertial", "year"]
Cadence = Literal["weekly", "biweekly"]
AnalysisKind = Literal["quarter", "tertial", "year"]

DEFAULT_TIMEZONE = "Europe/Stockholm"
THURSDAY_RULE_SV = "En vecka räknas till det kvartal eller tertial där veckans torsdag infaller (ISO 8601)."
THURSDAY_RULE_EN = "A week counts to the quarter or tertial that holds its Thursday (ISO 8601)."

_EPOCH_MONDAY = date(2001, 1, 1)  # a Monday, and the first day of ISO week 2001-W01
_PERIOD_RE = re.compile(r"^(?P<year>\d{4})(?:-(?P<kind>[WBQT])(?P<num>\d{1,2}))?$")


class PeriodError(ValueError):
    """A period id that cannot be parsed or does not exist."""


def _monday_of(iso_year: int, week: int) -> date:
    return date.fromisocalendar(iso_year, week, 1)


def weeks_in_year(iso_year: int) -> int:
    """Number of ISO weeks (52 or 53) in an ISO year."""
    return date(iso_year, 12, 28).isocalendar().week


@dataclass(frozen=True, order=True)
class Period:
    """A half-open range of calendar days [start, end) with a stable id."""

    start: date
    kind: PeriodKind

    # --- construction -------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Period:
        """Parse ``2026-W48``, ``2026-B47``, ``2026-Q4``, ``2026-T3`` or ``2026`` (a calendar year)."""
        m = _PERIOD_RE.match(text.strip()) if isinstance(text, str) else None
        if not m:
            raise PeriodError(f"not a period id: {text!r} (expected e.g. 2026-W48, 2026-B47, 2026-Q4, 2026-T3)")
        if m["kind"] is None:
            return cls(date(int(m["year"]), 1, 1), "year")
        year, kind, num = int(m["year"]), m["kind"], int(m["num"])
        if kind in "WB":
            if not 1 <= num <= weeks_in_year(year):
                raise PeriodError(f"{text!r}: ISO year {year} has weeks 1-{weeks_in_year(year)}")
            monday = _monday_of(year, num)
            if kind == "W":
                return cls(monday, "week")
            p = cls.biweek_containing(monday)
            if p.start != monday:
                raise PeriodError(f"{text!r} does not start a biweekly period; it belongs to {p.id}")
            return p
        if kind == "Q":
            if not 1 <= num <= 4:
                raise PeriodError(f"{text!r}: quarters are Q1-Q4")
            return cls(date(year, 3 * (num - 1) + 1, 1), "quarter")
        if not 1 <= num <= 3:
            raise PeriodError(f"{text!r}: tertials are T1-T3")
        return cls(date(year, 4 * (num - 1) + 1, 1), "tertial")

    @classmethod
    def week_containing(cls, day: date) -> Period:
        """The ISO week holding a calendar day."""
        return cls(day - timedelta(days=day.weekday()), "week")

    @classmethod
    def biweek_containing(cls, day: date) -> Period:
        """The biweekly period holding a calendar day."""
        monday = day - timedelta(days=day.weekday())
        index = (monday - _EPOCH_MONDAY).days // 7
        return cls(monday - timedelta(weeks=index % 2), "biweek")

    @classmethod
    def quarter_containing(cls, day: date) -> Period:
        """The calendar quarter holding a calendar day."""
        return cls(date(day.year, 3 * ((day.month - 1) // 3) + 1, 1), "quarter")

    @classmethod
    def tertial_containing(cls, day: date) -> Period:
        """The calendar tertial holding a calendar day."""
        return cls(date(day.year, 4 * ((day.month - 1) // 4) + 1, 1), "tertial")

    @classmethod
    def year_containing(cls, day: date) -> Period:
        """The calendar year holding a calendar day (its weeks by the Thursday rule)."""
        return cls(date(day.year, 1, 1), "year")

    @classmethod
    def containing(cls, kind: PeriodKind, day: date) -> Period:
        """The period of a kind holding a calendar day."""
        return {
            "week": cls.week_containing,
            "biweek": cls.biweek_containing,
            "quarter": cls.quarter_containing,
            "tertial": cls.tertial_containing,
            "year": cls.year_containing,
        }[kind](day)

    # --- properties ---------------------------------------------------------------------
    @property
    def end(self) -> date:
        """First day after the period."""
        if self.kind == "week":
            return self.start + timedelta(weeks=1)
        if self.kind == "biweek":
            return self.start + timedelta(weeks=2)
        if self.kind == "year":
            return date(self.start.year + 1, 1, 1)
        months = 3 if self.kind == "quarter" else 4
        m = self.start.month - 1 + months
        return date(self.start.year + m // 12, m % 12 + 1, 1)

    @cached_property
    def id(self) -> str:
        """The period id, e.g. ``2026-W48`` (worked out once per instance: pictures ask it often)."""
        if self.kind in ("week", "biweek"):
            iso = self.start.isocalendar()
            return f"{iso.year}-{'W' if self.kind == 'week' else 'B'}{iso.week:02d}"
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        if self.kind == "year":
            return str(self.start.year)
        return f"{self.start.year}-T{(self.start.month - 1) // 4 + 1}"

    def __str__(self) -> str:
        return self.id

    def next(self) -> Period:
        """The following period of the same kind."""
        return Period.containing(self.kind, self.end)

    def prev(self) -> Period:
        """The preceding period of the same kind."""
        return Period.containing(self.kind, self.start - timedelta(days=1))

    def shift(self, n: int) -> Period:
        """The period n steps later (negative: earlier)."""
        p = self
        for _ in range(abs(n)):
            p = p.next() if n > 0 else p.prev()
        return p

    def contains(self, day: date) -> bool:
        """Whether a calendar day lies in the period."""
        return self.start <= day < self.end

    def weeks(self) -> list[Period]:
        """The ISO weeks of the period; for quarters, tertials and years by the Thursday rule."""
        if self.kind == "week":
            return [self]
        if self.kind == "biweek":
            return [Period(self.start, "week"), Period(self.start + timedelta(weeks=1), "week")]
        first = Period.week_containing(self.start)
        if first.start + timedelta(days=3) < self.start:  # its Thursday lies before the period
            first = first.next()
        out = []
        w = first
        while w.start + timedelta(days=3) < self.end:
            out.append(w)
            w = w.next()
        return out

    def reporting_periods(self, cadence: Cadence) -> list[Period]:
        """Weekly or biweekly periods a quarter/tertial rolls up: those whose first Thursday lies in it."""
        kind = reporting_kind(cadence)
        p = Period.containing(kind, self.start - timedelta(days=14))
        out = []
        while p.start < self.end:
            if self.contains(p.start + timedelta(days=3)):
                out.append(p)
            p = p.next()
        return out

    def start_at(self, tz: str = DEFAULT_TIMEZONE) -> datetime:
        """Local midnight at the start, as an aware datetime."""
        return datetime.combine(self.start, time(0), ZoneInfo(tz))

    def end_at(self, tz: str = DEFAULT_TIMEZONE) -> datetime:
        """Local midnight after the end, as an aware datetime."""
        return datetime.combine(self.end, time(0), ZoneInfo(tz))


def local_date(moment: datetime, tz: str = DEFAULT_TIMEZONE) -> date:
    """The calendar date of an instant in a timezone (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(tz)).date()


MONTH_ABBR = {"sv": ("jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec"),
              "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")}
_NAMED = {"sv": {"week": "v. {n}", "biweek": "v. {n}–{m}", "quarter": "kv. {n} {y}", "tertial": "tertial {n} {y}"},
          "en": {"week": "week {n}", "biweek": "weeks {n}–{m}", "quarter": "Q{n} {y}", "tertial": "T{n} {y}"}}


def period_label(period: Period | str, lang: str = "sv") -> str:
    """A period as a reader names it, dated, in Swedish or English (``lang``; other languages: Swedish).

    ``v. 49 (30 nov–6 dec 2026)``, ``week 49 (30 Nov–6 Dec 2026)``, ``v. 1 (29 dec 2025–4 jan 2026)``,
    ``v. 47–48 (16–29 nov 2026)``, ``kv. 4 2026 (okt–dec)``, ``T3 2026 (Sep–Dec)``. A text that is not a
    period id stays as it is.
    """
    if isinstance(period, str):
        try:
            return period_label(Period.parse(period), lang)
        except PeriodError:
            return period
    if period.kind == "year":
        return f"år {period.start.year}" if lang == "sv" else f"year {period.start.year}"
    lang = lang if lang in _NAMED else "sv"
    months = MONTH_ABBR[lang]
    first, last = period.start, period.end - timedelta(days=1)
    if period.kind in ("quarter", "tertial"):
        size = 3 if period.kind == "quarter" else 4
        name = _NAMED[lang][period.kind].format(n=(first.month - 1) // size + 1, y=first.year)
        return f"{name} ({months[first.month - 1]}–{months[last.month - 1]})"
    week = first.isocalendar().week
    name = _NAMED[lang][period.kind].format(n=week, m=(first + timedelta(weeks=1)).isocalendar().week)
    if first.year != last.year:
        span = f"{first.day} {months[first.month - 1]} {first.year}–{last.day} {months[last.month - 1]} {last.year}"
    elif first.month != last.month:
        span = f"{first.day} {months[first.month - 1]}–{last.day} {months[last.month - 1]} {last.year}"
    else:
        span = f"{first.day}–{last.day} {months[last.month - 1]} {last.year}"
    return f"{name} ({span})"


def reporting_kind(cadence: Cadence) -> PeriodKind:
    """The period kind of an area's reporting cadence."""
    return "week" if cadence == "weekly" else "biweek"


_CURRENT: dict[tuple[str, str], tuple[datetime, datetime, Period]] = {}


def current_period(cadence: Cadence, now: datetime, tz: str = DEFAULT_TIMEZONE) -> Period:
    """The reporting period an area is in at an instant.

    The last answer per cadence and timezone is kept with its bounds in UTC: every report asks this,
    and converting an instant to local time is the expensive part.
    """
    aware = now.tzinfo is not None
    if aware:
        hit = _CURRENT.get((cadence, tz))
        if hit is not None and hit[0] <= now < hit[1]:
            return hit[2]
    period = Period.containing(reporting_kind(cadence), local_date(now, tz))
    if aware:
        _CURRENT[(cadence, tz)] = (period.start_at(tz).astimezone(UTC), period.end_at(tz).astimezone(UTC), period)
    return period


def normalise(text: str, cadence: Cadence) -> Period:
    """Parse a period id for an area's cadence; a week id for a biweekly area maps to its pair."""
    p = Period.parse(text)
    want = reporting_kind(cadence)
    if p.kind == want:
        return p
    if p.kind == "week" and want == "biweek":
        return Period.biweek_containing(p.start)
    raise PeriodError(f"{text!r} is not a {cadence} reporting period")


@lru_cache(maxsize=4096)
def deadline(period: Period, *, weekday: int = 0, at: time = time(9, 0), tz: str = DEFAULT_TIMEZONE) -> datetime:
    """The publishing deadline: the first ``weekday`` (0=Monday) at ``at`` local time after the period (cached)."""
    day = period.end + timedelta(days=(weekday - period.end.weekday()) % 7)
    return datetime.combine(day, at, ZoneInfo(tz))
