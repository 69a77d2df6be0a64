"""A picture built from its periods' tallies, and what changed between two versions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from est_shared.checklists import ChecklistItem
from est_shared.events import ItemSummary, NoteSummary, PictureData
from est_shared.periods import Period

from est_aggregator.pictures.domain.analysis import first_analysis, fmt
from est_aggregator.pictures.domain.periods import history_periods
from est_aggregator.pictures.domain.reports import ExpectedReporter, ReportRecord
from est_aggregator.pictures.domain.tally import EPS, PeriodTally, Rules, assess

DEFAULT_RULES = Rules()

NEW_COMMENT = "Ny kommentar / New comment"
# A change of the Kronoberg figures is named without its numbers: the change list goes to every recipient,
# and small counts are for police and social services only.
KRONOBERG_CHANGED = "Kronobergsmodellens siffror har ändrats / The Kronoberg figures changed"
"""The change a version with a new key-function comment names (a comment alone makes a new version)."""


_set_attribute = object.__setattr__


def item_summary(values: dict[str, Any]) -> ItemSummary:
    """``ItemSummary.model_construct(**values)`` for values of every field, in the fields' order.

    What ``model_construct`` sets, set directly: its loop over each field's aliases and default
    is a large share of a picture's build (one summary per checklist item, for hundreds of
    pictures a second). Valid for a model without aliases, extra fields, private attributes or
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
    continues: dict[str, list[str]] = field(default_factory=dict)
    """item code -> the earlier codes its series continues (``domain.lineage``)"""
    continued: dict[str, list[str]] = field(default_factory=dict)
    """item code -> the earlier codes whose answers this period's value holds"""


def build_picture(*, municipality_id: str, area_id: str, area_name: str, period: Period,
                  superseded: Iterable[str], items: Sequence[ChecklistItem], expected: Sequence[ExpectedReporter],
                  deadline: datetime | None, reports_by_period: Mapping[Period, Sequence[ReportRecord]] | None = None,
                  status: str = "open", version: int = 0,
                  comments: Sequence[dict[str, Any]] = (), rules: Rules = DEFAULT_RULES,
                  kronoberg: dict[str, Any] | None = None,
                  tallies: Mapping[Period, PeriodTally] | None = None,
                  notes: Sequence[NoteSummary] = (),
                  lineage: Mapping[str, Sequence[str]] | None = None) -> BuiltPicture:
    """Compute the picture of one area and period from the stored reports of it and its history.

    Give either ``reports_by_period`` or ``tallies`` (``PeriodTally`` per period, the picture's own
    built with ``deadline``), which callers that keep them pass instead. ``notes``: the reporters' notes of
    the period (``domain.notes.picture_notes``), all of them: who reads their text is the reader's view.
    ``lineage``: per item that continues earlier codes, its own code and theirs (``domain.lineage``): their
    answers count for it, in the period and in its history.
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
    lineage = lineage or {}
    answered = sums.answered()
    continued: dict[str, list[str]] = {}
    for item in items:
        codes = lineage.get(item.code)
        totals = sums.totals(item, codes)
        history = [t.sums.value(item, codes) if t is not None and t.count else None for t in past]
        if codes is not None and (older := sums.continued(codes)):
            continued[item.code] = older
            answered.add(item.code)
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
                              reports=current.count, answered=answered)
    picture = PictureData(
        municipality_id=municipality_id, area_id=area_id, area_name=area_name, period=period.id,
        status=status, version=version, reports=current.count, items=summaries,
        completeness=comp, first_analysis=analysis, comments=list(comments), notes=list(notes),
        note_count=len(notes), kronoberg=kronoberg)
    return BuiltPicture(picture=picture, means=means,
                        continues={code: list(codes[1:]) for code, codes in lineage.items()}, continued=continued)


def picture_changes(old: PictureData, new: PictureData,
                    continues: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """What changed between two versions, e.g. ``klotter: 1 → 2``, ``reports: 2 → 3``.

    An item the old version had under an earlier code (``continues``: a checklist change since) is held
    against that code's value (``klotter → klotter_tagg`` is named once, ``klotter_tagg: 2 → 3`` only if
    the value changed)."""
    out: list[str] = []
    if old.reports != new.reports:
        out.append(f"reports: {old.reports} → {new.reports}")
    for code, s in new.items.items():
        before = old.items.get(code)
        older = [old.items[c] for c in (continues or {}).get(code, ()) if c in old.items] if before is None else []
        if older:
            out.append(f"{', '.join(o.item for o in older)} → {code}")
        old_value = before.value if before else _value_of(s.answer, [o.value for o in older])
        if abs(old_value - s.value) > EPS:
            out.append(f"{code}: {fmt(old_value, 'en')} → {fmt(s.value, 'en')}")
        old_flag = before.flag if before else next((o.flag for o in older if o.flag), None)
        if old_flag != s.flag:
            out.append(f"{code} flag: {old_flag or '-'} → {s.flag or '-'}")
    oc, nc = old.completeness, new.completeness
    for name in ("received", "late", "nothing_to_report"):
        a, b = getattr(oc, name), getattr(nc, name)
        if a != b:
            out.append(f"completeness.{name}: {a} → {b}")
    if len(new.comments) > len(old.comments):
        out.append(NEW_COMMENT)
    if new.notes != old.notes:  # a correction may change only a note's text: a reader sees it
        out.append(f"Anteckningar / Notes: {old.note_count} → {new.note_count}")
    if (old.kronoberg or None) != (new.kronoberg or None):  # a protocol recorded after publishing
        out.append(KRONOBERG_CHANGED)
    return out


def _value_of(answer: str, values: Sequence[float]) -> float:
    """Several earlier codes' values as one item's: a level the highest, counts and yes answers added."""
    if not values:
        return 0.0
    return max(values) if answer == "level" else float(sum(values))
