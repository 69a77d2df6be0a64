"""Kronoberg forfeiture protocols: the use cases (record, read with access log, retention, key rotation).

Recording: validate, store the protocol with its personal fields sealed (see ``est_intake.forfeitures.pii``)
and its event, publish ``se.est.forfeiture.recorded`` (no personal data) and answer 202 only after the
JetStream ack. If the bus does not acknowledge, the stored row is removed again and the answer is 503
(nothing half-done); a row left behind by a crash between storing and publishing is published by
the upkeep job. Reading: police and social services only, a stated purpose, every attempt with a valid
token logged in the append-only access log in the same transaction as the read; attempts without one
within a small budget per client address and minute (``AnonymousBudget``), so the log cannot be filled
by anyone. The log keeps UUIDs and purposes only after the checks of ``est_intake.forfeitures.domain`` (a
marker instead of personal data), and shows beside each read the reader's latest credential change (a new
token or read role set by an organisation version; ``record_credential_changes``). Retention: the
upkeep job nulls the personal fields once ``occurred_at`` is older than the retention period; the facts
stay.

Notifying social services: for a person under 18 (or an 18-19-year-old when the officer sets
``notify_social_services``) a second event, ``se.est.forfeiture.notification_due`` on
``est.forfeiture.notification_due.<municipality>``, is published with the first, under the same rule:
the row is stored, BOTH events must be acknowledged before the 202, and the upkeep job (or an identical
resend) publishes both when a crash or the bus came in between. If the bus refuses before anything was
acknowledged, the row is removed (503, nothing stored); if it refuses after the first ack, the row stays
for the upkeep job (503, "stored, not yet fully published"), so a recorded protocol is never without its
notification. The notification carries the person (name, personal number, age, guardian facts) as one
AES-GCM value sealed for the purpose "social_services_notification" (``est_shared.sealed``); the stored
row keeps only the template of that event, without the sealed value: a re-publish seals it again from
the encrypted columns, which is a read of personal data and goes to the access log (``system:intake``).
So no second copy of the personal data is kept at rest, and retention and key rotation of the columns
cover it. Event ids are deterministic (``forfeiture-notification:<protocol id>``): JetStream and the
notifier drop repeats even though each sealing uses a fresh nonce.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from est_shared.bus import BusUnavailable
from est_shared.clock import utcnow
from est_shared.db import transaction
from est_shared.events import CloudEvent, ForfeitureNotificationDue, ForfeitureRecorded, new_event
from est_shared.http import STATUS
from est_shared.observability import correlation_id
from est_shared.org import OrgSnapshot, Principal
from est_shared.periods import DEFAULT_TIMEZONE
from est_shared.sealed import NOTIFICATION_PURPOSE, PiiCipher, PiiDecryptError, purpose_context, seal_json
from est_shared.subjects import forfeiture_recorded
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_intake.errors import ForfeitureRejected
from est_intake.forfeitures import db as fdb
from est_intake.forfeitures.domain import (
    MALFORMED_ID,
    MAX_PURPOSE,
    SOURCE_LABELS,
    AnonymousBudget,
    ForfeitureIn,
    accepted_body,
    age_on,
    check_municipality,
    content_fingerprint,
    credential_changes,
    logged_purpose,
    may_read,
    notification_person,
    parse_personal_number,
    personal_values,
    protocol_id_of,
    purpose_problem,
    retention_cutoff,
    same_personal_data,
    validate_protocol,
)
from est_intake.metrics import ForfeitureMetrics

log = logging.getLogger("est.intake.forfeitures")

SOURCE = "/est/intake"
FORFEITURE_RECORDED = "se.est.forfeiture.recorded"
NOTIFICATION_DUE = "se.est.forfeiture.notification_due"
SYSTEM_READER = "system:intake"
PENDING_GRACE = timedelta(seconds=60)
RETRY_AFTER = "5"

Publish = Callable[[str, CloudEvent[Any]], Awaitable[bool | None]]
Now = Callable[[], datetime]


def notification_subject(municipality_id: str) -> str:
    """Where notifications for social services go (captured by EST_REPORTS with the recorded events)."""
    return f"est.forfeiture.notification_due.{municipality_id}"


@dataclass
class ForfeitureDeps:
    """Collaborators of the forfeiture use cases; ``clock`` may be replaced (tests move it forward)."""

    sessions: async_sessionmaker[AsyncSession]
    publish: Publish
    metrics: ForfeitureMetrics
    retention: timedelta
    cipher: PiiCipher | None = None
    clock: Now = utcnow
    pending_grace: timedelta = PENDING_GRACE
    timezone_of: Callable[[str], str] | None = None
    anonymous: AnonymousBudget = field(default_factory=AnonymousBudget)

    def sealer(self) -> PiiCipher:
        if self.cipher is None:
            raise RuntimeError("the personal-data key is not loaded yet")
        return self.cipher


@dataclass
class Result:
    """An HTTP answer of a use case: status, JSON body and headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def _problem(status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None,
             headers: dict[str, str] | None = None) -> Result:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return Result(status, body, headers or {})


