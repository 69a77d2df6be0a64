"""Picture rules of the aggregator: pure functions from stored reports to a situational picture.

Nothing here touches a database, the bus or HTTP; every rule can be tested with plain values.

Rules in short (each function's docstring has the detail):

* A report that another stored report ``supersedes`` never counts, whatever the arrival order.
* Per checklist item: count → total; level → max (the mean is kept beside it); boolean → number
  of yes answers. ``reports`` is how many reports gave the item a non-zero value; ``places`` counts
  how often each place was named with a non-zero answer (the hot spots).
* History: ``previous`` is the item's value in the previous period and ``baseline`` the mean over
  the last ``window`` (8) periods; periods without any report are missing data, not zeros.
* ``trend``: ``new`` when the item is non-zero and was zero (or unseen) in all known history;
  otherwise ``up``/``down``/``flat`` against the previous period (the baseline if there is none).
* ``flag`` (one, the most serious first):
  ``high``   level ≥ 2 (återkommande), count ≥ max(3, 2 × baseline), boolean (yes answers) ≥ max(2, 2 × baseline);
  ``new``    non-zero after at least 4 known periods in the window that were all zero;
  ``rising`` above the previous period and ≥ 1.5 × baseline.
* Completeness: expected reporters are the people with role reporter assigned to the area;
  a reporter is late when all their reports for the period came after the deadline (or the
  intake marked them late); the rate is expected reporters heard from / expected.
* Only what can be tallied is stored (``report_faults``): as the report's checklist says, a count
  is an integer 0 … the item's ``max_count`` (10,000 per item and report unless the checklist sets
  its own), a level an integer 0–3, a yes/no
  answer a boolean (with a checklist unknown here: any of them within those bounds); an item the
  checklist does not have, more than ``MAX_ANSWERS`` answers, more than ``MAX_PLACES`` places
  or an id longer than its column refuses the whole report. A stored value outside those bounds
  (a report kept before this rule) is left out of the sums, so it can never break a picture.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from est_shared.checklists import (
    DEFAULT_CHECKLIST,
    DEFAULT_MAX_COUNT,
    LEVELS,
    MAX_COUNT_CEILING,
    Checklist,
    ChecklistItem,
)
from est_shared.errors import Conflict, Invalid, NotFound, Unavailable
from est_shared.events import Completeness, ItemSummary, PictureData, ReportSubmitted
from est_shared.freetext import has_control_characters
from est_shared.periods import Period

EPS = 1e-9


class AreaNotFound(NotFound):
    """Neither the organisation nor the stored reports know the area."""

    title = "Area not found"

    def __init__(self, area_id: str) -> None:
        super().__init__(f"Området {area_id} finns inte.", f"No area {area_id}.")


class MunicipalityNotFound(NotFound):
    """The organisation does not know the municipality."""

    title = "Municipality not found"

    def __init__(self, municipality_id: str) -> None:
        super().__init__(f"Kommunen {municipality_id} finns inte.", f"No municipality {municipality_id}.")


class VersionNotFound(NotFound):
    """The requested published version does not exist."""

    title = "Version not found"

    def __init__(self, version: str) -> None:
        super().__init__(f"Ingen publicerad version {version}.", f"No published version {version}.")


class VersionConflict(Conflict):
    """Another replica published the same picture version first."""

    title = "Publication conflict"

    def __init__(self, picture: str) -> None:
        super().__init__("En annan publicering pågick samtidigt; försök igen.",
                         "Another publication of this picture happened at the same time; try again.")
        self.picture = picture


class InvalidPeriod(Invalid):
    """A period id that is malformed or does not fit the area's cadence."""

    title = "Invalid period"

    def __init__(self, why: str) -> None:
        super().__init__("Ogiltig period.", why, errors=[{"field": "period", "message": why, "type": "period"}])


class TextRefused(Invalid):
    """Free text that looks like personal data or holds control characters (``errors`` name each field)."""

    title = "Invalid text"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        super().__init__(f"Fritext får inte innehålla personuppgifter eller kontrolltecken ({fields}).",
                         f"Free text must not contain personal data or control characters ({fields}).",
                         errors=list(errors))


FIRST_YEAR, LAST_YEAR = 1900, 2999  # the years a picture's period may fall in (its history and deadline too)


def check_period_years(period: Period) -> Period:
    """The period, if it falls in ``FIRST_YEAR`` … ``LAST_YEAR``; else InvalidPeriod (dates run out near years
    1 and 9999, and a picture reaches periods back and a deadline forward)."""
    if not FIRST_YEAR <= period.start.year <= LAST_YEAR:
        raise InvalidPeriod(f"{period.id} is not between {FIRST_YEAR} and {LAST_YEAR}")
    return period


class PictureUnavailable(Unavailable):
    """The picture cannot be computed from what is stored (counted and logged where it happens)."""

    title = "Picture unavailable"

    def __init__(self, picture: str) -> None:
        super().__init__("Lägesbilden kan inte beräknas just nu; felet är loggat och försöks igen.",
                         "The picture cannot be computed right now; the error is logged and it is tried again.",
                         retry_after=30)
        self.picture = picture


