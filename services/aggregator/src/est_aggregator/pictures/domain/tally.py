"""Tallies: per item totals of a period's reports, their assessment against history, completeness."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from est_shared.checklists import MAX_COUNT_CEILING, ChecklistItem
from est_shared.events import Completeness

from est_aggregator.pictures.domain.reports import ExpectedReporter, ReportRecord, as_utc

EPS = 1e-9


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

    def answered(self) -> set[str]:
        """The item codes at least one added report answered (a zero or a no is an answer too)."""
        return set(self.by_code)

    def _acc(self, code: str, codes: Sequence[str] | None) -> list[Any] | None:
        """The sums of one code, or of several taken as answers to one item (``codes``: its lineage)."""
        by_code = self.by_code
        if codes is None:
            return by_code.get(code)
        accs = [a for c in codes if (a := by_code.get(c)) is not None]
        if len(accs) <= 1:
            return accs[0] if accs else None
        places: dict[str, list[Any]] | None = None
        for a in accs:
            for key, (mentions, first) in (a[4] or {}).items():
                places = places if places is not None else {}
                seen = places.get(key)
                places[key] = [mentions, first] if seen is None else [seen[0] + mentions, min(seen[1], first)]
        return [sum(a[0] for a in accs), sum(a[1] for a in accs), max(a[2] for a in accs),
                sum(a[3] for a in accs), places]

    def continued(self, codes: Sequence[str]) -> list[str]:
        """Of an item's lineage (its own code first), the earlier codes that added reports answered."""
        return [c for c in codes[1:] if c in self.by_code]

    def value(self, item: ChecklistItem, codes: Sequence[str] | None = None) -> float:
        """The item's value: count → total, level → max, boolean → yes answers (``codes``: the item's own and
        the ones it continues, ``domain.lineage.history_codes``, whose answers all count for it)."""
        return _value(item.answer, self._acc(item.code, codes))

    def totals(self, item: ChecklistItem, codes: Sequence[str] | None = None) -> ItemTotals:
        """The item's totals (value, level mean, reports with a non-zero answer, places most named first,
        equally named ones in the order of the reports that first named them); ``codes`` as in ``value``."""
        acc = self._acc(item.code, codes)
        mean = round(acc[1] / acc[0], 2) if item.answer == "level" and acc is not None else None
        places: dict[str, int] = {}
        if acc is not None and acc[4] is not None:
            places = {k: v[0] for k, v in sorted(acc[4].items(), key=lambda kv: (-kv[1][0], kv[1][1]))}
        return ItemTotals(value=_value(item.answer, acc), mean=mean, reports=acc[3] if acc is not None else 0,
                          places=places)


def _value(answer: str, acc: list[Any] | None) -> float:
    """An item's value from its sums: count → total, level → max, boolean → yes answers."""
    if answer == "count":
        return acc[1] if acc is not None else 0
    if answer == "level":
        return acc[2] if acc is not None else 0.0
    return float(acc[3]) if acc is not None else 0.0


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
        if r.withdrawn:  # takes the report it names out and counts for nothing itself, not even as heard from
            self.replaces.add(r.supersedes)  # type: ignore[arg-type]  # a withdrawal names one
            if not (r.late or (self.deadline is not None and as_utc(r.received_at) > self.deadline)):
                self.on_time.add(r.reporter_id)  # like a superseded report's (``completeness``)
            return
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