def _context(protocol_id: str, column: str) -> str:
    return f"forfeiture:{protocol_id}:{column}"


def seal(cipher: PiiCipher, protocol_id: str, values: dict[str, str | None]) -> dict[str, str | None]:
    """Encrypt personal values, each bound to its protocol and column."""
    return {k: cipher.encrypt(v, context=_context(protocol_id, k)) for k, v in values.items()}


def unseal(cipher: PiiCipher, row: dict[str, Any]) -> dict[str, str | None]:
    """Decrypt the personal columns of a stored protocol (PiiDecryptError if a key is missing)."""
    return {k: cipher.decrypt(row[k], context=_context(row["protocol_id"], k)) for k in fdb.ENCRYPTED}


def municipality_timezone(snapshot: OrgSnapshot, municipality_id: str) -> str:
    muni = snapshot.municipalities.get(municipality_id)
    return muni.timezone if muni else DEFAULT_TIMEZONE


# --- recording ---------------------------------------------------------------------------

def _conflict(protocol_id: str, detail_sv: str = "har redan använts med annat innehåll",
              detail_en: str = "was already used with other content") -> Result:
    return _problem(409, "Conflict", f"protocol_id {protocol_id!r} {detail_sv}. / "
                    f"protocol_id {protocol_id!r} {detail_en}.")


def _unavailable() -> Result:
    return _problem(503, "Service Unavailable", "Meddelandebussen svarar inte; inget sparades, försök igen. / "
                    "The message bus is unavailable; nothing was stored, please retry.",
                    headers={"Retry-After": RETRY_AFTER})


async def record_protocol(req: ForfeitureIn, *, caller: Principal, snapshot: OrgSnapshot,
                          deps: ForfeitureDeps) -> Result:
    """Accept a protocol: refuse a municipality the caller does not work in, replay or refuse a known id,
    validate, store sealed, publish, then answer."""
    try:
        check_municipality(req, caller=caller, snapshot=snapshot)
    except ForfeitureRejected as exc:
        deps.metrics.recorded.labels(exc.reason).inc()
        return _problem(STATUS[exc.kind], exc.title, exc.detail, exc.errors)
    digest = content_fingerprint(req, caller.person_id)
    async with deps.sessions() as s:
        row = await fdb.find_protocol(s, req.protocol_id)
    if row is not None:
        return await _replay(row, req, digest, snapshot=snapshot, deps=deps)
    now = deps.clock()
    try:
        valid = validate_protocol(req, caller=caller, snapshot=snapshot, now=now, retention=deps.retention)
    except ForfeitureRejected as exc:
        deps.metrics.recorded.labels(exc.reason).inc()
        return _problem(STATUS[exc.kind], exc.title, exc.detail, exc.errors)
    d = valid.data
    event = new_event(type=FORFEITURE_RECORDED, source=SOURCE, id=f"forfeiture:{d.protocol_id}",
                      subject=d.area_id or d.municipality_id, time=now, data=d)
    body = accepted_body(d.protocol_id, valid.age_band, valid.warnings)
    cipher = deps.sealer()
    events: list[CloudEvent[Any]] = [event]
    stored_event = event.model_dump_json()
    if valid.notification is not None:
        template = notification_template(event, reason=valid.notification, guardian_came=req.guardian_came,
                                         unit=req.unit, key_id=cipher.primary_id)
        person = notification_person(name=req.person.name, personal_number=valid.personal_number, age=valid.age,
                                     guardian_contacted=req.guardian_contacted, guardian_came=req.guardian_came)
        events.append(seal_notification(template, person, cipher))
        stored_event = stored_events_json(event, template)
    values = {
        "protocol_id": d.protocol_id, "municipality_id": d.municipality_id, "area_id": d.area_id,
        "place": d.place, "occurred_at": d.occurred_at, "age_band": d.age_band, "items": list(d.items),
        "direct_forfeiture": d.direct_forfeiture, "guardian_contacted": d.guardian_contacted,
        "guardian_came": req.guardian_came, "source": req.source,
        "social_services_notified": d.social_services_notified, "unit": req.unit, "recorded_by": caller.person_id,
        "received_at": now, "content_sha256": digest, "response": body, "event": stored_event,
        "published_at": None, "pii_key_id": cipher.primary_id,
        **seal(cipher, d.protocol_id, personal_values(req, valid.personal_number)),
    }
    try:
        async with transaction(deps.sessions) as s:
            await fdb.insert_protocol(s, values)
    except IntegrityError:  # a concurrent request with the same id stored first: its row decides
        async with deps.sessions() as s:
            row = await fdb.find_protocol(s, req.protocol_id)
        if row is None:
            raise
        return await _replay(row, req, digest, snapshot=snapshot, deps=deps)
    return await _publish(events, body, deps=deps, fresh=True)


