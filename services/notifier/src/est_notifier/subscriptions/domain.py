"""Subscription rules as plain functions: matching, the form of a webhook URL, scope authorisation, who may
keep a subscription and what a recipient may see of an event."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from est_shared.errors import Forbidden, Invalid
from est_shared.freetext import has_control_characters
from est_shared.org import Principal

EventKind = Literal["picture.published", "alert.raised", "alert.resolved", "analysis.published",
                    "forfeiture.notification_due"]
EVENT_KINDS: tuple[str, ...] = ("picture.published", "alert.raised", "alert.resolved", "analysis.published")
PERSONAL_KINDS: tuple[str, ...] = ("forfeiture.notification_due",)
"""Kinds carrying sealed personal data: only a social-services person of the municipality may subscribe."""
NOTIFICATION_TYPE = "se.est.forfeiture.notification_due"
PERSONAL_ROLE = "social_services"
TYPE_TO_KIND: dict[str, str] = {f"se.est.{k}": k for k in (*EVENT_KINDS, *PERSONAL_KINDS)}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class InvalidField(Invalid):
    """A request well-formed but not acceptable (unknown area, …), naming the field that breaks the rule as the
    API's own validation errors do."""

    def __init__(self, sv: str, en: str, *, field: str) -> None:
        super().__init__(sv, en, errors=[{"field": field, "message": en, "type": "value_error"}])
        self.field = field


# --- matching ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    """What an event is about: municipality, area (None for municipality-wide) and severity."""

    kind: str
    municipality_id: str
    area_id: str | None = None
    severity: str | None = None


@dataclass(frozen=True)
class SubscriptionView:
    """The parts of a subscription that decide matching and de-duplication."""

    id: str
    municipality_id: str
    area_ids: tuple[str, ...] = ()
    events: tuple[str, ...] = EVENT_KINDS
    channel_target: str = ""
    paused: bool = False
    min_severity: str | None = None
    created_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def event_kind(event_type: str) -> str | None:
    """``se.est.alert.raised`` → ``alert.raised``; None for types the notifier does not deliver."""
    return TYPE_TO_KIND.get(event_type)


def matches(sub: SubscriptionView, scope: Scope) -> bool:
    """Whether an event in ``scope`` is for this subscription."""
    if sub.paused or scope.kind not in sub.events or sub.municipality_id != scope.municipality_id:
        return False
    if scope.area_id is not None and sub.area_ids and scope.area_id not in sub.area_ids:
        return False
    if scope.kind.startswith("alert.") and sub.min_severity and scope.severity:
        return SEVERITY_RANK.get(scope.severity, 1) >= SEVERITY_RANK.get(sub.min_severity, 0)
    return True


def recipients(subs: Iterable[SubscriptionView], scope: Scope) -> list[SubscriptionView]:
    """Matching subscriptions, oldest first, one per channel target (an event reaches a target once)."""
    seen: set[str] = set()
    out = []
    for sub in sorted(subs, key=lambda s: (s.created_at, s.id)):
        if matches(sub, scope) and sub.channel_target not in seen:
            seen.add(sub.channel_target)
            out.append(sub)
    return out


def channel_target(channel: dict[str, str]) -> str:
    """A stable key of where a channel sends to: ``webhook:<url>`` or ``email:<address lowercased>``."""
    if channel["type"] == "webhook":
        return f"webhook:{channel['url'].strip()}"
    return f"email:{channel['to'].strip().lower()}"


# --- the form of a webhook URL ------------------------------------------------------------

WEBHOOK_URL_MAX = 590  # "webhook:" + the URL is the delivery ledger's channel_target, a column of 600
HOST_MAX = 253


