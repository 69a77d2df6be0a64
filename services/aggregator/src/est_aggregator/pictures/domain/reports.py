"""Stored reports as the rules see them, and what a report must be for it to be stored and tallied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from est_shared.checklists import DEFAULT_MAX_COUNT, LEVELS, Checklist
from est_shared.events import ReportSubmitted
from est_shared.freetext import has_control_characters


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

    @property
    def withdrawn(self) -> bool:
        """A withdrawal: it supersedes a report and holds nothing itself (the only report without answers that
        is not "nothing to report"; the intake refuses any other such report), so it counts for nothing."""
        return self.supersedes is not None and not self.answers and not self.nothing_to_report


@dataclass(frozen=True)
class ExpectedReporter:
    """A person expected to report for an area (role reporter, assigned to it)."""

    person_id: str
    actor_id: str


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime (SQLite hands back naive ones, which are UTC here)."""
    if moment.tzinfo is UTC:
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def effective_reports(reports: Iterable[ReportRecord], superseded: Iterable[str] = ()) -> list[ReportRecord]:
    """The reports that count: those no stored report supersedes (corrections replace, never add), and no
    withdrawal (it takes out the report it names and counts for nothing itself)."""
    reports = list(reports)
    gone = set(superseded) | {r.supersedes for r in reports if r.supersedes}
    return [r for r in reports if r.report_id not in gone and not r.withdrawn]


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


def is_late(report: ReportRecord, deadline: datetime | None) -> bool:
    """A report is late when the intake said so or it arrived after the period's deadline."""
    return report.late or (deadline is not None and as_utc(report.received_at) > as_utc(deadline))


def report_states(reports: Iterable[ReportRecord], superseded: Iterable[str]) -> dict[str, str]:
    """What became of each stored report that is not itself a withdrawal: ``counts`` (a first report that
    counts), ``correction`` (a correction that counts), ``corrected`` (a later correction replaced it) or
    ``withdrawn`` (taken back)."""
    reports = list(reports)
    gone = set(superseded)
    by_withdrawal = {r.supersedes for r in reports if r.supersedes and r.withdrawn}
    states: dict[str, str] = {}
    for r in reports:
        if r.withdrawn:
            continue
        if r.report_id in by_withdrawal:
            states[r.report_id] = "withdrawn"
        elif r.report_id in gone:
            states[r.report_id] = "corrected"
        else:
            states[r.report_id] = "correction" if r.supersedes else "counts"
    return states
