"""Kronoberg forfeiture protocols as plain rules: the request, personal identity numbers, age and validation.

Nothing here touches HTTP, the bus, the database or the keys. Error texts never repeat a personal
identity number or a name: they name the field and the rule only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from est_shared.events import ForfeitureRecorded
from est_shared.freetext import find_personal_data, free_text_errors, has_control_characters
from est_shared.org import OrgSnapshot, Principal
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from est_intake.errors import ForfeitureForbidden, ForfeitureInvalid

AGE_LIMIT = 20
FUTURE_SKEW = timedelta(minutes=10)
RECORD_ROLES = ("police",)
READ_ROLES = ("police", "social_services")
PERSONAL_FIELDS = ("person_name", "personal_number", "officer", "source_details")
"""Stored encrypted, never published, nulled when the retention period ends."""

Beverage = Literal["starköl", "folköl", "cider_alkolask", "vin", "sprit", "hembrant", "other"]
Source = Literal["home", "parent", "sibling", "friend", "adult_supplier", "systembolaget", "store", "restaurant",
                 "internet", "stolen", "unknown", "other"]
AgeBand = Literal["under_15", "15_17", "18_19"]
NotificationReason = Literal["under_18", "requested_by_police"]

SOURCE_LABELS: dict[str, dict[str, str]] = {
    "home": {"sv": "tagit hemifrån", "en": "taken from home"},
    "parent": {"sv": "fått av förälder", "en": "given by a parent"},
    "sibling": {"sv": "fått av syskon", "en": "given by a sibling"},
    "friend": {"sv": "fått av kompis", "en": "given by a friend"},
    "adult_supplier": {"sv": "langat av vuxen", "en": "supplied by an adult (langning)"},
    "systembolaget": {"sv": "köpt på Systembolaget", "en": "bought at Systembolaget"},
    "store": {"sv": "köpt i butik", "en": "bought in a shop"},
    "restaurant": {"sv": "köpt på krog", "en": "bought at a bar or restaurant"},
    "internet": {"sv": "köpt på nätet", "en": "bought online"},
    "stolen": {"sv": "stulet", "en": "stolen"},
    "unknown": {"sv": "okänt eller vill inte uppge", "en": "unknown or not stated"},
    "other": {"sv": "annat", "en": "other"},
}


# --- protocol ids ------------------------------------------------------------------------

PROTOCOL_ID_PATTERN = r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
"""A protocol id is a UUID in its hyphenated form (either case; stored and answered in lower case)."""
_PROTOCOL_ID = re.compile(PROTOCOL_ID_PATTERN)
MALFORMED_ID = "[malformed id]"
"""What the access log holds instead of a protocol id that is not a UUID (the text is never kept)."""


def protocol_id_of(text: str) -> str | None:
    """The canonical (lower-case) protocol id, or None when the text is not a UUID."""
    return text.lower() if len(text) == 36 and _PROTOCOL_ID.match(text) else None


# --- personal identity numbers -----------------------------------------------------------

_PNR = re.compile(r"^(\d{6}|\d{8})([-+]?)(\d{4})$")

PNR_REASONS: dict[str, dict[str, str]] = {
    "format": {"sv": "personnumret ska ha formen ÅÅMMDD-NNNN, ÅÅÅÅMMDD-NNNN eller ÅÅÅÅMMDDNNNN",
               "en": "the personal identity number must look like YYMMDD-NNNN, YYYYMMDD-NNNN or YYYYMMDDNNNN"},
    "date": {"sv": "personnumret innehåller inget giltigt födelsedatum",
             "en": "the personal identity number does not contain a valid date of birth"},
    "check_digit": {"sv": "personnumrets kontrollsiffra stämmer inte",
                    "en": "the check digit of the personal identity number is wrong"},
    "unborn": {"sv": "födelsedatumet ligger efter händelsen",
               "en": "the date of birth is after the event"},
}


class InvalidPersonalNumber(ValueError):
    """A personal identity number that is malformed; ``reason`` is a key of PNR_REASONS (never the number)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PersonalNumber:
    """A checked personnummer or samordningsnummer (day of birth + 60)."""

    birth_date: date
    serial: str = field(repr=False)
    coordination: bool = False

    def __repr__(self) -> str:
        return "PersonalNumber(…)"

    @property
    def canonical(self) -> str:
        """The 12-digit form with a hyphen, e.g. ``20090315-1234`` (``…75-…`` for a samordningsnummer)."""
        day = self.birth_date.day + (60 if self.coordination else 0)
        return f"{self.birth_date:%Y%m}{day:02d}-{self.serial}"


