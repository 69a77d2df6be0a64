"""Report use cases: accept reports (single, batch, import) idempotently, publish them, record them."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

import pydantic_core
from est_shared.bus import BusUnavailable, parse_event
from est_shared.db import utcnow
from est_shared.events import CloudEvent, ReportSubmitted
from est_shared.http import STATUS, Problem
from est_shared.observability import correlation_id
from est_shared.org import OrgSnapshot, Principal
from est_shared.subjects import report_submitted
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_intake.errors import ReportRejected
from est_intake.metrics import IntakeMetrics
from est_intake.reports import db
from est_intake.reports.domain import (
    Accepted,
    KnownReport,
    Lookups,
    ReportIn,
    accepted_body,
    content_hash,
    same_report,
    validate_report,
)

log = logging.getLogger("est.intake")

SOURCE = "/est/intake"
REPORT_SUBMITTED = "se.est.report.submitted"
RETRY_AFTER = "5"

Publish = Callable[[str, CloudEvent[Any]], Awaitable[bool | None]]
"""Publishes an event and waits for the JetStream ack; returns True if JetStream reported a duplicate."""

ReportEvent = CloudEvent[ReportSubmitted]  # parametrised once, not per event

DUPLICATE_WAIT = 2.0  # seconds to wait for another replica's row when the original event cannot be read


@dataclass(slots=True)
class Submission:
    """One report to accept: the parsed request, who it is from and when it counts as received."""

    req: ReportIn
    caller: Principal
    received_at: datetime
    digest: str = ""
    exact_time: bool = False  # imports: the submission time is part of the content
    withdrawn: bool = False  # withdraws the report ``req.supersedes`` names (``validate_report``)

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = content_hash(self.req, self.caller.person_id)


NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True)
class Outcome:
    """The answer for one report: 202 with the accepted body, or a problem."""

    status: int
    body: dict[str, Any]
    reason: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: NO_HEADERS)  # shared: read-only
    data: dict[str, Any] | None = None  # a report accepted now: its event data (for the sender's own list)

    @property
    def ok(self) -> bool:
        return self.status == 202


def problem(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None,
            reason: str | None = None, headers: dict[str, str] | None = None) -> Outcome:
    """A problem outcome (RFC 9457 body)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return Outcome(status, body, reason or title, headers or NO_HEADERS)


def conflict(report_id: str) -> Outcome:
    """409: the id was used before with other content."""
    return problem(409, "Conflict", f"report_id {report_id!r} har redan använts med annat innehåll. / "
                   f"report_id {report_id!r} was already used with other content.", reason="conflict")


def unavailable() -> Outcome:
    """503: the bus did not acknowledge; nothing was stored."""
    return problem(503, "Service Unavailable", "Meddelandebussen svarar inte; inget sparades, försök igen. / "
                   "The message bus is unavailable; nothing was stored, please retry.",
                   reason="bus_unavailable", headers={"Retry-After": RETRY_AFTER})


def not_recorded() -> Outcome:
    """503: the bus took the report but the intake could not record its answer (e.g. a full disk)."""
    return problem(503, "Service Unavailable", "Rapporten kan redan ha tagits emot men kunde inte bekräftas "
                   "(intagets lagring fungerar inte). Skicka den igen med samma report_id; den räknas bara en gång. / "
                   "The report may already have been received but could not be confirmed (the intake's storage "
                   "failed). Send it again with the same report_id; it is counted once.",
                   reason="storage_unavailable", headers={"Retry-After": RETRY_AFTER})


def rejected(exc: ReportRejected) -> Outcome:
    """The outcome of a report refused by the rules."""
    return problem(STATUS[exc.kind], exc.title, exc.detail, exc.errors, reason=exc.reason)


def _replay(row: dict[str, Any], digest: str, report_id: str) -> Outcome:
    if row["content_sha256"] == digest:
        return Outcome(202, row["response"], "replayed")
    return conflict(report_id)


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event in its wire form (CloudEvents JSON) with the id and type a publisher needs."""

    id: str
    type: str
    payload: bytes

    def parse(self) -> CloudEvent[Any]:
        """The event as the contract's model (what a consumer reads)."""
        return parse_event(self.payload)


