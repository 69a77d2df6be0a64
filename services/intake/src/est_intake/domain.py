"""Intake rules as plain functions: the organisation file, report validation and the personal-data guard.

Nothing here touches HTTP, the bus or the database; the handlers feed it data and act on its answers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from est_shared.checklists import DEFAULT_CHECKLIST, LEVELS, MAX_COUNT_CEILING, Checklist, ChecklistItem
from est_shared.events import ReportSubmitted
from est_shared.freetext import free_text_errors, has_control_characters
from est_shared.org import (
    Actor,
    ActorKind,
    Area,
    Municipality,
    OrgSnapshot,
    Person,
    Principal,
    Role,
    hash_token,
    period_deadline,
)
from est_shared.periods import DEFAULT_TIMEZONE, Period, PeriodError, current_period, normalise
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$"
"""A UUID in its 36-character form (RFC 9562: versions 1-8, the RFC variant), in either case."""
REPORT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
"""The free id shape forfeiture protocols still take; report ids are UUIDs (``UUID_PATTERN``)."""
MAX_ANSWERS = 50
MAX_NOTE = 500
MAX_PLACE = 200
MAX_SHOWN = 40  # characters of an unknown item code quoted back in an error
EARLIEST_YEAR = 2000  # reports and imports before it are typing errors (year 1 does not even have a deadline)
EARLIEST = date(EARLIEST_YEAR, 1, 1)
REPORTER_ROLES = ("reporter", "key_function")  # admin is implied by Principal.has_role


# --- organisation file -------------------------------------------------------------------

class OrgInvalid(ValueError):
    """An organisation file that cannot be applied; ``errors`` names each failing field."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


MAX_NAME = 200
MAX_PLACE = 100
MAX_PLACES = 500
MAX_PERSON_AREAS = 10_000
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Place = Annotated[str, StringConstraints(max_length=MAX_PLACE)]


class AreaDoc(_Doc):
    """An area in the organisation file."""

    id: str = Field(pattern=ID_PATTERN)
    name: Name
    cadence: Literal["weekly", "biweekly"] = "weekly"
    places: list[Place] = Field(default_factory=list, max_length=MAX_PLACES)


class MunicipalityDoc(_Doc):
    """A municipality in the organisation file."""

    id: str = Field(pattern=ID_PATTERN)
    name: Name
    analysis_period: Literal["tertial", "quarter"] = "tertial"
    timezone: str = Field(default=DEFAULT_TIMEZONE, max_length=64)
    deadline_weekday: int = Field(default=0, ge=0, le=6)
    deadline_time: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    areas: list[AreaDoc] = Field(default_factory=list)

    @field_validator("deadline_time", mode="before")
    @classmethod
    def _sexagesimal(cls, v: Any) -> Any:
        """YAML 1.1 reads an unquoted 10:30 as the number 630: turn it back into a time."""
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v // 60:02d}:{v % 60:02d}"
        return v

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {v!r}") from exc
        return v


class ActorDoc(_Doc):
    """An actor (organisation) in the organisation file."""

    id: str = Field(pattern=ID_PATTERN)
    name: Name
    kind: ActorKind = "other"


class PersonDoc(_Doc):
    """A person in the organisation file."""

    id: str = Field(pattern=ID_PATTERN)
    name: Name
    actor: str = Field(max_length=100)
    email: str | None = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    roles: list[Role] = Field(default_factory=list, max_length=20)
    areas: list[Annotated[str, StringConstraints(max_length=100)]] = Field(default_factory=list,
                                                                          max_length=MAX_PERSON_AREAS)
    token: str | None = Field(default=None, min_length=1, max_length=512)
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class OrgDoc(_Doc):
    """The whole organisation file (``subscriptions`` are passed on to the notifier in the snapshot)."""

    municipalities: list[MunicipalityDoc] = Field(default_factory=list)
    actors: list[ActorDoc] = Field(default_factory=list)
    people: list[PersonDoc] = Field(default_factory=list)
    subscriptions: list[dict[str, Any]] | None = Field(
        default=None, description="declared subscriptions; each needs an id and an owner (person id)")


class OrgSyntaxError(OrgInvalid):
    """The organisation text is not YAML/JSON at all, or not one we read (answered 400, not 422)."""