def luhn_ok(ten_digits: str) -> bool:
    """The Luhn check over YYMMDDNNNC (10 digits)."""
    total = 0
    for i, ch in enumerate(ten_digits[:9]):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10 == int(ten_digits[9])


def parse_personal_number(text: str, *, on: date) -> PersonalNumber:
    """Check and normalise a personal identity number; the century of a 10-digit one is resolved against ``on``.

    10 digits: ``-`` (or none) means under 100 years old on ``on``, ``+`` means 100 or older.
    12 digits: the century is written out (an optional ``-`` separator, no ``+``).
    """
    m = _PNR.match(text.strip())
    if not m:
        raise InvalidPersonalNumber("format")
    head, sep, tail = m.groups()
    if len(head) == 8 and sep == "+":
        raise InvalidPersonalNumber("format")
    if not luhn_ok(head[-6:] + tail):
        raise InvalidPersonalNumber("check_digit")
    month, raw_day = int(head[-4:-2]), int(head[-2:])
    coordination = raw_day > 60
    day = raw_day - 60 if coordination else raw_day
    try:
        if len(head) == 8:
            born = date(int(head[:4]), month, day)
        else:
            yy = int(head[:2])
            year = on.year - (on.year - yy) % 100
            if (month, day) > (on.month, on.day):
                year -= 100 if year == on.year else 0
            if sep == "+":
                year -= 100
            born = date(year, month, day)
    except ValueError:
        raise InvalidPersonalNumber("date") from None
    if born > on:
        raise InvalidPersonalNumber("unborn")
    return PersonalNumber(birth_date=born, serial=tail, coordination=coordination)


def age_on(born: date, on: date) -> int:
    """Completed years on a date (someone born on 29 February turns a year older on 1 March)."""
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_band(age: int) -> AgeBand | None:
    """The band published in events and aggregates; None at 20 or over (outside the Kronoberg model)."""
    if age < 15:
        return "under_15"
    if age < 18:
        return "15_17"
    if age < AGE_LIMIT:
        return "18_19"
    return None


# --- the request -------------------------------------------------------------------------

class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PersonIn(_In):
    """The young person: personal data, stored encrypted, readable by police and social services only."""

    name: str = Field(min_length=1, max_length=200, repr=False, description="full name", examples=["Kim Exempel"])
    personal_number: str = Field(min_length=10, max_length=13, repr=False,
                                 description="personnummer or samordningsnummer: YYMMDD-NNNN, YYYYMMDD-NNNN or "
                                             "YYYYMMDDNNNN (+ instead of - for 100 or older in the short form)",
                                 examples=["20100315-XXXX"])


class ItemIn(_In):
    """One kind of forfeited beverage."""

    beverage: Beverage = Field(description="type of beverage", examples=["starköl"])
    volume_liters: float = Field(ge=0.01, le=200, allow_inf_nan=False,
                                 description="total volume in litres (0.01 to 200)", examples=[1.5])
    containers: StrictInt = Field(ge=1, le=1000, description="number of cans, bottles or other containers",
                                  examples=[3])