@dataclass(frozen=True)
class ReportRecord:
    """A stored report, as the picture rules need it."""

    report_id: str
    municipality_id: str
    area_id: str
    period: str
    checklist: str
    answers: Mapping[str, Mapping[str, Any]]
    reporter_id: str
    actor_id: str
    received_at: datetime
    nothing_to_report: bool = False
    supersedes: str | None = None
    late: bool = False


@dataclass(frozen=True)
class ExpectedReporter:
    """A person expected to report for an area (role reporter, assigned to it)."""

    person_id: str
    actor_id: str


@dataclass(frozen=True)
class Rules:
    """Thresholds of the trend and flag rules (see the module docstring)."""

    window: int = 8
    high_level: float = 2
    high_count_min: float = 3
    high_boolean_min: float = 2
    high_factor: float = 2.0
    rising_factor: float = 1.5
    new_min_history: int = 4


@dataclass(frozen=True)
class ItemTotals:
    """One item summed over the reports of one period."""

    value: float
    mean: float | None
    reports: int
    places: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    """An item's value held against its history."""

    previous: float | None
    baseline: float | None
    trend: str | None
    flag: str | None


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime (SQLite hands back naive ones, which are UTC here)."""
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def effective_reports(reports: Iterable[ReportRecord], superseded: Iterable[str] = ()) -> list[ReportRecord]:
    """The reports that count: those no stored report supersedes (corrections replace, never add)."""
    reports = list(reports)
    gone = set(superseded) | {r.supersedes for r in reports if r.supersedes}
    return [r for r in reports if r.report_id not in gone]


MAX_COUNT = DEFAULT_MAX_COUNT  # a count per item and report, unless the checklist item sets its own bound
MAX_ANSWERS = 100
MAX_PLACES = 100  # per answer
MAX_PLACE = 200  # characters of a place id
MAX_ID = 100  # characters of an id (the width of the id columns)
MAX_PERIOD = 20
_ID_FIELDS = ("report_id", "municipality_id", "area_id", "period", "checklist", "reporter_id", "actor_id",
              "supersedes")
_TOP_LEVEL = max(LEVELS)


def _value_fault(answer: str | None, value: Any, max_count: int) -> str | None:
    """Why an answer's value cannot be tallied as ``answer`` (None: the checklist is unknown here)."""
    if value.__class__ is bool:
        return None if answer in ("boolean", None) else f"not_a_{answer}"
    if value.__class__ is not int:
        return "not_a_number"
    if answer == "boolean":
        return "not_a_boolean"
    top = _TOP_LEVEL if answer == "level" else max_count
    return None if 0 <= value <= top else f"{answer or 'value'}_out_of_range"


def report_faults(data: ReportSubmitted, checklist: Checklist | None, *, max_count: int = MAX_COUNT) -> list[str]:
    """Why a report cannot be tallied (see the module docstring); empty when it can.

    Each fault is ``field: reason`` with no text of the report in it (it ends up in logs and
    dead-letter headers): an item is named only when it is the checklist's own code.
    """
    faults = []
    for name in _ID_FIELDS:
        value, limit = getattr(data, name), MAX_PERIOD if name == "period" else MAX_ID
        if value and not stored_id(value, limit):
            faults.append(f"{name}: {'too_long' if len(value) > limit else 'control_character'}")
    if len(data.answers) > MAX_ANSWERS:
        return [*faults, "answers: too_many"]
    for code, answer in data.answers.items():
        item = checklist.item(code) if checklist is not None else None
        if checklist is not None and item is None:
            faults.append("answers: unknown_item")
            continue
        where = f"answers.{code}" if item is not None else "answers.<item>"
        bound = item.max_count if item is not None and item.max_count else max_count  # the checklist's own
        why = _value_fault(item.answer if item is not None else None, answer.value, bound)
        if why is not None:
            faults.append(f"{where}.value: {why}")
        if len(answer.places) > MAX_PLACES:
            faults.append(f"{where}.places: too_many")
        elif answer.places and not all(stored_id(place, MAX_PLACE) for place in answer.places):
            faults.append(f"{where}.places: not_a_place")
    return faults


def stored_id(text: str, limit: int = MAX_ID) -> bool:
    """Whether an id could be one the aggregator stores: it fits its column and holds no control character."""
    return len(text) <= limit and not has_control_characters(text)


def _number(value: Any) -> float | None:
    """An answer's value to sum (yes = 1), or None when it cannot be tallied (see ``report_faults``)."""
    if value.__class__ is bool:
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and 0 <= value <= MAX_COUNT_CEILING:  # NaN fails the comparison
        return float(value)
    return None


def item_totals(item: ChecklistItem, reports: Sequence[ReportRecord]) -> ItemTotals:
    """Sum one item over reports: count → total, level → max (and mean), boolean → yes answers."""
    return period_totals([item], reports)[item.code]