def report_event(acc: Accepted, correlationid: str | None) -> EncodedEvent:
    """The ``se.est.report.submitted`` event of an accepted report, byte for byte ``encode(ReportEvent(…))``.

    Written from the checked fields without building the models (validating data the intake has just
    checked was a tenth of a batch report's cost); a test holds it to the models' encoding.
    """
    d = acc.fields
    envelope: dict[str, Any] = {"specversion": "1.0", "id": d["report_id"], "source": SOURCE,
                                "type": REPORT_SUBMITTED, "time": d["received_at"], "subject": d["area_id"],
                                "datacontenttype": "application/json"}
    if correlationid is not None:
        envelope["correlationid"] = correlationid
    envelope["data"] = d
    return EncodedEvent(id=d["report_id"], type=REPORT_SUBMITTED, payload=pydantic_core.to_json(envelope))


AnyEvent = CloudEvent[Any] | EncodedEvent


@dataclass(frozen=True)
class Acked:
    """JetStream's acknowledgement of one publish: stored now, or a duplicate of the message at ``seq``."""

    duplicate: bool = False
    seq: int | None = None
    stream: str | None = None


STORED = Acked()
"""JetStream stored the message now (one shared instance: ``Acked`` is frozen)."""

PublishMany = Callable[[list[tuple[str, AnyEvent]]], Awaitable[list["Acked | None"]]]
"""Publishes events pipelined and waits for every ack; ``None`` for an event JetStream did not acknowledge."""

FetchOriginal = Callable[[str, int], Awaitable[bytes | None]]
"""Reads the stored message at a stream sequence (the original of a duplicate), None if it cannot."""

CorrectionStates = Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]
"""For report ids a call corrects: ``withdrawal``, ``corrected_by``, ``withdrawn_by`` (``db.correction_states``)."""