class ForfeitureIn(_In):
    """A Kronoberg forfeiture protocol (förverkandeprotokoll) from a police officer's device."""

    protocol_id: str = Field(max_length=36, pattern=PROTOCOL_ID_PATTERN,
                             description="client-generated UUID, the idempotency key (answered in lower case)",
                             examples=["5b8d6c7e-3f0a-4d8b-9a51-2f7c1e0d4b66"])
    municipality_id: str = Field(min_length=1, max_length=100, examples=["vaxjo"])
    area_id: str | None = Field(default=None, max_length=100, description="EST area, if the place lies in one",
                                examples=["araby"])
    place: str = Field(min_length=1, max_length=100, description="a place id of the area or a short place name; "
                       "no addresses of homes", examples=["centrum"])
    occurred_at: AwareDatetime = Field(description="when the alcohol was forfeited (with timezone)",
                                       examples=["2026-05-29T22:40:00+02:00"])
    officer: str | None = Field(default=None, max_length=200, repr=False,
                                description="officer(s) who made the forfeiture (stored encrypted); the caller is "
                                            "always recorded as recorded_by", examples=["inspektör 1234"])
    unit: str | None = Field(default=None, max_length=100, description="police unit",
                             examples=["Ingripande Växjö"])
    person: PersonIn
    items: list[ItemIn] = Field(min_length=1, max_length=50, description="the forfeited beverages")
    direct_forfeiture: StrictBool = Field(default=False, description="poured out on the spot")
    guardian_contacted: StrictBool = Field(default=False, description="guardians were contacted")
    guardian_came: StrictBool = Field(default=False, description="guardians came to fetch the young person")
    source: Source = Field(default="unknown", description="stated source of the alcohol (a category; see "
                           "source_details for free text)", examples=["adult_supplier"])
    source_details: str | None = Field(default=None, max_length=500, repr=False,
                                       description="free text about the source; may name a supplier, so it is "
                                                   "stored encrypted and never published")
    social_services_notified: StrictBool = Field(default=False, description="social services were notified")
    notify_social_services: StrictBool = Field(
        default=False, description="also notify the municipality's social services through EST for an "
        "18-19-year-old (for anyone under 18 the notification is always sent)")

    @field_validator("protocol_id")
    @classmethod
    def _lower_case_id(cls, value: str) -> str:
        return value.lower()  # one UUID, one protocol, whatever case the device writes it in


def content_fingerprint(req: ForfeitureIn, person_id: str) -> str:
    """SHA-256 of the canonical non-personal content and the caller (personal fields are compared decrypted)."""
    body = req.model_dump(mode="json", exclude={"person", "officer", "source_details"})
    if not body.get("notify_social_services"):  # protocols stored before the field existed keep their digest
        body.pop("notify_social_services", None)
    body["_caller"] = person_id
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


def personal_values(req: ForfeitureIn, pnr: str) -> dict[str, str | None]:
    """The personal fields of a protocol as stored (before encryption), keyed like PERSONAL_FIELDS."""
    return {"person_name": req.person.name, "personal_number": pnr, "officer": req.officer,
            "source_details": req.source_details}


# --- validation --------------------------------------------------------------------------

def _invalid(reason: str, sv: str, en: str, errors: list[dict[str, Any]]) -> ForfeitureInvalid:
    return ForfeitureInvalid(sv, en, errors=errors, reason=reason)


def _forbidden(reason: str, sv: str, en: str, errors: list[dict[str, Any]]) -> ForfeitureForbidden:
    return ForfeitureForbidden(sv, en, errors=errors, reason=reason)


def may_record(principal: Principal) -> bool:
    """Only the police record protocols (an admin role does not imply it: personal data)."""
    return any(r in principal.roles for r in RECORD_ROLES)


def may_read(principal: Principal) -> bool:
    """Only police and social services read protocols (an admin role does not imply it)."""
    return any(r in principal.roles for r in READ_ROLES)


@dataclass
class ValidProtocol:
    """A protocol that passed the rules: normalised personal number, age band, event data and warnings."""

    req: ForfeitureIn
    personal_number: str = field(repr=False)
    age: int = field(repr=False)
    age_band: AgeBand
    data: ForfeitureRecorded
    warnings: list[dict[str, str]] = field(default_factory=list)
    notification: NotificationReason | None = None


def _warning(code: str, sv: str, en: str) -> dict[str, str]:
    return {"code": code, "message_sv": sv, "message_en": en}


def check_municipality(req: ForfeitureIn, *, caller: Principal, snapshot: OrgSnapshot) -> None:
    """403 unless the caller works in the protocol's municipality; checked before the id is looked up, so
    an id used in another municipality answers like any other (the id text is never echoed)."""
    if req.municipality_id not in snapshot.municipalities or req.municipality_id not in caller.municipalities:
        raise _forbidden("forbidden", "Du arbetar inte i den kommun som protokollet anger.",
                         "You do not work in the municipality the protocol names.",
                         [{"field": "municipality_id", "message": "not a municipality you work in"}])


def text_errors(req: ForfeitureIn) -> list[dict[str, Any]]:
    """Control characters anywhere; personal data in the texts that are published (place, unit).

    The personal fields are stored encrypted and may name people, but must still be text a form can hold.
    """
    errors = free_text_errors({"place": req.place, "unit": req.unit})
    personal = free_text_errors({"person.name": req.person.name, "officer": req.officer,
                                 "source_details": req.source_details}, multiline={"source_details"})
    return errors + [e for e in personal if e["reason"] == "control_character"]