# --- the notification for social services ------------------------------------------------

def notification_template(event: CloudEvent[ForfeitureRecorded], *, reason: str, guardian_came: bool,
                          unit: str | None, key_id: str) -> CloudEvent[ForfeitureNotificationDue]:
    """The notification event without its sealed person: what the stored row keeps (no personal data)."""
    d = event.data
    data = ForfeitureNotificationDue(
        protocol_id=d.protocol_id, municipality_id=d.municipality_id, area_id=d.area_id, place=d.place,
        occurred_at=d.occurred_at, age_band=d.age_band, reason=reason,
        items=list(d.items), direct_forfeiture=d.direct_forfeiture, source=d.source,
        social_services_notified=d.social_services_notified, unit=unit, purpose=NOTIFICATION_PURPOSE,
        key_id=key_id, sealed_person="")
    return new_event(type=NOTIFICATION_DUE, source=SOURCE, id=f"forfeiture-notification:{d.protocol_id}",
                     subject=d.area_id or d.municipality_id, time=event.time, data=data,
                     correlationid=event.correlationid)


def seal_notification(template: CloudEvent[ForfeitureNotificationDue], person: dict[str, Any],
                      cipher: PiiCipher) -> CloudEvent[ForfeitureNotificationDue]:
    """The notification to publish: the person sealed under the primary key for the notification purpose."""
    pid = template.data.protocol_id
    data = template.data.model_copy(update={
        "key_id": cipher.primary_id,
        "sealed_person": seal_json(cipher, person, context=purpose_context(pid, NOTIFICATION_PURPOSE))})
    return template.model_copy(update={"data": data})


def stored_events_json(event: CloudEvent[ForfeitureRecorded],
                       template: CloudEvent[ForfeitureNotificationDue] | None) -> str:
    """The ``event`` column: the recorded event alone, or both events (the notification without its person)."""
    if template is None:
        return event.model_dump_json()
    return json.dumps({"recorded": json.loads(event.model_dump_json()),
                       "notification_due": json.loads(template.model_dump_json())}, ensure_ascii=False)


def stored_events(text: str) -> tuple[CloudEvent[ForfeitureRecorded], CloudEvent[ForfeitureNotificationDue] | None]:
    """The recorded event and the notification template (None) of an ``event`` column (old rows: one event)."""
    doc = json.loads(text)
    if "recorded" not in doc:
        return CloudEvent[ForfeitureRecorded].model_validate(doc), None
    return (CloudEvent[ForfeitureRecorded].model_validate(doc["recorded"]),
            CloudEvent[ForfeitureNotificationDue].model_validate(doc["notification_due"]))


