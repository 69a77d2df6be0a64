"""Intake use cases: apply the organisation, accept reports (single, batch, import) idempotently."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pydantic_core
from est_shared.bus import CLOUDEVENTS_JSON, BusUnavailable, encode, parse_event
from est_shared.db import add_to_outbox, transaction, utcnow
from est_shared.events import MAX_ORG_CHANGES, CloudEvent, OrgChanged, ReportSubmitted, new_event
from est_shared.observability import correlation_id
from est_shared.org import OrgSnapshot, Principal, SnapshotBlob
from est_shared.subjects import ORG_CHANGED, report_submitted, stream_for
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_intake import db
from est_intake.domain import (
    Accepted,
    KnownReport,
    Lookups,
    ReportIn,
    ReportRejected,
    StartupOutcome,
    accepted_body,
    build_snapshot,
    content_hash,
    same_report,
    startup_file_may_apply,
    validate_report,
)

log = logging.getLogger("est.intake")

SOURCE = "/est/intake"
REPORT_SUBMITTED = "se.est.report.submitted"
ORG_CHANGED_TYPE = "se.est.org.changed"
RETRY_AFTER = "5"

Publish = Callable[[str, CloudEvent[Any]], Awaitable[bool | None]]
"""Publishes an event and waits for the JetStream ack; returns True if JetStream reported a duplicate."""

ReportEvent = CloudEvent[ReportSubmitted]  # parametrised once, not per event

DUPLICATE_WAIT = 2.0  # seconds to wait for another replica's row when the original event cannot be read


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
    """Result of applying an organisation document (``outcome`` for a start-up file, see domain)."""

    snapshot: OrgSnapshot
    changes: list[str]
    changed: bool
    outcome: StartupOutcome = "applied"


StoreSnapshot = Callable[[OrgSnapshot], Awaitable[SnapshotBlob]]
"""Writes a version's snapshot where ``est.org.changed`` points (the object store) and returns its stored form;
raises ``BusUnavailable`` when it cannot."""


@dataclass(frozen=True)
class StartupFile:
    """A start-up organisation file: its content's digest and its name (see the start-up file rule)."""

    sha256: str
    name: str

    @classmethod
    def of(cls, raw: bytes, name: str) -> StartupFile:
        return cls(sha256=hashlib.sha256(raw).hexdigest(), name=name)


def org_event(blob: SnapshotBlob, changes: list[str], at: datetime) -> CloudEvent[OrgChanged]:
    """The ``se.est.org.changed`` event of a version (id ``org:v{version}``): where its snapshot is, and the
    first ``MAX_ORG_CHANGES`` changes."""
    return new_event(type=ORG_CHANGED_TYPE, source=SOURCE, id=f"org:v{blob.version}", subject="org", time=at,
                     data=OrgChanged(version=blob.version, snapshot_object=blob.name, snapshot_sha256=blob.sha256,
                                     snapshot_bytes=len(blob.data), changes=changes[:MAX_ORG_CHANGES],
                                     changes_total=len(changes)))


async def apply_org(doc: dict[str, Any], *, sessions: async_sessionmaker[AsyncSession], applied_by: str,
                    on_applied: Callable[[OrgSnapshot], Awaitable[None]], wake: Callable[[], None],
                    store: StoreSnapshot, metrics: IntakeMetrics | None = None,
                    startup: StartupFile | None = None) -> OrgApplied:
    """Validate and store a new organisation version with its event in the outbox (idempotent).

    The snapshot goes to ``store`` first, then the version and its event commit together: an event never
    names a snapshot that is not there. With ``startup``, the start-up file rule decides (``domain``).
    Building runs in a thread: a large organisation takes seconds, which the loop spends serving.
    """
    for attempt in range(3):
        async with sessions() as s:
            previous = await db.latest_org(s)
            _, last_file_version = await db.last_startup_file(s) if startup else (None, 0)
        snapshot, changes = await asyncio.to_thread(build_snapshot, doc, previous)
        latest = previous.version if previous else 0
        changed = previous is None or snapshot.version != previous.version
        outcome: StartupOutcome = "applied"
        if startup is not None and not changed:
            outcome = "current"
            async with transaction(sessions) as s:
                await db.record_startup_file(s, sha256=startup.sha256, file_name=startup.name, version=latest,
                                             outcome=outcome)
        if startup is not None and changed and not startup_file_may_apply(
                latest_version=latest, last_file_version=last_file_version):
            log.warning("the start-up organisation file was not applied: the organisation was changed since a "
                        "start-up file last took effect; to apply it, run `est org apply FILE`",
                        extra={"file": startup.name, "org_version": latest, "file_version": last_file_version})
            return OrgApplied(snapshot=previous or snapshot, changes=[], changed=False, outcome="skipped")
        if not changed:
            break
        blob = await store(snapshot)
        at = datetime.now(UTC)
        try:
            async with transaction(sessions) as s:
                await db.add_org_version(s, snapshot, applied_by=applied_by, changes=changes, applied_at=at,
                                         snapshot_json=blob.data.decode())
                await add_to_outbox(s, db.outbox, ORG_CHANGED, org_event(blob, changes, at))
                if startup is not None:
                    await db.record_startup_file(s, sha256=startup.sha256, file_name=startup.name,
                                                 version=snapshot.version, outcome="applied")
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
    return OrgApplied(snapshot=snapshot, changes=changes, changed=changed, outcome=outcome)


