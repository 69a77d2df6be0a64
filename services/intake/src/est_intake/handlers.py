"""Intake use cases: apply the organisation, accept reports (single, batch, import) idempotently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from est_shared.bus import BusUnavailable
from est_shared.db import add_to_outbox, transaction
from est_shared.events import CloudEvent, OrgChanged, new_event
from est_shared.org import OrgSnapshot, Principal
from est_shared.subjects import ORG_CHANGED, report_submitted
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_intake import db
from est_intake.domain import (
    Accepted,
    ReportIn,
    ReportRejected,
    accepted_body,
    build_snapshot,
    content_hash,
    validate_report,
)

log = logging.getLogger("est.intake")

SOURCE = "/est/intake"
REPORT_SUBMITTED = "se.est.report.submitted"
ORG_CHANGED_TYPE = "se.est.org.changed"
RETRY_AFTER = "5"

Publish = Callable[[str, CloudEvent[Any]], Awaitable[bool | None]]
"""Publishes an event and waits for the JetStream ack; returns True if JetStream reported a duplicate."""

DUPLICATE_WAIT = 2.0  # seconds to wait for the concurrent request that published first to record its row


class IntakeMetrics:
    """Intake metrics on the service registry, named ``est_intake_…``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter("est_intake_reports_accepted_total", "Reports accepted, by way in",
                                ["via"], registry=registry)
        self.rejected = Counter("est_intake_reports_rejected_total", "Reports refused, by reason",
                                ["reason"], registry=registry)
        self.replayed = Counter("est_intake_reports_replayed_total", "Identical resends answered from the "
                                "idempotency store", registry=registry)
        self.late = Counter("est_intake_reports_late_total", "Reports accepted after the period deadline",
                            registry=registry)
        self.publish_seconds = Histogram("est_intake_publish_seconds", "Time from publish to JetStream ack",
                                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5),
                                         registry=registry)
        self.org_applies = Counter("est_intake_org_applies_total", "Organisation applies, by outcome",
                                   ["outcome"], registry=registry)


# --- organisation ------------------------------------------------------------------------

@dataclass
class OrgApplied:
    """Result of applying an organisation document."""

    snapshot: OrgSnapshot
    changes: list[str]
    changed: bool


def org_event(snapshot: OrgSnapshot, changes: list[str], at: datetime) -> CloudEvent[OrgChanged]:
    """The ``se.est.org.changed`` event of a version (id ``org:v{version}``)."""
    return new_event(type=ORG_CHANGED_TYPE, source=SOURCE, id=f"org:v{snapshot.version}", subject="org",
                     time=at, data=OrgChanged(version=snapshot.version, snapshot=snapshot.model_dump(mode="json"),
                                              changes=changes))


async def apply_org(doc: dict[str, Any], *, sessions: async_sessionmaker[AsyncSession], applied_by: str,
                    on_applied: Callable[[OrgSnapshot], Awaitable[None]], wake: Callable[[], None],
                    metrics: IntakeMetrics | None = None) -> OrgApplied:
    """Validate and store a new organisation version with its event in the outbox (idempotent)."""
    for attempt in range(3):
        try:
            async with transaction(sessions) as s:
                previous = await db.latest_org(s)
                snapshot, changes = build_snapshot(doc, previous)
                changed = previous is None or snapshot.version != previous.version
                if changed:
                    at = datetime.now(UTC)
                    await db.add_org_version(s, snapshot, applied_by=applied_by, changes=changes, applied_at=at)
                    await add_to_outbox(s, db.outbox, ORG_CHANGED, org_event(snapshot, changes, at))
            break
        except IntegrityError:  # another replica stored the same version number first: rebuild on top
            if attempt == 2:
                raise
    if changed:
        wake()
        log.info("organisation applied", extra={"version": snapshot.version, "changes": len(changes),
                                                "applied_by": applied_by})
    if metrics:
        metrics.org_applies.labels("changed" if changed else "unchanged").inc()
    await on_applied(snapshot)
    return OrgApplied(snapshot=snapshot, changes=changes, changed=changed)


# --- reports -----------------------------------------------------------------------------

@dataclass
class Submission:
    """One report to accept: the parsed request, who it is from and when it counts as received."""

    req: ReportIn
    caller: Principal
    received_at: datetime
    digest: str = ""

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = content_hash(self.req, self.caller.person_id)


@dataclass
class Outcome:
    """The answer for one report: 202 with the accepted body, or a problem."""

    status: int
    body: dict[str, Any]
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 202


