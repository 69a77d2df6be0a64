"""Organisation rules as plain functions: the organisation file (YAML or JSON), its validation, the snapshot
it builds, the start-up file rule and the principals of a snapshot.

Nothing here touches HTTP, the bus or the database; the handlers feed it data and act on its answers.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from est_shared.checklists import BUILTIN_CHECKLISTS, LEVELS, Checklist
from est_shared.errors import Conflict, Invalid, NotFound
from est_shared.freetext import free_text_errors, has_control_characters
from est_shared.geo import GeometryError, area_geometry, crs_of, place_location
from est_shared.org import (
    Actor,
    ActorKind,
    AlertRules,
    ApiToken,
    Area,
    Municipality,
    OrgSnapshot,
    Person,
    Principal,
    Role,
    hash_token,
)
from est_shared.periods import DEFAULT_TIMEZONE
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


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


class PlaceDoc(_Doc):
    """A place with where it is: ``{name: torget, location: {type: Point, coordinates: [14.80, 56.88]}}``."""

    name: Place
    location: dict[str, Any] | None = Field(default=None, description="a GeoJSON Point (WGS 84 or SWEREF 99 TM, "
                                                                      "``crs``)")


class AreaDoc(_Doc):
    """An area in the organisation file."""

    id: str = Field(pattern=ID_PATTERN)
    name: Name
    cadence: Literal["weekly", "biweekly"] = "weekly"
    places: list[Place | PlaceDoc] = Field(default_factory=list, max_length=MAX_PLACES,
                                           description="place names, or {name, location} with a GeoJSON Point")
    replaces: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=list, max_length=50, description="ids of areas this one replaces (a split or a merge)")
    geometry: dict[str, Any] | None = Field(default=None, description="the area's outline: a GeoJSON Polygon or "
                                                                      "MultiPolygon (WGS 84 or SWEREF 99 TM, ``crs``)")

    @property
    def place_names(self) -> list[str]:
        return [p if isinstance(p, str) else p.name for p in self.places]


CHECKLIST_REF = r"^[a-z0-9][a-z0-9-]{0,39}@[1-9][0-9]{0,5}$"


class MunicipalityDoc(_Doc):
    """A municipality in the organisation file."""

    id: str = Field(pattern=ID_PATTERN)
    name: Name
    analysis_period: Literal["tertial", "quarter"] = "tertial"
    timezone: str = Field(default=DEFAULT_TIMEZONE, max_length=64)
    deadline_weekday: int = Field(default=0, ge=0, le=6)
    deadline_time: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    areas: list[AreaDoc] = Field(default_factory=list)
    checklist: str | None = Field(default=None, pattern=CHECKLIST_REF,
                                  description="id@version its reporters fill in (default: est-standard@1)")
    accepted_checklists: list[Annotated[str, StringConstraints(pattern=CHECKLIST_REF)]] = Field(
        default_factory=list, max_length=20, description="older versions still accepted")
    publish_min_completeness: float | None = Field(default=None, ge=0, le=1)
    alerts: AlertRules = Field(default_factory=AlertRules)
    crs: str | int | None = Field(default=None, description="the coordinate system of its areas' geometry and "
                                                            "places' locations: EPSG:4326 (WGS 84, the default) "
                                                            "or EPSG:3006 (SWEREF 99 TM)")

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
    successor: str | None = Field(default=None, max_length=100,
                                  description="person id who takes over their subscriptions when they leave")


CHECKLIST_VIEW_KEYS = frozenset({"ref", "answer_types", "levels", "note_max_length", "note_hint", "areas"})
"""What ``GET /v1/checklists/{ref}`` adds to a checklist version (derived, or the caller's): read back from an
organisation file, they are left out, so the answer an administrator reads may be written back as it is."""


class OrgDoc(_Doc):
    """The whole organisation file (``subscriptions`` are passed on to the notifier in the snapshot)."""

    checklists: list[Checklist] = Field(default_factory=list, max_length=200,
                                        description="checklist versions, in the shape GET /v1/checklists/{ref} gives")

    @field_validator("checklists", mode="before")
    @classmethod
    def _as_read(cls, v: Any) -> Any:
        """A checklist as the API gives it: the keys of ``CHECKLIST_VIEW_KEYS`` are not part of the version."""
        if isinstance(v, list):
            return [{k: x for k, x in c.items() if k not in CHECKLIST_VIEW_KEYS} if isinstance(c, dict) else c
                    for c in v]
        return v
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
            for k, p in enumerate(a.place_names):
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


def _checklist_errors(declared: list[Checklist], known: Mapping[str, Checklist]) -> list[dict[str, str]]:
    """The declared checklist versions' own rules: at least one item, item and group codes unique, an item's
    ``group`` one of the groups, ``scale`` on level items (steps 0-3), and every ``continues`` code an item of
    an earlier version of the same checklist or of another known checklist (``known``: those of the
    organisation so far; the built-in ones and the file's own count too)."""
    errors: list[dict[str, str]] = []
    every = {**BUILTIN_CHECKLISTS, **known, **{c.ref: c for c in declared}}

    def twice(codes: list[str]) -> list[str]:
        return sorted({c for c in codes if codes.count(c) > 1})

    for i, cl in enumerate(declared):
        at = f"checklists.{i}"
        if not cl.items:
            errors.append({"field": f"{at}.items", "message": "en checklista behöver minst en punkt / "
                                                              "a checklist needs at least one item"})
        groups = [g.code for g in cl.groups]
        for code in twice(groups):
            errors.append({"field": f"{at}.groups", "message": f"gruppen {code!r} finns två gånger / "
                                                               f"the group {code!r} is declared twice"})
        for code in twice([it.code for it in cl.items]):
            errors.append({"field": f"{at}.items", "message": f"punkten {code!r} finns två gånger / "
                                                              f"the item {code!r} is declared twice"})
        earlier = {it.code for c in every.values() if c.id != cl.id or c.version < cl.version for it in c.items}
        shown_groups = ", ".join(groups) or "–"
        for j, item in enumerate(cl.items):
            where = f"{at}.items.{j}"
            if item.group is not None and item.group not in groups:
                errors.append({"field": f"{where}.group",
                               "message": f"gruppen {item.group!r} finns inte bland checklistans groups "
                                          f"({shown_groups}) / the group {item.group!r} is not one of the "
                                          f"checklist's groups ({shown_groups})"})
            if item.scale is not None and item.answer != "level":
                errors.append({"field": f"{where}.scale", "message": "scale gäller bara nivåpunkter (answer: level) "
                                                                     "/ scale applies to level items only"})
            elif item.scale is not None and set(item.scale) - set(LEVELS):
                errors.append({"field": f"{where}.scale", "message": "en nivåskalas steg är 0, 1, 2 och 3 / "
                                                                     "a level scale's steps are 0, 1, 2 and 3"})
            for k, code in enumerate(item.continues):
                if code not in earlier:
                    errors.append({"field": f"{where}.continues.{k}",
                                   "message": f"punkten {code!r} finns inte i någon tidigare version av {cl.id} "
                                              f"eller i en annan känd checklista / the item {code!r} is in no "
                                              f"earlier version of {cl.id} nor in another known checklist"})
    return errors


def _geo_error(field: str, exc: GeometryError) -> dict[str, str]:
    return {"field": field, "reason": "geometry", "message": str(exc)}


def _geometry_errors(m: MunicipalityDoc, at: str) -> list[dict[str, str]]:
    """A municipality's ``crs`` and its areas' geometry and places' locations (``geo`` checks each)."""
    try:
        crs = crs_of(m.crs)
    except GeometryError as exc:
        return [_geo_error(f"{at}.crs", exc)]
    errors: list[dict[str, str]] = []
    for j, a in enumerate(m.areas):
        if a.geometry is not None:
            try:
                area_geometry(a.geometry, crs)
            except GeometryError as exc:
                errors.append(_geo_error(f"{at}.areas.{j}.geometry", exc))
        for k, p in enumerate(a.places):
            if not isinstance(p, str) and p.location is not None:
                try:
                    place_location(p.location, crs)
                except GeometryError as exc:
                    errors.append(_geo_error(f"{at}.areas.{j}.places.{k}.location", exc))
    return errors


def _area_coordinates(m: MunicipalityDoc, a: AreaDoc) -> tuple[dict[str, Any] | None, dict[str, list[float]]]:
    """An area's geometry and its places' locations in WGS 84 (validated already: ``_geometry_errors``)."""
    crs = crs_of(m.crs)
    geometry = area_geometry(a.geometry, crs) if a.geometry is not None else None
    return geometry, {p.name: place_location(p.location, crs) for p in a.places
                      if not isinstance(p, str) and p.location is not None}


def validate_org(doc: dict[str, Any], known_checklists: Mapping[str, Checklist] | None = None) -> OrgDoc:
    """Check an organisation mapping: shapes, texts, unique ids across the org, and every reference.

    ``known_checklists``: the checklist versions the organisation holds already (a file may name them
    without declaring them again, and an item may continue their items' series).
    """
    known = known_checklists or {}
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
            names = a.place_names
            if len(set(names)) != len(names):
                dup = {p for p in names if names.count(p) > 1}
                errors.append({"field": f"municipalities.{i}.areas.{j}.places",
                               "message": f"places listed twice: {', '.join(sorted(dup))}"})
            for k, place in enumerate(names):
                if not place:
                    errors.append({"field": f"municipalities.{i}.areas.{j}.places.{k}", "message": "empty place"})
        errors.extend(_geometry_errors(m, f"municipalities.{i}"))
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
        for k, where in enumerate(p.areas):
            if where not in area_ids and where not in muni_ids:
                errors.append({"field": f"people.{i}.areas.{k}",
                               "message": f"unknown area or municipality {where!r}"})
        if p.token and p.token_sha256:
            errors.append({"field": f"people.{i}.token", "message": "give token or token_sha256, not both"})
        digest = person_token_hash(p)
        if digest:
            if digest in tokens:
                errors.append({"field": f"people.{i}.token", "message": f"the same token as {tokens[digest]}"})
            tokens[digest] = f"person {p.id}"
    person_ids = {p.id for p in org.people}
    for i, p in enumerate(org.people):
        if p.successor is not None and (p.successor not in person_ids or p.successor == p.id):
            errors.append({"field": f"people.{i}.successor",
                           "message": f"efterträdaren {p.successor!r} finns inte bland personerna / "
                                      f"the successor {p.successor!r} is not one of the people"})
    declared: dict[str, int] = {}
    for i, cl in enumerate(org.checklists):
        if cl.ref in declared:
            errors.append({"field": f"checklists.{i}", "message": f"{cl.ref} finns två gånger i filen / "
                                                                  f"{cl.ref} is declared twice"})
        declared[cl.ref] = i
    errors.extend(_checklist_errors(org.checklists, known))
    known_refs = set(declared) | set(BUILTIN_CHECKLISTS) | set(known)
    for i, m in enumerate(org.municipalities):
        if m.checklist and m.checklist not in known_refs:
            errors.append({"field": f"municipalities.{i}.checklist",
                           "message": f"okänd checklista {m.checklist} / unknown checklist {m.checklist}"})
        for k, ref in enumerate(m.accepted_checklists):
            if ref not in known_refs:
                errors.append({"field": f"municipalities.{i}.accepted_checklists.{k}",
                               "message": f"okänd checklista {ref} / unknown checklist {ref}"})
    if errors:
        raise OrgInvalid(errors)
    return org


def merged_checklists(previous: dict[str, Checklist], declared: list[Checklist]) -> dict[str, Checklist]:
    """The checklist versions after a file: every earlier one kept, new ones added; OrgInvalid when a
    version that exists is declared with another content (``id@version`` never changes)."""
    out = dict(previous)
    errors: list[dict[str, str]] = []
    for i, cl in enumerate(declared):
        had = out.get(cl.ref) or BUILTIN_CHECKLISTS.get(cl.ref)
        if had is not None and had != cl:
            errors.append({"field": f"checklists.{i}",
                           "message": f"{cl.ref} finns redan och ändras inte; gör en ny version "
                                      f"({cl.id}@{cl.version + 1}) / {cl.ref} exists and cannot change; make a new "
                                      f"version ({cl.id}@{cl.version + 1})"})
        out[cl.ref] = cl
    if errors:
        raise OrgInvalid(errors)
    return out


def person_token_hash(p: PersonDoc) -> str | None:
    """The stored form of a person's token: SHA-256 hex."""
    if p.token:
        return hash_token(p.token)
    return p.token_sha256.lower() if p.token_sha256 else None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def build_snapshot(doc: dict[str, Any], previous: OrgSnapshot | None, now: datetime | None = None,
                   ) -> tuple[OrgSnapshot, list[str]]:
    """The snapshot an organisation file describes and the changes against ``previous``.

    The version is ``previous.version + 1`` only when the content differs; applying the same file
    again returns ``previous`` unchanged with no changes (idempotent apply). ``now`` is when the version
    takes effect: an area new in it is held ``since`` then (areas of the first version since always).
    """
    prev = previous or OrgSnapshot()
    org = validate_org(doc, prev.checklists)
    checklists = merged_checklists(dict(prev.checklists), org.checklists)
    municipalities: dict[str, Municipality] = {}
    areas: dict[str, Area] = {}
    for m in org.municipalities:
        for a in m.areas:
            before = prev.areas.get(a.id)
            since = before.since if before is not None else (now if prev.version > 0 else None)
            geometry, located = _area_coordinates(m, a)
            areas[a.id] = Area(id=a.id, name=a.name, municipality_id=m.id, cadence=a.cadence,
                               places=_unique(a.place_names), replaces=_unique(a.replaces), since=since,
                               geometry=geometry, place_locations=located)
        municipalities[m.id] = Municipality(
            id=m.id, name=m.name, timezone=m.timezone, analysis_period=m.analysis_period,
            deadline_weekday=m.deadline_weekday, deadline_time=m.deadline_time, area_ids=[a.id for a in m.areas],
            checklist=m.checklist, accepted_checklists=_unique(m.accepted_checklists),
            publish_min_completeness=m.publish_min_completeness, alerts=m.alerts)
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
                              token_sha256=person_token_hash(p), successor=p.successor)
    handovers = {**prev.handovers, **{p.id: p.successor for p in people.values() if p.successor}}
    candidate = OrgSnapshot(version=prev.version + 1, municipalities=municipalities, areas=areas, actors=actors,
                            people=people, checklists=checklists, current_checklist=prev.current_checklist,
                            subscriptions=list(org.subscriptions or []), handovers=handovers,
                            tokens=kept_tokens(prev, people), applied_at=now)
    # the diff compares everything the file sets: no change, same content
    changes = diff_snapshots(prev if prev.version > 0 else None, candidate)
    if prev.version > 0 and not changes:
        return prev, []
    return candidate, changes


def org_document(snapshot: OrgSnapshot) -> dict[str, Any]:
    """The organisation file that describes ``snapshot``: applied back as it is, it makes no new version
    (``GET /v1/admin/org/document``). Tokens appear as ``token_sha256``; the checklists the organisation
    declared are listed (the built-in ones are known anyway). A person's areas are written as their
    municipality where they hold every area of it (as ``areas: [vaxjo]`` declares), else area by area;
    issued tokens, hand-overs and when areas began are kept by the intake, not written.
    """
    municipalities = []
    for m in snapshot.municipalities.values():
        areas = [snapshot.areas[a] for a in m.area_ids if a in snapshot.areas]
        municipalities.append({
            "id": m.id, "name": m.name, "analysis_period": m.analysis_period, "timezone": m.timezone,
            "deadline_weekday": m.deadline_weekday, "deadline_time": m.deadline_time,
            "areas": [{"id": a.id, "name": a.name, "cadence": a.cadence, "places": list(a.places),
                       "replaces": list(a.replaces)} for a in areas],
            "checklist": m.checklist, "accepted_checklists": list(m.accepted_checklists),
            "publish_min_completeness": m.publish_min_completeness, "alerts": m.alerts.model_dump(mode="json")})
    people = [{"id": p.id, "name": p.name, "actor": p.actor, "email": p.email, "roles": list(p.roles),
               "areas": _area_refs(snapshot, p), "token_sha256": p.token_sha256, "successor": p.successor}
              for p in snapshot.people.values()]
    return {
        "municipalities": municipalities,
        "actors": [{"id": a.id, "name": a.name, "kind": a.kind} for a in snapshot.actors.values()],
        "people": people,
        "checklists": [c.model_dump(mode="json", exclude_none=True) for ref, c in snapshot.checklists.items()
                       if ref not in BUILTIN_CHECKLISTS or BUILTIN_CHECKLISTS[ref] != c],
        "subscriptions": list(snapshot.subscriptions),
    }


def _area_refs(snapshot: OrgSnapshot, person: Person) -> list[str]:
    """A person's ``areas`` in a file: whole municipalities where that resolves to the same areas in the same
    order, else area by area (plus municipalities of no areas they work in)."""
    held = set(person.areas)
    empty = [m for m in person.municipalities
             if m in snapshot.municipalities and not snapshot.municipalities[m].area_ids]
    whole: list[str] = []
    for a in person.areas:
        area = snapshot.areas.get(a)
        m = snapshot.municipalities.get(area.municipality_id) if area else None
        ref = m.id if m is not None and m.area_ids and held.issuperset(m.area_ids) else a
        if ref not in whole:
            whole.append(ref)
    resolved = [x for ref in whole for x in
                (snapshot.municipalities[ref].area_ids if ref in snapshot.municipalities else [ref])]
    refs = whole if _unique(resolved) == list(person.areas) else list(person.areas)
    return [*refs, *empty]


def kept_tokens(prev: OrgSnapshot, people: dict[str, Person]) -> dict[str, ApiToken]:
    """The issued tokens an organisation file keeps: every one of a person still in it (the file does not
    list issued tokens; a removed person's tokens go with them)."""
    return {k: t for k, t in prev.tokens.items() if t.person_id in people}


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
    for ref in new.checklists:
        if ref not in (old.checklists if old else {}) and ref not in BUILTIN_CHECKLISTS:
            out.append(f"checklist {ref} added")
    for who, to in new.handovers.items():
        if (old.handovers if old else {}).get(who) != to:
            out.append(f"person {who} handed over to {to}")
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




# --- plain-text tokens in an organisation file ---------------------------------------------

_PLAIN_TOKEN_KEY = re.compile(r"""(?:^|[\s{,])["']?token["']?[ \t]*:""", re.MULTILINE)


def plain_token_count(text: str) -> int:
    """How many ``token:`` keys (plain-text tokens, for demos; ``token_sha256:`` is the normal way) an
    organisation file's text holds: YAML block or flow style, or JSON (each person has at most one)."""
    return len(_PLAIN_TOKEN_KEY.findall(text))


# --- personal API tokens issued through the API ---------------------------------------------
#
# An issued token is shown once, when it is made; the organisation keeps only its SHA-256
# (``OrgSnapshot.tokens``). Issuing and revoking make a new organisation version, announced like any
# other, so every service accepts (or refuses) the token within seconds.

MAX_TOKENS_PER_PERSON = 20
"""Most unexpired issued tokens one person may hold at once."""
MAX_TOKEN_NAME = 100


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token to issue: the plaintext (shown once) and what the organisation keeps of it."""

    plaintext: str
    token: ApiToken


def new_token(person_id: str, name: str, *, now: datetime, expires_at: datetime | None) -> NewToken:
    """A fresh random token for a person (32 random bytes, URL-safe) with a random id; raises
    Invalid for a name with a control character or an expiry that is not in the future."""
    if has_control_characters(name):
        raise Invalid("Namnet innehåller ett kontrolltecken.", "The name holds a control character.",
                      errors=[{"field": "name", "message": "a control character is not allowed here"}])
    if expires_at is not None and expires_at <= now:
        raise Invalid("expires_at måste ligga i framtiden.", "expires_at must be in the future.",
                      errors=[{"field": "expires_at", "message": "in the past"}])
    plaintext = secrets.token_urlsafe(32)
    return NewToken(plaintext=plaintext, token=ApiToken(
        id=f"tok-{secrets.token_hex(8)}", person_id=person_id, name=name, sha256=hash_token(plaintext),
        created_at=now, expires_at=expires_at))


def no_such_person(person_id: str) -> NotFound:
    """The refusal for a person who is not in the organisation."""
    return NotFound(f"Personen {person_id!r} finns inte.", f"The person {person_id!r} does not exist.")


def _next_version(prev: OrgSnapshot, tokens: dict[str, ApiToken], now: datetime) -> OrgSnapshot:
    return prev.model_copy(update={"version": prev.version + 1, "tokens": tokens, "applied_at": now})


def with_issued_token(prev: OrgSnapshot | None, new: NewToken, now: datetime) -> tuple[OrgSnapshot, list[str]]:
    """The next version with a token issued (and the person's expired ones dropped); raises NotFound
    when the person is not in the organisation, Conflict when they hold ``MAX_TOKENS_PER_PERSON`` already."""
    person_id = new.token.person_id
    if prev is None or person_id not in prev.people:
        raise no_such_person(person_id)
    expired = [t.id for t in prev.tokens.values()
               if t.person_id == person_id and t.expires_at is not None and t.expires_at <= now]
    tokens = {k: t for k, t in prev.tokens.items() if k not in expired}
    if sum(1 for t in tokens.values() if t.person_id == person_id) >= MAX_TOKENS_PER_PERSON:
        raise Conflict(f"Personen har redan {MAX_TOKENS_PER_PERSON} token; återkalla någon först.",
                       f"The person holds {MAX_TOKENS_PER_PERSON} tokens already; revoke one first.")
    tokens[new.token.id] = new.token
    changes = [f"token {t} of person {person_id} expired, removed" for t in expired]
    return _next_version(prev, tokens, now), [f"token {new.token.id} issued to person {person_id}", *changes]


def without_token(prev: OrgSnapshot | None, person_id: str, token_id: str, now: datetime,
                  ) -> tuple[OrgSnapshot, list[str]]:
    """The next version without a person's issued token; raises NotFound when they hold no such one."""
    token = prev.tokens.get(token_id) if prev is not None else None
    if prev is None or token is None or token.person_id != person_id:
        raise NotFound(f"Token {token_id!r} finns inte för personen.", f"The person holds no token {token_id!r}.")
    tokens = {k: t for k, t in prev.tokens.items() if k != token_id}
    return _next_version(prev, tokens, now), [f"token {token_id} of person {person_id} revoked"]


def person_tokens(snapshot: OrgSnapshot, person_id: str, *, now: datetime,
                  last_used: dict[str, datetime]) -> list[dict[str, Any]]:
    """A person's issued tokens as listed (never the token or its hash), oldest first."""
    out = []
    for t in sorted((t for t in snapshot.tokens.values() if t.person_id == person_id), key=lambda t: t.created_at):
        used = last_used.get(t.id)
        out.append({"id": t.id, "name": t.name, "created_at": t.created_at.isoformat(),
                    "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                    "expired": t.expires_at is not None and t.expires_at <= now,
                    "last_used_at": used.isoformat() if used else None})
    return out
