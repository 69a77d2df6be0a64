"""Report ingest: batches of reports stored in one unit of work with their pictures marked dirty
(``handle_report_batch``), the one-by-one path (``handle_report_submitted``) and forfeiture protocols."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from est_shared.bus import PoisonEvent
from est_shared.clock import utcnow
from est_shared.db import mark_processed
from est_shared.events import CloudEvent, ForfeitureRecorded, ReportSubmitted
from est_shared.org import OrgSnapshot
from est_shared.periods import current_period
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.pictures import db
from est_aggregator.pictures.compute import area_info, resolve_period
from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.domain.errors import InvalidPeriod
from est_aggregator.pictures.domain.notes import kept_note
from est_aggregator.pictures.domain.reports import ReportRecord, as_utc, report_faults

log = logging.getLogger("est.aggregator")


def record_of(data: ReportSubmitted) -> ReportRecord:
    """The stored form of a ReportSubmitted: each answer's value and places, and its note where it has one
    (``domain.notes.kept_note``; the tallies read past it, the stores keep it in the report's notes)."""
    answers: dict[str, dict[str, Any]] = {}
    if data.withdrawn and data.supersedes:  # a withdrawal holds nothing (``ReportRecord.withdrawn``)
        data = data.model_copy(update={"answers": {}, "nothing_to_report": False})
    for k, a in data.answers.items():
        answers[k] = {"value": a.value, "places": list(a.places)}
        if note := kept_note(a.note):
            answers[k]["note"] = note
    return ReportRecord(
        report_id=data.report_id, municipality_id=data.municipality_id, area_id=data.area_id, period=data.period,
        checklist=data.checklist, answers=answers,
        reporter_id=data.reporter_id, actor_id=data.actor_id, received_at=as_utc(data.received_at),
        nothing_to_report=data.nothing_to_report, supersedes=data.supersedes, late=data.late)


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
    """Event id → why the report cannot be tallied (``domain.reports.report_faults``), for each one that cannot."""
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
    known = await deps.store.processed_ids(s, deps.consumer, [e.id for e in fresh])
    fresh = [e for e in fresh if e.id not in known]
    await deps.store.mark_processed_many(s, deps.consumer, [e.id for e in fresh])
    pairs = _first_by([(e.id, record_of(e.data)) for e in fresh], lambda p: p[1].report_id)
    stored = await deps.store.existing_report_ids(s, [r.report_id for _, r in pairs])
    new = [(eid, r) for eid, r in pairs if r.report_id not in stored]
    await deps.store.insert_reports(s, new)
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
    # the report cache (in-loop SQLite, PostgreSQL through asyncpg) follows the tokens; elsewhere none is kept
    old_tokens = await deps.store.touch_pictures(s, list(keys), token, tokens=deps.report_tokens)
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