class ItemSums:
    """Running sums of the answers given, per item code (what ``period_totals`` sums).

    Reports are only ever added, in any order: each comes with its place in the reports' order
    (``order``, any comparable key), which decides the order of equally named places. Values are
    whole numbers (counts, levels, yes/no), so the sums do not depend on the order of adding.
    Per code: [answers, sum of values, largest value, non-zero answers, place → [mentions, first order]].
    """

    __slots__ = ("added", "by_code")

    def __init__(self) -> None:
        self.by_code: dict[str, list[Any]] = {}
        self.added = 0

    def add(self, answers: Mapping[str, Mapping[str, Any] | None], order: Any = None) -> None:
        """Add one report's answers (``order``: its place among the reports; default: after the ones added)."""
        if order is None:
            order = self.added
        self.added += 1
        by_code = self.by_code
        for code, answer in answers.items():
            if answer is None:
                continue
            v = _number(answer.get("value"))
            if v is None:  # only in reports stored before ingest refused what cannot be tallied
                continue
            acc = by_code.get(code)
            if acc is None:
                acc = by_code[code] = [0, 0, None, 0, None]
            acc[0] += 1
            acc[1] += v  # from int 0 on, as sum() adds
            if acc[2] is None or v > acc[2]:
                acc[2] = v
            if v > 0:
                acc[3] += 1
                named = answer.get("places")
                if named:
                    places = acc[4] if acc[4] is not None else {}
                    acc[4] = places
                    for j, place in enumerate(named):
                        key, first = str(place), (order, j)  # named first: the report's first, its first place
                        seen = places.get(key)
                        if seen is None:
                            places[key] = [1, first]
                        else:
                            seen[0] += 1
                            if first < seen[1]:
                                seen[1] = first

    def value(self, item: ChecklistItem) -> float:
        """The item's value: count → total, level → max, boolean → yes answers."""
        acc = self.by_code.get(item.code)
        if item.answer == "count":
            return acc[1] if acc is not None else 0
        if item.answer == "level":
            return acc[2] if acc is not None else 0.0
        return float(acc[3]) if acc is not None else 0.0

    def totals(self, item: ChecklistItem) -> ItemTotals:
        """The item's totals (value, level mean, reports with a non-zero answer, places most named first,
        equally named ones in the order of the reports that first named them)."""
        acc = self.by_code.get(item.code)
        mean = round(acc[1] / acc[0], 2) if item.answer == "level" and acc is not None else None
        places: dict[str, int] = {}
        if acc is not None and acc[4] is not None:
            places = {k: v[0] for k, v in sorted(acc[4].items(), key=lambda kv: (-kv[1][0], kv[1][1]))}
        return ItemTotals(value=self.value(item), mean=mean, reports=acc[3] if acc is not None else 0, places=places)


def period_totals(items: Sequence[ChecklistItem], reports: Sequence[ReportRecord]) -> dict[str, ItemTotals]:
    """The totals of every item over reports, in one pass over the answers given.

    Per item: count → total, level → max (and mean), boolean → yes answers; the number of reports
    with a non-zero answer and their places, most named first (ties in the reports' order). One
    pass over the answers instead of one per checklist item: a picture's cost grows with the
    answers given, not with answers times items.
    """
    sums = ItemSums()
    for r in reports:
        sums.add(r.answers)
    return {item.code: sums.totals(item) for item in items}


def assess(answer: str, value: float, history: Sequence[float | None], rules: Rules = Rules()) -> Assessment:
    """Previous, baseline, trend and flag of a value given the earlier periods (oldest first, None = no data)."""
    previous = history[-1] if history else None
    known = [h for h in history if h is not None]
    baseline = round(sum(known) / len(known), 2) if known else None
    quiet_before = not known or max(known) <= EPS
    if value > EPS and quiet_before:
        trend: str | None = "new"
    else:
        ref = previous if previous is not None else baseline
        if ref is None or abs(value - ref) <= EPS:
            trend = "flat"
        else:
            trend = "up" if value > ref else "down"
    base = baseline or 0.0
    flag: str | None = None
    if answer == "level":
        high = value >= rules.high_level
    elif answer == "count":
        high = value >= max(rules.high_count_min, rules.high_factor * base)
    else:
        high = value >= max(rules.high_boolean_min, rules.high_factor * base)
    if value > EPS and high:
        flag = "high"
    elif value > EPS and quiet_before and len(known) >= rules.new_min_history:
        flag = "new"
    elif (value > EPS and previous is not None and value > previous + EPS and baseline is not None
          and value >= rules.rising_factor * baseline):
        flag = "rising"
    return Assessment(previous=previous, baseline=baseline, trend=trend, flag=flag)


def is_late(report: ReportRecord, deadline: datetime | None) -> bool:
    """A report is late when the intake said so or it arrived after the period's deadline."""
    return report.late or (deadline is not None and as_utc(report.received_at) > as_utc(deadline))


