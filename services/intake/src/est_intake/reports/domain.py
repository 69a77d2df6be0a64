"""Report rules as plain functions: the report models, validation against the organisation, corrections,
the personal-data guard of free text and the idempotency fingerprint.

Nothing here touches HTTP, the bus or the database; the handlers feed it data and act on its answers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any

from est_shared.checklists import DEFAULT_CHECKLIST, LEVELS, MAX_COUNT_CEILING, Checklist, ChecklistItem
from est_shared.events import ReportSubmitted
from est_shared.freetext import free_text_errors, has_control_characters
from est_shared.org import (
    Area,
    Municipality,
    OrgSnapshot,
    Principal,
    period_deadline,
)
from est_shared.periods import Period, PeriodError, current_period, normalise
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
)

from est_intake.errors import ReportConflict, ReportForbidden, ReportInvalid
from est_intake.org.domain import MAX_PLACE

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
"""A UUID in its 36-character form (RFC 9562: versions 1-8, the RFC variant), in either case."""
REPORT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""The free id shape forfeiture protocols still take; report ids are UUIDs (``UUID_PATTERN``)."""
MAX_ANSWERS = 50
MAX_NOTE = 500
MAX_SHOWN = 40  # characters of an unknown item code quoted back in an error
EARLIEST_YEAR = 2000  # reports and imports before it are typing errors (year 1 does not even have a deadline)
EARLIEST = date(EARLIEST_YEAR, 1, 1)
REPORTER_ROLES = ("reporter", "key_function")  # admin is implied by Principal.has_role


# --- reports -----------------------------------------------------------------------------

ReportId = Annotated[str, Field(max_length=36, pattern=UUID_PATTERN, json_schema_extra={"format": "uuid"})]
"""A report's id: a UUID the client makes (short ids would collide between reporters)."""
UUID_HINT = "expected a UUID such as 8c0e2f8e-6a5b-4f0e-9d52-0b7b1c2f9a11"
"""What to say of an id that does not match ``UUID_PATTERN`` (the edges put it in place of the pattern)."""


class AnswerIn(BaseModel):
    """One answer: the value as the checklist item says, optional places of the area and a short note."""

    model_config = ConfigDict(extra="forbid")

    # no checklist allows a value beyond MAX_COUNT_CEILING: refused while parsing, before anything reads it
    value: StrictBool | Annotated[StrictInt, Field(ge=-MAX_COUNT_CEILING, le=MAX_COUNT_CEILING)] = Field(
        description="count (integer ≥ 0, at most the item's max_count), level (0-3) or true/false", examples=[2])
    places: list[Annotated[str, Field(max_length=MAX_PLACE)]] = Field(
        default_factory=list, max_length=100, description="place ids of the area", examples=[["centrum"]])
    note: str = Field(default="", max_length=MAX_NOTE, description="short note; no names or ID numbers",
                      examples=["nytt på garaget"])


class ReportIn(BaseModel):
    """A checklist report from a field app (CONTRACT.md, POST /v1/reports)."""

    model_config = ConfigDict(extra="forbid")

    report_id: ReportId = Field(description="client-generated UUID, the idempotency key",
                                examples=["8c0e2f8e-6a5b-4f0e-9d52-0b7b1c2f9a11"])
    area_id: str = Field(min_length=1, max_length=100, examples=["araby"])
    period: str | None = Field(default=None, max_length=20,
                               description="reporting period; left out: the area's current period",
                               examples=["2026-W48"])
    checklist: str = Field(default=DEFAULT_CHECKLIST.ref, max_length=60, examples=["est-standard@1"],
                           description="id@version the answers follow; left out: the one the area's municipality "
                                       "fills in now. It must be one the municipality accepts (its checklist "
                                       "or an older version it still accepts)")
    answers: dict[str, AnswerIn] = Field(default_factory=dict, max_length=MAX_ANSWERS,
                                         description=f"item code -> answer, at most {MAX_ANSWERS}",
                                         examples=[{"klotter": {"value": 2, "places": ["centrum"]}}])
    nothing_to_report: StrictBool = Field(default=False, description="explicitly nothing to report")
    note: str = Field(default="", max_length=MAX_NOTE, description="short note; no names or ID numbers")
    supersedes: ReportId | None = Field(default=None, description="report_id of the earlier report this one "
                                        "corrects (the sender's own, or a key function's municipality's)")