class Ledger(Protocol):
    """The idempotency store of accepted reports (``est_intake.adapters.ledger.ReportLedger``)."""

    inflight: dict[str, asyncio.Future[Any]]
    """Report ids this process is accepting right now, to the future of their outcome."""

    async def find(self, report_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored rows by id: content hash, stored answer, area, municipality and sender."""
        ...

    async def record(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert rows and wait for the commit; returns the ids that were stored already (not inserted)."""
        ...


def single_publisher(publish: Publish) -> PublishMany:
    """Adapt a one-at-a-time publisher to PublishMany (tests and simple callers)."""

    async def many(items: list[tuple[str, AnyEvent]]) -> list[Acked | None]:
        async def one(subject: str, event: AnyEvent) -> Acked | None:
            plain = event.parse() if isinstance(event, EncodedEvent) else event
            try:
                return Acked(duplicate=bool(await publish(subject, plain)))
            except BusUnavailable:
                return None

        return list(await asyncio.gather(*(one(s, e) for s, e in items)))

    return many


async def submit_reports(subs: list[Submission], *, ledger: Ledger, snapshot: OrgSnapshot,
                         publish: PublishMany, metrics: IntakeMetrics, via: str = "api",
                         original: FetchOriginal | None = None,
                         states: CorrectionStates | None = None) -> list[Outcome]:
    """Accept reports: replay or refuse known ids, validate, publish (awaiting acks), then record them.

    Publishing comes first and the idempotency row second, and the answer only after both. A crash
    between the ack and the row's commit is healed on the client's resend: JetStream answers the
    resend as a duplicate of the stored message (the event id is the report id), no row exists,
    and the stored event itself decides: same content → the row is recorded from it and the resend
    gets the original's answer; other content → 409. Outside the duplicate window the resend is
    stored a second time with the same event id, which idempotent consumers drop.
    Reports in one call that supersede an earlier one of the same call are published after it.
    With ``states`` a correction of a report that was withdrawn or corrected already, or of a withdrawal, is
    refused (409): one report has at most one successor, so a report is never counted twice.
    """
    out = await _submit(subs, ledger=ledger, snapshot=snapshot, publish=publish, original=original, states=states)
    replayed = accepted = late = 0
    refused: dict[str, int] = {}
    for r in out:
        if r.reason == "replayed":
            replayed += 1
        elif r.ok:
            accepted += 1
            if r.body.get("late"):
                late += 1
        else:
            reason = r.reason or "other"
            refused[reason] = refused.get(reason, 0) + 1
    # one increment per counter and call: a batch has up to 500 reports
    if replayed:
        metrics.replayed.inc(replayed)
    if accepted:
        metrics.accepted.labels(via).inc(accepted)
    if late:
        metrics.late.inc(late)
    for reason, n in refused.items():
        metrics.rejected.labels(reason).inc(n)
    return out


async def _submit(subs: list[Submission], *, ledger: Ledger, snapshot: OrgSnapshot,
                  publish: PublishMany, original: FetchOriginal | None,
                  states: CorrectionStates | None = None) -> list[Outcome]:
    results: list[Outcome | None] = [None] * len(subs)
    targets = [s.req.supersedes for s in subs if s.req.supersedes]
    existing = await ledger.find([s.req.report_id for s in subs] + targets)
    later = await states(targets) if states is not None and targets else {}
    known = {rid: KnownReport(row["area_id"], row["municipality_id"], row["reporter_id"], **later.get(rid, {}))
             for rid, row in existing.items()}
    first: dict[str, int] = {}
    duplicates: list[int] = []
    waiting: list[tuple[int, asyncio.Future[Any]]] = []
    pending: list[int] = []
    # one future for the ids this call claims: its result maps each to (digest, outcome)
    claimed: asyncio.Future[dict[str, tuple[str, Outcome | None]]] = asyncio.get_running_loop().create_future()
    for i, s in enumerate(subs):
        rid = s.req.report_id
        if rid in existing:
            results[i] = _replay(existing[rid], s.digest, rid)
        elif rid in first:
            duplicates.append(i)
        elif rid in ledger.inflight:  # this process is accepting the same id right now: wait for it
            waiting.append((i, ledger.inflight[rid]))
        else:
            first[rid] = i
            pending.append(i)
            ledger.inflight[rid] = claimed
    lookups = Lookups()
    try:
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
                                                    received_at=s.received_at, known_reports=known,
                                                    lookups=lookups, withdrawn=s.withdrawn)))
                except ReportRejected as exc:
                    results[i] = rejected(exc)
                    continue
                if sup in known:  # a second correction of the same report in this call is refused
                    known[sup] = (replace(known[sup], withdrawn_by=s.req.report_id) if s.withdrawn
                                  else replace(known[sup], corrected_by=s.req.report_id))
            if wave:
                await _publish_wave(wave, subs, results, publish=publish, ledger=ledger, original=original)
                for i, acc in wave:
                    if results[i] is not None and results[i].ok:  # type: ignore[union-attr]
                        known[acc.report_id] = KnownReport(acc.area_id, acc.municipality_id,
                                                           acc.fields["reporter_id"])
            force = not wave and len(deferred) == len(pending)
            pending = deferred
    finally:
        for rid in first:
            ledger.inflight.pop(rid, None)
        claimed.set_result({rid: (subs[i].digest, results[i]) for rid, i in first.items()})
    for i in duplicates:
        j = first[subs[i].req.report_id]
        primary = results[j]
        assert primary is not None
        if subs[i].digest == subs[j].digest:
            results[i] = primary if primary.status != 202 else Outcome(202, primary.body, "replayed")
        else:
            results[i] = conflict(subs[i].req.report_id)
    retry: list[int] = []
    for i, fut in waiting:
        digest, primary = (await fut)[subs[i].req.report_id]
        if primary is not None and primary.ok:
            results[i] = Outcome(202, primary.body, "replayed") if digest == subs[i].digest \
                else conflict(subs[i].req.report_id)
        elif primary is not None and digest == subs[i].digest:
            results[i] = primary  # the identical request was refused: so is this one
        else:
            retry.append(i)  # the first one did not get through: try this one on its own
    if retry:
        again = await _submit([subs[i] for i in retry], ledger=ledger, snapshot=snapshot, publish=publish,
                              original=original, states=states)
        for i, o in zip(retry, again, strict=True):
            results[i] = o
    return [r for r in results if r is not None]