def completeness(effective: Sequence[ReportRecord], expected: Sequence[ExpectedReporter], *,
                 deadline: datetime | None = None, all_reports: Sequence[ReportRecord] | None = None,
                 ) -> Completeness:
    """Expected against received, on time and late, per actor; reporters who left still count as received.

    A reporter is on time if any of their reports for the period (superseded ones included) was on
    time; nothing_to_report counts reporters whose counting reports all say "nothing to report".
    """
    all_reports = list(all_reports if all_reports is not None else effective)
    reporters: dict[str, str] = {}
    for r in effective:
        reporters.setdefault(r.reporter_id, r.actor_id)
    due = as_utc(deadline) if deadline is not None else None
    on_time = {r.reporter_id for r in all_reports if r.reporter_id in reporters
               and not (r.late or (due is not None and as_utc(r.received_at) > due))}  # is_late, deadline once
    by_reporter: dict[str, list[ReportRecord]] = {}
    for r in effective:
        by_reporter.setdefault(r.reporter_id, []).append(r)
    nothing = {pid for pid, rs in by_reporter.items() if all(r.nothing_to_report for r in rs)}
    return _completeness(reporters, on_time, nothing, expected)


def _completeness(reporters: Mapping[str, str], on_time: set[str], nothing: set[str],
                  expected: Sequence[ExpectedReporter]) -> Completeness:
    """Completeness from the reporters heard from (→ actor), those on time and those with nothing to report."""
    expected_ids = {e.person_id: e.actor_id for e in expected}
    heard = set(expected_ids) & set(reporters)
    per_actor: dict[str, dict[str, int]] = {}

    def bucket(actor: str) -> dict[str, int]:
        return per_actor.setdefault(actor, {"expected": 0, "received": 0, "on_time": 0, "late": 0,
                                            "nothing_to_report": 0})

    for actor in expected_ids.values():
        bucket(actor)["expected"] += 1
    for pid, actor in reporters.items():
        b = bucket(expected_ids.get(pid, actor))
        b["received"] += 1
        b["on_time" if pid in on_time else "late"] += 1
        if pid in nothing:
            b["nothing_to_report"] += 1
    if expected_ids:
        rate = len(heard) / len(expected_ids)
    else:
        rate = 1.0 if reporters else 0.0
    return Completeness(
        expected=len(expected_ids), received=len(reporters), on_time=len(on_time),
        late=len(reporters) - len(on_time), nothing_to_report=len(nothing), rate=round(rate, 4),
        per_actor=dict(sorted(per_actor.items())),
        missing_reporters=sorted(set(expected_ids) - set(reporters)),
    )


class PeriodTally:
    """One period's stored reports summed as they come: item sums, reporters, on time, nothing to report.

    ``of`` builds it from the period's reports (in ``reports_for``'s order) and the area's superseded
    report ids; ``add`` appends a later report in that order. It gives what ``build_picture`` would
    compute from the same reports (``period_totals`` of the counting ones, ``completeness``), without
    going over them all again: a picture that gets a few new reports costs as much as those reports.
    Reports are never taken out: ``fits`` says when the tally no longer matches (a correction of a
    report it counted) and it must be built again; so must a tally whose ``deadline`` is not the
    picture's (on time is decided by it).
    """

    __slots__ = (
        "checklists",
        "count",
        "deadline",
        "excluded",
        "first",
        "gone",
        "ids",
        "nothing",
        "on_time",
        "replaces",
        "reporters",
        "sums",
    )

    def __init__(self, gone: Iterable[str] = (), deadline: datetime | None = None) -> None:
        self.deadline = as_utc(deadline) if deadline is not None else None
        self.gone = frozenset(gone)  # the area's superseded ids when built
        self.ids: set[str] = set()
        self.replaces: set[str] = set()  # report ids that reports of this period supersede
        self.excluded: set[str] = set()  # reports of this period that do not count
        self.count = 0  # reports that count
        self.sums = ItemSums()
        self.checklists: set[str] = set()  # of all the period's reports
        self.reporters: dict[str, str] = {}  # heard from → actor of their first counting report
        self.first: dict[str, Any] = {}  # reporter → order of that report
        self.on_time: set[str] = set()  # reporters with any report on time (superseded ones included)
        self.nothing: dict[str, bool] = {}  # reporter → all their counting reports say nothing to report

    @classmethod
    def of(cls, reports: Iterable[ReportRecord], superseded: Iterable[str] = (),
           deadline: datetime | None = None) -> PeriodTally:
        """The tally of a period's reports (superseded: ids that stored reports supersede)."""
        reports = list(reports)
        tally = cls(set(superseded) | {r.supersedes for r in reports if r.supersedes}, deadline)
        for r in reports:
            tally.add(r)
        return tally

    def add(self, r: ReportRecord) -> None:
        """Count a report of the period, stored after the ones already here (received earlier or later)."""
        rid = r.report_id
        self.ids.add(rid)
        self.checklists.add(r.checklist)
        if r.supersedes:  # if it replaces a report counted here, ``fits`` says so: it cannot be taken out
            self.replaces.add(r.supersedes)
        due = self.deadline
        if not (r.late or (due is not None and as_utc(r.received_at) > due)):
            self.on_time.add(r.reporter_id)
        if rid in self.gone or rid in self.replaces:
            self.excluded.add(rid)
            return
        order = (as_utc(r.received_at), rid)  # ``reports_for``'s order: reports may be added out of it
        self.count += 1
        self.sums.add(r.answers, order)
        who = r.reporter_id
        if who not in self.first or order < self.first[who]:
            self.first[who] = order
            self.reporters[who] = r.actor_id
        self.nothing[who] = self.nothing.get(who, True) and r.nothing_to_report

    def fits(self, superseded: Iterable[str]) -> bool:
        """Whether the tally counts exactly the reports that count given the area's superseded ids now."""
        ids = self.ids
        now_out = {g for g in superseded if g in ids} | (self.replaces & ids)
        return now_out == self.excluded

    def completeness(self, expected: Sequence[ExpectedReporter]) -> Completeness:
        """``completeness`` of the period (by the deadline the tally was built with)."""
        reporters = self.reporters
        return _completeness(reporters, {p for p in self.on_time if p in reporters},
                             {p for p, yes in self.nothing.items() if yes}, expected)