class ImportReportIn(ReportIn):
    """A historical report imported on a reporter's behalf, as if submitted at ``submitted_at``."""

    reporter_id: str = Field(min_length=1, max_length=100, examples=["anna"])
    submitted_at: AwareDatetime = Field(description="when it was submitted (with timezone)",
                                        examples=["2026-03-02T10:00:00+01:00"])


def check_import_time(submitted_at: datetime, now: datetime) -> None:
    """An imported report's submission time lies between ``EARLIEST_YEAR`` and now; raises ReportRejected."""
    if submitted_at > now:
        raise _invalid("future", "submitted_at ligger i framtiden.", "submitted_at is in the future.",
                       [{"field": "submitted_at", "message": "in the future"}])
    if submitted_at.year < EARLIEST_YEAR:
        raise _invalid("submitted_at", f"submitted_at ligger före {EARLIEST_YEAR}.",
                       f"submitted_at is before {EARLIEST_YEAR}.",
                       [{"field": "submitted_at", "message": f"{EARLIEST_YEAR} at the earliest"}])


def content_hash(req: ReportIn, person_id: str) -> str:
    """SHA-256 of the canonical request content and the caller: the idempotency fingerprint.

    The canonical form is ``json.dumps(req.model_dump(mode="json") | {"_caller": person_id},
    sort_keys=True, separators=(",", ":"), ensure_ascii=False)``; stored fingerprints depend on it
    byte for byte. For a plain ``ReportIn`` it is written out directly (under half the cost; every
    report of a batch pays it), with the same string encoder ``json`` uses.
    """
    if type(req) is not ReportIn:
        body = req.model_dump(mode="json")
        body["_caller"] = person_id
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                         ensure_ascii=False).encode()).hexdigest()
    s = _json_str
    answers = ",".join(f'{s(code)}:{{"note":{s(a.note)},"places":[{",".join(map(s, a.places))}],'
                       f'"value":{_json_scalar(a.value)}}}' for code, a in sorted(req.answers.items()))
    text = (f'{{"_caller":{s(person_id)},"answers":{{{answers}}},"area_id":{s(req.area_id)},'
            f'"checklist":{s(req.checklist)},"note":{s(req.note)},'
            f'"nothing_to_report":{_json_scalar(req.nothing_to_report)},'
            f'"period":{"null" if req.period is None else s(req.period)},"report_id":{s(req.report_id)},'
            f'"supersedes":{"null" if req.supersedes is None else s(req.supersedes)}}}')
    return hashlib.sha256(text.encode()).hexdigest()


_json_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes a string with


def _json_scalar(v: bool | int) -> str:
    """A bool or int as ``json.dumps`` writes it."""
    return "true" if v is True else "false" if v is False else int.__repr__(v)


def _invalid(reason: str, sv: str, en: str, errors: list[dict[str, Any]] | None = None) -> ReportInvalid:
    return ReportInvalid(sv, en, errors=errors, reason=reason)


def _forbidden(reason: str, sv: str, en: str, errors: list[dict[str, Any]] | None = None) -> ReportForbidden:
    return ReportForbidden(sv, en, errors=errors, reason=reason)


@dataclass(slots=True)
class Accepted:
    """A report that passed validation: the event data and the period it counts for.

    ``fields`` are the ``ReportSubmitted`` fields in the model's order (``supersedes`` only when set),
    checked already: the event is encoded from them without building the model. The answers are the
    request's ``AnswerIn`` models, whose fields are ``Answer``'s in the same order.
    """

    fields: dict[str, Any]
    municipality_id: str
    period: Period
    late: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def report_id(self) -> str:
        rid: str = self.fields["report_id"]
        return rid

    @property
    def area_id(self) -> str:
        area: str = self.fields["area_id"]
        return area

    @property
    def data(self) -> ReportSubmitted:
        """The event data as the contract's model (validated)."""
        answers = {c: a.model_dump() for c, a in self.fields["answers"].items()}
        return ReportSubmitted.model_validate({**self.fields, "answers": answers})