def problem(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None,
            reason: str | None = None, headers: dict[str, str] | None = None) -> Outcome:
    """A problem outcome (RFC 9457 body)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return Outcome(status, body, reason or title, headers or {})


def conflict(report_id: str) -> Outcome:
    """409: the id was used before with other content."""
    return problem(409, "Conflict", f"report_id {report_id!r} har redan använts med annat innehåll. / "
                   f"report_id {report_id!r} was already used with other content.", reason="conflict")


def unavailable() -> Outcome:
    """503: the bus did not acknowledge; nothing was stored."""
    return problem(503, "Service Unavailable", "Meddelandebussen svarar inte; inget sparades, försök igen. / "
                   "The message bus is unavailable; nothing was stored, please retry.",
                   reason="bus_unavailable", headers={"Retry-After": RETRY_AFTER})


def rejected(exc: ReportRejected) -> Outcome:
    """The outcome of a report refused by the rules."""
    return problem(exc.status, exc.title, exc.detail, exc.errors, reason=exc.reason)


def _replay(row: dict[str, Any], digest: str, report_id: str) -> Outcome:
    if row["content_sha256"] == digest:
        return Outcome(202, row["response"], "replayed")
    return conflict(report_id)


async def submit_reports(subs: list[Submission], *, sessions: async_sessionmaker[AsyncSession],
                         snapshot: OrgSnapshot, publish: Publish, metrics: IntakeMetrics, via: str = "api",
                         concurrency: int = 64) -> list[Outcome]:
    """Accept reports: replay or refuse known ids, validate, publish (awaiting acks), then record them.

    Publishing comes first and the idempotency row second: a crash between them is healed by
    JetStream de-duplication (the event id is the report id) and idempotent consumers.
    Reports in one call that supersede an earlier one of the same call are published after it.
    """
    results: list[Outcome | None] = [None] * len(subs)
    lookup = [s.req.report_id for s in subs] + [s.req.supersedes for s in subs if s.req.supersedes]
    async with sessions() as session:
        existing = await db.find_reports(session, lookup)
    known: dict[str, str] = {rid: row["area_id"] for rid, row in existing.items()}
    first: dict[str, int] = {}
    duplicates: list[int] = []
    pending: list[int] = []
    for i, s in enumerate(subs):
        rid = s.req.report_id
        if rid in existing:
            results[i] = _replay(existing[rid], s.digest, rid)
        elif rid in first:
            duplicates.append(i)
        else:
            first[rid] = i
            pending.append(i)
    sem = asyncio.Semaphore(max(1, concurrency))
    force = False
    while pending:
        wave: list[tuple[int, Accepted]] = []
        deferred: list[int] = []
        for i in pending:
            s = subs[i]
            sup = s.req.supersedes
            target = first.get(sup) if sup else None
            if (not force and sup and sup not in known and target is not None and target < i
                    and results[target] is None):
                deferred.append(i)
                continue
            try:
                wave.append((i, validate_report(s.req, caller=s.caller, snapshot=snapshot,
                                                received_at=s.received_at, known_reports=known)))
            except ReportRejected as exc:
                results[i] = rejected(exc)
        if wave:
            await _publish_wave(wave, subs, results, publish=publish, sessions=sessions, sem=sem)
            for i, acc in wave:
                if results[i] is not None and results[i].ok:  # type: ignore[union-attr]
                    known[acc.data.report_id] = acc.data.area_id
        force = not wave and len(deferred) == len(pending)
        pending = deferred
    for i in duplicates:
        j = first[subs[i].req.report_id]
        primary = results[j]
        assert primary is not None
        if subs[i].digest == subs[j].digest:
            results[i] = primary if primary.status != 202 else Outcome(202, primary.body, "replayed")
        else:
            results[i] = conflict(subs[i].req.report_id)
    out = [r for r in results if r is not None]
    for r in out:
        if r.reason == "replayed":
            metrics.replayed.inc()
        elif r.ok:
            metrics.accepted.labels(via).inc()
            if r.body.get("late"):
                metrics.late.inc()
        else:
            metrics.rejected.labels(r.reason or "other").inc()
    return out


async def _publish_wave(wave: list[tuple[int, Accepted]], subs: list[Submission], results: list[Outcome | None],
                        *, publish: Publish, sessions: async_sessionmaker[AsyncSession],
                        sem: asyncio.Semaphore) -> None:
    """Publish accepted reports concurrently, then record those JetStream acknowledged."""

    async def one(acc: Accepted) -> str:
        d = acc.data
        event = new_event(type=REPORT_SUBMITTED, source=SOURCE, id=d.report_id, subject=d.area_id,
                          time=d.received_at, data=d)
        async with sem:
            try:
                duplicate = await publish(report_submitted(d.municipality_id, d.area_id), event)
            except BusUnavailable:
                return "failed"
        return "duplicate" if duplicate else "stored"

    acked = await asyncio.gather(*(one(acc) for _, acc in wave))
    rows: list[tuple[int, dict[str, Any]]] = []
    for (i, acc), state in zip(wave, acked, strict=True):
        if state == "failed":
            results[i] = unavailable()
            continue
        if state == "duplicate":
            # JetStream already held an event with this id: a concurrent request (or one that crashed
            # before recording) published first. Its stored row decides; without one, we record ours.
            found = await _await_row(sessions, acc.data.report_id)
            if found is not None:
                results[i] = _replay(found, subs[i].digest, acc.data.report_id)
                continue
        d = acc.data
        body = accepted_body(d.report_id, d.period, d.late)
        results[i] = Outcome(202, body)
        rows.append((i, db.report_row(report_id=d.report_id, content_sha256=subs[i].digest, response=body,
                                      municipality_id=d.municipality_id, area_id=d.area_id, period=d.period,
                                      reporter_id=d.reporter_id, received_at=d.received_at)))
    if not rows:
        return
    try:
        async with transaction(sessions) as s:
            await db.insert_reports(s, [r for _, r in rows])
        return
    except IntegrityError:
        pass  # a concurrent request recorded one of them first: settle row by row
    for i, row in rows:
        try:
            async with transaction(sessions) as s:
                await db.insert_reports(s, [row])
        except IntegrityError:
            async with sessions() as s:
                found = (await db.find_reports(s, [row["report_id"]])).get(row["report_id"])
            if found is not None:
                results[i] = _replay(found, row["content_sha256"], row["report_id"])


async def _await_row(sessions: async_sessionmaker[AsyncSession], report_id: str) -> dict[str, Any] | None:
    """The stored row of a report, waiting a little for a concurrent request to record it."""
    loop = asyncio.get_running_loop()
    until = loop.time() + DUPLICATE_WAIT
    while True:
        async with sessions() as s:
            found = (await db.find_reports(s, [report_id])).get(report_id)
        if found is not None or loop.time() >= until:
            return found
        await asyncio.sleep(0.05)