MAX_DEPTH = 16
"""Deepest nesting an organisation document may have (its own shape needs six levels)."""
MAX_SCALAR = 10_000
"""Longest single value, in characters, in an organisation document."""


def load_org_file(path: str | Path) -> dict[str, Any]:
    """Read an organisation file (YAML, JSON is YAML too) into a plain mapping."""
    return parse_org_text(Path(path).read_text(encoding="utf-8"))


def _refused(sv: str, en: str, where: str = "") -> OrgSyntaxError:
    return OrgSyntaxError([{"field": where, "message": f"{sv} / {en}"}])


def parse_org_text(text: str) -> dict[str, Any]:
    """Parse YAML or JSON text of an organisation file into a mapping; OrgInvalid if it is not one.

    Read from the parser's events without recursion (the nesting is counted, at most ``MAX_DEPTH``),
    with PyYAML's safe rules for every value. Refused as syntax (400): more than one document, YAML
    aliases (``*name``: an alias bomb, "billion laughs", would expand into more values than memory holds),
    tags on mappings or lists, mappings or lists as keys, and values longer than ``MAX_SCALAR``.
    """
    try:
        doc = _yaml_document(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise OrgSyntaxError([{"field": "", "message": f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"}]) \
            from exc
    return _mapping(doc)


def parse_org_json(raw: bytes) -> dict[str, Any]:
    """Parse a JSON organisation document into a mapping, with the limits of ``parse_org_text``."""
    try:
        doc = json.loads(raw or b"{}")
    except RecursionError:
        raise _too_deep("") from None
    except ValueError as exc:
        raise OrgSyntaxError([{"field": "", "message": f"not valid JSON: {exc}"}]) from exc
    stack: list[tuple[Any, int, str]] = [(doc, 0, "")]
    while stack:  # depth and value sizes, without recursion
        node, depth, where = stack.pop()
        if isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                raise _too_deep(where)
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if isinstance(key, str) and len(key) > MAX_SCALAR:
                    raise _too_long(where)
                stack.append((value, depth + 1, f"{where}.{key}" if where else str(key)))
        elif isinstance(node, str) and len(node) > MAX_SCALAR:
            raise _too_long(where)
    return _mapping(doc)


def _mapping(doc: Any) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise OrgInvalid([{"field": "", "message": "the organisation file must be a mapping "
                                                   "(municipalities, actors, people)"}])
    return doc


def _too_deep(where: str) -> OrgSyntaxError:
    return _refused(f"nästlat djupare än {MAX_DEPTH} nivåer", f"nested deeper than {MAX_DEPTH} levels", where)


def _too_long(where: str) -> OrgSyntaxError:
    return _refused(f"ett värde är längre än {MAX_SCALAR} tecken", f"a value is longer than {MAX_SCALAR} "
                    "characters", where)


_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where it is installed
_MAP, _SEQ, _STR = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:str"
_NO_KEY = object()


def _yaml_document(text: str) -> Any:
    """The one document of a YAML text as plain values (see ``parse_org_text``); raises YAMLError or
    OrgSyntaxError."""
    loader = _YAML_LOADER("")  # for its resolver and safe constructors, not its (recursive) composer
    constructors = loader.yaml_constructors
    frames: list[list[Any]] = []  # [container, pending mapping key or _NO_KEY]
    root: Any = None
    documents = 0
    for ev in yaml.parse(text, Loader=_YAML_LOADER):
        kind = type(ev)
        if kind is yaml.ScalarEvent:
            if len(ev.value) > MAX_SCALAR:
                raise _too_long("")
            tag = ev.tag if ev.tag not in (None, "!") else loader.resolve(yaml.ScalarNode, ev.value, ev.implicit)
            if tag == _STR:
                value = ev.value
            else:
                construct = constructors.get(tag) or constructors[None]
                value = construct(loader, yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark, ev.style))
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            if ev.tag not in (None, "!", _MAP if kind is yaml.MappingStartEvent else _SEQ):
                raise _refused(f"taggen {ev.tag} är inte tillåten", f"the tag {ev.tag} is not allowed")
            if len(frames) >= MAX_DEPTH:
                raise _too_deep("")
            frames.append([{} if kind is yaml.MappingStartEvent else [], _NO_KEY])
            continue
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            value = frames.pop()[0]
        elif kind is yaml.AliasEvent:
            raise _refused("YAML-alias (*namn) är inte tillåtna i en organisationsfil; skriv ut värdet",
                           "YAML aliases (*name) are not allowed in an organisation file; write the value out")
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise _refused("filen får bara innehålla ett dokument", "the file may hold one document only")
            continue
        else:
            continue
        if not frames:
            root = value
            continue
        frame = frames[-1]
        container = frame[0]
        if type(container) is list:
            container.append(value)
        elif frame[1] is _NO_KEY:
            if isinstance(value, dict | list):
                raise _refused("en nyckel måste vara ett enkelt värde", "a key must be a plain value")
            frame[1] = value
        else:
            container[frame[1]] = value
            frame[1] = _NO_KEY
    return root


def _pydantic_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()))
        out.append({"field": loc, "message": str(e.get("msg", ""))})
    return out


def _text_errors(org: OrgDoc) -> list[dict[str, str]]:
    """Control characters in every text, and personal data in the names and places that reach pictures.

    Municipality, area, place and actor names are printed in pictures, e-mails and reports that may
    become public documents; person names are names (only control characters are refused there).
    """
    shown: dict[str, str] = {}
    for i, m in enumerate(org.municipalities):
        shown[f"municipalities.{i}.name"] = m.name
        for j, a in enumerate(m.areas):
            shown[f"municipalities.{i}.areas.{j}.name"] = a.name
            for k, p in enumerate(a.places):
                shown[f"municipalities.{i}.areas.{j}.places.{k}"] = p
    for i, act in enumerate(org.actors):
        shown[f"actors.{i}.name"] = act.name
    errors = free_text_errors(shown)
    for i, person in enumerate(org.people):
        for name, text in (("name", person.name), ("email", person.email), ("token", person.token)):
            if text and has_control_characters(text):
                errors.append({"field": f"people.{i}.{name}", "reason": "control_character",
                               "message": "texten innehåller ett kontrolltecken (t.ex. NUL eller radbrytning) / "
                                          "the text contains a control character (such as NUL or a line break)"})
    return errors


def validate_org(doc: dict[str, Any]) -> OrgDoc:
    """Check an organisation mapping: shapes, texts, unique ids across the org, and every reference."""
    try:
        org = OrgDoc.model_validate(doc)
    except ValidationError as exc:
        raise OrgInvalid(_pydantic_errors(exc)) from exc
    errors: list[dict[str, str]] = _text_errors(org)
    seen: dict[str, str] = {}

    def claim(id_: str, what: str, where: str) -> None:
        if id_ in seen:
            errors.append({"field": where, "message": f"id {id_!r} is already used by {seen[id_]} "
                                                      "(ids are unique across the whole organisation)"})
        else:
            seen[id_] = f"{what} {id_}"

    for i, m in enumerate(org.municipalities):
        claim(m.id, "municipality", f"municipalities.{i}.id")
        for j, a in enumerate(m.areas):
            claim(a.id, "area", f"municipalities.{i}.areas.{j}.id")
            if len(set(a.places)) != len(a.places):
                dup = {p for p in a.places if a.places.count(p) > 1}
                errors.append({"field": f"municipalities.{i}.areas.{j}.places",
                               "message": f"places listed twice: {', '.join(sorted(dup))}"})
            for k, p in enumerate(a.places):
                if not p:
                    errors.append({"field": f"municipalities.{i}.areas.{j}.places.{k}", "message": "empty place"})
    for i, act in enumerate(org.actors):
        claim(act.id, "actor", f"actors.{i}.id")
    for i, p in enumerate(org.people):
        claim(p.id, "person", f"people.{i}.id")
    actor_ids = {a.id for a in org.actors}
    area_ids = {a.id for m in org.municipalities for a in m.areas}
    muni_ids = {m.id for m in org.municipalities}
    tokens: dict[str, str] = {}
    for i, p in enumerate(org.people):
        if p.actor not in actor_ids:
            errors.append({"field": f"people.{i}.actor", "message": f"unknown actor {p.actor!r}"})
        for k, a in enumerate(p.areas):
            if a not in area_ids and a not in muni_ids:
                errors.append({"field": f"people.{i}.areas.{k}",
                               "message": f"unknown area or municipality {a!r}"})
        if p.token and p.token_sha256:
            errors.append({"field": f"people.{i}.token", "message": "give token or token_sha256, not both"})
        digest = person_token_hash(p)
        if digest:
            if digest in tokens:
                errors.append({"field": f"people.{i}.token", "message": f"the same token as {tokens[digest]}"})
            tokens[digest] = f"person {p.id}"
    if errors:
        raise OrgInvalid(errors)
    return org


def person_token_hash(p: PersonDoc) -> str | None:
    """The stored form of a person's token: SHA-256 hex."""
    if p.token:
        return hash_token(p.token)
    return p.token_sha256.lower() if p.token_sha256 else None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def build_snapshot(doc: dict[str, Any], previous: OrgSnapshot | None) -> tuple[OrgSnapshot, list[str]]:
    """The snapshot an organisation file describes and the changes against ``previous``.

    The version is ``previous.version + 1`` only when the content differs; applying the same file
    again returns ``previous`` unchanged with no changes (idempotent apply).
    """
    org = validate_org(doc)
    prev = previous or OrgSnapshot()
    municipalities: dict[str, Municipality] = {}
    areas: dict[str, Area] = {}
    for m in org.municipalities:
        for a in m.areas:
            areas[a.id] = Area(id=a.id, name=a.name, municipality_id=m.id, cadence=a.cadence,
                               places=_unique(a.places))
        municipalities[m.id] = Municipality(
            id=m.id, name=m.name, timezone=m.timezone, analysis_period=m.analysis_period,
            deadline_weekday=m.deadline_weekday, deadline_time=m.deadline_time, area_ids=[a.id for a in m.areas])
    actors = {a.id: Actor(id=a.id, name=a.name, kind=a.kind) for a in org.actors}
    people: dict[str, Person] = {}
    for p in org.people:
        resolved: list[str] = []
        munis: list[str] = []
        for ref in p.areas:
            if ref in municipalities:
                resolved.extend(municipalities[ref].area_ids)
                munis.append(ref)
            else:
                resolved.append(ref)
                munis.append(areas[ref].municipality_id)
        people[p.id] = Person(id=p.id, name=p.name, actor=p.actor, email=p.email, roles=_unique(list(p.roles)),
                              areas=_unique(resolved), municipalities=sorted(set(munis)),
                              token_sha256=person_token_hash(p))
    candidate = OrgSnapshot(version=prev.version + 1, municipalities=municipalities, areas=areas, actors=actors,
                            people=people, checklists=prev.checklists, current_checklist=prev.current_checklist,
                            subscriptions=list(org.subscriptions or []))
    # the diff compares everything the file sets (checklists come from ``previous``): no change, same content
    changes = diff_snapshots(prev if prev.version > 0 else None, candidate)
    if prev.version > 0 and not changes:
        return prev, []
    return candidate, changes


def diff_snapshots(old: OrgSnapshot | None, new: OrgSnapshot) -> list[str]:
    """Human-readable changes, e.g. ``person anna removed`` or ``area araby changed (places)``."""
    out: list[str] = []
    kinds: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("municipality", old.municipalities if old else {}, new.municipalities),
        ("area", old.areas if old else {}, new.areas),
        ("actor", old.actors if old else {}, new.actors),
        ("person", old.people if old else {}, new.people),
    ]
    for kind, before, after in kinds:
        for id_ in after:
            if id_ not in before:
                out.append(f"{kind} {id_} added")
        for id_ in before:
            if id_ not in after:
                out.append(f"{kind} {id_} removed")
        for id_ in after:
            if id_ in before and before[id_] != after[id_]:
                a, b = before[id_].model_dump(), after[id_].model_dump()
                fields = [("token" if k == "token_sha256" else k) for k in b if a.get(k) != b.get(k)]
                out.append(f"{kind} {id_} changed ({', '.join(fields)})")
    if (old.subscriptions if old else []) != new.subscriptions:
        out.append(f"declared subscriptions changed ({len(new.subscriptions)} now)")
    return out