def resolve_period(text: str | None, area: Area, municipality: Municipality, at: datetime) -> Period:
    """The reporting period of a report: the given one (normalised to the cadence) or the current one."""
    now_period = current_period(area.cadence, at, municipality.timezone)
    if text is None:
        return now_period
    if has_control_characters(text):
        raise _invalid("period", "Perioden innehåller ett kontrolltecken.", "The period holds a control character.",
                       [{"field": "period", "message": "a control character is not allowed here"}])
    try:
        period = normalise(text, area.cadence)
    except PeriodError as exc:
        raise _invalid("period", f"Ogiltig period: {exc}", f"Invalid period: {exc}",
                       [{"field": "period", "message": str(exc)}]) from exc
    if period.start > now_period.start:
        raise _invalid("future_period",
                       f"Perioden {period.id} har inte börjat ännu (nu: {now_period.id}).",
                       f"The period {period.id} has not started yet (now: {now_period.id}).",
                       [{"field": "period", "message": f"{period.id} is in the future"}])
    if period.start < EARLIEST:
        raise _invalid("period", f"Perioden {period.id} ligger före {EARLIEST_YEAR}.",
                       f"The period {period.id} is before {EARLIEST_YEAR}.",
                       [{"field": "period", "message": f"periods start in {EARLIEST_YEAR} at the earliest"}])
    return period


_ITEMS: dict[str, tuple[Checklist, dict[str, ChecklistItem]]] = {}


def _items_of(checklist: Checklist) -> dict[str, ChecklistItem]:
    """The checklist's items by code (cached per checklist version; a version never changes)."""
    cached = _ITEMS.get(checklist.ref)
    if cached is None or cached[0] is not checklist:
        cached = (checklist, {i.code: i for i in checklist.items})
        _ITEMS[checklist.ref] = cached
    return cached[1]


@dataclass(frozen=True, slots=True)
class KnownReport:
    """An earlier accepted report as the ledger knows it: what a correction of it is judged by; and, from the
    senders' own list, whether it is a withdrawal and which report corrected or withdrew it."""

    area_id: str
    municipality_id: str
    reporter_id: str
    withdrawal: bool = False
    corrected_by: str | None = None
    withdrawn_by: str | None = None


class Lookups:
    """What ``validate_report`` found for the earlier reports of one call (one organisation snapshot).

    The reports of a batch share caller, area, checklist and receipt time: the rights, the area and
    checklist, the period and its deadline are looked up once per combination, not per report.
    Only what passed is kept; a refusal is worked out (and worded) again each time.
    """

    def __init__(self) -> None:
        self.where: dict[tuple[int, str, str | None, bool], _Where] = {}
        self.when: dict[tuple[str, str | None, datetime], tuple[Period, str, bool]] = {}


_Where = tuple[Area, Municipality, Checklist, dict[str, ChecklistItem]]


