"""The organisation as every service sees it: the snapshot ``est.org.changed`` announces.

The intake owns the organisation (it applies organisation files and stores history); the other
services keep the latest snapshot from the ORG stream to authenticate callers and to know areas,
places, cadences and expected reporters. Tokens travel only as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from est_shared.checklists import BUILTIN_CHECKLISTS, DEFAULT_CHECKLIST, Checklist
from est_shared.clock import Clock, SystemClock
from est_shared.periods import DEFAULT_TIMEZONE, Period, deadline

Role = Literal["reporter", "key_function", "beredningsgrupp", "styrgrupp", "police", "social_services", "admin"]
ROLE_NAMES: dict[str, dict[str, str]] = {
    "reporter": {"sv": "rapportör", "en": "reporter"},
    "key_function": {"sv": "nyckelfunktion", "en": "key function"},
    "beredningsgrupp": {"sv": "beredningsgrupp", "en": "preparation group"},
    "styrgrupp": {"sv": "styrgrupp", "en": "steering group"},
    "police": {"sv": "polis", "en": "police"},
    "social_services": {"sv": "socialtjänst", "en": "social services"},
    "admin": {"sv": "administratör", "en": "administrator"},
}
"""What people call each role, in Swedish and English (answers and pages name roles, never codes)."""
ActorKind = Literal[
    "municipality", "police", "property_company", "security_company", "rescue_service",
    "social_services", "association", "other",
]


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token, as stored and compared."""
    return hashlib.sha256(token.encode()).hexdigest()


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def period_deadline(municipality: Municipality, period: Period) -> datetime:
    """When a reporting period closes: the municipality's deadline after its end, in local time."""
    hh, mm = municipality.deadline_time.split(":")
    return deadline(period, weekday=municipality.deadline_weekday, at=time(int(hh), int(mm)),
                    tz=municipality.timezone)


class Area(_Frozen):
    id: str
    name: str
    municipality_id: str
    cadence: Literal["weekly", "biweekly"] = "weekly"
    places: list[str] = Field(default_factory=list)
    replaces: list[str] = Field(default_factory=list,
                                description="areas this one replaces (a split or a merge): their history is its own")
    since: datetime | None = Field(default=None, description="when the organisation first held the area "
                                                             "(None: before the first version recorded)")
    geometry: dict[str, Any] | None = Field(default=None, description="the area's outline: a GeoJSON Polygon or "
                                                                      "MultiPolygon in WGS 84 (lon/lat)")
    place_locations: dict[str, list[float]] = Field(default_factory=dict,
                                                    description="place → [longitude, latitude] (WGS 84)")


AlertKind = Literal["high", "rising", "new"]


class AlertRuleOverride(_Frozen):
    """An item's departures from its municipality's alert rule (unset fields follow the municipality's)."""

    raise_on: list[AlertKind] | None = None
    rising_periods: int | None = Field(default=None, ge=1, le=52)
    quiet_periods: int | None = Field(default=None, ge=1, le=52)
    critical_at: float | None = Field(default=None, ge=0)
    enabled: bool | None = None


class AlertRule(_Frozen):
    """When an item's flags become an alert (``se.est.alert.raised``) and when the alert ends."""

    raise_on: list[AlertKind] = Field(default_factory=lambda: list[AlertKind](["high", "rising"]),
                                      description="flags that may raise an alert")
    rising_periods: int = Field(default=3, ge=1, le=52,
                                description="a rising value raises only after rising this many periods in a row")
    quiet_periods: int = Field(default=3, ge=1, le=52,
                               description="an alert ends after this many published periods without the flag "
                                           "(3: with 2, the demo's year re-raised 44 % of its alerts within "
                                           "four weeks of their end; bench/alert_rate.py)")
    critical_at: float | None = Field(default=None, ge=0,
                                      description="a value at or above this makes the alert critical")
    enabled: bool = True

    def with_override(self, o: AlertRuleOverride | None) -> AlertRule:
        if o is None:
            return self
        return self.model_copy(update={k: v for k, v in o.model_dump().items() if v is not None})