# --- the start-up organisation file ------------------------------------------------------
#
# A start-up organisation file (``EST_INTAKE_ORG_FILE``, ``est up --org FILE``, the demo) is applied
# at start only when its content (SHA-256 of its bytes) differs from the start-up file content that
# last took effect, and then only if no organisation version was made since by other means (``PUT
# /v1/admin/org``, ``est org apply``, a different file of another replica, recovery from the bus).
# Otherwise the file is skipped; when it was skipped because of newer versions, the intake says so
# (log, ``est_intake_org_file_skipped``, ``/readyz`` degraded) and how to apply it on purpose:
# ``est org apply FILE``. A file that describes the organisation as it is takes effect without a new
# version. A restart (a crash, ``est up`` again, the supervisor) so never undoes changes made since.

StartupOutcome = Literal["applied", "unchanged", "current", "skipped"]
"""applied: a new version; unchanged: the same content as last time, not read; current: the file describes
the organisation as it is; skipped: newer versions were made since the last start-up file took effect."""


def startup_file_may_apply(*, latest_version: int, last_file_version: int) -> bool:
    """Whether a changed start-up file may make a new version: no version is newer than the one the last
    start-up file made or found (0 when none took effect yet)."""
    return latest_version <= last_file_version


def principal_for(snapshot: OrgSnapshot, person_id: str) -> Principal | None:
    """The principal of a person in a snapshot (used for imports on a reporter's behalf)."""
    person = snapshot.people.get(person_id)
    if person is None:
        return None
    actor = snapshot.actors.get(person.actor)
    return Principal(person_id=person.id, name=person.name, actor_id=person.actor,
                     actor_kind=actor.kind if actor else "other", roles=list(person.roles),
                     areas=list(person.areas), municipalities=list(person.municipalities))


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
    checklist: str = Field(default=DEFAULT_CHECKLIST.ref, max_length=60, examples=["est-standard@1"])
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