async def _publish_wave(wave: list[tuple[int, Accepted]], subs: list[Submission], results: list[Outcome | None],
                        *, publish: PublishMany, ledger: Ledger, original: FetchOriginal | None) -> None:
    """Publish accepted reports pipelined, then record those JetStream acknowledged (one commit)."""
    cid = correlation_id.get()
    subjects: dict[tuple[str, str], str] = {}
    items: list[tuple[str, AnyEvent]] = []
    for _, acc in wave:
        d = acc.fields
        key = (d["municipality_id"], d["area_id"])
        subject = subjects.get(key)
        if subject is None:
            subject = subjects[key] = report_submitted(*key)
        items.append((subject, report_event(acc, cid)))
    acks = await publish(items)
    rows: list[tuple[int, dict[str, Any]]] = []
    recorded_at = utcnow()
    for (i, acc), ack in zip(wave, acks, strict=True):
        d = acc.fields
        if ack is None:
            results[i] = unavailable()
            continue
        received_at, period, late = d["received_at"], d["period"], d["late"]
        stored = None
        if ack.duplicate:
            # JetStream already holds an event with this id: another replica is accepting it right now,
            # or an earlier attempt crashed after the ack and before its row. Its row decides; without
            # one, the stored event does.
            outcome, stored = await _settle_duplicate(acc, subs[i], ack, ledger=ledger, original=original)
            if outcome is not None:
                results[i] = outcome
                continue
            if stored is not None:
                t = stored_time(stored)
                received_at, period, late = t["received_at"], t["period"], t["late"]
        rid = d["report_id"]
        body = accepted_body(rid, period, late)
        results[i] = Outcome(202, body, data=d if stored is None else {**d, **stored_time(stored)})
        rows.append((i, db.report_row(report_id=rid, content_sha256=subs[i].digest, response=body,
                                      municipality_id=d["municipality_id"], area_id=d["area_id"], period=period,
                                      reporter_id=d["reporter_id"], received_at=received_at,
                                      recorded_at=recorded_at, response_text=db.accepted_json(rid, period, late))))
    if not rows:
        return
    try:
        taken = await ledger.record([r for _, r in rows])
    except Exception:
        log.exception("could not record accepted reports")
        for i, _ in rows:  # published but not recorded: the resend heals it (see submit_reports)
            results[i] = not_recorded()
        return
    if taken:
        found = await ledger.find(list(taken))
        for i, row in rows:
            if row["report_id"] in taken and row["report_id"] in found:
                results[i] = _replay(found[row["report_id"]], row["content_sha256"], row["report_id"])
    if not log.isEnabledFor(logging.INFO):
        return
    ok = [row for i, row in rows if (r := results[i]) is not None and r.status == 202]
    if ok:  # the start of a report's trace through the services (ids only, never content); one line a wave
        log.info("report accepted" if len(ok) == 1 else "reports accepted", extra={
            "report_ids": ",".join(r["report_id"] for r in ok),
            "pictures": ",".join(sorted({f"{r['area_id']}:{r['period']}" for r in ok}))})


def stored_time(stored: dict[str, Any]) -> dict[str, Any]:
    """What a stored event decides of a resent report: when it was received, its period and lateness."""
    return {"received_at": datetime.fromisoformat(stored["received_at"]), "period": stored["period"],
            "late": bool(stored["late"])}


async def _settle_duplicate(acc: Accepted, sub: Submission, ack: Acked, *, ledger: Ledger,
                            original: FetchOriginal | None) -> tuple[Outcome | None, dict[str, Any] | None]:
    """For a duplicate ack: the answer from the stored row, or the stored event's data to record, or neither."""
    rid = acc.report_id
    found = (await ledger.find([rid])).get(rid)
    if found is not None:
        return _replay(found, sub.digest, rid), None
    if original is not None and ack.stream and ack.seq:
        raw = await original(ack.stream, ack.seq)
        if raw is not None:
            try:
                stored = json.loads(raw)["data"]
            except (ValueError, KeyError, TypeError):
                stored = None
            if isinstance(stored, dict) and stored.get("report_id") == rid:
                if not same_report(stored, acc.data, period_given=sub.req.period is not None,
                                   exact_time=sub.exact_time):
                    return conflict(rid), None
                return None, stored
    # no way to read the original: wait a little for a concurrent replica's row, else record ours
    loop = asyncio.get_running_loop()
    until = loop.time() + DUPLICATE_WAIT
    while loop.time() < until:
        await asyncio.sleep(0.05)
        found = (await ledger.find([rid])).get(rid)
        if found is not None:
            return _replay(found, sub.digest, rid), None
    return None, None


# --- the sender's own reports: the list, corrections and withdrawals read from it ---------------------------

Sessions = async_sessionmaker[AsyncSession]