def webhook_url_problem(url: str) -> tuple[str, str] | None:
    """Why a webhook URL is refused whatever it points at, as (English, Swedish); None if its form is fine.

    An http(s) URL of at most 2,000 characters, with a host and a valid port, without a user name or
    password (httpx would send them as Basic auth to whoever the host is), and without control characters,
    spaces or backslashes (CR/LF would split the request; parsers disagree about backslashes). Where the
    host points is the egress policy's question (``est_notifier.subscriptions.egress``).
    """
    if len(url) > WEBHOOK_URL_MAX:
        return (f"the URL is longer than {WEBHOOK_URL_MAX} characters",
                f"adressen är längre än {WEBHOOK_URL_MAX} tecken")
    if has_control_characters(url) or "\\" in url or any(
            c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp") for c in url):
        return ("the URL contains a control character, a space or a backslash",
                "adressen innehåller ett kontrolltecken, ett mellanslag eller ett omvänt snedstreck")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the URL or its port is malformed", "adressen eller dess port är felaktig"
    if parts.scheme.lower() not in ("http", "https"):
        return "the URL must start with http:// or https://", "adressen måste börja med http:// eller https://"
    if "@" in parts.netloc:
        return ("the URL may not hold a user name or password; the signature authenticates the notifier",
                "adressen får inte innehålla användarnamn eller lösenord; signaturen autentiserar notifiern")
    if not parts.hostname or len(parts.hostname) > HOST_MAX or "%" in parts.netloc or port == 0:
        return "the URL has no valid host", "adressen saknar en giltig värd"
    return None


def valid_webhook_url(url: str) -> bool:
    """An http(s) URL with a host, in a form a webhook may have (``webhook_url_problem``)."""
    return webhook_url_problem(url) is None


# --- scope authorisation -------------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    """The parts of an authenticated caller that decide what they may subscribe to."""

    person_id: str
    roles: tuple[str, ...]
    areas: tuple[str, ...]
    municipalities: tuple[str, ...] = ()

    @property
    def admin(self) -> bool:
        return "admin" in self.roles


def resolve_scope(caller: Caller, municipality_id: str, area_ids: list[str] | None, *,
                  municipality_areas: dict[str, list[str]]) -> list[str]:
    """The area ids to store for a requested scope (empty = every area); raises InvalidField or Forbidden.

    ``municipality_areas`` maps each known municipality to its areas (from the organisation).
    Without ``area_ids`` a caller gets every area of the municipality they may see: the municipality as a
    whole (``[]``, which also holds areas added to it later) when they see every area of it now and work in it
    (admins always), else the list of their areas in it.
    """
    if municipality_id not in municipality_areas:
        raise InvalidField(f"Okänd kommun {municipality_id!r}.", f"Unknown municipality {municipality_id!r}.",
                           field="scope.municipality_id")
    known = municipality_areas[municipality_id]
    if area_ids:
        unknown = [a for a in area_ids if a not in known]
        if unknown:
            raise InvalidField(f"Områden som inte hör till {municipality_id}: {', '.join(unknown)}.",
                               f"Areas not in {municipality_id}: {', '.join(unknown)}.", field="scope.area_ids")
        if not caller.admin:
            outside = [a for a in area_ids if a not in caller.areas]
            if outside:
                raise Forbidden(f"Du får inte prenumerera på områdena {', '.join(outside)}.",
                                f"You may not subscribe to areas {', '.join(outside)}.")
        return sorted(set(area_ids))
    if caller.admin:
        return []
    mine = sorted(a for a in known if a in caller.areas)
    if not mine:
        raise Forbidden(f"Du har inga områden i {municipality_id}.", f"You have no areas in {municipality_id}.")
    if municipality_id in caller.municipalities and len(mine) == len(set(known)):
        return []  # the whole municipality: an area added later is part of it
    return mine


def caller_for(snapshot: Any, person_id: str) -> Caller | None:
    """The organisation's current view of a person as a Caller (None if they are not in it)."""
    person = snapshot.people.get(person_id) if snapshot is not None else None
    if person is None:
        return None
    return Caller(person_id=person.id, roles=tuple(person.roles), areas=tuple(person.areas),
                  municipalities=tuple(person.municipalities))


def caller_of(p: Principal) -> Caller:
    """The parts of an authenticated caller that decide what they may receive."""
    return Caller(person_id=p.person_id, roles=tuple(p.roles), areas=tuple(p.areas),
                  municipalities=tuple(p.municipalities))


# --- who may keep a subscription ----------------------------------------------------------

END_REASONS: dict[str, tuple[str, str]] = {
    "role_lost": ("subscription ended: the owner's roles no longer receive one of its event kinds",
                  "prenumerationen avslutad: ägarens roller får inte längre ta emot en av dess händelsetyper"),
    "owner_removed": ("subscription ended: owner removed from the organisation",
                      "prenumerationen avslutad: ägaren är borttagen ur organisationen"),
    "scope_lost": ("subscription ended: owner may no longer see its areas",
                   "prenumerationen avslutad: ägaren får inte längre se dess områden"),
    "municipality_removed": ("subscription ended: its municipality left the organisation",
                             "prenumerationen avslutad: kommunen finns inte längre i organisationen"),
    "social_services_role_lost": ("subscription ended: owner is no longer social services of its municipality",
                                  "prenumerationen avslutad: ägaren är inte längre socialtjänst i kommunen"),
    "webhook_role_lost": ("subscription ended: owner may not use webhooks (key functions, police, social services "
                          "and admins may)", "prenumerationen avslutad: ägaren får inte använda webhooks "
                          "(nyckelfunktioner, polis, socialtjänst och administratörer får)"),
}
WEBHOOK_ROLES: tuple[str, ...] = ("key_function", "police", "social_services", "admin")
"""Who may have notifications sent to a webhook: the people who run an actor's integrations. A webhook is a
request the notifier makes on its owner's behalf to an address the owner chooses, so reporters, beredningsgrupp
and styrgrupp (who read pictures and analyses) subscribe by e-mail or follow the live stream."""


def may_use_webhooks(caller: Caller | None) -> bool:
    """Whether a person may own a webhook subscription (one of ``WEBHOOK_ROLES``)."""
    return caller is not None and bool(set(WEBHOOK_ROLES) & set(caller.roles))


def check_webhook_role(caller: Caller | None, channel_type: str) -> None:
    """Raise Forbidden if ``caller`` (the owner) may not have a subscription on a webhook channel."""
    if channel_type == "webhook" and not may_use_webhooks(caller):
        raise Forbidden(
            "Bara nyckelfunktioner, polis, socialtjänst och administratörer får prenumerera med webhook; "
            "prenumerera med e-post i stället.",
            "Only key functions, police, social services and admins may subscribe with a webhook; "
            "subscribe by e-mail instead.")


def may_hold_personal(caller: Caller | None, municipality_id: str) -> bool:
    """Whether a person may receive a municipality's notifications with personal data: the role
    social_services and work in that municipality (an admin role does not imply it: personal data)."""
    return caller is not None and PERSONAL_ROLE in caller.roles and municipality_id in caller.municipalities


def check_personal(caller: Caller | None, municipality_id: str, events: Iterable[str]) -> None:
    """Raise Forbidden if ``events`` holds a personal kind that ``caller`` (the owner) may not receive."""
    personal = sorted(set(events) & set(PERSONAL_KINDS))
    if personal and not may_hold_personal(caller, municipality_id):
        raise Forbidden(
            f"Bara socialtjänsten i {municipality_id} får prenumerera på {', '.join(personal)} (personuppgifter); "
            "alla andra ser förverkanden som sammanställningar i lägesbilderna.",
            f"Only social services of {municipality_id} may subscribe to {', '.join(personal)} (personal data); "
            "everyone else sees forfeitures as aggregates in the pictures.")


def end_reason(caller: Caller | None, municipality_id: str, area_ids: Iterable[str], *,
               municipality_areas: dict[str, list[str]], events: Iterable[str] = (),
               channel_type: str = "") -> str | None:
    """Why a stored subscription may no longer run (a key of END_REASONS), or None if it may.

    An empty ``area_ids`` means every area of the municipality (as it is when an event comes): an admin, or a
    person who works in the municipality, may hold it (a person receives what ``receipt.may_receive`` lets
    them of it: the areas they see then, see ``municipality_wide_match``). A subscription to a personal kind
    ends when its owner stops being social services of the municipality,
    a webhook subscription when its owner holds none of ``WEBHOOK_ROLES``.
    """
    if caller is None:
        return "owner_removed"
    if municipality_id not in municipality_areas:
        return "municipality_removed"
    if set(events) & set(PERSONAL_KINDS) and not may_hold_personal(caller, municipality_id):
        return "social_services_role_lost"
    if channel_type == "webhook" and not may_use_webhooks(caller):
        return "webhook_role_lost"
    if caller.admin:
        return None
    areas = list(area_ids)
    if not areas:
        return None if municipality_id in caller.municipalities else "scope_lost"
    if any(a not in caller.areas for a in areas):
        return "scope_lost"
    return None


def municipality_wide_match(caller: Caller | None, area_ids: Iterable[str], area_id: str | None) -> bool:
    """Whether an event of ``area_id`` belongs to a subscription for its owner ``caller``: a subscription to listed
    areas holds them (an owner who lost one has the event withheld, visibly); a municipality-wide one (``[]``)
    holds every area of the municipality its owner sees when the event comes, so an area added to the
    municipality later reaches them, and areas they do not see are not theirs (no ledger row)."""
    if list(area_ids) or area_id is None or caller is None or caller.admin:
        return True
    return area_id in caller.areas


# --- hand-over: a leaving person's subscriptions go to their successor ------------------------

def successor_of(handovers: dict[str, str], present: Iterable[str], person_id: str) -> str | None:
    """The person who takes over ``person_id``'s subscriptions: their successor, and past a successor who left
    too, theirs (a→b→c with b gone gives c); the first person of the chain still in the organisation
    (``present``), or None (no successor, or every one of the chain gone, or a cycle)."""
    here = set(present)
    seen = {person_id}
    at = handovers.get(person_id)
    while at is not None and at not in seen:
        if at in here:
            return at
        seen.add(at)
        at = handovers.get(at)
    return None


def seen_as(who: Audience, municipality_id: str, municipality_areas: Iterable[str]) -> dict[str, Any]:
    """What of an event of a municipality (with ``municipality_areas``) a message rendered for ``who``
    (``render_for``) may hold: kept with a frozen e-mail, so that a hand-over re-addresses it only to someone
    who may see as much (``sees_as_much``)."""
    return {"missing": who.sees_missing(municipality_id), "notes": who.reads_notes(municipality_id),
            "protected": who.sees_protected, "admin": who.admin,
            "areas": sorted(a for a in set(municipality_areas) if who.may_see_area(a))}


def sees_as_much(who: Audience, seen: dict[str, Any] | None, municipality_id: str) -> bool:
    """Whether ``who`` may read a message rendered for an audience ``seen`` (``seen_as``; None: unknown: no)."""
    if not isinstance(seen, dict):
        return False
    if seen.get("missing") and not who.sees_missing(municipality_id):
        return False
    if seen.get("notes") and not who.reads_notes(municipality_id):
        return False
    if seen.get("protected") and not who.sees_protected:
        return False
    return who.admin or set(seen.get("areas") or []) <= set(who.areas)


# --- per-recipient rendering ---------------------------------------------------------------

PROTECTED_KINDS = frozenset({"police", "social_services"})
SMALL_COUNT = 3
MISSING_FIELD = "missing_reporters"
MISSING_ROLES = frozenset({"key_function", "admin"})
"""Who sees the names of who has not reported (``missing_reporters``) in a municipality's pictures: its key
functions, and admins; everyone else sees the counts (expected, received)."""
NOTE_ROLES = frozenset({"key_function", "police", "admin"})
"""Who reads the text of reporters' notes in a municipality's pictures: its key functions and police, and admins;
everyone else sees how many there are (``note_count``)."""


@dataclass(frozen=True)
class Audience:
    """What a recipient may see: their areas, municipalities and roles, and whether protected detail."""

    areas: tuple[str, ...] = ()
    admin: bool = False
    sees_protected: bool = False
    roles: frozenset[str] = frozenset()
    municipalities: tuple[str, ...] = ()

    def may_see_area(self, area_id: str) -> bool:
        return self.admin or area_id in self.areas

    def _holds(self, roles: frozenset[str], municipality_id: str) -> bool:
        return self.admin or (bool(roles & self.roles) and municipality_id in self.municipalities)

    def sees_missing(self, municipality_id: str) -> bool:
        """Whether ``missing_reporters`` of the municipality's pictures reach this recipient (``MISSING_ROLES``)."""
        return self._holds(MISSING_ROLES, municipality_id)

    def reads_notes(self, municipality_id: str) -> bool:
        """Whether the notes' text of the municipality's pictures reaches this recipient (``NOTE_ROLES``)."""
        return self._holds(NOTE_ROLES, municipality_id)


RESTRICTED = Audience()


def audience(*, roles: Iterable[str], areas: Iterable[str], actor_kind: str | None,
             municipalities: Iterable[str] = ()) -> Audience:
    """The audience of a person: police and social services (actor or role) see uncoarsened counts; what else
    they see of a municipality's pictures follows their roles there (``MISSING_ROLES``, ``NOTE_ROLES``)."""
    roles = frozenset(roles)
    return Audience(areas=tuple(areas), admin="admin" in roles,
                    sees_protected=bool(PROTECTED_KINDS & roles) or actor_kind in PROTECTED_KINDS,
                    roles=roles, municipalities=tuple(municipalities))


def _without_field(value: dict[str, object], name: str) -> dict[str, object]:
    return {k: _without_nested(v, name) for k, v in value.items() if k != name}


def _without_nested(value: object, name: str) -> object:
    if isinstance(value, dict):
        return {k: _without_nested(v, name) for k, v in value.items() if k != name}
    if isinstance(value, list):
        return [_without_nested(v, name) for v in value]
    return value


def _coarse(value: object, min_count: int) -> object:
    """Counts (ints, not bools, not floats) 1 … min_count-1 become ``"<min_count"``, in nested dicts too."""
    if isinstance(value, bool) or not isinstance(value, int | dict | list):
        return value
    if isinstance(value, int):
        return f"<{min_count}" if 0 < value < min_count else value
    if isinstance(value, dict):
        return {k: _coarse(v, min_count) for k, v in value.items()}
    return [_coarse(v, min_count) for v in value]


def coarsen_kronoberg(agg: dict[str, object] | None, *, min_count: int = SMALL_COUNT) -> dict[str, object] | None:
    """Kronoberg aggregates as a picture outside police/social services may show them.

    Fewer than ``min_count`` interventions leave only ``"<3"``; otherwise every count below
    ``min_count`` (by weekday, time of day, place, guardian contacted, …) is shown as ``"<3"``.
    Litres and shares are not counts of people and stay.
    """
    if not agg:
        return agg
    n = agg.get("interventions")
    if isinstance(n, str) or (isinstance(n, int) and not isinstance(n, bool) and n < min_count):
        return {"interventions": n if isinstance(n, str) else f"<{min_count}", "coarsened": True}
    out = {k: (v if k in ("coarsened", "litres_total", "share_under_18", "litres_by_beverage")
               else _coarse(v, min_count)) for k, v in agg.items()}
    out["coarsened"] = bool(agg.get("coarsened")) or out != agg
    return out


def render_for(kind: str, data: dict[str, object], who: Audience) -> dict[str, object]:
    """The event data a recipient may see (a new dict; the input is not changed): the one rule every channel
    (webhook, e-mail, digest, stream) applies.

    - ``missing_reporters`` anywhere is removed unless the recipient is a key function of the event's
      municipality or an admin (``Audience.sees_missing``); the counts stay for everyone;
    - a picture's ``notes`` are emptied unless the recipient is a key function or police of its municipality or
      an admin (``Audience.reads_notes``); ``note_count`` stays for everyone;
    - Kronoberg aggregates in pictures are coarsened unless the recipient is police/social services;
    - entries of municipality-wide events about areas the recipient may not see are left out.
    """
    out: dict[str, object] = dict(data)
    picture = out.get("picture")
    pic_municipality = picture.get("municipality_id") if isinstance(picture, dict) else None
    municipality = str(pic_municipality if pic_municipality is not None else out.get("municipality_id", ""))
    if kind.startswith("picture.") and isinstance(picture, dict):
        pic = dict(picture)
        if pic.get("kronoberg") and not who.sees_protected:
            pic["kronoberg"] = coarsen_kronoberg(pic["kronoberg"])
        if pic.get("notes") and not who.reads_notes(municipality):
            pic["notes"] = []
        out["picture"] = pic
    if kind == "analysis.published" and not who.admin:
        for key, value in list(out.items()):
            if isinstance(value, list):
                out[key] = [v for v in value if not (isinstance(v, dict) and "area_id" in v
                                                     and not who.may_see_area(str(v["area_id"])))]
    if not who.sees_missing(municipality):
        return _without_field(out, MISSING_FIELD)
    return out


def audience_of(p: Principal) -> Audience:
    """What an authenticated caller may see (the live stream's view of its person)."""
    return audience(roles=p.roles, areas=p.areas, actor_kind=p.actor_kind, municipalities=p.municipalities)


def audience_for(snapshot: Any, person_id: str) -> Audience:
    """What the owner of a subscription may see now; the most restricted view if unknown."""
    person = snapshot.people.get(person_id) if snapshot is not None else None
    if person is None:
        return RESTRICTED
    actor = snapshot.actors.get(person.actor)
    return audience(roles=person.roles, areas=person.areas, actor_kind=actor.kind if actor else None,
                    municipalities=person.municipalities)


def handover_text(kind: str, *, from_name: str, to_name: str, by_name: str | None, org_version: int | None,
                  at: datetime) -> dict[str, str]:
    """What the ledger says of a hand-over or a restored subscription, with people's names (``kind``: handed_over
    or restored; ``by_name`` None: the organisation file)."""
    when = at.strftime("%Y-%m-%d %H:%M UTC")
    by_sv = by_name or f"organisationsfilen (version {org_version})"
    by_en = by_name or f"the organisation file (version {org_version})"
    if kind == "restored" and from_name == to_name:
        return {"sv": f"Återställd för {to_name} av {by_sv} {when}",
                "en": f"Restored for {to_name} by {by_en} at {when}"}
    if kind == "restored":
        return {"sv": f"Återställd till {to_name} (tidigare {from_name}) av {by_sv} {when}",
                "en": f"Restored to {to_name} (before: {from_name}) by {by_en} at {when}"}
    return {"sv": f"Överlämnad från {from_name} till {to_name} av {by_sv} {when}",
            "en": f"Handed over from {from_name} to {to_name} by {by_en} at {when}"}