class ReportRejected(Exception):
    """A report that cannot be accepted; carries the HTTP status, a metric reason and field errors."""

    def __init__(self, status: int, reason: str, title: str, detail: str,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.status, self.reason, self.title, self.detail, self.errors = status, reason, title, detail, errors


def check_import_time(submitted_at: datetime, now: datetime) -> None:
    """An imported report's submission time lies between ``EARLIEST_YEAR`` and now; raises ReportRejected."""
    if submitted_at > now:
        raise _invalid("future", "submitted_at ligger i framtiden. / submitted_at is in the future.",
                       [{"field": "submitted_at", "message": "in the future"}])
    if submitted_at.year < EARLIEST_YEAR:
        raise _invalid("submitted_at", f"submitted_at ligger före {EARLIEST_YEAR}. / "
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


def _invalid(reason: str, detail: str, errors: list[dict[str, Any]] | None = None) -> ReportRejected:
    return ReportRejected(422, reason, "Invalid report", detail, errors)


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
        raise _invalid("period", "Perioden innehåller ett kontrolltecken. / The period holds a control character.",
                       [{"field": "period", "message": "a control character is not allowed here"}])
    try:
        period = normalise(text, area.cadence)
    except PeriodError as exc:
        raise _invalid("period", f"Ogiltig period: {exc} / Invalid period: {exc}",
                       [{"field": "period", "message": str(exc)}]) from exc
    if period.start > now_period.start:
        raise _invalid("future_period",
                       f"Perioden {period.id} har inte börjat ännu (nu: {now_period.id}). / "
                       f"The period {period.id} has not started yet (now: {now_period.id}).",
                       [{"field": "period", "message": f"{period.id} is in the future"}])
    if period.start < EARLIEST:
        raise _invalid("period", f"Perioden {period.id} ligger före {EARLIEST_YEAR}. / "
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
    """An earlier accepted report as the ledger knows it: what a correction of it is judged by."""

    area_id: str
    municipality_id: str
    reporter_id: str


class Lookups:
    """What ``validate_report`` found for the earlier reports of one call (one organisation snapshot).

    The reports of a batch share caller, area, checklist and receipt time: the rights, the area and
    checklist, the period and its deadline are looked up once per combination, not per report.
    Only what passed is kept; a refusal is worked out (and worded) again each time.
    """

    def __init__(self) -> None:
        self.where: dict[tuple[int, str, str, bool], _Where] = {}
        self.when: dict[tuple[str, str | None, datetime], tuple[Period, str, bool]] = {}


_Where = tuple[Area, Municipality, Checklist, dict[str, ChecklistItem]]


def validate_report(req: ReportIn, *, caller: Principal, snapshot: OrgSnapshot, received_at: datetime,
                    known_reports: Mapping[str, KnownReport], lookups: Lookups | None = None) -> Accepted:
    """Check a report against the organisation and its checklist; raises ReportRejected.

    ``known_reports`` holds earlier accepted reports that ``supersedes`` may name; a correction is
    judged by who sent the original, not by the corrector's areas (see ``check_correction``).
    ``lookups`` (one per snapshot and call; it keys callers by ``id``) spares repeated look-ups in a batch.
    """
    correction = req.supersedes is not None
    if correction:
        check_correction(req, caller, known_reports)
    key = (id(caller), req.area_id, req.checklist, correction)
    where = lookups.where.get(key) if lookups is not None else None
    if where is None:
        where = _where(req, caller, snapshot, assigned=not correction)
        if lookups is not None:
            lookups.where[key] = where
    area, municipality, checklist, items = where
    errors: list[dict[str, Any]] = []
    if not req.answers and not req.nothing_to_report:
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
        if ans.places:
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
        raise _invalid("validation", "Rapporten är ogiltig; se errors. / The report is invalid; see errors.",
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
    return Accepted(fields=data, municipality_id=municipality.id, period=period, late=late)


def _check_free_text(texts: dict[str, str]) -> None:
    """Refuse notes with control characters (line breaks and tabs may stay) or personal data."""
    bad = free_text_errors(texts, multiline=set(texts))
    if not bad:
        return
    fields = ", ".join(dict.fromkeys(e["field"] for e in bad))
    if any(e["reason"] == "control_character" for e in bad):
        raise _invalid("control_character", f"Fritext innehåller otillåtna tecken ({fields}). / "
                       f"Free text holds characters that are not allowed ({fields}).", bad)
    raise _invalid("personal_data", f"Fritext får inte identifiera personer ({fields}). / "
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
        raise _invalid("supersedes", "En rapport kan inte rätta sig själv. / A report cannot correct itself.",
                       [{"field": "supersedes", "message": "the report's own id"}])
    original = known_reports.get(sup) if sup is not None else None
    if original is None and "admin" in caller.roles:
        raise _invalid("supersedes", f"supersedes {sup!r} är inte en tidigare godtagen rapport. / "
                       f"supersedes {sup!r} is not an earlier accepted report.",
                       [{"field": "supersedes", "message": "unknown report"}])
    if original is None or not may_correct(caller, original):
        raise ReportRejected(403, "correction_forbidden", "Forbidden",
                             "Du kan bara rätta dina egna rapporter (som nyckelfunktion även andras i din kommun). / "
                             "You can only correct your own reports (as a key function, also others' in your "
                             "municipality).",
                             [{"field": "supersedes", "message": "not a report you may correct"}])
    if original.area_id != req.area_id:
        raise _invalid("supersedes", f"Rapporten som rättas gäller området {original.area_id}, inte {req.area_id}. "
                       f"/ The corrected report is about area {original.area_id}, not {req.area_id}.",
                       [{"field": "area_id", "message": f"the corrected report's area is {original.area_id}"}])


def _may_report(caller: Principal) -> None:
    if not caller.has_role(*REPORTER_ROLES):
        raise ReportRejected(403, "forbidden", "Forbidden",
                             "Rapporter kräver rollen reporter eller key_function. / "
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
        raise _invalid("control_character", "Ett id innehåller ett kontrolltecken; se errors. / "
                       "An id holds a control character; see errors.", bad)
    area = snapshot.areas.get(req.area_id)
    if area is None:
        if "admin" not in caller.roles:  # do not reveal to others which areas exist
            raise ReportRejected(403, "forbidden", "Forbidden",
                                 f"Du är inte tilldelad området {req.area_id!r}. / "
                                 f"You are not assigned to area {req.area_id!r}.")
        raise _invalid("unknown_area", f"Okänt område {req.area_id!r}. / Unknown area {req.area_id!r}.",
                       [{"field": "area_id", "message": "unknown area"}])
    if assigned and not caller.may_see_area(area.id):
        raise ReportRejected(403, "forbidden", "Forbidden",
                             f"Du är inte tilldelad området {area.id!r}. / You are not assigned to area {area.id!r}.")
    municipality = snapshot.municipalities[area.municipality_id]
    checklist = snapshot.checklist(req.checklist)
    if checklist is None:
        raise _invalid("unknown_checklist", f"Okänd checklista {req.checklist!r}. / Unknown checklist "
                       f"{req.checklist!r}.", [{"field": "checklist", "message": "unknown checklist"}])
    return area, municipality, checklist, _items_of(checklist)


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