def correction_states(sessions: Sessions | None) -> CorrectionStates | None:
    """The ``states`` of ``submit_reports`` read from the senders' own list (None without the database)."""
    if sessions is None:
        return None

    async def states(report_ids: list[str]) -> dict[str, dict[str, Any]]:
        async with sessions() as s:
            return await db.correction_states(s, report_ids)

    return states


class OwnReports:
    """Keeps the content of reports accepted now for their senders' own list (``GET /v1/me/reports``).

    The rows of requests arriving at the same moment become one transaction on one pooled session
    (on PostgreSQL a session and a commit per request kept every pooled connection busy, and the
    requests waited for a connection). ``record`` returns once its rows' transaction ended. A failure
    is logged: the report itself is stored and counted; only the list misses it.
    """

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions
        self._waiting: list[tuple[list[dict[str, Any]], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, outcomes: list[Outcome]) -> None:
        rows = [db.own_row(o.data) for o in outcomes if o.ok and o.data is not None]
        if not rows:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="own-reports-writes")
        await fut

    async def _write_loop(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._store([row for rows, _ in batch for row in rows])
            finally:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    async def _store(self, rows: list[dict[str, Any]]) -> None:
        unique = list({r["report_id"]: r for r in reversed(rows)}.values())  # a resend in the batch: once
        for attempt in range(2):  # a concurrent replica's row: the second look leaves it out
            try:
                async with self.sessions() as s, s.begin():
                    await db.record_own(s, unique)
                return
            except IntegrityError:
                if attempt == 1:
                    log.exception("could not keep accepted reports for their senders' list")
            except Exception:
                log.exception("could not keep accepted reports for their senders' list")
                return


def own_view(row: dict[str, Any], snapshot: OrgSnapshot) -> dict[str, Any]:
    """One of the caller's reports as ``GET /v1/me/reports`` answers it."""
    content = json.loads(row["content"])
    area = snapshot.areas.get(row["area_id"])
    received = row["received_at"]
    return {"report_id": row["report_id"], "area_id": row["area_id"],
            "area_name": area.name if area is not None else row["area_id"], "period": row["period"],
            "received_at": received.isoformat() if isinstance(received, datetime) else str(received),
            "late": bool(row["late"]), "checklist": row["checklist"], "answers": content["answers"],
            "nothing_to_report": content["nothing_to_report"], "note": content["note"],
            "supersedes": row["supersedes"], "superseded_by": row["superseded_by"],
            "withdrawn": row["withdrawn_by"] is not None, "withdrawn_by": row["withdrawn_by"]}


async def own_reports(sessions: Sessions, caller: Principal, snapshot: OrgSnapshot, *, area_id: str | None,
                      period_from: str | None, period_to: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """The caller's own reports, newest first (never anyone else's, whatever the caller's roles)."""
    async with sessions() as s:
        rows = await db.list_own(s, caller.person_id, area_id=area_id, period_from=period_from,
                                 period_to=period_to, limit=limit, offset=offset)
    return [own_view(r, snapshot) for r in rows]


WITHDRAWALS = uuid.UUID("5b0e7d52-4a61-4c1e-9f3c-7e2a8d1b6c40")
"""Namespace of withdrawal ids: a report's withdrawal has one id, so withdrawing twice is one report."""


async def withdrawal_of(sessions: Sessions, caller: Principal, report_id: str) -> Submission:
    """The withdrawal of one of the caller's own reports, to submit; raises Problem when there is none to make."""
    async with sessions() as s:
        row = await db.own_report(s, report_id)
    if row is None or row["reporter_id"] != caller.person_id or row["withdrawn"]:
        raise Problem(404, "Not Found", "Du har ingen sådan rapport att ta tillbaka. / "
                      "You have no such report to withdraw.")
    if row["withdrawn_by"] is not None:
        raise Problem(409, "Conflict", "Rapporten är redan tillbakatagen. / The report is already withdrawn.")
    if row["superseded_by"] is not None:
        raise Problem(409, "Conflict", "Rapporten har rättats; ta tillbaka rättelsen i stället. / "
                      "The report was corrected; withdraw the correction instead.")
    req = ReportIn(report_id=str(uuid.uuid5(WITHDRAWALS, report_id)), area_id=row["area_id"], period=row["period"],
                   checklist=row["checklist"], supersedes=report_id)
    sub = Submission(req=req, caller=caller, received_at=utcnow(), withdrawn=True)
    sub.digest = content_hash(req, f"{caller.person_id}:withdrawn")
    return sub