def _person_of(row: dict[str, Any], personal: dict[str, str | None], *, deps: ForfeitureDeps) -> dict[str, Any]:
    """The notification's person from a stored row and its decrypted columns."""
    pnr = personal["personal_number"]
    assert pnr is not None
    tz = deps.timezone_of(row["municipality_id"]) if deps.timezone_of else DEFAULT_TIMEZONE
    on = row["occurred_at"].astimezone(ZoneInfo(tz)).date()
    born = parse_personal_number(pnr, on=on).birth_date
    return notification_person(name=personal["person_name"], personal_number=pnr, age=age_on(born, on),
                               guardian_contacted=bool(row["guardian_contacted"]),
                               guardian_came=bool(row["guardian_came"]))


async def _events_of_row(row: dict[str, Any], *, deps: ForfeitureDeps,
                         personal: dict[str, str | None] | None = None) -> list[CloudEvent[Any]] | None:
    """The events of a stored, unpublished protocol, the notification sealed again from the encrypted columns
    (a read of personal data: logged as ``system:intake``); None if the columns cannot be decrypted."""
    event, template = stored_events(row["event"])
    if template is None:
        return [event]
    pid = row["protocol_id"]
    if row["personal_data_deleted_at"] is not None:
        log.warning("notification of a protocol whose personal data is deleted is not sent", extra={
            "protocol_id": pid})
        return [event]
    cipher = deps.sealer()
    try:
        personal = personal if personal is not None else unseal(cipher, row)
    except PiiDecryptError as exc:
        log.error("forfeiture protocol cannot be decrypted for its notification",
                  extra={"protocol_id": pid, "key_id": exc.key_id})
        return None
    person = _person_of(row, personal, deps=deps)
    async with transaction(deps.sessions) as s:
        await fdb.add_access(s, at=deps.clock(), person_id=SYSTEM_READER, actor_id=None, roles=[],
                             protocol_id=pid, purpose=NOTIFICATION_PURPOSE, outcome="sealed_for_notification",
                             correlation_id=correlation_id.get())
    return [event, seal_notification(template, person, cipher)]


async def _publish(events: list[CloudEvent[Any]], body: dict[str, Any], *, deps: ForfeitureDeps,
                   fresh: bool) -> Result:
    """Publish a stored protocol's events in order and wait for each ack; then mark it published.

    If the bus refuses before any ack, a fresh row is removed again (503, nothing stored). After a first
    ack the row stays (503 too): the upkeep job or a resend publishes the rest, so a recorded protocol
    never goes without its notification.
    """
    d = events[0].data
    acked = 0
    try:
        for ev in events:
            await deps.publish(_subject(ev), ev)
            acked += 1
    except BusUnavailable:
        if fresh and acked == 0:
            async with transaction(deps.sessions) as s:
                removed = await fdb.delete_unpublished(s, d.protocol_id)
            if not removed:  # the upkeep job published it in the meantime: it is recorded
                deps.metrics.recorded.labels("accepted").inc()
                return Result(202, body)
        deps.metrics.recorded.labels("unavailable").inc()
        log.warning("forfeiture protocol not acknowledged by JetStream", extra={"protocol_id": d.protocol_id,
                                                                                "acknowledged": acked})
        return _unavailable() if acked == 0 or not fresh else _partly_published()
    async with transaction(deps.sessions) as s:
        await fdb.mark_published(s, d.protocol_id, utcnow())
    deps.metrics.recorded.labels("accepted" if fresh else "replayed").inc()
    if fresh:
        for ev in events[1:]:
            deps.metrics.notifications.labels(ev.data.reason).inc()
        log.info("forfeiture protocol recorded", extra={"protocol_id": d.protocol_id,
                                                        "municipality_id": d.municipality_id,
                                                        "age_band": d.age_band,
                                                        "social_services_notification": len(events) > 1})
    return Result(202, body)


def _subject(event: CloudEvent[Any]) -> str:
    m = event.data.municipality_id
    return notification_subject(m) if event.type == NOTIFICATION_DUE else forfeiture_recorded(m)