async def unchanged_startup_file(startup: StartupFile, *, sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Whether a start-up file has the content of the start-up file that last took effect (then it is not read)."""
    async with sessions() as s:
        last_sha, _ = await db.last_startup_file(s)
    return last_sha == startup.sha256


# --- reports -----------------------------------------------------------------------------

@dataclass(slots=True)
class Submission:
    """One report to accept: the parsed request, who it is from and when it counts as received."""

    req: ReportIn
    caller: Principal
    received_at: datetime
    digest: str = ""
    exact_time: bool = False  # imports: the submission time is part of the content

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
    return problem(exc.status, exc.title, exc.detail, exc.errors, reason=exc.reason)


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


class _Wave:
    """The acks one ``publish_many`` call is waiting for."""

    __slots__ = ("acks", "done", "left")

    def __init__(self, n: int, done: asyncio.Future[None]) -> None:
        self.acks: list[Acked | None] = [None] * n
        self.left = n
        self.done = done


class RawPublish:
    """The HPUB commands of one ``publish_many`` call, written out and handed to nats-py's connection at once.

    ``nats.aio.client.Client.publish`` encodes the headers of every message field by field (a regular
    expression, a strip and an encode per header): with three headers that was the largest single
    cost of a batch report's publish. The intake's headers are the same for every report of a
    stream but the ``Nats-Msg-Id``, so their block is written once and the command is formed here,
    then queued with the client's own ``_send_command`` and flush (the path ``publish`` ends in).
    These are nats-py internals (pinned in ``uv.lock``); ``of`` returns None if they are missing, and
    ``add`` refuses what it cannot send this way (a subject or id with whitespace or a line break, a
    payload over the server's limit, a connection that is not up): the caller then uses ``publish``,
    which checks and raises as it always did. Tests hold what arrives to ``publish``'s encoding.
    """

    __slots__ = ("_subjects", "cmds", "nc", "payload_bytes")

    _BAD = re.compile(r"[\s]")

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.cmds: list[bytes] = []
        self.payload_bytes = 0
        self._subjects: dict[str, bytes | None] = {}

    @classmethod
    def of(cls, nc: Any) -> RawPublish | None:
        ok = all(hasattr(nc, a) for a in ("_send_command", "_flush_queue", "_flush_pending", "_max_payload")) \
            and isinstance(getattr(nc, "stats", None), dict)
        return cls(nc) if ok and nc.is_connected and not nc.is_closed and not nc.is_draining_pubs else None

    def add(self, subject: str, prefix: str, token: bytes, block: bytes, msg_id: str, payload: bytes) -> bool:
        """Queue one message (False: not this way; send it with ``publish``)."""
        subj = self._subjects.get(subject, b"")
        if subj == b"":
            subj = self._subjects[subject] = None if not subject or self._BAD.search(subject) else subject.encode()
        if subj is None or "\r" in msg_id or "\n" in msg_id or len(payload) > self.nc._max_payload:
            return False
        hdr = block + msg_id.encode() + b"\r\n\r\n"
        self.cmds.append(b"HPUB %b %b%b %d %d\r\n%b%b\r\n" % (subj, prefix.encode(), token, len(hdr),
                                                                 len(hdr) + len(payload), hdr, payload))
        self.payload_bytes += len(payload)
        return True

    async def send(self) -> None:
        """Hand the queued commands to the connection (one write) and flush as ``publish`` does."""
        if not self.cmds:
            return
        nc, cmds, size = self.nc, self.cmds, self.payload_bytes
        self.cmds, self.payload_bytes = [], 0
        nc.stats["out_msgs"] += len(cmds)
        nc.stats["out_bytes"] += size
        await nc._send_command(b"".join(cmds))
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()


class JetStreamReports:
    """Publishes report events to JetStream pipelined, with one wait for all acks of a call.

    This is what nats-py's ``publish_async`` does, without what costs most per report on this path:
    a kernel random read for each reply token, a future and a semaphore per message, and the
    ``PubAck`` parsing. Each message gets a reply subject ``<prefix>.<counter>`` on one wildcard
    subscription of this publisher; an ack fills its slot of the call's wave and the last one wakes
    the caller. An ack that does not come within ``timeout`` leaves its slot ``None`` (not stored,
    as far as the caller knows: the client retries, and the ``Nats-Msg-Id`` makes that safe).
    """

    def __init__(self, runtime: Any, metrics: IntakeMetrics, *, timeout: float = 5.0,
                 max_pending: int = 20_000) -> None:
        self.runtime, self.metrics, self.timeout, self.max_pending = runtime, metrics, timeout, max_pending
        self._prefix = ""
        self._sub: Any = None
        self._sub_of: Any = None
        self._next = 0
        self._pending: dict[bytes, tuple[_Wave, int]] = {}
        self._published: dict[str, Any] = {}
        self._headers: dict[str, dict[str, str]] = {}
        self._blocks: dict[str, bytes] = {}

    def _client(self) -> Any:
        try:
            nc = self.runtime.broker.connection
            return nc if nc is not None and nc.is_connected else None
        except Exception:
            return None

    async def _subscribe(self, nc: Any) -> None:
        if self._sub is not None and self._sub_of is nc:
            return
        self._prefix = f"_INBOX.{nc.new_inbox().rsplit('.', 1)[-1]}."
        self._sub = await nc.subscribe(self._prefix + "*", cb=self._on_ack)
        self._sub_of = nc

    async def _on_ack(self, msg: Any) -> None:
        token = msg.subject[len(self._prefix):].encode()
        found = self._pending.pop(token, None)
        if found is None:  # came after its timeout
            return
        wave, i = found
        wave.acks[i] = self._ack_of(msg.data)
        wave.left -= 1
        if wave.left == 0 and not wave.done.done():
            wave.done.set_result(None)

    @staticmethod
    def _ack_of(data: bytes) -> Acked | None:
        """A JetStream PubAck as ``Acked``; None for an error or an unreadable answer."""
        if data[:10] == b'{"stream":' and data[-1:] == b"}" and b'"duplicate"' not in data \
                and b'"error"' not in data:
            return STORED  # the common answer: stored now (its sequence is needed only for a duplicate)
        try:
            ack = json.loads(data)
            if "error" in ack:  # e.g. a stream-name mismatch: not stored
                log.warning("JetStream refused a report", extra={"error": str(ack["error"].get("code"))})
                return None
            return Acked(duplicate=bool(ack.get("duplicate")), seq=ack.get("seq"), stream=ack.get("stream"))
        except (ValueError, TypeError, AttributeError):
            return None

    def _header(self, subject: str) -> dict[str, str]:
        stream = stream_for(subject)
        base = self._headers.get(stream)
        if base is None:
            base = self._headers[stream] = {"Content-Type": CLOUDEVENTS_JSON, "Nats-Expected-Stream": stream}
        return base

    def _header_block(self, subject: str) -> bytes:
        """``_header(subject)`` as the start of a NATS header block, up to the ``Nats-Msg-Id`` value."""
        stream = stream_for(subject)
        block = self._blocks.get(stream)
        if block is None:
            block = self._blocks[stream] = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self._header(
                subject).items()) + "Nats-Msg-Id: ").encode()
        return block

    async def publish_many(self, items: list[tuple[str, AnyEvent]]) -> list[Acked | None]:
        """Publish all events, then wait (at most ``timeout``) for their acks."""
        bus = self.runtime.metrics
        if not items:
            return []
        nc = self._client()
        if nc is None or len(self._pending) >= self.max_pending:
            bus.publish_failures.inc(len(items))
            return [None] * len(items)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        wave = _Wave(len(items), loop.create_future())
        tokens: list[bytes] = []
        try:
            await self._subscribe(nc)
            raw = RawPublish.of(nc)
            for i, (subject, event) in enumerate(items):
                self._next += 1
                token = str(self._next).encode()
                self._pending[token] = (wave, i)
                tokens.append(token)
                payload = event.payload if isinstance(event, EncodedEvent) else encode(event)
                if raw is None or not raw.add(subject, self._prefix, token, self._header_block(subject), event.id,
                                              payload):
                    if raw is not None:
                        await raw.send()  # keep the order
                    await nc.publish(subject, payload, reply=self._prefix + token.decode(),
                                     headers={**self._header(subject), "Nats-Msg-Id": event.id})
            if raw is not None:
                await raw.send()
        except Exception as exc:  # a closed connection: what was sent may still be acked
            log.warning("publish failed", extra={"error": exc.__class__.__name__})
            wave.left -= len(items) - len(tokens)
            if wave.left <= 0 and not wave.done.done():
                wave.done.set_result(None)
        if wave.left > 0:
            timer = loop.call_later(self.timeout, lambda: wave.done.done() or wave.done.set_result(None))
            try:
                await wave.done
            finally:
                timer.cancel()
        for token in tokens:  # the ones that did not come
            self._pending.pop(token, None)
        elapsed = time.perf_counter() - started
        acked: dict[str, int] = {}  # per event type
        for (_, event), ack in zip(items, wave.acks, strict=True):
            if ack is not None:
                acked[event.type] = acked.get(event.type, 0) + 1
        failed = len(items) - sum(acked.values())
        if failed:
            bus.publish_failures.inc(failed)
        for type_, n in acked.items():
            counter = self._published.get(type_)
            if counter is None:
                counter = self._published[type_] = bus.published.labels(type_)
            counter.inc(n)
            for _ in range(n):  # one observation per report, as before
                self.metrics.publish_seconds.observe(elapsed)
        return wave.acks

    async def original(self, stream: str, seq: int) -> bytes | None:
        """The stored message at ``seq`` (the first publish of an id JetStream reported as duplicate)."""
        try:
            msg = await self.runtime.js.get_msg(stream, seq)
        except Exception as exc:
            log.warning("could not read the original of a duplicate", extra={"error": exc.__class__.__name__})
            return None
        return bytes(msg.data) if msg.data is not None else None


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


async def submit_reports(subs: list[Submission], *, ledger: db.ReportLedger, snapshot: OrgSnapshot,
                         publish: PublishMany, metrics: IntakeMetrics, via: str = "api",
                         original: FetchOriginal | None = None) -> list[Outcome]:
    """Accept reports: replay or refuse known ids, validate, publish (awaiting acks), then record them.

    Publishing comes first and the idempotency row second, and the answer only after both. A crash
    between the ack and the row's commit is healed on the client's resend: JetStream answers the
    resend as a duplicate of the stored message (the event id is the report id), no row exists,
    and the stored event itself decides: same content → the row is recorded from it and the resend
    gets the original's answer; other content → 409. Outside the duplicate window the resend is
    stored a second time with the same event id, which idempotent consumers drop.
    Reports in one call that supersede an earlier one of the same call are published after it.
    """
    out = await _submit(subs, ledger=ledger, snapshot=snapshot, publish=publish, original=original)
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


async def _submit(subs: list[Submission], *, ledger: db.ReportLedger, snapshot: OrgSnapshot,
                  publish: PublishMany, original: FetchOriginal | None) -> list[Outcome]:
    results: list[Outcome | None] = [None] * len(subs)
    lookup = [s.req.report_id for s in subs] + [s.req.supersedes for s in subs if s.req.supersedes]
    existing = await ledger.find(lookup)
    known = {rid: KnownReport(row["area_id"], row["municipality_id"], row["reporter_id"])
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
                                                    lookups=lookups)))
                except ReportRejected as exc:
                    results[i] = rejected(exc)
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
                              original=original)
        for i, o in zip(retry, again, strict=True):
            results[i] = o
    return [r for r in results if r is not None]


async def _publish_wave(wave: list[tuple[int, Accepted]], subs: list[Submission], results: list[Outcome | None],
                        *, publish: PublishMany, ledger: db.ReportLedger, original: FetchOriginal | None) -> None:
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
        if ack.duplicate:
            # JetStream already holds an event with this id: another replica is accepting it right now,
            # or an earlier attempt crashed after the ack and before its row. Its row decides; without
            # one, the stored event does.
            outcome, stored = await _settle_duplicate(acc, subs[i], ack, ledger=ledger, original=original)
            if outcome is not None:
                results[i] = outcome
                continue
            if stored is not None:
                received_at, period, late = (datetime.fromisoformat(stored["received_at"]), stored["period"],
                                             bool(stored["late"]))
        rid = d["report_id"]
        body = accepted_body(rid, period, late)
        results[i] = Outcome(202, body)
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
    ok = [row for i, row in rows if results[i].status == 202]
    if ok:  # the start of a report's trace through the services (ids only, never content); one line a wave
        log.info("report accepted" if len(ok) == 1 else "reports accepted", extra={
            "report_ids": ",".join(r["report_id"] for r in ok),
            "pictures": ",".join(sorted({f"{r['area_id']}:{r['period']}" for r in ok}))})


async def _settle_duplicate(acc: Accepted, sub: Submission, ack: Acked, *, ledger: db.ReportLedger,
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