def validate_protocol(req: ForfeitureIn, *, caller: Principal, snapshot: OrgSnapshot, now: datetime,
                      retention: timedelta) -> ValidProtocol:
    """Check a protocol against the organisation and the Kronoberg rules; raises ForfeitureRejected."""
    check_municipality(req, caller=caller, snapshot=snapshot)
    muni = snapshot.municipalities[req.municipality_id]
    errors: list[dict[str, Any]] = []
    if req.area_id is not None:
        area = snapshot.areas.get(req.area_id)
        if area is None or area.municipality_id != muni.id:
            errors.append({"field": "area_id", "message": f"not an area of {muni.id}"})
    occurred = req.occurred_at.astimezone(UTC)
    if occurred > now + FUTURE_SKEW:
        errors.append({"field": "occurred_at", "message": "in the future"})
    elif occurred < now - retention:
        errors.append({"field": "occurred_at", "message": "older than the retention period of personal data; "
                                                          "record it as statistics instead"})
    if req.guardian_came and not req.guardian_contacted:
        errors.append({"field": "guardian_came", "message": "guardians came but were not contacted"})
    errors += text_errors(req)
    if errors:
        raise _invalid("validation", "Protokollet är ogiltigt; se errors.", "The protocol is invalid; see errors.",
                       errors)
    on = req.occurred_at.astimezone(ZoneInfo(muni.timezone)).date()
    try:
        pnr = parse_personal_number(req.person.personal_number, on=on)
    except InvalidPersonalNumber as exc:
        msg = PNR_REASONS[exc.reason]
        raise _invalid("personal_number", f"Ogiltigt personnummer: {msg['sv']}.",
                       f"Invalid personal identity number: {msg['en']}.",
                       [{"field": "person.personal_number", "reason": exc.reason,
                         "message": f"{msg['sv']} / {msg['en']}", "message_sv": msg["sv"],
                         "message_en": msg["en"]}]) from None
    age = age_on(pnr.birth_date, on)
    band = age_band(age)
    if band is None:
        raise _invalid("age", "Personen var 20 år eller äldre vid tillfället; förverkandeprotokoll enligt "
                       "Kronobergsmodellen gäller den som är under 20 år.", "The person was 20 or older at the "
                       "time; Kronoberg forfeiture protocols are for people under 20.",
                       [{"field": "person.personal_number", "reason": "age_20_or_over",
                         "message": "20 år eller äldre vid tillfället / 20 or older at the time"}])
    warnings: list[dict[str, str]] = []
    if age < 18 and not req.guardian_contacted:
        warnings.append(_warning("guardian_not_contacted", "Personen är under 18: vårdnadshavare ska kontaktas.",
                                 "The person is under 18: guardians should be contacted."))
    if age < 18 and not req.social_services_notified:
        warnings.append(_warning("social_services_not_notified",
                                 "Personen är under 18: anmäl till socialtjänsten om barnet kan behöva skydd.",
                                 "The person is under 18: notify social services if the child may be at risk."))
    data = ForfeitureRecorded(
        protocol_id=req.protocol_id, municipality_id=muni.id, area_id=req.area_id, place=req.place,
        occurred_at=occurred, age_band=band,
        items=[{"beverage": i.beverage, "volume_liters": i.volume_liters, "containers": i.containers}
               for i in req.items],
        direct_forfeiture=req.direct_forfeiture, guardian_contacted=req.guardian_contacted,
        guardian_came=req.guardian_came, source=req.source,
        social_services_notified=req.social_services_notified)
    return ValidProtocol(req=req, personal_number=pnr.canonical, age=age, age_band=band, data=data,
                         warnings=warnings, notification=notification_reason(age, req.notify_social_services))


# --- notifying social services --------------------------------------------------------------

def notification_reason(age: int, requested: bool) -> NotificationReason | None:
    """Why social services are notified through EST, or None: always under 18 (the police must tell social
    services when a child may be at risk), for an 18-19-year-old only when the officer asks."""
    if age < 18:
        return "under_18"
    if requested:
        return "requested_by_police"
    return None


def notification_person(*, name: str | None, personal_number: str, age: int, guardian_contacted: bool,
                        guardian_came: bool) -> dict[str, Any]:
    """The personal part of a notification, sealed as one value for the social-services recipient."""
    return {"name": name, "personal_number": personal_number, "age": age,
            "guardian_contacted": guardian_contacted, "guardian_came": guardian_came}