class AlertRules(_Frozen):
    """A municipality's alert rules: a default and per-item overrides (by checklist item code)."""

    default: AlertRule = Field(default_factory=AlertRule)
    items: dict[str, AlertRuleOverride] = Field(default_factory=dict)

    def for_item(self, code: str) -> AlertRule:
        return self.default.with_override(self.items.get(code))


class Municipality(_Frozen):
    id: str
    name: str
    timezone: str = DEFAULT_TIMEZONE
    analysis_period: Literal["tertial", "quarter"] = "tertial"
    deadline_weekday: int = Field(default=0, ge=0, le=6, description="0=Monday: day after the period when it closes")
    deadline_time: str = Field(default="09:00", pattern=r"^\d{2}:\d{2}$", description="local time of the deadline")
    area_ids: list[str] = Field(default_factory=list)
    checklist: str | None = Field(default=None, description="id@version its reporters fill in "
                                                            "(None: the organisation's current checklist)")
    accepted_checklists: list[str] = Field(
        default_factory=list, description="older id@version it still accepts reports against (besides ``checklist``)")
    publish_min_completeness: float | None = Field(
        default=None, ge=0, le=1, description="share of expected reports below which publishing needs confirmation "
                                              "(None: the aggregator's EST_AGGREGATOR_PUBLISH_MIN_COMPLETENESS)")
    alerts: AlertRules = Field(default_factory=AlertRules)


class Actor(_Frozen):
    id: str
    name: str
    kind: ActorKind = "other"


class Person(_Frozen):
    id: str
    name: str
    actor: str
    email: str | None = None
    roles: list[Role] = Field(default_factory=list)
    areas: list[str] = Field(default_factory=list, description="resolved area ids")
    municipalities: list[str] = Field(default_factory=list, description="municipalities they work in")
    token_sha256: str | None = None
    successor: str | None = Field(default=None, description="the person who takes over their subscriptions "
                                                            "and deliveries when they leave")


class ApiToken(_Frozen):
    """A personal API token issued through the API (only its SHA-256 travels)."""

    id: str
    person_id: str
    name: str
    sha256: str
    created_at: datetime
    expires_at: datetime | None = None


class OrgSnapshot(_Frozen):
    """The whole organisation at one version."""

    version: int = 0
    municipalities: dict[str, Municipality] = Field(default_factory=dict)
    areas: dict[str, Area] = Field(default_factory=dict)
    actors: dict[str, Actor] = Field(default_factory=dict)
    people: dict[str, Person] = Field(default_factory=dict)
    checklists: dict[str, Checklist] = Field(default_factory=lambda: dict(BUILTIN_CHECKLISTS),
                                             description="id@version -> checklist")
    current_checklist: str = DEFAULT_CHECKLIST.ref
    subscriptions: list[dict[str, Any]] = Field(
        default_factory=list, description="subscriptions declared in the organisation file (the notifier owns them)")
    handovers: dict[str, str] = Field(default_factory=dict,
                                      description="person id -> successor's person id, kept after the person is gone")
    tokens: dict[str, ApiToken] = Field(default_factory=dict, description="token id -> issued personal API token")
    applied_at: datetime | None = Field(default=None, description="when this version took effect")

    def checklist(self, ref: str) -> Checklist | None:
        """A checklist version by ``id@version`` (built-in ones always known)."""
        return self.checklists.get(ref) or BUILTIN_CHECKLISTS.get(ref)

    def checklist_ref_for(self, municipality_id: str) -> str:
        """The ``id@version`` a municipality's reporters fill in."""
        m = self.municipalities.get(municipality_id)
        return (m.checklist if m and m.checklist else None) or self.current_checklist

    def checklist_versions_for(self, municipality_id: str) -> list[Checklist]:
        """The checklists a municipality's items, labels and series are read from, newest first: the one in
        force, those it still accepts, then the other known versions of their ids (highest version first)."""
        m = self.municipalities.get(municipality_id)
        refs = [self.checklist_ref_for(municipality_id), *(m.accepted_checklists if m else [])]
        named = [cl for ref in dict.fromkeys(refs) if (cl := self.checklist(ref)) is not None]
        ids, seen = {cl.id for cl in named}, {cl.ref for cl in named}
        known = {**BUILTIN_CHECKLISTS, **self.checklists}
        older = sorted((cl for ref, cl in known.items() if cl.id in ids and ref not in seen),
                       key=lambda cl: (cl.id, -cl.version))
        return [*named, *older]

    def accepts_checklist(self, municipality_id: str, ref: str) -> bool:
        """Whether a municipality accepts a report against ``ref`` (its own or one it still accepts)."""
        m = self.municipalities.get(municipality_id)
        return ref == self.checklist_ref_for(municipality_id) or bool(m and ref in m.accepted_checklists)

    def reporters_for(self, area_id: str) -> list[Person]:
        """People expected to report for an area."""
        return [p for p in self.people.values() if "reporter" in p.roles and area_id in p.areas]


