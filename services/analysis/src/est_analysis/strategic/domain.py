"""Rules of the analysis service as plain functions: persistent problems (k of n), ranking, measure effect.

Definitions (documented in the API and the report):

- An item is *flagged* in a reporting period when the published picture of that period carries a flag
  (``rising``, ``high`` or ``new``). A period without a picture counts as not flagged.
- *k of n*: an item is a persistent problem at period P when it is flagged in at least k of the n
  reporting periods ending at P (P included). With fewer than n periods of history the missing ones count
  as not flagged, so a problem still needs k flags. Defaults k=3, n=4; per item overridable.
- A persistent-problem *episode* opens at the first period where k of n holds and closes (is resolved)
  at the ``resolve_after``-th consecutive period in which it no longer holds.
- *Need*: areas rank by their persistent problems over the analysis period, then by the *need score*: 10 per
  persistent problem + 2 per item-period flagged ``high`` + 1 per other flagged item-period
  (``rising``/``new``), then high flags, the highest value reached and area id. The summary names the
  first area only when it has a persistent problem.
- *Measure effect*: per targeted item, the mean value over the m reporting periods before the start vs
  the m periods from the start on (the period holding the start date counts as "after"), with
  m = min(periods available on each side, max 8); periods without a picture are skipped.
- *What a picture may carry* (``picture_faults``): a weekly or biweekly period of the years 1900–2999,
  ids and names that fit their columns without control characters, at most ``MAX_ITEMS`` items with
  checklist codes, each value a finite number 0 … ``MAX_VALUE``, completeness counts 0 … ``MAX_COUNT``.
  A picture event with anything else is refused whole (the consumer dead-letters it); a stored value
  outside those bounds (kept before the rule) counts as no value (``picture_value``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from est_shared.checklists import Checklist, continued_codes, items_by_code
from est_shared.errors import Invalid, NotFound
from est_shared.errors import TextRefused as SharedTextRefused
from est_shared.events import PictureData
from est_shared.freetext import has_control_characters
from est_shared.periods import AnalysisKind, Period, PeriodError, period_label

ITEM_CODE = r"^[a-z][a-z0-9_]{0,39}$"
MAX_ITEMS = 200  # items in one picture
MAX_VALUE = 1e9  # an item's value: a count summed over a period's reports, a level or yes answers
MAX_COUNT = 1_000_000  # completeness counts (reporters)
MAX_VERSION = 2**31 - 1
MAX_ID, MAX_NAME, MAX_LABEL = 100, 200, 300
FIRST_YEAR, LAST_YEAR = 1900, 2999
_ITEM_CODE = re.compile(ITEM_CODE)

FLAG_WEIGHT = {"high": 2, "rising": 1, "new": 1}
PERSISTENT_WEIGHT = 10
MEASURE_STATUSES = ("planned", "active", "completed", "cancelled")


class UnknownMunicipality(NotFound):
    """The municipality is not in the organisation."""

    title = "Unknown municipality"

    def __init__(self, municipality_id: str) -> None:
        super().__init__(f"Ingen kommun {municipality_id!r}.", f"No municipality {municipality_id!r}.",
                         reason="unknown_municipality")


class NotAnAnalysisPeriod(Invalid):
    """The period is not a quarter, tertial or year of the years 1900–2999 (``why`` says what it is instead)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"period måste vara ett kvartal, tertial eller år ({FIRST_YEAR}–{LAST_YEAR}), t.ex. 2026-T3 "
                         "eller 2026.",
                         f"period must be a quarter, tertial or year ({FIRST_YEAR}-{LAST_YEAR}), e.g. 2026-T3 or 2026.",
                         errors=[{"field": "body.period", "message": why}], reason="period")


class AnalysisNotFound(NotFound):
    """No analysis with that id."""

    def __init__(self, analysis_id: str) -> None:
        super().__init__(f"Ingen analys {analysis_id!r}.", f"No analysis {analysis_id!r}.")