def validate_report(req: ReportIn, *, caller: Principal, snapshot: OrgSnapshot, received_at: datetime,
                    known_reports: Mapping[str, KnownReport], lookups: Lookups | None = None,
                    withdrawn: bool = False) -> Accepted:
    """Check a report against the organisation and its checklist; raises ReportRejected.

    ``known_reports`` holds earlier accepted reports that ``supersedes`` may name; a correction is
    judged by who sent the original, not by the corrector's areas (see ``check_correction``).
    ``lookups`` (one per snapshot and call; it keys callers by ``id``) spares repeated look-ups in a batch.
    ``withdrawn``: the report withdraws the one ``supersedes`` names; it has no answers and is not "nothing to
    report" (the only report of that shape), and its event says ``withdrawn: true``.
    """
    if withdrawn and (req.supersedes is None or req.answers or req.nothing_to_report):
        raise _invalid("withdrawn", "Ett tillbakatagande namnger rapporten och har inga svar.",
                       "A withdrawal names the report and has no answers.",
                       [{"field": "supersedes", "message": "a withdrawal supersedes one report, with no answers"}])
    correction = req.supersedes is not None
    if correction:
        check_correction(req, caller, known_reports)
    key = (id(caller), req.area_id, req.checklist if "checklist" in req.model_fields_set else None, correction)
    where = lookups.where.get(key) if lookups is not None else None
    if where is None:
        where = _where(req, caller, snapshot, assigned=not correction)
        if lookups is not None:
            lookups.where[key] = where
    area, municipality, checklist, items = where
    errors: list[dict[str, Any]] = []
    if not req.answers and not req.nothing_to_report and not withdrawn:
        errors.append({"field": "answers", "message": "give answers or set nothing_to_report (inga svar / "
                                                      "no answers)"})
    free_text: dict[str, str] = {"note": req.note} if req.note else {}
    for code, ans in req.answers.items():
        item = items.get(code)
        if item is None:
            shown = code if len(code) <= MAX_SHOWN else code[:MAX_SHOWN] + "…"
            errors.append({"field": f"answers.{shown}", "message": f"unknown item {shown!r} in {checklist.ref}"})
            continue
        v = ans.value
        if item.answer == "boolean":
            if not isinstance(v, bool):
                errors.append({"field": f"answers.{code}.value", "message": "expected true or false"})
        elif isinstance(v, bool):
            errors.append({"field": f"answers.{code}.value", "message": f"expected an integer ({item.answer}), "
                                                                        "not true/false"})
        elif item.answer == "count":
            if v < 0:
                errors.append({"field": f"answers.{code}.value", "message": "a count is an integer ≥ 0"})
            elif item.max_count is not None and v > item.max_count:
                errors.append({"field": f"answers.{code}.value",
                               "message": f"at most {item.max_count} in one report ({code} in {checklist.ref})"})
        elif item.answer == "level" and v not in LEVELS:
            errors.append({"field": f"answers.{code}.value", "message": "a level is 0, 1, 2 or 3"})
        if ans.places and not item.places:
            errors.append({"field": f"answers.{code}.places",
                           "message": f"{code} i {checklist.ref} tar inga platser / {code} in {checklist.ref} takes "
                                      "no places"})
        elif ans.places:
            bad_places = [p for p in ans.places if p not in area.places]
            if bad_places:
                errors.append({"field": f"answers.{code}.places",
                               "message": f"not places of area {area.id}: {', '.join(bad_places)}"})
            if len(set(ans.places)) != len(ans.places):
                errors.append({"field": f"answers.{code}.places", "message": "a place is listed twice"})
        if ans.note:
            free_text[f"answers.{code}.note"] = ans.note
    if req.nothing_to_report and any(a.value not in (0, False) for a in req.answers.values()):
        errors.append({"field": "nothing_to_report", "message": "nothing_to_report with non-zero answers"})
    if errors:
        raise _invalid("validation", "Rapporten är ogiltig; se errors.", "The report is invalid; see errors.",
                       errors)
    if free_text:  # an empty text holds nothing to refuse
        _check_free_text(free_text)
    when_key = (area.id, req.period, received_at)
    when = lookups.when.get(when_key) if lookups is not None else None
    if when is None:
        period = resolve_period(req.period, area, municipality, received_at)
        when = (period, period.id, received_at > _deadline(municipality, period))
        if lookups is not None:
            lookups.when[when_key] = when
    period, period_id, late = when
    # ReportSubmitted's fields in its order; every value is of the field's type already (ReportIn is strict)
    if req.supersedes is None:
        data: dict[str, Any] = {
            "report_id": req.report_id, "municipality_id": municipality.id, "area_id": area.id,
            "period": period_id, "checklist": checklist.ref, "answers": req.answers,
            "nothing_to_report": req.nothing_to_report, "note": req.note, "reporter_id": caller.person_id,
            "actor_id": caller.actor_id, "received_at": received_at, "late": late}
    else:
        data = {
            "report_id": req.report_id, "municipality_id": municipality.id, "area_id": area.id,
            "period": period_id, "checklist": checklist.ref, "answers": req.answers,
            "nothing_to_report": req.nothing_to_report, "note": req.note, "supersedes": req.supersedes,
            "reporter_id": caller.person_id, "actor_id": caller.actor_id, "received_at": received_at,
            "late": late}
        if withdrawn:
            data["withdrawn"] = True
    return Accepted(fields=data, municipality_id=municipality.id, period=period, late=late)


def _check_free_text(texts: dict[str, str]) -> None:
    """Refuse notes with control characters (line breaks and tabs may stay) or personal data."""
    bad = free_text_errors(texts, multiline=set(texts))
    if not bad:
        return
    fields = ", ".join(dict.fromkeys(e["field"] for e in bad))
    if any(e["reason"] == "control_character" for e in bad):
        raise _invalid("control_character", f"Fritext innehåller otillåtna tecken ({fields}).",
                       f"Free text holds characters that are not allowed ({fields}).", bad)
    raise _invalid("personal_data", f"Fritext får inte identifiera personer ({fields}).",
                   f"Free text must not identify people ({fields}).", bad)