def _fmt(v: float | None, lang: str) -> str:
    if v is None:
        return "–"
    text = str(round(v)) if abs(v - round(v)) <= EPS else f"{v:.1f}"
    return text.replace(".", ",") if lang == "sv" else text


def _label(s: ItemSummary, lang: str) -> str:
    return (s.label_sv if lang == "sv" else s.label_en) or s.item


def _changes(xs: list[ItemSummary], lang: str) -> str:
    return ", ".join(f"{_label(s, lang)} ({_fmt(s.previous if s.previous is not None else s.baseline, lang)}"
                     f" → {_fmt(s.value, lang)})" for s in xs)


def _why(s: ItemSummary, lang: str) -> str:
    sv = lang == "sv"
    if s.baseline is None:
        base = "ingen historik" if sv else "no history"
    else:
        base = f"normalt {_fmt(s.baseline, lang)}" if sv else f"normally {_fmt(s.baseline, lang)}"
    where = ", ".join(list(s.places)[:3])
    loc = (f", vid {where}" if sv else f", at {where}") if where else ""
    return f"{_label(s, lang)} {_fmt(s.value, lang)} ({base}{loc})"


def first_analysis(items: Mapping[str, ItemSummary], comp: Completeness, *, area_name: str, period: str,
                   reports: int) -> dict[str, str]:
    """A drafted first analysis in Swedish and English: what changed, what is above normal, where, measures.

    The key function reads it as a starting point: it names items that rose or fell against the
    previous period, items flagged above normal (with the baseline), the most named places, and
    suggests that measures be considered when anything is flagged high or rising.
    """
    # what the text says is the same in both languages: picked out once
    summaries = list(items.values())
    up = [s for s in summaries if s.trend == "up"]
    down = [s for s in summaries if s.trend == "down"]
    new = [s for s in summaries if s.trend == "new" and s.value > 0]
    flagged = [s for s in summaries if s.flag in ("high", "rising", "new")]
    serious = [s for s in flagged if s.flag in ("high", "rising")]
    hot: Counter[str] = Counter()
    for s in summaries:
        if s.places:
            hot.update(s.places)
    top_places = hot.most_common(3)
    out: dict[str, str] = {}
    for lang in ("sv", "en"):
        sv = lang == "sv"
        parts: list[str] = []
        pct = _fmt(comp.rate * 100, lang)
        if sv:
            parts.append(f"Lägesbild för {area_name}, {period}: {reports} rapporter från {comp.received} "
                         f"rapportörer ({comp.received - comp.late} i tid) av {comp.expected} förväntade ({pct} %).")
        else:
            parts.append(f"Situational picture for {area_name}, {period}: {reports} reports from {comp.received} "
                         f"reporters ({comp.received - comp.late} on time) of {comp.expected} expected ({pct} %).")
        if reports == 0:
            parts.append("Inga rapporter har kommit in." if sv else "No reports have come in.")
            out[lang] = " ".join(parts)
            continue
        if up:
            parts.append(("Ökat jämfört med föregående period: " if sv else "Up on the previous period: ")
                         + _changes(up, lang) + ".")
        if down:
            parts.append(("Minskat: " if sv else "Down: ") + _changes(down, lang) + ".")
        if new:
            parts.append(("Nytt jämfört med tidigare perioder: " if sv else "New compared with earlier periods: ")
                         + ", ".join(f"{_label(s, lang)} ({_fmt(s.value, lang)})" for s in new) + ".")
        if not (up or down or new):
            parts.append("Inga förändringar jämfört med föregående period." if sv
                         else "No change on the previous period.")
        if flagged:
            parts.append(("Över det normala: " if sv else "Above normal: ")
                         + "; ".join(_why(s, lang) for s in flagged) + ".")
        if top_places:
            top = ", ".join(f"{p} ({n})" for p, n in top_places)
            parts.append(("Mest nämnda platser: " if sv else "Places named most: ") + top + ".")
        if serious:
            names = ", ".join(_label(s, lang) for s in serious)
            parts.append(f"Åtgärder bör övervägas för: {names}." if sv
                         else f"Measures should be considered for: {names}.")
        else:
            parts.append("Inget tyder på att åtgärder behövs utöver de ordinarie." if sv
                         else "Nothing suggests that measures beyond the usual are needed.")
        if comp.expected and comp.rate < 0.5:
            parts.append("Obs: under hälften av de förväntade rapporterna har kommit in." if sv
                         else "Note: fewer than half of the expected reports have come in.")
        out[lang] = " ".join(parts)
    return out


