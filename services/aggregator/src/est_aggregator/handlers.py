"""Use cases of the aggregator: store reports, compute, publish and revise pictures, raise and resolve alerts.

Plain async functions with keyword-only collaborators; each write is one unit of work (state, the
processed-event mark and the outbox rows commit together or not at all).

Reports arrive in batches (``handle_report_batch``): one transaction stores them and marks their
pictures dirty; the coalescing refresher (``refresh_dirty``, run every short interval) recomputes
each dirty open picture once and emits one ``se.est.picture.updated``, and turns a dirty published
picture into one revision covering all the late reports that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

from est_shared.adapters.sqlite import InLoopSqlite, retry_busy
from est_shared.bus import PoisonEvent, encode, retry_delay
from est_shared.db import add_many_to_outbox, add_to_outbox, mark_processed, transaction, utcnow
from est_shared.events import (
    AlertData,
    CloudEvent,
    ForfeitureRecorded,
    PictureData,
    PicturePublished,
    PictureUpdated,
    ReportSubmitted,
)
from est_shared.events import new_event as _new_event
from est_shared.freetext import free_text_errors
from est_shared.org import OrgSnapshot, period_deadline
from est_shared.periods import Period, PeriodError, current_period, normalise
from est_shared.subjects import alert_raised, alert_resolved, picture_published, picture_updated
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_aggregator import db
from est_aggregator.domain import (
    AreaNotFound,
    BuiltPicture,
    ExpectedReporter,
    InvalidPeriod,
    MunicipalityNotFound,
    PeriodTally,
    PictureUnavailable,
    ReportRecord,
    Rules,
    TextRefused,
    VersionConflict,
    VersionNotFound,
    alert_message,
    alert_transitions,
    as_utc,
    build_picture,
    check_period_years,
    checklist_items,
    coarsen_kronoberg,
    completeness,
    effective_reports,
    history_periods,
    kronoberg_aggregates,
    kronoberg_view,
    merge_kronoberg,
    period_ids,
    picture_changes,
    report_faults,
    severity,
    stored_id,
)
from est_aggregator.metrics import AggregatorMetrics

T = TypeVar("T")

log = logging.getLogger("est.aggregator")

SOURCE = "/est/aggregator"


@dataclass
class FailingPictures:
    """Pictures whose computation failed: each is tried again after a growing delay, the others go on.

    Kept per process (a replica that fails on its own retries on its own); a success forgets it.
    """

    entries: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # failures, next try (monotonic)

    def due(self, key: tuple[str, str], now: float) -> bool:
        """Whether the picture may be computed at ``now``."""
        entry = self.entries.get(key)
        return entry is None or entry[1] <= now

    def failed(self, key: tuple[str, str], now: float) -> tuple[int, float]:
        """Count a failure; returns (failures so far, seconds until the next try)."""
        failures = self.entries.get(key, (0, 0.0))[0] + 1
        delay = retry_delay(failures)
        self.entries[key] = (failures, now + delay)
        return failures, delay

    def recovered(self, key: tuple[str, str]) -> None:
        self.entries.pop(key, None)


@dataclass
class Deps:
    """Collaborators of the use cases (built once in create_app)."""

    sessions: async_sessionmaker[AsyncSession]
    metrics: AggregatorMetrics
    rules: Rules = field(default_factory=Rules)
    consumer: str = "aggregator-reports"
    serialise_writes: bool = True
    kronoberg_min_count: int = 3
    emit_updates: bool = True
    wake: Callable[[], None] = lambda: None
    wake_refresher: Callable[[], None] = lambda: None
    catching_up: Callable[[], bool] = lambda: False  # the report consumer has a backlog
    local: InLoopSqlite | None = None  # SQLite: the report batches' statements run on the loop's thread
    cache: db.ReportCache | None = None  # SQLite: tallies of recent pictures' periods in memory (see ReportCache)
    failing: FailingPictures = field(default_factory=FailingPictures)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.local is not None and self.cache is None:
            self.cache = db.ReportCache()

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction: in-loop on SQLite (a busy database retried), else a unit of work."""
        local = self.local
        if local is None:
            async with self.unit_of_work() as s:
                return await work(s)

        async def attempt() -> T:
            async with self._lock:  # this process's other SQLite writers finish first
                with local.transaction() as conn:
                    return await work(db.InLoopSession(conn))  # type: ignore[arg-type]

        return await retry_busy(attempt)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only session: in-loop on SQLite, else a pooled one."""
        if self.local is not None:
            with self.local.reading() as conn:
                yield db.InLoopSession(conn)  # type: ignore[misc]
        else:
            async with self.sessions() as s:
                yield s

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction; SQLite writers in this process queue on a lock instead of failing busy."""
        if self.serialise_writes:
            async with self._lock, transaction(self.sessions) as s:
                yield s
        else:
            async with transaction(self.sessions) as s:
                yield s


@dataclass
class Effects:
    """What a committed unit of work did, for metrics and the outbox relay."""

    outbox: int = 0
    published: list[tuple[str, int, str]] = field(default_factory=list)
    raised: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    rates: list[tuple[str, str, float]] = field(default_factory=list)
    delays: list[tuple[str, float]] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # seconds from the oldest change shown to the commit

    def apply(self, deps: Deps) -> None:
        """Count the effects once the transaction committed, and wake the relay."""
        m = deps.metrics
        for _area, _version, mode in self.published:
            m.published.labels(mode).inc()
            if mode == "revision":
                m.revisions.inc()
        for kind in self.raised:
            m.alerts_raised.labels(kind).inc()
        for kind in self.resolved:
            m.alerts_resolved.labels(kind).inc()
        for muni, area, rate in self.rates:
            m.completeness.labels(muni, area).set(rate)
        for mode, seconds in self.delays:
            m.publish_delay.labels(mode).observe(max(0.0, seconds))
        for seconds in self.lags:
            m.picture_lag.observe(max(0.0, seconds))
        if self.outbox:
            deps.wake()