@dataclass(frozen=True, slots=True)
class SnapshotBlob:
    """A snapshot in its stored form (JSON bytes) with the object name and digest ``est.org.changed`` carries."""

    version: int
    data: bytes
    sha256: str

    @property
    def name(self) -> str:
        """The object's name: the version and (part of) the digest, so one name always means one content."""
        return f"v{self.version}.{self.sha256[:32]}"

    @classmethod
    def of(cls, snapshot: OrgSnapshot) -> SnapshotBlob:
        data = snapshot.model_dump_json().encode()
        return cls(version=snapshot.version, data=data, sha256=hashlib.sha256(data).hexdigest())


def snapshot_version(name: str) -> int | None:
    """The version in an object name made by ``SnapshotBlob.name`` (None for another name)."""
    head = name.split(".", 1)[0]
    return int(head[1:]) if head.startswith("v") and head[1:].isdigit() else None


class Principal(_Frozen):
    """The authenticated caller."""

    person_id: str
    name: str
    actor_id: str
    actor_kind: ActorKind
    roles: list[Role]
    areas: list[str]
    municipalities: list[str]

    def has_role(self, *roles: str) -> bool:
        return "admin" in self.roles or any(r in self.roles for r in roles)

    def may_see_area(self, area_id: str) -> bool:
        return "admin" in self.roles or area_id in self.areas

    @property
    def sees_personal_data(self) -> bool:
        """Police and social services may see protected detail (uncoarsened counts)."""
        return bool({"police", "social_services"} & set(self.roles)) or self.actor_kind in (
            "police", "social_services")


class Directory:
    """Authenticates bearer tokens against the latest organisation snapshot: a person's token from the
    organisation file, or a personal API token issued through the API (``OrgSnapshot.tokens``) that has not
    expired by ``clock``. ``last_used`` remembers when each issued token last let someone in (this process)."""

    def __init__(self, snapshot: OrgSnapshot | None = None, clock: Clock | None = None) -> None:
        self._by_hash: dict[str, Person] = {}
        self._issued: dict[str, ApiToken] = {}
        self.clock: Clock = clock or SystemClock()
        self.last_used: dict[str, datetime] = {}
        self.snapshot = OrgSnapshot()
        if snapshot:
            self.replace(snapshot)

    def replace(self, snapshot: OrgSnapshot) -> None:
        """Swap in a newer snapshot (older ones are ignored)."""
        if snapshot.version < self.snapshot.version:
            return
        self.snapshot = snapshot
        self._by_hash = {p.token_sha256: p for p in snapshot.people.values() if p.token_sha256}
        self._issued = {t.sha256: t for t in snapshot.tokens.values() if t.person_id in snapshot.people}
        self.last_used = {k: at for k, at in self.last_used.items() if k in snapshot.tokens}

    @property
    def loaded(self) -> bool:
        return self.snapshot.version > 0

    def authenticate(self, token: str) -> Principal | None:
        """The principal for a plaintext token, or None."""
        digest = hash_token(token)
        person = self._by_hash.get(digest)
        if person is None:
            issued = self._issued.get(digest)
            if issued is None:
                return None
            now = self.clock.now()
            if issued.expires_at is not None and issued.expires_at <= now:
                return None
            person = self.snapshot.people[issued.person_id]
            self.last_used[issued.id] = now
        actor = self.snapshot.actors.get(person.actor)
        return Principal(
            person_id=person.id, name=person.name, actor_id=person.actor,
            actor_kind=actor.kind if actor else "other", roles=list(person.roles),
            areas=list(person.areas), municipalities=list(person.municipalities),
        )