def accepted_body(protocol_id: str, band: str, warnings: list[dict[str, str]]) -> dict[str, Any]:
    """The 202 answer of an accepted protocol (no personal data)."""
    return {"protocol_id": protocol_id, "status": "accepted", "age_band": band, "warnings": warnings}


def same_personal_data(stored: dict[str, str | None], req: ForfeitureIn, *, on: date) -> bool:
    """Whether a request carries the same personal data as a stored (decrypted) protocol."""
    try:
        pnr = parse_personal_number(req.person.personal_number, on=on).canonical
    except InvalidPersonalNumber:
        return False
    return stored == personal_values(req, pnr)


def retention_cutoff(now: datetime, retention: timedelta) -> datetime:
    """Protocols that occurred before this moment have their personal data deleted."""
    return now - retention


# --- purposes of reads and what the access log keeps ---------------------------------------

MAX_PURPOSE = 200
PURPOSE_MARKERS = {"personal_data": "[refused: personal data]", "control_character": "[refused: control character]"}
"""What the access log holds instead of a purpose that was refused for its content (the text is never kept)."""


def purpose_problem(purpose: str | None) -> str | None:
    """Why a stated purpose of a read is not acceptable (None: fine); never repeats the text."""
    if purpose is None or len(purpose.strip()) < 3:
        return "missing"
    if has_control_characters(purpose):
        return "control_character"
    if find_personal_data(purpose):
        return "personal_data"
    if len(purpose) > MAX_PURPOSE:
        return "too_long"
    return None


def logged_purpose(purpose: str | None) -> str | None:
    """The purpose as the access log keeps it, whoever asked: a marker for text that must not be kept,
    otherwise at most MAX_PURPOSE characters."""
    if purpose is None:
        return None
    why = purpose_problem(purpose)
    if why in PURPOSE_MARKERS:
        return PURPOSE_MARKERS[why]
    return purpose.strip()[:MAX_PURPOSE]


# --- attempts without a valid token ------------------------------------------------------

ANONYMOUS_ROWS_PER_MINUTE = 10
"""At most this many access-log rows per minute (and one per client address) for attempts without a valid
token; the metric counts every attempt."""


@dataclass
class AnonymousBudget:
    """Decides which attempts without a valid token get an access-log row, so that nobody without a token can
    fill the append-only log: one row per client address and minute, ``per_minute`` rows in all."""

    per_minute: int = ANONYMOUS_ROWS_PER_MINUTE
    _minute: datetime | None = field(default=None, init=False)
    _seen: set[str] = field(default_factory=set, init=False)

    def admit(self, address: str, now: datetime) -> bool:
        """Whether this attempt is logged (True at most once per address and minute)."""
        minute = now.replace(second=0, microsecond=0)
        if minute != self._minute:
            self._minute, self._seen = minute, set()
        if address in self._seen or len(self._seen) >= self.per_minute:
            return False
        self._seen.add(address)
        return True


# --- credential changes of the people who read protocols ----------------------------------

CredentialChangeKind = Literal["person_added", "token_changed", "token_issued", "read_role_granted"]


@dataclass(frozen=True)
class CredentialChange:
    """A person who may read protocols got a new way in with an organisation version."""

    person_id: str
    kind: CredentialChangeKind
    roles: tuple[str, ...]


def credential_changes(previous: OrgSnapshot, current: OrgSnapshot) -> list[CredentialChange]:
    """Police and social-services people of ``current`` whose token is new since ``previous`` (in the file, or
    issued through the API), or who gained a read role: the changes through which an administrator could read
    protocols under their name."""
    holders = {t.person_id for t in current.tokens.values()}
    issued = {t.person_id for k, t in current.tokens.items() if k not in previous.tokens}
    out = []
    for pid, person in sorted(current.people.items()):
        roles = tuple(r for r in person.roles if r in READ_ROLES)
        if not roles or (person.token_sha256 is None and pid not in holders):
            continue
        before = previous.people.get(pid)
        kind: CredentialChangeKind | None = None
        if before is None:
            kind = "person_added"
        elif person.token_sha256 is not None and before.token_sha256 != person.token_sha256:
            kind = "token_changed"
        elif pid in issued:
            kind = "token_issued"
        elif not any(r in READ_ROLES for r in before.roles):
            kind = "read_role_granted"
        if kind is not None:
            out.append(CredentialChange(person_id=pid, kind=kind, roles=roles))
    return out