def _partly_published() -> Result:
    return _problem(503, "Service Unavailable", "Protokollet är sparat men meddelandebussen svarar inte; det "
                    "publiceras av systemet, eller skicka samma protokoll igen. / The protocol is stored but the "
                    "message bus is unavailable; the system publishes it, or resend the same protocol.",
                    headers={"Retry-After": RETRY_AFTER})


async def _replay(row: dict[str, Any], req: ForfeitureIn, digest: str, *, snapshot: OrgSnapshot,
                  deps: ForfeitureDeps) -> Result:
    """The same answer for an identical resend; 409 for the same id with other content."""
    pid = row["protocol_id"]
    if row["content_sha256"] != digest:
        deps.metrics.recorded.labels("conflict").inc()
        return _conflict(pid)
    if row["personal_data_deleted_at"] is not None:
        deps.metrics.recorded.labels("conflict").inc()
        return _conflict(pid, "är redan registrerat och dess personuppgifter har gallrats",
                         "is already recorded and its personal data has been deleted after retention")
    try:
        stored = unseal(deps.sealer(), row)
    except PiiDecryptError as exc:
        log.error("forfeiture protocol cannot be decrypted", extra={"protocol_id": pid, "key_id": exc.key_id})
        return _problem(500, "Internal error", "Personuppgifterna kan inte dekrypteras (nyckel saknas). / "
                        "The personal data cannot be decrypted (key missing).")
    on = req.occurred_at.astimezone(ZoneInfo(municipality_timezone(snapshot, row["municipality_id"]))).date()
    if not same_personal_data(stored, req, on=on):
        deps.metrics.recorded.labels("conflict").inc()
        return _conflict(pid)
    if row["published_at"] is None:  # stored, but the ack never came back (crash or bus down): publish again
        events = await _events_of_row(row, deps=deps, personal=stored)
        assert events is not None  # the columns were just decrypted
        return await _publish(events, row["response"], deps=deps, fresh=False)
    deps.metrics.recorded.labels("replayed").inc()
    return Result(202, row["response"])


# --- reading -----------------------------------------------------------------------------

