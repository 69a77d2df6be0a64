"""Picture compute: an area and period's picture from the stored reports, its history window, the
organisation's expectations and the forfeiture facts (``compute_picture``; ``pass_inputs`` reads what many
pictures of one refresher pass need with one query per kind)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from est_shared.events import PictureData
from est_shared.org import OrgSnapshot, period_deadline
from est_shared.orghistory import OrgHistory, expected_reporters, held_over
from est_shared.periods import Cadence, Period, PeriodError, normalise
from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.pictures import db
from est_aggregator.pictures.cache import PeriodReports, ReportCache
from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.domain.errors import AreaNotFound, InvalidPeriod
from est_aggregator.pictures.domain.kronoberg import coarsen_kronoberg, kronoberg_aggregates
from est_aggregator.pictures.domain.lineage import PictureItems, picture_items
from est_aggregator.pictures.domain.notes import StoredNote, picture_notes
from est_aggregator.pictures.domain.periods import check_period_years, history_periods, period_ids
from est_aggregator.pictures.domain.picture import BuiltPicture, build_picture
from est_aggregator.pictures.domain.reports import ExpectedReporter, ReportRecord, as_utc, stored_id
from est_aggregator.pictures.domain.tally import PeriodTally, Rules


@dataclass(frozen=True)
class AreaInfo:
    """What the aggregator knows of an area: from the organisation, or only from stored reports."""

    area_id: str
    municipality_id: str
    name: str
    cadence: Cadence | None
    known: bool


async def area_info(s: AsyncSession, org: OrgSnapshot, area_id: str, fallback_municipality: str | None = None
                    ) -> AreaInfo:
    """The area from the organisation, else from stored data (the organisation may lag behind reports)."""
    area = org.areas.get(area_id)
    if area is not None:
        return AreaInfo(area_id, area.municipality_id, area.name, area.cadence, True)
    if not stored_id(area_id):  # no report can hold it (and PostgreSQL refuses a NUL in a query)
        raise AreaNotFound(area_id)
    muni = fallback_municipality or await db.any_municipality_for_area(s, area_id)
    if muni is None:
        raise AreaNotFound(area_id)
    return AreaInfo(area_id, muni, "", None, False)


def resolve_period(info: AreaInfo, text: str) -> Period:
    """The reporting period of an area for a period id (a week id maps to its biweekly pair)."""
    p = parse_period(text, info.cadence)
    if p.kind not in ("week", "biweek"):
        raise InvalidPeriod(f"{text!r} is not a weekly or biweekly reporting period")
    return p


def parse_period(text: str, cadence: Cadence | None = None) -> Period:
    """A period id (for an area's cadence, if given) within the years a picture may have; else InvalidPeriod."""
    try:
        p = Period.parse(text) if cadence is None else normalise(text, cadence)
    except ValueError as exc:  # PeriodError, or a year no date has (0000)
        raise InvalidPeriod(str(exc) if isinstance(exc, PeriodError) else f"not a period id: {text!r}") from exc
    return check_period_years(p)


def deadline_of(org: OrgSnapshot, municipality_id: str, period: Period) -> datetime | None:
    muni = org.municipalities.get(municipality_id)
    return period_deadline(muni, period) if muni else None


class _ItemsCache:
    """``items_for`` of the latest organisation snapshot (one object is one organisation version; a new one
    empties the cache, so no older snapshot is kept alive by it)."""

    def __init__(self) -> None:
        self.org: OrgSnapshot | None = None
        self.items: dict[tuple[str, tuple[str, ...]], PictureItems] = {}

    def of(self, org: OrgSnapshot) -> dict[tuple[str, tuple[str, ...]], PictureItems]:
        if self.org is not org:
            self.org, self.items = org, {}
        return self.items


_ITEMS = _ItemsCache()


def items_for(org: OrgSnapshot, municipality_id: str, checklists: Iterable[str] = ()) -> PictureItems:
    """The items of a picture of the municipality whose period's reports used ``checklists`` (id@version):
    those of its checklist in force, then the others the reports answered (``domain.lineage``)."""
    refs = tuple(sorted(set(checklists)))
    cache = _ITEMS.of(org)
    chosen = cache.get((municipality_id, refs))
    if chosen is None:
        used = [cl for ref in refs if (cl := org.checklist(ref)) is not None]
        chosen = picture_items(org.checklist_versions_for(municipality_id), used)
        if len(cache) >= 4096:
            cache.clear()
        cache[(municipality_id, refs)] = chosen
    return chosen


@lru_cache(maxsize=4096)
def _window_of(period: Period, window: int) -> tuple[tuple[str, Period], ...]:
    return tuple((pid, p) for p in [*history_periods(period, window), period] for pid in sorted(period_ids(p)))


def _window(period: Period, rules: Rules) -> dict[str, Period]:
    """Stored period ids of a picture and its history → the picture period they count for."""
    return dict(_window_of(period, rules.window))


def timezone_of(org: OrgSnapshot, municipality_id: str) -> str:
    muni = org.municipalities.get(municipality_id)
    return muni.timezone if muni else "Europe/Stockholm"


@dataclass
class PassInputs:
    """What the pictures of one refresher pass need besides their reports, read with one query per kind."""

    rows: dict[tuple[str, str], Any]  # picture rows by (area, period): status and report_token
    superseded: dict[str, set[str]]
    comments: dict[tuple[str, str], list[Any]]
    forfeitures: dict[str, list[Any]]
    notes: dict[str, list[StoredNote]] = field(default_factory=dict)  # by area, of the pictures' own periods
    history: OrgHistory = field(default_factory=OrgHistory)  # what the organisation held of the areas
    reports: dict[str, list[ReportRecord]] | None = None  # by area, of the pictures' windows (without a cache)

    _tokens: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for (a, p), r in self.rows.items():
            self._tokens.setdefault(a, {})[p] = r.report_token

    def tokens(self, area_id: str) -> dict[str, str | None]:
        """report_token by picture period of the area's rows."""
        return self._tokens.get(area_id, {})


async def pass_inputs(s: AsyncSession, *, org: OrgSnapshot, pictures: Sequence[tuple[AreaInfo, Period]],
                      rules: Rules, with_reports: bool = False) -> PassInputs:
    """Read what ``compute_picture`` needs for many pictures at once (the reports too ``with_reports``: for
    pictures computed without a report cache)."""
    areas = sorted({info.area_id for info, _ in pictures})
    periods = {p.id for _, period in pictures for p in set(_window(period, rules).values())}
    own = {pid for _, period in pictures for pid, p in _window(period, rules).items() if p == period}
    spans = [(as_utc(period.start_at(timezone_of(org, info.municipality_id))),
              as_utc(period.end_at(timezone_of(org, info.municipality_id)))) for info, period in pictures]
    return PassInputs(
        rows=await db.picture_rows_of(s, areas, sorted(periods)),
        superseded=await db.superseded_in_areas(s, areas),
        comments=await db.comments_of(s, [(info.area_id, period.id) for info, period in pictures]),
        forfeitures=(await db.forfeitures_of(s, areas, min(a for a, _ in spans), max(b for _, b in spans))
                     if spans else {}),
        notes=await db.notes_of(s, areas, sorted(own)),
        history=await held_over(s, db.org_history, areas),
        reports=await db.reports_of(s, areas, sorted({pid for _, period in pictures for pid in _window(period, rules)}))
        if with_reports else None)


def cadence_of(period: Period) -> Cadence:
    """The cadence whose reporting periods ``period`` is one of."""
    return "weekly" if period.kind == "week" else "biweekly"


def expected_in(history: OrgHistory, org: OrgSnapshot, area_id: str, period: Period, tz: str
                ) -> list[ExpectedReporter]:
    """The reporters an area expected in a period, as the organisation was then (``est_shared.orghistory``):
    one who moved away since is still expected there, one added since is not, and an area expects nobody
    before its first period. An area the history does not know yet: today's reporters."""
    if not history.knows(area_id):
        return [ExpectedReporter(p.id, p.actor) for p in org.reporters_for(area_id)]
    held = expected_reporters(history, area_id, cadence_of(period), as_utc(period.start_at(tz)),
                              as_utc(period.end_at(tz)))
    return [ExpectedReporter(pid, actor or (org.people[pid].actor if pid in org.people else ""))
            for pid, actor in held.items()]


async def compute_picture(s: AsyncSession, *, org: OrgSnapshot, info: AreaInfo, period: Period, rules: Rules,
                          status: str = "open", version: int = 0, cache: ReportCache | None = None,
                          inputs: PassInputs | None = None) -> BuiltPicture:
    """The picture of an area and period computed from the stored reports (and the last ``window`` periods).

    With a ``cache``, the reports and their tallies come from it where its entries are current (the
    same reports in the same order as the database gives them; a tally that still fits is only
    added to); with ``inputs`` (``pass_inputs`` of many pictures), nothing else is read here.
    """
    idmap = _window(period, rules)
    if cache is not None:
        tokens = inputs.tokens(info.area_id) if inputs is not None else None
        groups = await cache.periods(s, info.area_id, idmap, tokens=tokens)
    else:
        by_period: dict[Period, list[ReportRecord]] = {}
        stored = inputs.reports if inputs is not None else None
        for r in (stored.get(info.area_id, []) if stored is not None else await db.reports_for(s, info.area_id, idmap)):
            if r.period in idmap:
                by_period.setdefault(idmap[r.period], []).append(r)
        groups = {p: PeriodReports(rs) for p, rs in by_period.items()}
    tz = timezone_of(org, info.municipality_id)
    start, end = as_utc(period.start_at(tz)), as_utc(period.end_at(tz))
    own = {pid for pid, p in idmap.items() if p == period}
    history = inputs.history if inputs is not None else await held_over(s, db.org_history, [info.area_id])
    expected = expected_in(history, org, info.area_id, period, tz)
    if inputs is not None:
        notes = [n for n in inputs.notes.get(info.area_id, []) if n.period in own]
        superseded = inputs.superseded.get(info.area_id, set())
        protocols = [r for r in inputs.forfeitures.get(info.area_id, []) if start <= as_utc(r.occurred_at) < end]
        comments = inputs.comments.get((info.area_id, period.id), [])
    else:
        notes = await db.notes_for(s, info.area_id, own)
        superseded = await db.superseded_in_area(s, info.area_id)
        protocols = await db.forfeitures_for(s, info.area_id, start, end)
        comments = await db.comments_for(s, info.area_id, period.id)
    deadline = deadline_of(org, info.municipality_id, period)
    due = as_utc(deadline) if deadline is not None else None
    tallies: dict[Period, PeriodTally] = {}
    for p, group in groups.items():
        tally = group.tally
        if tally is None or not tally.fits(superseded) or (p == period and tally.deadline != due):
            records = group.records
            if records is None:  # the cache kept only the tally: the period's reports are read again
                records = await db.reports_for(s, info.area_id, [pid for pid, q in idmap.items() if q == p])
            tally = group.tally = PeriodTally.of(records, superseded, deadline if p == period else None)
            group.records = None  # the tally is what is kept (and added to); the reports are let go
        tallies[p] = tally
    current = tallies.get(period)
    chosen = items_for(org, info.municipality_id, current.checklists if current is not None else ())
    items = chosen.items
    return build_picture(
        kronoberg=kronoberg_aggregates([p._mapping for p in protocols], tz=tz),
        municipality_id=info.municipality_id, area_id=info.area_id, area_name=info.name, period=period,
        superseded=superseded, tallies=tallies, items=items,
        notes=picture_notes(notes, superseded, [*items, *chosen.folded]), lineage=chosen.lineage,
        expected=expected, deadline=deadline, status=status, version=version, comments=comments, rules=rules)


def extras_of(built: BuiltPicture, deadline: datetime | None) -> dict[str, Any]:
    """What travels beside a picture (not in its events): level means, the deadline, and which earlier items'
    series its items continue (``continues``: code → earlier codes; ``continued``: code → the earlier codes
    whose answers this period's value holds)."""
    return {"means": built.means, "deadline": deadline.isoformat() if deadline else None,
            "continues": built.continues, "continued": built.continued}


def outgoing(picture: PictureData, deps: Deps) -> PictureData:
    """The picture as it leaves the service in an event: Kronoberg figures always coarsened."""
    if picture.kronoberg is None:
        return picture
    return picture.model_copy(update={"kronoberg": coarsen_kronoberg(picture.kronoberg, deps.kronoberg_min_count)})
