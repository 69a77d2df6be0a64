"""Who receives what: one rule per kind of message and role, the same on every channel (plain rules).

The live stream, webhooks, e-mail and digests all ask ``may_receive`` with the person's roles, areas and
municipalities as the organisation has them now: when a subscription is made or changed (refused naming
the kind), when a declared one is applied, at fan-out (a subscription whose owner may no longer receive an
event gets a ``withheld`` ledger row instead of a delivery), when a digest closes, and for every event
of the stream. The rules follow the read APIs, so nothing reaches a person by notification that they
could not read themselves:

- pictures (open and published) and alerts of an area: everyone assigned to the area, whatever their
  role (the aggregator's ``require_area``; EST feedback reaches the reporters too); admins everywhere;
- strategic analyses: key functions, beredningsgrupp, styrgrupp and admins, in a municipality they work
  in (the analysis service's ``ANALYSIS_ROLES``; a kommunpolis reads them as a key function);
- the notification with a young person's personal data: social services of the municipality only
  (an admin role does not include it; ``domain.may_hold_personal``);
- reporting reminders: reporters of the area; the notice that a sign-in credential changed: police
  and social services (who can read protocols), about themselves.

``channels`` says where a kind travels at all: open pictures only on the stream, the notification with
personal data never on the stream nor in a digest (sent at once), reminders and notices by e-mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Literal
from urllib.parse import urlsplit

from est_shared.errors import Forbidden

from est_notifier.subscriptions.domain import PERSONAL_KINDS, PERSONAL_ROLE, Caller, InvalidField, check_personal
from est_notifier.subscriptions.egress import AllowList

ROLES = ("reporter", "key_function", "beredningsgrupp", "styrgrupp", "police", "social_services", "admin")
CHANNELS = ("stream", "webhook", "email", "digest")


@dataclass(frozen=True)
class Receipt:
    """Who receives one kind: any of ``roles`` within ``scope`` (``area``: an area of theirs; ``municipality``:
    a municipality they work in; ``own``: a message about themselves); an admin named in ``roles``
    receives it everywhere. ``channels``: the channels the kind travels on at all."""

    roles: frozenset[str]
    scope: Literal["area", "municipality", "own"]
    channels: frozenset[str]


_EVERYONE = frozenset(ROLES)
_ANALYSTS = frozenset({"key_function", "beredningsgrupp", "styrgrupp", "admin"})
_ALL = frozenset(CHANNELS)

RECEIPT: dict[str, Receipt] = {
    "picture.updated": Receipt(_EVERYONE, "area", frozenset({"stream"})),
    "picture.published": Receipt(_EVERYONE, "area", _ALL),
    "alert.raised": Receipt(_EVERYONE, "area", _ALL),
    "alert.resolved": Receipt(_EVERYONE, "area", _ALL),
    "analysis.published": Receipt(_ANALYSTS, "municipality", _ALL),
    "forfeiture.notification_due": Receipt(frozenset({PERSONAL_ROLE}), "municipality",
                                           frozenset({"webhook", "email"})),
    "reminder": Receipt(frozenset({"reporter"}), "area", frozenset({"email"})),
    "credential.changed": Receipt(frozenset({"police", PERSONAL_ROLE}), "own", frozenset({"email"})),
}


def may_receive(who: Caller | None, kind: str, municipality_id: str, area_id: str | None = None) -> bool:
    """Whether a person (None: not in the organisation) may receive a message of ``kind`` about
    ``municipality_id`` and ``area_id`` (None for municipality-wide messages)."""
    rule = RECEIPT.get(kind)
    if who is None or rule is None:
        return False
    held = rule.roles & set(who.roles)
    if not held:
        return False
    if "admin" in held or rule.scope == "own":
        return True
    if rule.scope == "area" and area_id is not None:
        return area_id in who.areas
    return municipality_id in who.municipalities


def refused_kinds(who: Caller | None, municipality_id: str, area_ids: Iterable[str],
                  events: Iterable[str]) -> list[str]:
    """The kinds of ``events`` that ``who`` may not receive somewhere in the scope, sorted (an empty
    ``area_ids``, every area of the municipality, is checked against the municipality)."""
    areas: list[str | None] = list(area_ids) or [None]
    return sorted({k for k in events if not all(may_receive(who, k, municipality_id, a) for a in areas)})


def check_receipt(who: Caller | None, municipality_id: str, area_ids: Iterable[str], events: Iterable[str]) -> None:
    """Raise Forbidden naming each kind of ``events`` the owner ``who`` may not receive in the scope."""
    refused = refused_kinds(who, municipality_id, area_ids, events)
    check_personal(who, municipality_id, [k for k in refused if k in PERSONAL_KINDS])
    if refused:
        roles = ", ".join(who.roles) if who is not None and who.roles else "-"
        goes = "; ".join(f"{k}: {', '.join(sorted(RECEIPT[k].roles)) if k in RECEIPT else '-'}" for k in refused)
        raise Forbidden(f"Dina roller ({roles}) får inte ta emot {', '.join(refused)} här (vilka som får: {goes}).",
                        f"Your roles ({roles}) do not receive {', '.join(refused)} here (who does: {goes}).")


def message_scope(kind: str, data: dict[str, Any]) -> tuple[str, str | None]:
    """Municipality and area (None: municipality-wide) of an event's data as it travels (JSON)."""
    pic = data.get("picture")
    if kind.startswith("picture.") and isinstance(pic, dict):
        return str(pic.get("municipality_id", "")), str(pic["area_id"]) if pic.get("area_id") else None
    area = data.get("area_id") if kind.startswith("alert.") else None
    return str(data.get("municipality_id", "")), str(area) if area else None


# --- how personal data may travel ---------------------------------------------------------------

def plain_http_allowed(url: str, allow: AllowList) -> bool:
    """Whether an ``http://`` URL's host is one the operator allows (``EST_NOTIFIER_WEBHOOK_ALLOW``): a listed
    host name, or an address in a listed range."""
    host = (urlsplit(url).hostname or "").strip("[]")
    if not host:
        return False
    if allow.allows_host(host):
        return True
    try:
        return allow.allows_address(ip_address(host))
    except ValueError:
        return False


def check_personal_channel(channel: dict[str, Any], events: Iterable[str], allow: AllowList) -> None:
    """Raise InvalidField (field channel.url) if a subscription to personal data would send it over plain http to a
    target the operator has not allowed."""
    if channel.get("type") != "webhook" or not set(events) & set(PERSONAL_KINDS):
        return
    url = str(channel.get("url", ""))
    if urlsplit(url).scheme.lower() != "https" and not plain_http_allowed(url, allow):
        raise InvalidField("Meddelanden med personuppgifter skickas bara över https; okrypterad http bara till ett mål "
                      "som driftansvarig tillåter (EST_NOTIFIER_WEBHOOK_ALLOW).",
                      "Notifications with personal data go only over https; plain http only to a target the "
                      "operator allows (EST_NOTIFIER_WEBHOOK_ALLOW).", field="channel.url")