class ReadRefused(Exception):
    """A refused read: HTTP status, the outcome written to the access log, a bilingual detail, field errors."""

    def __init__(self, status: int, outcome: str, title: str, detail: str,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.outcome, self.title, self.detail, self.errors = status, outcome, title, detail, errors


_PURPOSE_DETAIL = {
    "missing": "Ange syftet med läsningen i ?purpose= (minst 3 tecken); det loggas. / "
               "State the purpose of the read in ?purpose= (at least 3 characters); it is logged.",
    "too_long": f"Syftet får vara högst {MAX_PURPOSE} tecken. / The purpose may be at most {MAX_PURPOSE} characters.",
    "control_character": "Syftet får inte innehålla kontrolltecken (t.ex. radbrytning). / "
                         "The purpose must not contain control characters (such as a line break).",
    "personal_data": "Syftet får inte innehålla personuppgifter (personnummer, telefon, e-post). / "
                     "The purpose must not contain personal data (identity number, phone, e-mail).",
}


def _malformed() -> ReadRefused:
    return ReadRefused(422, "malformed_id", "Invalid protocol id",
                       "Protokollets id ska vara ett UUID. / The protocol id must be a UUID.",
                       [{"field": "protocol_id", "message": "must be a UUID (8-4-4-4-12 hexadecimal digits)"}])


def _not_found(outcome: str = "not_found") -> ReadRefused:
    """One answer for an id that does not exist and one of another municipality (only the log tells them apart)."""
    return ReadRefused(404, outcome, "Not Found", "Det finns inget sådant protokoll i dina kommuner. / "
                       "There is no such protocol in your municipalities.")


async def log_attempt(protocol_id: str, *, reader: Principal | None, purpose: str | None, outcome: str,
                      deps: ForfeitureDeps) -> None:
    """Append an access-log entry on its own (for attempts refused before any read)."""
    async with transaction(deps.sessions) as s:
        await _add_access(s, protocol_id, reader=reader, purpose=purpose, outcome=outcome, deps=deps)
    deps.metrics.reads.labels(outcome).inc()


async def log_unauthenticated(protocol_id: str, *, client: str, deps: ForfeitureDeps) -> None:
    """A read without a valid token: logged within the anonymous budget (one row per client address and
    minute, a few per minute in all), counted always, so nobody without a token can fill the log."""
    if deps.anonymous.admit(client, deps.clock()):
        await log_attempt(protocol_id_of(protocol_id) or MALFORMED_ID, reader=None, purpose=None,
                          outcome="unauthenticated", deps=deps)
    else:
        deps.metrics.reads.labels("unauthenticated").inc()
        deps.metrics.unlogged.inc()


async def _add_access(session: AsyncSession, protocol_id: str, *, reader: Principal | None, purpose: str | None,
                      outcome: str, deps: ForfeitureDeps) -> None:
    await fdb.add_access(session, at=deps.clock(), person_id=reader.person_id if reader else "-",
                         actor_id=reader.actor_id if reader else None, roles=list(reader.roles) if reader else [],
                         protocol_id=protocol_id, purpose=purpose, outcome=outcome,
                         correlation_id=correlation_id.get())


def _refusal_before_lookup(pid: str | None, *, reader: Principal, purpose: str | None) -> ReadRefused | None:
    """What refuses a read before the database is asked: role, id form, purpose."""
    if not may_read(reader):
        return ReadRefused(403, "forbidden_role", "Forbidden",
                           "Förverkandeprotokoll kan bara läsas av polis och socialtjänst. / "
                           "Forfeiture protocols can be read by police and social services only.")
    if pid is None:
        return _malformed()
    if (why := purpose_problem(purpose)) is not None:
        return ReadRefused(422, f"purpose_{why}", "Purpose required", _PURPOSE_DETAIL[why],
                           [{"field": "purpose", "reason": why, "message": _PURPOSE_DETAIL[why]}])
    return None


async def read_protocol(protocol_id: str, *, reader: Principal, purpose: str | None,
                        snapshot: OrgSnapshot, deps: ForfeitureDeps) -> dict[str, Any]:
    """A protocol with its personal data for police and social services; every attempt is logged first.

    The log keeps a UUID or ``[malformed id]``, never other id text, and the purpose as ``logged_purpose``
    has it (a marker instead of personal data), whoever asked.
    """
    pid = protocol_id_of(protocol_id)
    refusal = _refusal_before_lookup(pid, reader=reader, purpose=purpose)
    view: dict[str, Any] | None = None
    outcome = "granted"
    async with transaction(deps.sessions) as s:
        if refusal is None and pid is not None:
            row = await fdb.find_protocol(s, pid)
            if row is None:
                refusal = _not_found()
            elif row["municipality_id"] not in reader.municipalities:
                refusal = _not_found("other_municipality")
            else:
                try:
                    personal = unseal(deps.sealer(), row)
                except PiiDecryptError as exc:
                    log.error("forfeiture protocol cannot be decrypted",
                              extra={"protocol_id": pid, "key_id": exc.key_id})
                    refusal = ReadRefused(500, "key_missing", "Internal error",
                                          "Personuppgifterna kan inte dekrypteras: nyckeln saknas i EST_PII_KEY. / "
                                          "The personal data cannot be decrypted: its key is missing from "
                                          "EST_PII_KEY.")
                else:
                    view = protocol_view(row, personal, snapshot=snapshot, retention=deps.retention)
                    if row["personal_data_deleted_at"] is not None:
                        outcome = "granted_personal_data_deleted"
        if refusal is not None:
            outcome = refusal.outcome
        await _add_access(s, pid or MALFORMED_ID, reader=reader, purpose=logged_purpose(purpose), outcome=outcome,
                          deps=deps)
    deps.metrics.reads.labels(outcome).inc()
    if refusal is not None:
        raise refusal
    assert view is not None
    return view


def protocol_view(row: dict[str, Any], personal: dict[str, str | None], *, snapshot: OrgSnapshot,
                  retention: timedelta) -> dict[str, Any]:
    """The full protocol as police and social services see it."""
    person = None
    if personal["personal_number"] is not None:
        on = row["occurred_at"].astimezone(ZoneInfo(municipality_timezone(snapshot, row["municipality_id"]))).date()
        born = parse_personal_number(personal["personal_number"], on=on).birth_date
        person = {"name": personal["person_name"], "personal_number": personal["personal_number"],
                  "age": age_on(born, on)}
    deleted = row["personal_data_deleted_at"]
    return {
        "protocol_id": row["protocol_id"], "municipality_id": row["municipality_id"], "area_id": row["area_id"],
        "place": row["place"], "occurred_at": row["occurred_at"].isoformat(),
        "received_at": row["received_at"].isoformat(), "recorded_by": row["recorded_by"], "unit": row["unit"],
        "officer": personal["officer"], "person": person, "age_band": row["age_band"], "items": row["items"],
        "direct_forfeiture": row["direct_forfeiture"], "guardian_contacted": row["guardian_contacted"],
        "guardian_came": row["guardian_came"], "source": row["source"],
        "source_label": SOURCE_LABELS.get(row["source"], SOURCE_LABELS["other"]),
        "source_details": personal["source_details"], "social_services_notified": row["social_services_notified"],
        "personal_data_deleted_at": deleted.isoformat() if deleted else None,
        "personal_data_deleted_after": (row["occurred_at"] + retention).isoformat(),
    }


# --- retention, crash recovery and key rotation ------------------------------------------

async def delete_expired_personal_data(*, deps: ForfeitureDeps, batch: int = 500) -> list[str]:
    """Null the personal fields of protocols past retention; logs counts and ids, never the data."""
    now = deps.clock()
    cutoff = retention_cutoff(now, deps.retention)
    done: list[str] = []
    while True:
        async with transaction(deps.sessions) as s:
            ids = await fdb.expired(s, cutoff, limit=batch)
            n = await fdb.delete_personal_data(s, ids, now)
        if not ids:
            break
        done.extend(ids)
        deps.metrics.deleted.inc(n)
    if done:
        log.info("personal data of forfeiture protocols deleted after retention",
                 extra={"count": len(done), "protocol_ids": ",".join(done[:1000]),
                        "retention_days": deps.retention.days, "cutoff": cutoff.isoformat()})
    return done


async def publish_pending(*, deps: ForfeitureDeps) -> list[str]:
    """Publish protocols stored but never acknowledged (a crash between storing and publishing), with their
    notification for social services sealed again from the encrypted columns."""
    async with deps.sessions() as s:
        pending = await fdb.unpublished(s, deps.clock() - deps.pending_grace)
    done = []
    for pid, _raw in pending:
        async with deps.sessions() as s:
            row = await fdb.find_protocol(s, pid)
        if row is None or row["published_at"] is not None:
            continue
        events = await _events_of_row(row, deps=deps)
        if events is None:
            continue
        try:
            for ev in events:
                await deps.publish(_subject(ev), ev)
        except BusUnavailable:
            break
        async with transaction(deps.sessions) as s:
            await fdb.mark_published(s, pid, utcnow())
        deps.metrics.republished.inc()
        for ev in events[1:]:
            deps.metrics.notifications.labels(ev.data.reason).inc()
        done.append(pid)
    if done:
        log.info("stored forfeiture protocols published by the upkeep job",
                 extra={"count": len(done), "protocol_ids": ",".join(done)})
    return done


async def upkeep_once(*, deps: ForfeitureDeps) -> dict[str, list[str]]:
    """One run of the scheduled job: publish what a crash left unpublished, delete expired personal data."""
    return {"published": await publish_pending(deps=deps),
            "personal_data_deleted": await delete_expired_personal_data(deps=deps)}


async def run_upkeep(*, deps: ForfeitureDeps, interval: float) -> None:
    """The scheduled job (started with ``runtime.spawn``): ``upkeep_once`` every ``interval`` seconds."""
    while True:
        try:
            await upkeep_once(deps=deps)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("forfeiture upkeep run failed; will retry")
        await asyncio.sleep(interval)


async def reencrypt_protocols(*, sessions: async_sessionmaker[AsyncSession], cipher: PiiCipher,
                              metrics: ForfeitureMetrics | None = None, batch: int = 200) -> dict[str, Any]:
    """Re-seal every protocol still under an older key with the primary key; returns counts per outcome."""
    old = [k for k in cipher.key_ids if k != cipher.primary_id]
    done = failed = 0
    after = ""
    while old:
        async with sessions() as s:
            rows = await fdb.sealed_with(s, old, after=after, limit=batch)
        if not rows:
            break
        after = rows[-1]["protocol_id"]
        async with transaction(sessions) as s:
            for row in rows:
                pid = row["protocol_id"]
                try:
                    values = {k: cipher.rotate(row[k], context=_context(pid, k)) for k in fdb.ENCRYPTED}
                except PiiDecryptError:
                    failed += 1
                    log.error("forfeiture protocol could not be re-encrypted", extra={"protocol_id": pid})
                    continue
                if await fdb.reseal(s, pid, row["pii_key_id"], cipher.primary_id, values):
                    done += 1
    if metrics:
        metrics.reencrypted.inc(done)
    async with sessions() as s:
        usage = await fdb.key_usage(s)
    unknown = sorted(k for k in usage if k not in cipher.key_ids)
    log.info("forfeiture protocols re-encrypted", extra={"count": done, "failed": failed,
                                                          "primary_key_id": cipher.primary_id})
    return {"reencrypted": done, "failed": failed, "primary_key_id": cipher.primary_id, "rows_by_key": usage,
            "unknown_key_ids": unknown}


# --- credential changes -------------------------------------------------------------------

async def record_credential_changes(snapshot: OrgSnapshot, *, deps: ForfeitureDeps) -> int:
    """The organisation listener: note every police or social-services person who got a new token or a read
    role with this version, once (every replica hears the version; the table's key keeps one row)."""
    async with deps.sessions() as s:
        stored = await fdb.org_change(s, snapshot.version)
    if stored is None:  # the first version, or one adopted from the stream without its predecessor
        return 0
    changes = credential_changes(OrgSnapshot.model_validate_json(stored["previous"]),
                                 OrgSnapshot.model_validate_json(stored["snapshot"]))
    if not changes:
        return 0
    rows = [{"person_id": c.person_id, "kind": c.kind, "roles": list(c.roles)} for c in changes]
    try:
        async with transaction(deps.sessions) as s:
            added = await fdb.add_credential_changes(s, snapshot.version, stored["applied_at"],
                                                     stored["applied_by"], rows)
    except IntegrityError:  # another replica recorded this version at the same moment
        return 0
    if added:
        for c in changes:
            deps.metrics.credential_changes.labels(c.kind).inc()
        log.warning("credential of a person who may read forfeiture protocols changed", extra={
            "org_version": snapshot.version, "applied_by": stored["applied_by"],
            "person_ids": ",".join(c.person_id for c in changes), "kinds": ",".join(c.kind for c in changes)})
    return added


def _latest_before(changes: list[dict[str, Any]], at: datetime) -> dict[str, Any] | None:
    """The newest of a person's changes (newest first) made at or before ``at``."""
    return next((c for c in changes if c["at"] <= at), None)


def _credential_out(c: dict[str, Any]) -> dict[str, Any]:
    return {**c, "at": c["at"].isoformat()}


async def access_log_view(*, protocol_id: str | None, person_id: str | None, since: datetime | None, limit: int,
                          deps: ForfeitureDeps) -> dict[str, Any]:
    """Access-log entries, each with the reader's latest credential change before it, and the changes."""
    async with deps.sessions() as s:
        entries = await fdb.access_entries(s, protocol_id=protocol_id, person_id=person_id, since=since,
                                           limit=limit)
        readers = sorted({e["person_id"] for e in entries} | ({person_id} if person_id else set()))
        history = await fdb.credential_history(s, person_ids=readers)
        shown = [person_id] if person_id else readers if protocol_id else None
        listed = await fdb.credential_history(s, person_ids=shown, since=since, limit=limit)
    by_person: dict[str, list[dict[str, Any]]] = {}
    for c in history:
        by_person.setdefault(c["person_id"], []).append(c)
    out = []
    for e in entries:
        change = _latest_before(by_person.get(e["person_id"], []), e["at"])
        out.append({**e, "at": e["at"].isoformat(), "credential_change": _credential_out(change) if change else None})
    return {"entries": out, "credential_changes": [_credential_out(c) for c in listed]}