class MeasureNotFound(NotFound):
    """No measure with that id."""

    def __init__(self, measure_id: str) -> None:
        super().__init__(f"Ingen åtgärd {measure_id!r}.", f"No measure {measure_id!r}.")


class TextRefused(SharedTextRefused):
    """The shared free-text refusal, reasoned ``text`` in this service's answers."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors, reason="text")


class InvalidMeasure(Invalid):
    """A measure that breaks a rule (dates, area, actor, items); ``field_name`` is the field of the request
    body, ``message`` what its entry in ``errors`` says (the English reason unless given)."""

    title = "Invalid measure"

    def __init__(self, message_en: str, message_sv: str, field_name: str = "", *, message: str | None = None
                 ) -> None:
        super().__init__(message_sv, message_en, reason="measure",
                         errors=[{"field": f"body.{field_name}", "message": message or message_en}])
        self.message_en, self.message_sv, self.field_name = message_en, message_sv, field_name


@dataclass(frozen=True)
class Rule:
    """The k-of-n rule for one item."""

    k: int = 3
    n: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"k of n needs 1 <= k <= n (got k={self.k}, n={self.n})")


def rule_for(item: str, default: Rule, overrides: Mapping[str, Mapping[str, int]] | None = None,
             municipality: str | None = None) -> Rule:
    """The rule of an item: the most specific override configured, else the default.

    Override keys, most specific first: ``"<municipality>/<item>"``, ``"<item>"``, ``"<municipality>"``
    (a municipality's own default for all its items). Ids never collide: item codes and municipality ids
    are different vocabularies, and a municipality id is never an item code in practice.
    """
    ov = overrides or {}
    o = (municipality and ov.get(f"{municipality}/{item}")) or ov.get(item) or (municipality and ov.get(municipality))
    if not o:
        return default
    return Rule(k=int(o.get("k", default.k)), n=int(o.get("n", default.n)))


def scoped_overrides(overrides: Mapping[str, Mapping[str, int]], municipality: str,
                     items: list[str]) -> dict[str, Mapping[str, int]]:
    """The per-item overrides that apply in one municipality, resolved by ``rule_for``'s precedence."""
    out: dict[str, Mapping[str, int]] = {}
    for item in items:
        o = overrides.get(f"{municipality}/{item}") or overrides.get(item) or overrides.get(municipality)
        if o:
            out[item] = o
    return out


# --- what a picture may carry --------------------------------------------------------------

def _text_fault(text: str, limit: int) -> str | None:
    if len(text) > limit:
        return "too_long"
    return "control_character" if has_control_characters(text) else None


def stored_id(text: str, limit: int = MAX_ID) -> bool:
    """Whether an id could be one this service stores: it fits its column and holds no control character."""
    return _text_fault(text, limit) is None


def _number_ok(value: float, top: float) -> bool:
    return math.isfinite(value) and 0 <= value <= top


def picture_faults(pic: PictureData) -> list[str]:
    """Why a picture cannot be analysed (see the module docstring); empty when it can.

    Each fault is ``field: reason`` with no text of the picture in it (it ends up in logs and
    dead-letter headers): an item is named only by a code that is a checklist code.
    """
    faults = [f"{name}: {why}" for name, text, limit in (
        ("municipality_id", pic.municipality_id, MAX_ID), ("area_id", pic.area_id, MAX_ID),
        ("area_name", pic.area_name, MAX_NAME)) if (why := _text_fault(text, limit))]
    try:
        period = Period.parse(pic.period)
    except ValueError:  # PeriodError, or a year no date has (0000)
        faults.append("period: not_a_period")
    else:
        if period.kind not in ("week", "biweek"):
            faults.append("period: not_a_reporting_period")
        elif not FIRST_YEAR <= period.start.year <= LAST_YEAR:
            faults.append("period: out_of_range")
    if not 1 <= pic.version <= MAX_VERSION:
        faults.append("version: out_of_range")
    if len(pic.items) > MAX_ITEMS:
        return [*faults, "items: too_many"]
    for code, it in pic.items.items():
        if not _ITEM_CODE.match(code) or code != it.item:
            faults.append("items: not_an_item_code")
            continue
        if not _number_ok(it.value, MAX_VALUE):
            faults.append(f"items.{code}.value: out_of_range")
        if any(_text_fault(label, MAX_LABEL) for label in (it.label_sv, it.label_en)):
            faults.append(f"items.{code}.label: not_a_label")
    c = pic.completeness
    for name in ("expected", "received", "on_time", "late", "nothing_to_report"):
        if not 0 <= getattr(c, name) <= MAX_COUNT:
            faults.append(f"completeness.{name}: out_of_range")
    if not _number_ok(c.rate, MAX_COUNT):
        faults.append("completeness.rate: out_of_range")
    return faults


def picture_value(point: Point | None) -> float | None:
    """A stored item's value, or None when there is none or it is no finite number 0 … ``MAX_VALUE``
    (stored before ``picture_faults`` refused such pictures): it then counts as no value."""
    value = point.get("value") if point else None
    if value.__class__ is bool or not isinstance(value, int | float):
        return None
    return float(value) if _number_ok(value, MAX_VALUE) else None


# --- periods --------------------------------------------------------------------------------

def analysis_period_of(reporting_period: Period, kind: AnalysisKind) -> Period:
    """The quarter or tertial a week or biweekly period counts to: the one holding its (first) Thursday."""
    return Period.containing(kind, reporting_period.start + timedelta(days=3))


def parse_analysis_period(text: str) -> Period:
    """Parse a quarter or tertial id; raises NotAnAnalysisPeriod otherwise."""
    try:
        p = Period.parse(text)
    except ValueError as exc:  # PeriodError, or a year no date has (0000)
        raise NotAnAnalysisPeriod(str(exc) if isinstance(exc, PeriodError) else f"not a period id: {text!r}"
                                  ) from exc
    if p.kind not in ("quarter", "tertial", "year"):
        raise NotAnAnalysisPeriod(f"{text!r} is not a quarter (2026-Q4), tertial (2026-T3) or year (2026)")
    if not FIRST_YEAR <= p.start.year <= LAST_YEAR:  # its history reaches back, its end forward
        raise NotAnAnalysisPeriod(f"{text!r} is not between {FIRST_YEAR} and {LAST_YEAR}")
    return p


def window(period: Period, n: int) -> list[Period]:
    """The n reporting periods ending at ``period`` (oldest first)."""
    out = [period]
    while len(out) < n:
        out.append(out[-1].prev())
    return out[::-1]


def timeline(first: Period, last: Period) -> list[Period]:
    """Consecutive periods of one kind from ``first`` to ``last`` inclusive."""
    out: list[Period] = []
    p = first
    while p <= last:
        out.append(p)
        p = p.next()
    return out


# --- k of n ----------------------------------------------------------------------------------

Point = Mapping[str, Any]  # {"value": float | None, "flag": str | None, ...}
History = Mapping[str, Mapping[str, Point]]  # period id -> item code -> point


def is_flagged(history: History, period_id: str, item: str) -> bool:
    """Whether the item carries a flag in the period's picture."""
    point = history.get(period_id, {}).get(item)
    return bool(point and point.get("flag"))


def flagged_in_window(history: History, item: str, period: Period, n: int) -> list[str]:
    """Periods of the n-window ending at ``period`` in which the item was flagged."""
    return [p.id for p in window(period, n) if is_flagged(history, p.id, item)]


def holds(history: History, item: str, period: Period, rule: Rule) -> bool:
    """Whether k of n holds for the item at the period."""
    return len(flagged_in_window(history, item, period, rule.n)) >= rule.k


def holds_series(flags: Sequence[bool], rule: Rule, start: int = 0) -> list[bool]:
    """For consecutive periods' flags: whether k of n holds at each period from ``start`` on (earlier history
    unflagged); a running window sum, linear in the number of periods."""
    out: list[bool] = []
    total = sum(flags[max(0, start - rule.n): start])  # the loop drops flags[i - n] before judging i
    for i in range(start, len(flags)):
        total += flags[i]
        if i - rule.n >= 0:
            total -= flags[i - rule.n]
        out.append(total >= rule.k)
    return out


@dataclass(frozen=True)
class Episode:
    """A run of a persistent problem: opened at one index, resolved at another (or still open)."""

    opened: int
    resolved: int | None = None


def episodes(flags: Sequence[bool], rule: Rule, resolve_after: int, start: int = 0) -> list[Episode]:
    """Persistent-problem episodes over consecutive periods' flags, with resolution after a quiet run.

    With ``start`` the machine begins (closed) at that index, reading the flags before it only as k-of-n
    context. Its result equals the full run from the first index at which the full run is closed on: a run
    started later is never open where the full one is closed (it opens only where k of n holds, and then
    both are open with the same quiet count), so once both are closed they stay identical.
    """
    out: list[Episode] = []
    opened: int | None = None
    quiet = 0
    for i, h in enumerate(holds_series(flags, rule, start), start):
        if opened is None:
            if h:
                opened, quiet = i, 0
            continue
        quiet = 0 if h else quiet + 1
        if quiet >= max(1, resolve_after):
            out.append(Episode(opened, i))
            opened = None
    if opened is not None:
        out.append(Episode(opened))
    return out


@dataclass
class TrendPoint:
    """An item's value and flag in one reporting period (None: no picture)."""

    period: str
    value: float | None
    flag: str | None


@dataclass
class PersistentProblem:
    """An item that was a persistent problem at one or more periods of an analysis."""

    item: str
    label_sv: str
    label_en: str
    k: int
    n: int
    held_at: list[str]
    periods_flagged: list[str]
    max_flagged: int
    ongoing: bool
    trend: list[TrendPoint] = field(default_factory=list)


def item_labels(history: History, item: str) -> tuple[str, str]:
    """The newest Swedish and English labels of an item found in the history."""
    for pid in sorted(history, reverse=True):
        point = history[pid].get(item)
        if point and (point.get("label_sv") or point.get("label_en")):
            return str(point.get("label_sv") or item), str(point.get("label_en") or item)
    return item, item


def trend(history: History, item: str, periods: Sequence[Period]) -> list[TrendPoint]:
    """The item's value and flag per period (None where no picture or no value)."""
    out = []
    for p in periods:
        point = history.get(p.id, {}).get(item)
        if p.id not in history:
            out.append(TrendPoint(p.id, None, None))
        elif point is None or point.get("value") is None:
            out.append(TrendPoint(p.id, 0.0, point.get("flag") if point else None))
        else:
            out.append(TrendPoint(p.id, picture_value(point), point.get("flag")))
    return out


def shown_periods(history: History, periods: Sequence[Period], as_of: date | None = None) -> list[Period]:
    """The periods of an analysis a reader may be told about: those with a picture that have begun by
    ``as_of`` (a week not yet begun, or one without data, is never named as flagged or persistent)."""
    return [p for p in periods if p.id in history and (as_of is None or p.start <= as_of)]


def persistent_problems(history: History, periods: Sequence[Period], *, default: Rule,
                        overrides: Mapping[str, Mapping[str, int]] | None = None, resolve_after: int = 1,
                        as_of: date | None = None) -> list[PersistentProblem]:
    """Items for which k of n holds at one or more of ``periods`` (k of n evaluated at each period).

    Only the periods with data that have begun by ``as_of`` are named (``shown_periods``), and the flags
    listed are those inside ``periods``: the lookback before the first one feeds k of n but is no part of the
    analysis. A problem is ongoing when its episode is still open at the latest period with data: k of n held
    there or in one of the ``resolve_after`` periods up to it.
    """
    shown = shown_periods(history, periods, as_of)
    if not shown:
        return []
    latest = shown[-1]
    inside = {p.id for p in periods}
    begun = [p for p in periods if p <= latest]
    recent = begun[-max(1, resolve_after):]
    items = sorted({i for pts in history.values() for i in pts})
    out = []
    for item in items:
        rule = rule_for(item, default, overrides)
        held: list[str] = []
        flagged: set[str] = set()
        best = 0
        for p in shown:
            in_window = flagged_in_window(history, item, p, rule.n)
            best = max(best, len(in_window))
            if len(in_window) >= rule.k:
                held.append(p.id)
                flagged.update(f for f in in_window if f in inside)
        if not held:
            continue
        sv, en = item_labels(history, item)
        out.append(PersistentProblem(
            item=item, label_sv=sv, label_en=en, k=rule.k, n=rule.n, held_at=held,
            periods_flagged=sorted(flagged), max_flagged=best,
            ongoing=any(holds(history, item, p, rule) for p in recent),
            trend=trend(history, item, begun)))
    out.sort(key=lambda pp: (-len(pp.held_at), -pp.max_flagged, pp.item))
    return out


# --- checklist versions ----------------------------------------------------------------------

@dataclass(frozen=True)
class Vocabulary:
    """What a municipality's checklists say of item codes: their labels and the series an item continues.

    An item keeps its code across versions, so its series needs nothing; a renamed, split or merged one
    names the codes it replaces (``ChecklistItem.continues``, followed transitively). Labels are those of
    the newest version naming a code (the one in force first).
    """

    labels: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    answers: Mapping[str, str] = field(default_factory=dict)
    lineage: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """item in force -> its own code and the earlier codes it continues (only items that continue some)"""
    folded: frozenset[str] = frozenset()
    """earlier codes an item in force continues (no series of their own)"""

    def successors(self, code: str) -> list[str]:
        """The items in force that continue ``code`` (none for a code that is in force itself)."""
        return [s for s, codes in self.lineage.items() if code in codes[1:]] if code in self.folded else []


def vocabulary(checklists: Sequence[Checklist]) -> Vocabulary:
    """The vocabulary of a municipality from its checklists, newest first and the one in force first
    (``OrgSnapshot.checklist_versions_for``; any others after, for labels of codes they alone name)."""
    known = items_by_code(checklists)
    in_force = {i.code for i in checklists[0].items} if checklists else set()
    lineage = {code: codes for code in sorted(in_force) if len(codes := continued_codes(code, known)) > 1}
    folded = frozenset(c for codes in lineage.values() for c in codes[1:] if c not in in_force)
    return Vocabulary(labels={c: (i.label_sv, i.label_en) for c, i in known.items()},
                      answers={c: i.answer for c, i in known.items()}, lineage=lineage, folded=folded)


def _combined(code: str, parts: Sequence[Point], answer: str | None) -> dict[str, Any]:
    """One point from the points of an item and the earlier codes it continues, in one period: the values
    as answers to the item (a level the highest, counts and yes answers added), the most serious flag."""
    values = [v for p in parts if (v := picture_value(p)) is not None]
    value = (max(values) if answer == "level" else sum(values)) if values else None
    flags = [str(f) for p in parts if (f := p.get("flag"))]
    own = next((p for p in parts if p.get("item", code) == code), parts[0])
    return {**own, "value": value, "flag": max(flags, key=lambda f: (FLAG_WEIGHT.get(f, 0), f)) if flags else None}


def continued_points(points: Mapping[str, Point], vocab: Vocabulary) -> dict[str, Point]:
    """One period's items as the municipality's checklist in force names them: an item that continues
    earlier codes holds their points (``continued``: those codes), the earlier codes are no items of their
    own, and every known code has the newest labels. A split's successors each hold the old point whole."""
    out: dict[str, Point] = {}
    for code, point in points.items():
        if code in vocab.folded:
            continue
        labels = vocab.labels.get(code)
        if labels and (point.get("label_sv"), point.get("label_en")) != labels:
            point = {**point, "label_sv": labels[0], "label_en": labels[1]}
        out[code] = point
    for code, codes in vocab.lineage.items():
        older = [c for c in codes[1:] if c in points]
        if not older:
            continue
        parts = [{**points[c], "item": c} for c in codes if c in points]
        sv, en = vocab.labels.get(code, (code, code))
        out[code] = {**_combined(code, parts, vocab.answers.get(code)), "item": code, "label_sv": sv,
                     "label_en": en, "answer": vocab.answers.get(code, parts[0].get("answer")),
                     "continued": older}
    return out


def continue_series(history: History, vocab: Vocabulary) -> dict[str, dict[str, Point]]:
    """The history with one series per item across checklist versions (``continued_points`` per period)."""
    return {pid: continued_points(pts, vocab) for pid, pts in history.items()}


def moved_problems(states: Mapping[str, Mapping[str, Any]], vocab: Vocabulary) -> list[tuple[str, str]]:
    """Open persistent problems of earlier codes that an item in force continues: (old code, item). The
    problem goes on as the item's (its alert too); a split's first successor without an open problem takes it."""
    out: list[tuple[str, str]] = []
    taken = {code for code, st in states.items() if st.get("status") == "open"}
    for old, st in sorted(states.items()):
        if st.get("status") != "open" or old not in vocab.folded:
            continue
        heir = next((s for s in vocab.successors(old) if s not in taken), None)
        if heir is not None:
            taken.add(heir)
            out.append((old, heir))
    return out


def inherited_overrides(overrides: Mapping[str, Mapping[str, int]], vocab: Vocabulary,
                        municipality: str | None) -> dict[str, Mapping[str, int]]:
    """The k-of-n overrides with an item that continues earlier codes taking theirs when it has none of its
    own (``"<municipality>/<code>"`` and ``"<code>"``, the first earlier code that has one)."""
    out = dict(overrides)
    for code, codes in vocab.lineage.items():
        scopes = [f"{municipality}/", ""] if municipality else [""]
        for scope in scopes:
            if f"{scope}{code}" in overrides:
                continue
            found = next((overrides[f"{scope}{c}"] for c in codes[1:] if f"{scope}{c}" in overrides), None)
            if found is not None:
                out[f"{scope}{code}"] = found
    return out


def _since_text(pid: str | None, lang: str) -> str:
    if pid is None:
        return ""
    try:
        p = Period.parse(pid)
    except PeriodError:
        return ""
    week = p.start.isocalendar()
    if p.kind != "week":
        return f" från {pid}" if lang == "sv" else f" from {pid}"
    return f" från v. {week.week} {week.year}" if lang == "sv" else f" from week {week.week} {week.year}"


def continuations(history: History, vocab: Vocabulary) -> list[dict[str, Any]]:
    """What a reader must be told of checklist versions in a history (period -> item code -> point, before
    ``continue_series``): per item in force whose earlier codes the history holds, those codes with their
    labels, the first period its own code has a picture (``since``, None: not yet) and the sentence
    ("Klotter och tagg (ersätter Klotter från v. 8 2026)" / "Graffiti and tags (replaces Graffiti from
    week 8 2026)")."""
    out = []
    for code, codes in sorted(vocab.lineage.items()):
        older = [c for c in codes[1:] if any(c in pts for pts in history.values())]
        if not older:
            continue
        own = sorted(pid for pid, pts in history.items() if code in pts)
        since = own[0] if own else None
        sv, en = vocab.labels.get(code, (code, code))
        olds = [{"item": c, "label_sv": vocab.labels.get(c, (c, c))[0], "label_en": vocab.labels.get(c, (c, c))[1]}
                for c in older]
        out.append({"item": code, "label_sv": sv, "label_en": en, "continues": olds, "since": since, "text": {
            "sv": f"{sv} (ersätter {', '.join(o['label_sv'] for o in olds)}{_since_text(since, 'sv')})",
            "en": f"{en} (replaces {', '.join(o['label_en'] for o in olds)}{_since_text(since, 'en')})"}})
    return out


# --- ranking ---------------------------------------------------------------------------------

@dataclass
class AreaNeed:
    """How much an area needs attention over an analysis period."""

    area_id: str
    area_name: str
    persistent_problems: int
    high_flags: int
    other_flags: int
    max_value: float = 0.0
    score: int = 0
    rank: int = 0


def flag_counts(history: History, periods: Sequence[Period]) -> tuple[int, int, float]:
    """(item-periods flagged high, other flagged item-periods, highest value) over the periods."""
    high = other = 0
    top = 0.0
    for p in periods:
        for point in history.get(p.id, {}).values():
            flag = point.get("flag")
            if flag == "high":
                high += 1
            elif flag:
                other += 1
            value = picture_value(point)
            if value is not None:
                top = max(top, value)
    return high, other, top


def need_score(persistent: int, high: int, other: int) -> int:
    """10 per persistent problem + 2 per high-flagged item-period + 1 per other flagged item-period."""
    return PERSISTENT_WEIGHT * persistent + FLAG_WEIGHT["high"] * high + other


def rank_areas(areas: Sequence[AreaNeed]) -> list[AreaNeed]:
    """Areas by need, highest first; fills in score and rank (1 = greatest need).

    Persistent problems come first: an area with none never outranks one that has them, however many
    single flags it collects; the need score orders areas with equally many."""
    for a in areas:
        a.score = need_score(a.persistent_problems, a.high_flags, a.other_flags)
    ranked = sorted(areas, key=lambda a: (-a.persistent_problems, -a.score, -a.high_flags, -a.max_value,
                                          a.area_id))
    for i, a in enumerate(ranked, 1):
        a.rank = i
    return ranked


# --- measures --------------------------------------------------------------------------------

Direction = Literal["fell", "rose", "unchanged", "insufficient_data"]


@dataclass
class Effect:
    """Mean value of an item before and after a measure started."""

    item: str
    periods_compared: int
    before_mean: float | None
    after_mean: float | None
    change: float | None
    change_pct: float | None
    direction: Direction
    before_periods: list[str] = field(default_factory=list)
    after_periods: list[str] = field(default_factory=list)


def measure_effect(item: str, series: Sequence[tuple[Period, float]], start: date, *, max_periods: int = 8,
                   as_of: date | None = None) -> Effect:
    """Compare the mean over the m periods before ``start`` with the m periods from ``start`` on."""
    ordered = sorted(series, key=lambda pv: pv[0])
    before = [(p, v) for p, v in ordered if p.end <= start]
    after = [(p, v) for p, v in ordered if p.end > start and (as_of is None or p.start < as_of)]
    m = min(len(before), len(after), max_periods)
    if m == 0:
        return Effect(item, 0, None, None, None, None, "insufficient_data")
    b, a = before[-m:], after[:m]
    bm = sum(v for _, v in b) / m
    am = sum(v for _, v in a) / m
    change = am - bm
    pct = (change / bm * 100.0) if bm else None
    direction: Direction = "unchanged" if abs(change) < 1e-9 else ("fell" if change < 0 else "rose")
    return Effect(item, m, round(bm, 3), round(am, 3), round(change, 3), None if pct is None else round(pct, 1),
                  direction, [p.id for p, _ in b], [p.id for p, _ in a])


def in_force(start: date, end: date | None, status: str, period: Period) -> bool:
    """Whether a measure overlaps a period and was not cancelled."""
    return status != "cancelled" and start < period.end and (end is None or end >= period.start)


def check_measure_dates(start: date, end: date | None) -> None:
    """A measure falls in the years 1900–2999 and cannot end before it starts."""
    for name, day in (("start", start), ("end", end)):
        if day is not None and not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise InvalidMeasure(f"{name} must be between {FIRST_YEAR} and {LAST_YEAR}",
                                 f"{'startdatum' if name == 'start' else 'slutdatum'} måste ligga mellan "
                                 f"{FIRST_YEAR} och {LAST_YEAR}", name)
    if end is not None and end < start:
        raise InvalidMeasure("end must not be before start", "slutdatum får inte ligga före startdatum", "end")


# --- completeness ----------------------------------------------------------------------------

def completeness_summary(pictures: Mapping[str, Mapping[str, Any]], periods: Sequence[Period]) -> dict[str, Any]:
    """Reporting completeness of an area over periods: pictures present, reports expected and received."""
    per_period = []
    expected = received = on_time = late = 0
    for p in periods:
        c = pictures.get(p.id)
        if c is None:
            per_period.append({"period": p.id, "picture": False, "expected": 0, "received": 0, "rate": None})
            continue
        e, r = int(c.get("expected", 0)), int(c.get("received", 0))
        expected, received = expected + e, received + r
        on_time, late = on_time + int(c.get("on_time", 0)), late + int(c.get("late", 0))
        per_period.append({"period": p.id, "picture": True, "expected": e, "received": r,
                           "rate": round(r / e, 3) if e else None})
    present = sum(1 for x in per_period if x["picture"])
    return {"periods": len(periods), "pictures": present, "expected": expected, "received": received,
            "on_time": on_time, "late": late, "rate": round(received / expected, 3) if expected else None,
            "per_period": per_period}


# --- lineage: an area that replaces others ----------------------------------------------------

def held_from(periods: Sequence[Period], since: datetime | None, tz: str) -> list[Period]:
    """The periods an area held from ``since`` has (``Area.since``): those beginning once it existed (its first
    period is the first one beginning after it was made; None: all)."""
    if since is None:
        return list(periods)
    return [p for p in periods if p.start_at(tz) >= since]


def before(periods: Sequence[Period], since: datetime | None, tz: str) -> list[Period]:
    """The periods that began before an area held from ``since`` existed (those of the areas it replaces)."""
    if since is None:
        return []
    return [p for p in periods if p.start_at(tz) < since]


def _names(names: Sequence[str], word: str) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


def lineage_text(names: Sequence[str]) -> dict[str, str]:
    """What a report says of an area that replaces others: "ersätter Ljungby centrum" / "replaces …"."""
    if not names:
        return {"sv": "", "en": ""}
    return {"sv": f"ersätter {_names(names, 'och')}", "en": f"replaces {_names(names, 'and')}"}


# --- summary text ----------------------------------------------------------------------------

def summary_text(municipality_name: str, period: str, ranked: Sequence[AreaNeed],
                 problems_by_area: Mapping[str, Sequence[PersistentProblem]], measures: int) -> dict[str, str]:
    """A two-language summary of an analysis."""
    total = sum(len(v) for v in problems_by_area.values())
    areas_with = sum(1 for v in problems_by_area.values() if v)
    # the greatest need is an area with the most persistent problems; with none anywhere none is named
    top = ranked[0] if ranked and ranked[0].persistent_problems else None
    # the period named as people say it ("tertial 2 2026 (maj–aug)"), not its id
    sv = (f"Strategisk analys för {municipality_name}, {period_label(period, 'sv')}: {total} bestående problem i "
          f"{areas_with} av {len(ranked)} {'område' if len(ranked) == 1 else 'områden'}.")
    en = (f"Strategic analysis for {municipality_name}, {period_label(period, 'en')}: {total} persistent "
          f"{'problem' if total == 1 else 'problems'} in {areas_with} of {len(ranked)} "
          f"{'area' if len(ranked) == 1 else 'areas'}.")
    if top:
        items = problems_by_area.get(top.area_id) or []
        names_sv = ", ".join(p.label_sv for p in items[:3])
        names_en = ", ".join(p.label_en for p in items[:3])
        sv += f" Störst behov: {top.area_name}" + (f" ({names_sv})." if names_sv else ".")
        en += f" Greatest need: {top.area_name}" + (f" ({names_en})." if names_en else ".")
    else:
        sv += " Inget område sticker ut."
        en += " No area stands out."
    sv += f" {measures} {'åtgärd' if measures == 1 else 'åtgärder'} i kraft under perioden."
    en += f" {measures} {'measure' if measures == 1 else 'measures'} in force during the period."
    return {"sv": sv, "en": en}