def checklist_items(checklists: Sequence[Sequence[ChecklistItem]]) -> list[ChecklistItem]:
    """The union of the items of the checklists in use, first one winning; the default when none."""
    seen: dict[str, ChecklistItem] = {}
    for items in checklists or [DEFAULT_CHECKLIST.items]:
        for it in items:
            seen.setdefault(it.code, it)
    return list(seen.values())


@lru_cache(maxsize=4096)
def _history(period: Period, window: int) -> tuple[Period, ...]:
    out = [period]
    for _ in range(window):
        out.append(out[-1].prev())
    return tuple(reversed(out[1:]))


def history_periods(period: Period, window: int) -> list[Period]:
    """The ``window`` periods before ``period``, oldest first."""
    return list(_history(period, window))


def period_ids(period: Period) -> set[str]:
    """Ids under which reports of a period may be stored (a biweekly period also by its two weeks)."""
    ids = {period.id}
    if period.kind == "biweek":
        ids |= {w.id for w in period.weeks()}
    return ids


_set_attribute = object.__setattr__


def item_summary(values: dict[str, Any]) -> ItemSummary:
    """``ItemSummary.model_construct(**values)`` for values of every field, in the fields' order.

    What ``model_construct`` sets, set directly: its loop over each field's aliases and default
    cost 4 µs an item, a third of a picture's build (one summary per checklist item, for hundreds
    of pictures a second). Valid for a model without aliases, extra fields, private attributes or
    a post-init hook, which ``tests/aggregator/test_picture_rules.py`` checks, along with equality
    to ``model_construct`` (pydantic is pinned in ``uv.lock``).
    """
    m = ItemSummary.__new__(ItemSummary)
    _set_attribute(m, "__dict__", values)
    _set_attribute(m, "__pydantic_fields_set__", set(values))
    _set_attribute(m, "__pydantic_extra__", None)
    _set_attribute(m, "__pydantic_private__", None)
    return m


@dataclass(frozen=True)
class BuiltPicture:
    """A computed picture and what travels beside it (level means)."""

    picture: PictureData
    means: dict[str, float]


def build_picture(*, municipality_id: str, area_id: str, area_name: str, period: Period,
                  superseded: Iterable[str], items: Sequence[ChecklistItem], expected: Sequence[ExpectedReporter],
                  deadline: datetime | None, reports_by_period: Mapping[Period, Sequence[ReportRecord]] | None = None,
                  status: str = "open", version: int = 0,
                  comments: Sequence[dict[str, Any]] = (), rules: Rules = Rules(),
                  kronoberg: dict[str, Any] | None = None,
                  tallies: Mapping[Period, PeriodTally] | None = None) -> BuiltPicture:
    """Compute the picture of one area and period from the stored reports of it and its history.

    Give either ``reports_by_period`` or ``tallies`` (``PeriodTally`` per period, the picture's own
    built with ``deadline``), which callers that keep them pass instead.
    """
    if tallies is None:
        gone = set(superseded)
        tallies = {p: PeriodTally.of(rs, gone, deadline if p == period else None)
                   for p, rs in (reports_by_period or {}).items()}
    current = tallies.get(period) or PeriodTally(deadline=deadline)
    past = [tallies.get(p) for p in history_periods(period, rules.window)]
    summaries: dict[str, ItemSummary] = {}
    means: dict[str, float] = {}
    sums = current.sums
    for item in items:
        totals = sums.totals(item)
        history = [t.sums.value(item) if t is not None and t.count else None for t in past]
        a = assess(item.answer, totals.value, history, rules)
        # built without validation (values computed here, of the declared types): a picture has many items
        summaries[item.code] = item_summary({
            "item": item.code, "answer": item.answer, "label_sv": item.label_sv, "label_en": item.label_en,
            "value": float(totals.value), "reports": totals.reports, "places": totals.places,
            "previous": None if a.previous is None else float(a.previous),
            "baseline": None if a.baseline is None else float(a.baseline), "trend": a.trend, "flag": a.flag})
        if totals.mean is not None:
            means[item.code] = totals.mean
    comp = current.completeness(expected)
    analysis = first_analysis(summaries, comp, area_name=area_name or area_id, period=period.id,
                              reports=current.count)
    picture = PictureData(
        municipality_id=municipality_id, area_id=area_id, area_name=area_name, period=period.id,
        status=status, version=version, reports=current.count, items=summaries,
        completeness=comp, first_analysis=analysis, comments=list(comments), kronoberg=kronoberg)
    return BuiltPicture(picture=picture, means=means)