@dataclass(frozen=True)
class AreaInfo:
    """What the aggregator knows of an area: from the organisation, or only from stored reports."""

    area_id: str
    municipality_id: str
    name: str
    cadence: str | None
    known: bool


@dataclass(frozen=True)
class PublishResult:
    """A published version."""

    area_id: str
    period: str
    version: int
    revision: bool
    changes: list[str]
    event_id: str


def new_event(**kwargs: Any) -> CloudEvent[Any]:
    """An event from this service."""
    return _new_event(source=SOURCE, **kwargs)


def record_of(data: ReportSubmitted) -> ReportRecord:
    """The stored form of a ReportSubmitted (the free-text note is not kept: it is not needed here)."""
    return ReportRecord(
        report_id=data.report_id, municipality_id=data.municipality_id, area_id=data.area_id, period=data.period,
        checklist=data.checklist, answers={k: {"value": a.value, "places": list(a.places)}
                                           for k, a in data.answers.items()},
        reporter_id=data.reporter_id, actor_id=data.actor_id, received_at=as_utc(data.received_at),
        nothing_to_report=data.nothing_to_report, supersedes=data.supersedes, late=data.late)


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


def parse_period(text: str, cadence: str | None = None) -> Period:
    """A period id (for an area's cadence, if given) within the years a picture may have; else InvalidPeriod."""
    try:
        p = Period.parse(text) if cadence is None else normalise(text, cadence)  # type: ignore[arg-type]
    except ValueError as exc:  # PeriodError, or a year no date has (0000)
        raise InvalidPeriod(str(exc) if isinstance(exc, PeriodError) else f"not a period id: {text!r}") from exc
    return check_period_years(p)


def _deadline(org: OrgSnapshot, municipality_id: str, period: Period) -> datetime | None:
    muni = org.municipalities.get(municipality_id)
    return period_deadline(muni, period) if muni else None


def _items_for(org: OrgSnapshot, checklists: Iterable[str]) -> list[Any]:
    refs = sorted(set(checklists))
    found = [cl.items for ref in refs if (cl := org.checklist(ref)) is not None]
    if not found:
        cl = org.checklist(org.current_checklist)
        found = [cl.items] if cl else []
    return checklist_items(found)


@lru_cache(maxsize=4096)
def _window_of(period: Period, window: int) -> tuple[tuple[str, Period], ...]:
    return tuple((pid, p) for p in [*history_periods(period, window), period] for pid in sorted(period_ids(p)))


def _window(period: Period, rules: Rules) -> dict[str, Period]:
    """Stored period ids of a picture and its history → the picture period they count for."""
    return dict(_window_of(period, rules.window))


def _tz(org: OrgSnapshot, municipality_id: str) -> str:
    muni = org.municipalities.get(municipality_id)
    return muni.timezone if muni else "Europe/Stockholm"


@dataclass
class PassInputs:
    """What the pictures of one refresher pass need besides their reports, read with one query per kind."""

    rows: dict[tuple[str, str], Any]  # picture rows by (area, period): status and report_token
    superseded: dict[str, set[str]]
    comments: dict[tuple[str, str], list[Any]]
    forfeitures: dict[str, list[Any]]

    _tokens: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for (a, p), r in self.rows.items():
            self._tokens.setdefault(a, {})[p] = r.report_token

    def tokens(self, area_id: str) -> dict[str, str | None]:
        """report_token by picture period of the area's rows."""
        return self._tokens.get(area_id, {})


async def pass_inputs(s: AsyncSession, *, org: OrgSnapshot, pictures: Sequence[tuple[AreaInfo, Period]],
                      rules: Rules) -> PassInputs:
    """Read what ``compute_picture`` needs for many pictures at once (reports excepted)."""
    areas = sorted({info.area_id for info, _ in pictures})
    periods = {p.id for _, period in pictures for p in set(_window(period, rules).values())}
    spans = [(as_utc(period.start_at(_tz(org, info.municipality_id))),
              as_utc(period.end_at(_tz(org, info.municipality_id)))) for info, period in pictures]
    return PassInputs(
        rows=await db.picture_rows_of(s, areas, sorted(periods)),
        superseded=await db.superseded_in_areas(s, areas),
        comments=await db.comments_of(s, [(info.area_id, period.id) for info, period in pictures]),
        forfeitures=(await db.forfeitures_of(s, areas, min(a for a, _ in spans), max(b for _, b in spans))
                     if spans else {}))