def may_correct(caller: Principal, original: KnownReport) -> bool:
    """Whether a caller may correct a report: its sender, a key function of its municipality, or an admin."""
    return (original.reporter_id == caller.person_id or "admin" in caller.roles
            or ("key_function" in caller.roles and original.municipality_id in caller.municipalities))


def check_correction(req: ReportIn, caller: Principal, known_reports: Mapping[str, KnownReport]) -> None:
    """A correction names an earlier report the caller may correct, of the same area; raises ReportRejected.

    Someone who may not correct the report learns nothing about it: an unknown id and another
    reporter's id get the same 403 (only an admin, who may see every report, is told it is unknown).
    """
    _may_report(caller)
    sup = req.supersedes
    if sup == req.report_id:
        raise _invalid("supersedes", "En rapport kan inte rätta sig själv.", "A report cannot correct itself.",
                       [{"field": "supersedes", "message": "the report's own id"}])
    original = known_reports.get(sup) if sup is not None else None
    if original is None and "admin" in caller.roles:
        raise _invalid("supersedes", f"supersedes {sup!r} är inte en tidigare godtagen rapport.",
                       f"supersedes {sup!r} is not an earlier accepted report.",
                       [{"field": "supersedes", "message": "unknown report"}])
    if original is None or not may_correct(caller, original):
        raise _forbidden("correction_forbidden",
                         "Du kan bara rätta dina egna rapporter (som nyckelfunktion även andras i din kommun).",
                         "You can only correct your own reports (as a key function, also others' in your "
                         "municipality).",
                         [{"field": "supersedes", "message": "not a report you may correct"}])
    if original.area_id != req.area_id:
        raise _invalid("supersedes", f"Rapporten som rättas gäller området {original.area_id}, inte {req.area_id}.",
                       f"The corrected report is about area {original.area_id}, not {req.area_id}.",
                       [{"field": "area_id", "message": f"the corrected report's area is {original.area_id}"}])
    if original.withdrawal:
        raise ReportConflict("Ett tillbakatagande kan inte rättas; skicka en ny rapport.",
                             "A withdrawal cannot be corrected; send a new report.",
                             errors=[{"field": "supersedes", "message": "a withdrawal"}],
                             reason="correction_of_withdrawal")
    if original.withdrawn_by not in (None, req.report_id):
        raise ReportConflict("Rapporten är tillbakatagen; skicka en ny rapport i stället.",
                             "The report was withdrawn; send a new report instead.",
                             errors=[{"field": "supersedes", "message": "withdrawn"}], reason="withdrawn")
    if original.corrected_by not in (None, req.report_id):
        raise ReportConflict("Rapporten är redan rättad; rätta den senaste versionen.",
                             "The report was corrected already; correct its latest version.",
                             errors=[{"field": "supersedes", "message": "corrected by a later report",
                                      "latest": original.corrected_by}], reason="corrected_already")


def _may_report(caller: Principal) -> None:
    if not caller.has_role(*REPORTER_ROLES):
        raise _forbidden("forbidden", "Rapporter kräver rollen reporter eller key_function.",
                         "Reports need the role reporter or key_function.")