def picture_changes(old: PictureData, new: PictureData) -> list[str]:
    """What changed between two versions, e.g. ``klotter: 1 → 2``, ``reports: 2 → 3``."""
    out: list[str] = []
    if old.reports != new.reports:
        out.append(f"reports: {old.reports} → {new.reports}")
    for code, s in new.items.items():
        before = old.items.get(code)
        old_value = before.value if before else 0.0
        if abs(old_value - s.value) > EPS:
            out.append(f"{code}: {_fmt(old_value, 'en')} → {_fmt(s.value, 'en')}")
        old_flag = before.flag if before else None
        if old_flag != s.flag:
            out.append(f"{code} flag: {old_flag or '-'} → {s.flag or '-'}")
    oc, nc = old.completeness, new.completeness
    for name in ("received", "late", "nothing_to_report"):
        a, b = getattr(oc, name), getattr(nc, name)
        if a != b:
            out.append(f"completeness.{name}: {a} → {b}")
    if len(new.comments) != len(old.comments):
        out.append(f"comments: {len(old.comments)} → {len(new.comments)}")
    return out


def alert_transitions(open_alerts: Mapping[str, str], flags: Mapping[str, str | None],
                      ) -> tuple[dict[str, str], dict[str, str]]:
    """Edge-triggered alerts: (item → kind to raise, item → open kind to resolve).

    An item raises when it is flagged and has no open alert; an ongoing condition (still flagged,
    whatever the flag) raises nothing; an item with an open alert that is no longer flagged resolves.
    """
    raise_ = {item: f"flag:{flag}" for item, flag in flags.items() if flag and item not in open_alerts}
    resolve = {item: kind for item, kind in open_alerts.items() if not flags.get(item)}
    return raise_, resolve


def alert_message(kind: str, summary: ItemSummary | None, item: str, *, area_name: str, period: str,
                  resolved: bool) -> dict[str, str]:
    """Swedish and English text of an alert."""
    label_sv = summary.label_sv if summary and summary.label_sv else item
    label_en = summary.label_en if summary and summary.label_en else item
    what = kind.removeprefix("flag:")
    sv_kind = {"high": "högt läge", "rising": "ökande", "new": "nytt problem"}.get(what, what)
    en_kind = {"high": "high level", "rising": "rising", "new": "new problem"}.get(what, what)
    if resolved:
        return {"sv": f"{label_sv} i {area_name} är inte längre flaggat ({sv_kind}) från {period}.",
                "en": f"{label_en} in {area_name} is no longer flagged ({en_kind}) as of {period}."}
    value = summary.value if summary else None
    return {"sv": f"{label_sv} i {area_name} {period}: {sv_kind} (värde {_fmt(value, 'sv')}).",
            "en": f"{label_en} in {area_name} {period}: {en_kind} (value {_fmt(value, 'en')})."}


def severity(kind: str) -> str:
    """Alert severity by kind: a high level is a warning; rising and new are information."""
    return {"flag:high": "warning"}.get(kind, "info")


KRONOBERG_MIN_COUNT = 3
WEEKDAYS = ("mån", "tis", "ons", "tor", "fre", "lör", "sön")
TIMES_OF_DAY = ("00-06", "06-12", "12-18", "18-24")
AGE_BANDS = ("under_15", "15_17", "18_19")
# Counts of people or events in a Kronoberg block (coarsened for recipients outside police and social services).
_K_COUNTS = ("interventions", "containers", "under_18", "guardian_contacted", "guardian_came", "direct_forfeiture",
             "social_services_notified")
_K_COUNT_MAPS = ("age_bands", "sources", "by_place", "by_weekday", "by_time_of_day")