async def compute_picture(s: AsyncSession, *, org: OrgSnapshot, info: AreaInfo, period: Period, rules: Rules,
                          status: str = "open", version: int = 0, cache: db.ReportCache | None = None,
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
        for r in await db.reports_for(s, info.area_id, idmap):
            by_period.setdefault(idmap[r.period], []).append(r)
        groups = {p: db.PeriodReports(rs) for p, rs in by_period.items()}
    expected = [ExpectedReporter(p.id, p.actor) for p in org.reporters_for(info.area_id)]
    tz = _tz(org, info.municipality_id)
    start, end = as_utc(period.start_at(tz)), as_utc(period.end_at(tz))
    if inputs is not None:
        superseded = inputs.superseded.get(info.area_id, set())
        protocols = [r for r in inputs.forfeitures.get(info.area_id, []) if start <= as_utc(r.occurred_at) < end]
        comments = inputs.comments.get((info.area_id, period.id), [])
    else:
        superseded = await db.superseded_in_area(s, info.area_id)
        protocols = await db.forfeitures_for(s, info.area_id, start, end)
        comments = await db.comments_for(s, info.area_id, period.id)
    deadline = _deadline(org, info.municipality_id, period)
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
    return build_picture(
        kronoberg=kronoberg_aggregates([p._mapping for p in protocols], tz=tz),
        municipality_id=info.municipality_id, area_id=info.area_id, area_name=info.name, period=period,
        superseded=superseded, tallies=tallies,
        items=_items_for(org, current.checklists if current is not None else ()),
        expected=expected, deadline=deadline, status=status, version=version, comments=comments, rules=rules)


def _extras(built: BuiltPicture, deadline: datetime | None) -> dict[str, Any]:
    return {"means": built.means, "deadline": deadline.isoformat() if deadline else None}


def outgoing(picture: PictureData, deps: Deps) -> PictureData:
    """The picture as it leaves the service in an event: Kronoberg figures always coarsened."""
    if picture.kronoberg is None:
        return picture
    return picture.model_copy(update={"kronoberg": coarsen_kronoberg(picture.kronoberg, deps.kronoberg_min_count)})


async def _raise_and_resolve(s: AsyncSession, *, info: AreaInfo, period: Period, picture: PictureData,
                             version: int, now: datetime, effects: Effects) -> None:
    """Edge-triggered alerts against the area's open alerts; older periods' revisions raise nothing."""
    if await db.later_period_published(s, info.area_id, period.id):
        return
    open_rows = await db.open_alerts(s, info.area_id)
    flags = {code: sm.flag for code, sm in picture.items.items()}
    to_raise, to_resolve = alert_transitions({k: r.kind for k, r in open_rows.items()}, flags)
    m, a, name = info.municipality_id, info.area_id, info.name or info.area_id
    for item, kind in sorted(to_raise.items()):
        alert_id = f"alert:{a}:{item}:{kind}:{period.id}"
        if await db.alert_id_taken(s, alert_id):  # raised, resolved and raised again in one period
            alert_id = f"{alert_id}:v{version}"
        summary = picture.items.get(item)
        data = AlertData(alert_id=alert_id, municipality_id=m, area_id=a, item=item, kind=kind, period=period.id,
                         severity=severity(kind),  # type: ignore[arg-type]
                         message=alert_message(kind, summary, item, area_name=name, period=period.id, resolved=False))
        await add_to_outbox(s, db.outbox, alert_raised(m, a),
                            new_event(type="se.est.alert.raised", data=data, subject=a, id=alert_id, time=now))
        await db.open_alert(s, alert_id=alert_id, municipality_id=m, area_id=a, item=item, kind=kind,
                            period=period.id, at=now)
        effects.outbox += 1
        effects.raised.append(kind)
    for item, kind in sorted(to_resolve.items()):
        row = open_rows[item]
        data = AlertData(alert_id=row.alert_id, municipality_id=m, area_id=a, item=item, kind=kind,
                         period=period.id, severity="info",
                         message=alert_message(kind, picture.items.get(item), item, area_name=name,
                                               period=period.id, resolved=True))
        await add_to_outbox(s, db.outbox, alert_resolved(m, a),
                            new_event(type="se.est.alert.resolved", data=data, subject=a,
                                      id=f"{row.alert_id}:resolved", time=now))
        await db.close_alert(s, area_id=a, item=item, alert_id=row.alert_id, period=period.id, at=now)
        effects.outbox += 1
        effects.resolved.append(kind)


async def _publish_locked(s: AsyncSession, *, deps: Deps, org: OrgSnapshot, info: AreaInfo, period: Period,
                          current_version: int, by: str | None, mode: str, now: datetime, effects: Effects,
                          require_reports: bool = False) -> PublishResult | None:
    """Publish the next version inside a transaction holding the picture row; None if nothing to publish.

    A revision (mode ``revision``) with no change against the last version is not published.
    The (area, period, version) primary key makes a second replica's identical attempt fail.
    """
    version = current_version + 1
    built = await compute_picture(s, org=org, info=info, period=period, rules=deps.rules, status="published",
                                  version=version)
    if require_reports and built.picture.reports == 0:
        return None
    revision = current_version >= 1
    changes: list[str] = []
    if revision:
        old = await db.get_version(s, info.area_id, period.id, current_version)
        if old is not None:
            changes = picture_changes(PictureData.model_validate_json(old.picture), built.picture)
        if mode == "revision" and not changes:
            return None
    event_id = f"picture:{info.area_id}:{period.id}:v{version}"
    deadline = _deadline(org, info.municipality_id, period)
    event = new_event(type="se.est.picture.published", subject=info.area_id, id=event_id, time=now,
                      data=PicturePublished(picture=outgoing(built.picture, deps), revision=revision,
                                            changes=changes, published_by=by))
    sent = json.loads(encode(event))["data"]["picture"]  # frozen exactly as it goes on the wire
    await db.insert_version(s, area_id=info.area_id, period=period.id, version=version,
                            municipality_id=info.municipality_id, picture=json.dumps(sent, ensure_ascii=False),
                            extras={**_extras(built, deadline), "kronoberg_exact": built.picture.kronoberg},
                            revision=revision,
                            changes=changes, published_by=by, published_at=now, event_id=event_id)
    await db.set_published(s, area_id=info.area_id, period=period.id, version=version, at=now)
    await add_to_outbox(s, db.outbox, picture_published(info.municipality_id, info.area_id), event)
    log.info("picture published", extra={"event_id": event_id, "area": info.area_id, "period": period.id,
                                         "version": version, "reports": built.picture.reports, "mode": mode})
    effects.outbox += 1
    if version == 1 and deadline is not None:
        effects.delays.append((mode, (as_utc(now) - as_utc(deadline)).total_seconds()))
    effects.published.append((info.area_id, version, mode))
    effects.rates.append((info.municipality_id, info.area_id, built.picture.completeness.rate))
    await _raise_and_resolve(s, info=info, period=period, picture=built.picture, version=version, now=now,
                             effects=effects)
    return PublishResult(info.area_id, period.id, version, revision, changes, event_id)


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch of report events did."""

    stored: int
    duplicates: int
    dirty: int
    new: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # report, area, period, correlation
    token: str = ""
    old_tokens: dict[tuple[str, str], str | None] = field(default_factory=dict)
    added: dict[tuple[str, str], list[ReportRecord]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # event id → why it cannot be tallied


def refused_reports(events: Sequence[CloudEvent[Any]], org: OrgSnapshot) -> dict[str, str]:
    """Event id → why the report cannot be tallied (``domain.report_faults``), for each one that cannot."""
    out: dict[str, str] = {}
    for e in events:
        faults = report_faults(e.data, org.checklist(e.data.checklist))
        if faults:
            out[e.id] = "; ".join(faults)[:400]
    return out


def _first_by(items: Sequence[Any], key: Callable[[Any], str]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for it in items:
        k = key(it)
        if k not in seen:
            seen.add(k)
            out.append(it)
    return out


async def _picture_key(s: AsyncSession, org: OrgSnapshot, area_id: str, period_text: str,
                       municipality_id: str) -> tuple[str, str, str] | None:
    """(area, reporting period id, municipality) of a stored report, or None if the period fits no picture."""
    info = await area_info(s, org, area_id, municipality_id)
    try:
        period = resolve_period(info, period_text)
    except InvalidPeriod:
        log.warning("report stored with a period that fits no picture", extra={"area": area_id})
        return None
    return area_id, period.id, info.municipality_id


async def _store_batch(s: AsyncSession, events: Sequence[CloudEvent[Any]], *, deps: Deps,
                       org: OrgSnapshot) -> BatchOutcome:
    fresh = _first_by(events, lambda e: e.id)
    known = await db.processed_ids(s, deps.consumer, [e.id for e in fresh])
    fresh = [e for e in fresh if e.id not in known]
    await db.mark_processed_many(s, deps.consumer, [e.id for e in fresh])
    pairs = _first_by([(e.id, record_of(e.data)) for e in fresh], lambda p: p[1].report_id)
    stored = await db.existing_report_ids(s, [r.report_id for _, r in pairs])
    new = [(eid, r) for eid, r in pairs if r.report_id not in stored]
    await db.insert_reports(s, new)
    targets = {(r.area_id, r.period, r.municipality_id) for _, r in new}
    corrected = [r.supersedes for _, r in new if r.supersedes]
    if corrected:  # a correction also changes the picture of the report it replaces
        targets |= set((await db.report_places(s, corrected)).values())
    keys = set()
    key_of: dict[tuple[str, str, str], tuple[str, str, str]] = {}
    for target in targets:
        key = await _picture_key(s, org, *target)
        if key is not None:
            keys.add(key)
            key_of[target] = key
    token = uuid.uuid4().hex
    # the report cache exists only on SQLite (in-loop); on PostgreSQL nothing reads the tokens
    old_tokens = await db.touch_pictures(s, list(keys), token, tokens=deps.local is not None)
    added: dict[tuple[str, str], list[ReportRecord]] = {}
    for _, r in new:
        key = key_of.get((r.area_id, r.period, r.municipality_id))
        if key is not None:
            added.setdefault((key[0], key[1]), []).append(r)
    correlation = {e.id: e.correlationid for e in fresh}
    return BatchOutcome(stored=len(new), duplicates=len(events) - len(new), dirty=len(keys),
                        new=[(r.report_id, r.area_id, r.period, correlation.get(eid)) for eid, r in new],
                        token=token, old_tokens=old_tokens, added=added)


async def handle_report_batch(events: Sequence[CloudEvent[Any]], *, deps: Deps, org: OrgSnapshot,
                              attempts: int = 3) -> BatchOutcome:
    """Store many reports in one transaction, idempotently, and mark their pictures dirty.

    The processed-event marks, the reports and the dirty marks commit together. An event id or
    report id seen before (in the batch or in the database) is a duplicate and changes nothing.
    No picture is computed here: ``refresh_dirty`` does that, coalesced. A unique-key race with
    another replica rolls the batch back and tries again (the second look sees the other's rows).
    A report that cannot be tallied (``refused_reports``) is not stored; the outcome names it in
    ``refused`` for the caller to dead-letter, and the rest of the batch is stored as usual.
    """
    refused = refused_reports(events, org)
    if refused:
        deps.metrics.reports.labels("refused").inc(len(refused))
        events = [e for e in events if e.id not in refused]
        if not events:
            return BatchOutcome(stored=0, duplicates=0, dirty=0, refused=refused)
    for attempt in range(1, attempts + 1):
        try:
            outcome = await deps.write(lambda s: _store_batch(s, events, deps=deps, org=org))
            if deps.cache is not None:
                deps.cache.committed(outcome.old_tokens, outcome.token, outcome.added)
            break
        except (IntegrityError, sqlite3.IntegrityError):  # the in-loop path raises the driver's own
            if attempt == attempts:
                raise
            deps.metrics.conflicts.inc()
    if outcome.new:  # the trace: report → (area, period) → picture versions; one line per batch (cheap)
        log.info("reports stored", extra={
            "report_ids": ",".join(r for r, _, _, _ in outcome.new),
            "pictures": ",".join(sorted({f"{a}:{p}" for _, a, p, _ in outcome.new})),
            "correlation_ids": ",".join(sorted({c for _, _, _, c in outcome.new if c})) or None})
    deps.metrics.reports.labels("stored").inc(outcome.stored)
    deps.metrics.reports.labels("duplicate").inc(outcome.duplicates)
    if events:
        deps.metrics.store_lag.observe(max(0.0, (utcnow() - as_utc(min(e.time for e in events))).total_seconds()))
    if outcome.dirty:
        deps.wake_refresher()
    if refused:
        outcome = dataclasses.replace(outcome, refused=refused)
    return outcome


async def handle_report_submitted(event: CloudEvent[Any], *, deps: Deps, org: OrgSnapshot) -> bool:
    """Store one report (a batch of one); False for a duplicate; PoisonEvent if it cannot be tallied."""
    outcome = await handle_report_batch([event], deps=deps, org=org)
    if outcome.refused:
        raise PoisonEvent(outcome.refused[event.id])
    return outcome.stored == 1


async def handle_forfeiture_recorded(event: CloudEvent[Any], *, deps: Deps, org: OrgSnapshot) -> bool:
    """Store a forfeiture protocol's aggregate facts once and mark the picture of its area and week dirty."""
    data: ForfeitureRecorded = event.data
    async with deps.unit_of_work() as s:
        if not await mark_processed(s, db.processed, consumer=f"{deps.consumer}:forfeitures", event_id=event.id):
            return False
        if not await db.insert_forfeiture(
                s, protocol_id=data.protocol_id, municipality_id=data.municipality_id, area_id=data.area_id,
                place=data.place, occurred_at=as_utc(data.occurred_at), age_band=data.age_band, items=list(data.items),
                direct_forfeiture=data.direct_forfeiture, guardian_contacted=data.guardian_contacted,
                guardian_came=data.guardian_came, source=data.source,
                social_services_notified=data.social_services_notified):
            return False
        area = org.areas.get(data.area_id) if data.area_id else None
        marked = False
        if area is not None:
            muni = org.municipalities.get(area.municipality_id)
            tz = muni.timezone if muni else "Europe/Stockholm"
            period = current_period(area.cadence, data.occurred_at, tz)
            if await db.picture_row(s, area.id, period.id) is not None:
                await db.mark_dirty(s, [(area.id, period.id, area.municipality_id)], token=uuid.uuid4().hex)
                marked = True
    if marked:
        deps.wake_refresher()
    return True


def _picture_failed(deps: Deps, stage: str, area_id: str, period: str, exc: Exception) -> None:
    """Count, log and back off a picture whose computation failed (only the error's class is logged:
    a message can quote stored data)."""
    failures, delay = deps.failing.failed((area_id, period), time.monotonic())
    deps.metrics.picture_failures.labels(stage).inc()
    deps.metrics.pictures_failing.set(len(deps.failing.entries))
    log.error("picture could not be computed; the other pictures go on and this one is tried again later",
              extra={"area": area_id, "period": period, "stage": stage, "error": type(exc).__name__,
                     "failures": failures, "retry_in": round(delay, 1)})
    log.debug("picture failure", exc_info=exc)


def _picture_ok(deps: Deps, area_id: str, period: str) -> None:
    if (area_id, period) in deps.failing.entries:
        deps.failing.recovered((area_id, period))
        deps.metrics.pictures_failing.set(len(deps.failing.entries))
        log.info("picture computed again after failures", extra={"area": area_id, "period": period})


async def _after_failure(s: AsyncSession, exc: Exception) -> None:
    """Make a shared read session usable again after a failed statement (PostgreSQL aborts its transaction)."""
    if isinstance(exc, DBAPIError) and isinstance(s, AsyncSession):
        await s.rollback()


REFRESH_LOT = 10  # pictures computed and written together in a pass


async def _refresh_lot(todo: Sequence[tuple[Any, AreaInfo | None, Period | None]], *, deps: Deps,
                       org: OrgSnapshot, now: datetime) -> int:
    """Recompute open dirty pictures, queue their picture.updated and clear their marks; returns how many went out.

    A picture whose computation fails keeps its mark and is left for a later pass (``FailingPictures``);
    the others of the lot go out as usual.
    """
    updates: list[tuple[Any, BuiltPicture | None, CloudEvent[Any] | None]] = []
    async with deps.reading() as s:
        wanted = [(info, period) for _, info, period in todo if info is not None and period is not None]
        inputs = await pass_inputs(s, org=org, pictures=wanted, rules=deps.rules) if wanted else None
        for row, info, period in todo:
            built = event = None
            if info is not None and period is not None:
                try:
                    built = await compute_picture(s, org=org, info=info, period=period, rules=deps.rules,
                                                  cache=deps.cache, inputs=inputs)
                    event = new_event(type="se.est.picture.updated", subject=row.area_id, time=now,
                                      id=f"picture-updated:{row.area_id}:{row.period}:{row.token}",
                                      data=PictureUpdated(picture=outgoing(built.picture, deps)))
                except Exception as exc:  # this picture only: its mark stays for a later try
                    _picture_failed(deps, "refresh", row.area_id, row.period, exc)
                    await _after_failure(s, exc)
                    continue
                _picture_ok(deps, row.area_id, row.period)
            updates.append((row, built, event))
    if not updates:
        return 0
    effects = Effects()

    async def write(s: AsyncSession) -> int:
        effects.rates, effects.lags = [], []  # a retried transaction starts over
        now_states = await db.picture_rows_of(s, [r.area_id for r, _, _ in updates],
                                              [r.period for r, _, _ in updates])
        queued: list[tuple[str, CloudEvent[Any]]] = []
        at = utcnow()
        for row, built, event in updates:
            state = now_states.get((row.area_id, row.period))
            if built is not None and event is not None and (state is None or state.status == "open"):
                queued.append((picture_updated(row.municipality_id, row.area_id), event))
                effects.rates.append((row.municipality_id, row.area_id, built.picture.completeness.rate))
                effects.lags.append((at - as_utc(row.first_at)).total_seconds())
        await add_many_to_outbox(s, db.outbox, queued)
        await db.clear_dirty_many(s, [(r.area_id, r.period, r.token) for r, _, _ in updates], seen_at=now)
        effects.outbox = len(queued)
        return len(queued)

    updated = await deps.write(write)
    effects.apply(deps)
    return updated


@dataclass
class RefreshOutcome:
    """What one pass of the refresher did."""

    updated: int = 0
    revised: int = 0
    waiting: int = 0
    deferred: int = 0  # pictures left out of this pass: their last computation failed (see FailingPictures)
    busy: float = 0.0  # seconds the pass itself ran (not the other tasks served between its lots)


async def refresh_dirty(*, deps: Deps, org: OrgSnapshot, now: datetime | None = None, revise_after: float = 2.0,
                        limit: int = 1000) -> RefreshOutcome:
    """One coalescing pass over the dirty pictures.

    An open picture is recomputed once and one ``se.est.picture.updated`` goes out for it, whatever
    number of reports arrived since the last pass (event id ``picture-updated:AREA:PERIOD:TOKEN``,
    the token of the dirty mark: a replica repeating the pass adds nothing). A published picture
    is revised once its first unhandled mark is ``revise_after`` seconds old: ONE version N+1
    covering every late report that came meanwhile (no version when nothing visible changed).
    A mark is cleared only if no newer report replaced its token meanwhile. A picture whose
    computation fails is counted, logged and tried again after a growing delay
    (``FailingPictures``); it never holds up the other pictures of the pass.
    """
    now = now or utcnow()
    out = RefreshOutcome()
    started = time.perf_counter()
    clock = time.monotonic()
    revisions: list[Any] = []
    todo: list[tuple[Any, AreaInfo | None, Period | None]] = []
    async with deps.reading() as s:
        dirty = await db.dirty_rows(s, limit)
        states = await db.picture_rows_of(s, [r.area_id for r in dirty], [r.period for r in dirty])
        for row in dirty:
            if not deps.failing.due((row.area_id, row.period), clock):
                out.deferred += 1
                continue
            state = states.get((row.area_id, row.period))
            if state is not None and state.status == "published":
                if (now - as_utc(row.first_at)).total_seconds() >= revise_after:
                    revisions.append(row)
                else:
                    out.waiting += 1
                continue
            info: AreaInfo | None = None
            period: Period | None = None
            if deps.emit_updates:
                try:
                    info = await area_info(s, org, row.area_id, row.municipality_id)
                    period = Period.parse(row.period)
                except (PeriodError, AreaNotFound):
                    info = None
            todo.append((row, info, period))
    # a few pictures at a time, each lot written (and handed to the relay) at once: the first ones
    # go out while the rest are computed, and the loop serves the consumer and the relay in between
    for i in range(0, len(todo), REFRESH_LOT):
        if i:
            out.busy += time.perf_counter() - started
            await asyncio.sleep(0)
            started = time.perf_counter()
        out.updated += await _refresh_lot(todo[i:i + REFRESH_LOT], deps=deps, org=org, now=now)
    for row in revisions:
        effects = Effects()
        try:
            async with deps.unit_of_work() as s:
                locked = await db.lock_picture_row(s, row.area_id, row.period)
                info = await area_info(s, org, row.area_id, row.municipality_id)
                result = await _publish_locked(s, deps=deps, org=org, info=info, period=Period.parse(row.period),
                                               current_version=locked.version, by=None, mode="revision", now=now,
                                               effects=effects)
                await db.clear_dirty(s, row.area_id, row.period, row.token)
        except IntegrityError:  # another replica published this version first; the mark stays for a new look
            deps.metrics.conflicts.inc()
            continue
        except Exception as exc:  # this picture only: rolled back, its mark stays for a later try
            _picture_failed(deps, "revision", row.area_id, row.period, exc)
            continue
        _picture_ok(deps, row.area_id, row.period)
        effects.apply(deps)
        out.revised += 1 if result else 0
    out.busy += time.perf_counter() - started
    return out


async def publish_picture(*, deps: Deps, org: OrgSnapshot, area_id: str, period_text: str, by: str | None,
                          actor_id: str = "", comment: str | None = None, now: datetime | None = None,
                          mode: str = "manual") -> PublishResult:
    """Publish a picture now (version 1, or N+1 when already published), with an optional comment.

    The comment goes to every actor the picture is sent to: one that looks like personal data or
    holds control characters is refused (``TextRefused``) and nothing is published.
    """
    refused = free_text_errors({"body.comment": comment}, multiline={"body.comment"})
    if refused:
        raise TextRefused(refused)
    for _attempt in range(3):
        effects = Effects()
        try:
            async with deps.unit_of_work() as s:
                info = await area_info(s, org, area_id)
                period = resolve_period(info, period_text)
                await db.ensure_picture_row(s, area_id=area_id, period=period.id,
                                            municipality_id=info.municipality_id)
                row = await db.lock_picture_row(s, area_id, period.id)
                if comment and comment.strip() and by:
                    await db.add_comment(s, area_id=area_id, period=period.id, person_id=by, actor_id=actor_id,
                                         text=comment.strip(), version=row.version + 1)
                result = await _publish_locked(s, deps=deps, org=org, info=info, period=period,
                                               current_version=row.version, by=by, mode=mode,
                                               now=now or utcnow(), effects=effects)
        except IntegrityError:
            deps.metrics.conflicts.inc()
            continue
        effects.apply(deps)
        assert result is not None
        return result
    raise VersionConflict(f"{area_id} {period_text}")


async def auto_publish_due(*, deps: Deps, org: OrgSnapshot, now: datetime) -> list[PublishResult]:
    """Publish every open picture with at least one report whose deadline has passed."""
    async with deps.sessions() as s:
        rows = await db.open_pictures(s)
    done: list[PublishResult] = []
    for row in rows:
        area = org.areas.get(row.area_id)
        muni = org.municipalities.get(area.municipality_id) if area else None
        if area is None or muni is None:
            continue  # no deadline known yet: wait for the organisation
        if not deps.failing.due((row.area_id, row.period), time.monotonic()):
            continue  # its last computation failed: tried again after its delay
        try:
            period = Period.parse(row.period)
        except PeriodError:
            continue
        if period_deadline(muni, period) > now:
            continue
        effects = Effects()
        try:
            async with deps.unit_of_work() as s:
                locked = await db.lock_picture_row(s, row.area_id, row.period)
                if locked is None or locked.status != "open":
                    continue
                info = AreaInfo(area.id, area.municipality_id, area.name, area.cadence, True)
                result = await _publish_locked(s, deps=deps, org=org, info=info, period=period, current_version=
                                               locked.version, by=None, mode="auto", now=now, effects=effects,
                                               require_reports=True)
        except IntegrityError:
            deps.metrics.conflicts.inc()
            continue
        except Exception as exc:  # this picture only: the others still publish at their deadline
            _picture_failed(deps, "auto_publish", row.area_id, row.period, exc)
            continue
        effects.apply(deps)
        if result:
            log.info("picture published at deadline", extra={"area": row.area_id, "period": row.period})
            done.append(result)
    return done


@dataclass(frozen=True)
class ReportingTally:
    """Expected against received reporters of a municipality in its latest closed period(s)."""

    expected: int
    received: int
    late: int


def latest_closed(muni: Any, cadence: str, now: datetime) -> Period:
    """The latest period of a cadence whose deadline has passed at ``now``."""
    p = current_period(cadence, now, muni.timezone)  # type: ignore[arg-type]
    for _ in range(8):
        if period_deadline(muni, p) <= now:
            break
        p = p.prev()
    return p


async def reporting_tallies(*, deps: Deps, org: OrgSnapshot, now: datetime) -> dict[str, ReportingTally]:
    """Per municipality: expected reporters, expected ones heard from and late ones in each area's latest
    closed period (the business gauges ``est_aggregator_reports_*``)."""
    out: dict[str, ReportingTally] = {}
    async with deps.sessions() as s:
        for muni in org.municipalities.values():
            expected = received = late = 0
            for area in org.areas.values():
                if area.municipality_id != muni.id:
                    continue
                period = latest_closed(muni, area.cadence, now)
                stored = await db.reports_for(s, area.id, period_ids(period))
                gone = await db.superseded_in_area(s, area.id) if any(r.supersedes for r in stored) else set()
                comp = completeness(effective_reports(stored, gone),
                                    [ExpectedReporter(p.id, p.actor) for p in org.reporters_for(area.id)],
                                    deadline=period_deadline(muni, period), all_reports=stored)
                expected += comp.expected
                received += comp.expected - len(comp.missing_reporters)
                late += comp.late
            out[muni.id] = ReportingTally(expected, received, late)
    return out


async def refresh_business_metrics(*, deps: Deps, org: OrgSnapshot, now: datetime) -> dict[str, ReportingTally]:
    """Set the reports expected / received / late gauges from ``reporting_tallies``."""
    tallies = await reporting_tallies(deps=deps, org=org, now=now)
    m = deps.metrics
    for muni, t in tallies.items():
        m.expected.labels(muni).set(t.expected)
        m.received.labels(muni).set(t.received)
        m.late.labels(muni).set(t.late)
    return tallies


# --- reads ------------------------------------------------------------------------------------

async def read_picture(*, deps: Deps, org: OrgSnapshot, area_id: str, period_text: str,
                       version: int | None = None, personal: bool = False) -> dict[str, Any]:
    """The picture: a published version as sent (``version``), the latest published one, or the live open one.

    Small-count coarsening: counts of the checklist's count items stay as they are for everyone
    (they count incidents, not persons). The Kronoberg figures describe young people: callers who
    see personal data (``personal``: police, social services) get them exact; everyone else gets
    them coarsened (``domain.coarsen_kronoberg``: counts below ``kronoberg_min_count`` as ``"<3"``).
    """
    body = await _read_picture_exact(deps=deps, org=org, area_id=area_id, period_text=period_text, version=version)
    return _view(body, deps=deps, personal=personal)


def _view(body: dict[str, Any], *, deps: Deps, personal: bool) -> dict[str, Any]:
    if "kronoberg" not in body:
        return body
    return {**body, "kronoberg": kronoberg_view(body.get("kronoberg"), personal=personal,
                                                min_count=deps.kronoberg_min_count)}


async def _read_picture_exact(*, deps: Deps, org: OrgSnapshot, area_id: str, period_text: str,
                              version: int | None = None) -> dict[str, Any]:
    """``read_picture`` with exact Kronoberg figures (kept beside a published version, which is sent coarsened)."""
    async with deps.sessions() as s:
        info = await area_info(s, org, area_id)
        period = resolve_period(info, period_text)
        if version is not None:
            v = await db.get_version(s, area_id, period.id, version)
            if v is None:
                raise VersionNotFound(f"{area_id} {period.id} v{version}")
            sent = json.loads(v.picture)
            if (v.extras or {}).get("kronoberg_exact") is not None:
                sent["kronoberg"] = v.extras["kronoberg_exact"]
            return sent  # type: ignore[no-any-return]
        row = await db.picture_row(s, area_id, period.id)
        if row is not None and row.status == "published":
            v = await db.get_version(s, area_id, period.id, row.version)
            extras = dict(v.extras or {})
            body = {**json.loads(v.picture), **extras, "published_at": v.published_at.isoformat(),
                    "revision": bool(v.revision), "changes": list(v.changes or [])}
            exact = body.pop("kronoberg_exact", None)
            if exact is not None:
                body["kronoberg"] = exact
            return body
        try:
            built = await compute_picture(s, org=org, info=info, period=period, rules=deps.rules)
        except Exception as exc:  # stored data this code cannot compute: named, counted and logged
            deps.metrics.picture_failures.labels("read").inc()
            log.error("picture could not be computed for a read",
                      extra={"area": area_id, "period": period.id, "error": type(exc).__name__})
            raise PictureUnavailable(f"{area_id} {period.id}") from exc
        return {**built.picture.model_dump(mode="json"),
                **_extras(built, _deadline(org, info.municipality_id, period))}


def compact(picture: PictureData, status: str, version: int) -> dict[str, Any]:
    """A small form of a picture for charts."""
    return {"period": picture.period, "status": status, "version": version, "reports": picture.reports,
            "completeness_rate": picture.completeness.rate,
            "items": {k: {"value": v.value, "trend": v.trend, "flag": v.flag} for k, v in picture.items.items()}}


async def read_series(*, deps: Deps, org: OrgSnapshot, area_id: str, first: str, last: str,
                      max_periods: int = 160) -> dict[str, Any]:
    """Compact pictures of the periods from ``first`` to ``last`` (inclusive), computed from stored reports."""
    async with deps.sessions() as s:
        info = await area_info(s, org, area_id)
        p0, p1 = resolve_period(info, first), resolve_period(info, last)
        if p0 > p1:
            raise InvalidPeriod(f"{first} is after {last}")
        periods = [p0]
        while periods[-1] < p1:
            if len(periods) >= max_periods:
                raise InvalidPeriod(f"at most {max_periods} periods per request")
            periods.append(periods[-1].next())
        idmap: dict[str, Period] = {}
        for p in [*history_periods(p0, deps.rules.window), *periods]:
            for pid in period_ids(p):
                idmap[pid] = p
        by_period: dict[Period, list[ReportRecord]] = defaultdict(list)
        for r in await db.reports_for(s, area_id, idmap):
            by_period[idmap[r.period]].append(r)
        superseded = await db.superseded_in_area(s, area_id)
        rows = await db.picture_rows_between(s, area_id, p0.id, p1.id)
    expected = [ExpectedReporter(p.id, p.actor) for p in org.reporters_for(area_id)]
    # each period tallied once, by its own deadline; as history only its sums count
    tallies = {p: PeriodTally.of(rs, superseded, _deadline(org, info.municipality_id, p))
               for p, rs in by_period.items()}
    out = []
    for p in periods:
        tally = tallies.get(p)
        built = build_picture(municipality_id=info.municipality_id, area_id=area_id, area_name=info.name, period=p,
                              superseded=superseded, tallies=tallies,
                              items=_items_for(org, tally.checklists if tally else ()), expected=expected,
                              deadline=_deadline(org, info.municipality_id, p), rules=deps.rules)
        row = rows.get(p.id)
        out.append(compact(built.picture, row.status if row else "open", row.version if row else 0))
    return {"area_id": area_id, "municipality_id": info.municipality_id, "from": p0.id, "to": p1.id,
            "pictures": out}


async def read_municipality(*, deps: Deps, org: OrgSnapshot, municipality_id: str, period_text: str,
                            area_ids: Sequence[str], personal: bool = False) -> dict[str, Any]:
    """The common picture: the pictures of the given areas of a municipality, plus totals."""
    if municipality_id not in org.municipalities:
        raise MunicipalityNotFound(municipality_id)
    parse_period(period_text)
    pictures: list[dict[str, Any]] = []
    unavailable: list[str] = []
    for area_id in area_ids:
        try:
            pictures.append(await _read_picture_exact(deps=deps, org=org, area_id=area_id, period_text=period_text))
        except InvalidPeriod:
            continue  # e.g. a biweekly id asked of a weekly area
        except PictureUnavailable:
            unavailable.append(area_id)  # one area's picture never takes the common picture down
    items: dict[str, dict[str, Any]] = {}
    for pic in pictures:
        for code, it in pic.get("items", {}).items():
            t = items.setdefault(code, {"answer": it["answer"], "label_sv": it.get("label_sv", ""),
                                        "label_en": it.get("label_en", ""), "value": 0.0, "reports": 0,
                                        "areas_flagged": []})
            t["value"] = max(t["value"], it["value"]) if it["answer"] == "level" else t["value"] + it["value"]
            t["reports"] += it.get("reports", 0)
            if it.get("flag"):
                t["areas_flagged"].append(pic["area_id"])
    comp = {k: sum(p.get("completeness", {}).get(k, 0) for p in pictures)
            for k in ("expected", "received", "on_time", "late", "nothing_to_report")}
    comp["rate"] = round(comp["received"] / comp["expected"], 4) if comp["expected"] else 0.0
    kronoberg = kronoberg_view(merge_kronoberg(p.get("kronoberg") for p in pictures), personal=personal,
                               min_count=deps.kronoberg_min_count)
    return {"municipality_id": municipality_id, "period": period_text,
            "areas": [_view(p, deps=deps, personal=personal) for p in pictures], "unavailable": unavailable,
            "totals": {"reports": sum(p.get("reports", 0) for p in pictures), "items": items, "completeness": comp,
                       "kronoberg": kronoberg}}


async def read_alerts(*, deps: Deps, area_id: str) -> list[dict[str, Any]]:
    """Alert history of an area (open and resolved)."""
    if not stored_id(area_id):
        return []
    async with deps.sessions() as s:
        return await db.list_alerts(s, area_id)