def _where(req: ReportIn, caller: Principal, snapshot: OrgSnapshot, *, assigned: bool) -> _Where:
    """The caller's right to report, the report's area, municipality and checklist; raises ReportRejected.

    ``assigned``: the caller must be assigned to the area (not so for a correction, which
    ``check_correction`` has judged by the original).
    """
    _may_report(caller)
    bad = [{"field": name, "message": "a control character is not allowed here"}
           for name, text in (("area_id", req.area_id), ("checklist", req.checklist)) if has_control_characters(text)]
    if bad:
        raise _invalid("control_character", "Ett id innehåller ett kontrolltecken; se errors.",
                       "An id holds a control character; see errors.", bad)
    area = snapshot.areas.get(req.area_id)
    if area is None:
        if "admin" not in caller.roles:  # do not reveal to others which areas exist
            raise _forbidden("forbidden", f"Du är inte tilldelad området {req.area_id!r}.",
                             f"You are not assigned to area {req.area_id!r}.")
        raise _invalid("unknown_area", f"Okänt område {req.area_id!r}.", f"Unknown area {req.area_id!r}.",
                       [{"field": "area_id", "message": "unknown area"}])
    if assigned and not caller.may_see_area(area.id):
        raise _forbidden("forbidden", f"Du är inte tilldelad området {area.id!r}.",
                         f"You are not assigned to area {area.id!r}.")
    municipality = snapshot.municipalities[area.municipality_id]
    # left out, the checklist is the one the area's municipality fills in now
    ref = req.checklist if "checklist" in req.model_fields_set else snapshot.checklist_ref_for(municipality.id)
    checklist = snapshot.checklist(ref)
    if checklist is None or not snapshot.accepts_checklist(municipality.id, ref):
        raise _checklist_refused(ref, known=checklist is not None, municipality=municipality, snapshot=snapshot)
    return area, municipality, checklist, _items_of(checklist)


def accepted_checklists(snapshot: OrgSnapshot, municipality_id: str) -> list[str]:
    """The ``id@version`` a municipality accepts reports against: the one it fills in, then older ones."""
    m = snapshot.municipalities.get(municipality_id)
    return list(dict.fromkeys([snapshot.checklist_ref_for(municipality_id), *(m.accepted_checklists if m else [])]))


def _checklist_refused(ref: str, *, known: bool, municipality: Municipality, snapshot: OrgSnapshot) -> ReportInvalid:
    """A report against a checklist version its area's municipality does not take (or no one knows)."""
    accepted = ", ".join(accepted_checklists(snapshot, municipality.id))
    shown = ref if len(ref) <= MAX_SHOWN else ref[:MAX_SHOWN] + "…"
    if known:
        sv = f"{municipality.name} tar inte emot rapporter mot checklistan {shown}; den tar emot {accepted}."
        en = f"{municipality.name} does not accept reports against the checklist {shown}; it accepts {accepted}."
    else:
        sv = f"Okänd checklista {shown!r}; {municipality.name} tar emot {accepted}."
        en = f"Unknown checklist {shown!r}; {municipality.name} accepts {accepted}."
    return _invalid("checklist_not_accepted" if known else "unknown_checklist", sv, en,
                    [{"field": "checklist", "message": f"{sv} / {en}", "message_sv": sv, "message_en": en}])


_DEADLINES: dict[tuple[str, Period], tuple[Municipality, datetime]] = {}


def _deadline(municipality: Municipality, period: Period) -> datetime:
    """``period_deadline``, kept per municipality version and period (every report of a batch asks it)."""
    key = (municipality.id, period)
    hit = _DEADLINES.get(key)
    if hit is None or hit[0] is not municipality:
        if len(_DEADLINES) >= 4096:
            _DEADLINES.clear()
        hit = _DEADLINES[key] = (municipality, period_deadline(municipality, period))
    return hit[1]


ACCEPTED_KEYS = ["report_id", "period", "status", "late"]
"""The keys of ``accepted_body``, in its order (its writers outside json check a body against them)."""


def accepted_body(report_id: str, period: str, late: bool) -> dict[str, Any]:
    """The 202 answer of an accepted report."""
    return {"report_id": report_id, "period": period, "status": "accepted", "late": late}


_SAME_FIELDS = ("report_id", "municipality_id", "area_id", "checklist", "answers", "nothing_to_report", "note",
                "supersedes", "reporter_id")


def same_report(stored: dict[str, Any], new: ReportSubmitted, *, period_given: bool, exact_time: bool) -> bool:
    """Whether a stored report event (JSON data) has the content of a new submission of the same id.

    The period counts only when the new submission named one (left out, it is "the current one",
    which may have moved on); the receipt time only for imports, where it is given.
    """
    mine = new.model_dump(mode="json")
    if any(stored.get(k) != mine.get(k) for k in _SAME_FIELDS):
        return False
    if period_given and stored.get("period") != mine["period"]:
        return False
    if exact_time:
        try:
            return datetime.fromisoformat(stored["received_at"]) == new.received_at
        except (KeyError, TypeError, ValueError):
            return False
    return True