def kronoberg_aggregates(protocols: Sequence[Mapping[str, Any]], *, tz: str = "Europe/Stockholm",
                         ) -> dict[str, Any] | None:
    """Exact Kronoberg aggregates of forfeiture protocols; None when there were none.

    Interventions; litres (2 decimals) and containers by beverage type; age bands and the share
    under 18; guardian contacted / came; poured out on the spot (``direct_forfeiture``); stated
    sources by category (``unknown`` when none was stated); interventions by place, by local
    weekday (mån–sön) and by local time of day (00-06, 06-12, 12-18, 18-24). Exact: coarsen with
    ``coarsen_kronoberg`` before showing it outside the police and social services.
    """
    if not protocols:
        return None
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    litres: defaultdict[str, float] = defaultdict(float)
    containers: Counter[str] = Counter()
    weekdays: Counter[str] = Counter()
    times: Counter[str] = Counter()
    places: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    bands: Counter[str] = Counter()
    for p in protocols:
        for it in p.get("items") or []:
            bev = str(it.get("beverage") or "other")
            litres[bev] += float(it.get("volume_liters") or 0)
            containers[bev] += int(it.get("containers") or 0)
        local = as_utc(p["occurred_at"]).astimezone(zone)
        weekdays[WEEKDAYS[local.weekday()]] += 1
        times[TIMES_OF_DAY[local.hour // 6]] += 1
        if p.get("place"):
            places[str(p["place"])] += 1
        sources[str(p.get("source") or "unknown")] += 1
        bands[str(p.get("age_band"))] += 1
    n = len(protocols)
    under_18 = bands["under_15"] + bands["15_17"]
    return {
        "interventions": n,
        "litres_by_beverage": {k: round(v, 2) for k, v in sorted(litres.items())},
        "litres_total": round(sum(litres.values()), 2),
        "containers_by_beverage": dict(sorted(containers.items())),
        "containers": sum(containers.values()),
        "age_bands": {b: bands[b] for b in AGE_BANDS},
        "under_18": under_18,
        "share_under_18": round(under_18 / n, 2),
        "guardian_contacted": sum(1 for p in protocols if p.get("guardian_contacted")),
        "guardian_came": sum(1 for p in protocols if p.get("guardian_came")),
        "direct_forfeiture": sum(1 for p in protocols if p.get("direct_forfeiture")),
        "social_services_notified": sum(1 for p in protocols if p.get("social_services_notified")),
        "sources": dict(sorted(sources.items())),
        "by_place": dict(sorted(places.items())),
        "by_weekday": {d: weekdays[d] for d in WEEKDAYS if weekdays[d]},
        "by_time_of_day": {t: times[t] for t in TIMES_OF_DAY if times[t]},
        "coarsened": False,
    }


def merge_kronoberg(blocks: Iterable[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The sum of exact Kronoberg blocks (e.g. a municipality's areas); None when all are None."""
    found = [b for b in blocks if b and not b.get("coarsened")]
    if not found:
        return None
    out: dict[str, Any] = {"interventions": 0, "litres_total": 0.0, "containers": 0}
    for b in found:
        for key in (*_K_COUNTS, "litres_total"):
            out[key] = out.get(key, 0) + b.get(key, 0)
        for key in (*_K_COUNT_MAPS, "litres_by_beverage", "containers_by_beverage"):
            into = out.setdefault(key, {})
            for k, v in (b.get(key) or {}).items():
                into[k] = into.get(k, 0) + v
    out["litres_total"] = round(out["litres_total"], 2)
    out["litres_by_beverage"] = {k: round(v, 2) for k, v in sorted(out["litres_by_beverage"].items())}
    for key in ("containers_by_beverage", "sources", "by_place"):
        out[key] = dict(sorted(out[key].items()))
    out["by_weekday"] = {d: out["by_weekday"][d] for d in WEEKDAYS if out["by_weekday"].get(d)}
    out["by_time_of_day"] = {t: out["by_time_of_day"][t] for t in TIMES_OF_DAY if out["by_time_of_day"].get(t)}
    out["share_under_18"] = round(out["under_18"] / out["interventions"], 2) if out["interventions"] else 0.0
    out["coarsened"] = False
    return out


def _small(value: Any, min_count: int) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < min_count:
        return f"<{min_count}"
    return value


def coarsen_kronoberg(block: Mapping[str, Any] | None, min_count: int = KRONOBERG_MIN_COUNT
                      ) -> dict[str, Any] | None:
    """A Kronoberg block as shown outside the police and social services (a picture may become public).

    Every count 1 … ``min_count``-1 becomes ``"<3"`` (0 stays 0); litres are rounded to whole
    litres, and with fewer than ``min_count`` interventions litres are shown as ``"<3 interventions"``
    and the share under 18 is hidden the same way. An already coarsened block is returned as is.
    """
    if block is None or block.get("coarsened"):
        return dict(block) if block is not None else None
    n = int(block.get("interventions") or 0)
    few = n < min_count
    hidden = f"<{min_count} interventions"
    out: dict[str, Any] = {}
    for key, value in block.items():
        if key in _K_COUNTS:
            out[key] = _small(value, min_count)
        elif key in _K_COUNT_MAPS or key == "containers_by_beverage":
            out[key] = {k: _small(v, min_count) for k, v in value.items()}
        elif key == "litres_by_beverage":
            out[key] = hidden if few else {k: round(v) for k, v in value.items()}
        elif key == "litres_total":
            out[key] = hidden if few else round(value)
        elif key == "share_under_18":
            out[key] = hidden if few else value
        else:
            out[key] = value
    out["coarsened"] = True
    out["threshold"] = min_count
    return out


def kronoberg_view(block: Mapping[str, Any] | None, *, personal: bool,
                   min_count: int = KRONOBERG_MIN_COUNT) -> dict[str, Any] | None:
    """The block a caller may see: exact for police and social services, coarsened for everyone else."""
    if block is None:
        return None
    return dict(block) if personal else coarsen_kronoberg(block, min_count)
