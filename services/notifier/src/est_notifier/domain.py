"""Notifier rules as plain functions: matching, delivery ids, signatures, retry policy, SMTP URLs."""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import unquote, urlsplit

EventKind = Literal["picture.published", "alert.raised", "alert.resolved", "analysis.published"]
EVENT_KINDS: tuple[str, ...] = ("picture.published", "alert.raised", "alert.resolved", "analysis.published")
TYPE_TO_KIND: dict[str, str] = {f"se.est.{k}": k for k in EVENT_KINDS}
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
DELIVERY_NAMESPACE = uuid.UUID("0b6f7c1e-5a43-4c57-9a51-3e1f4e0d7a10")

Outcome = Literal["delivered", "retry", "failed"]


class NotifierError(Exception):
    """Base of the notifier's named errors (translated to problem+json at the edge)."""

    def __init__(self, en: str, sv: str) -> None:
        super().__init__(en)
        self.en, self.sv = en, sv

    @property
    def detail(self) -> str:
        return f"{self.en} / {self.sv}"


class NotFound(NotifierError):
    """The subscription does not exist."""


class Forbidden(NotifierError):
    """The caller may not do this."""


class Invalid(NotifierError):
    """The request is well-formed but not acceptable (unknown area, …)."""

    def __init__(self, en: str, sv: str, *, field: str = "") -> None:
        super().__init__(en, sv)
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
    extra: dict[str, object] = field(default_factory=dict, compare=False)


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


def delivery_id(subscription_id: str, event_id: str) -> str:
    """Deterministic delivery id: the same subscription and event always give the same id."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{subscription_id}|{event_id}"))


# --- signatures --------------------------------------------------------------------------

def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body with secret>`` for the X-EST-Signature header."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time check of a signature header (what a receiver does)."""
    return hmac.compare_digest(sign(secret, body), signature)


def valid_webhook_url(url: str) -> bool:
    """http(s) URL with a host."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


# --- retry policy ------------------------------------------------------------------------

def classify_status(status: int) -> Outcome:
    """2xx delivered; 5xx, 408, 409, 425, 429 retried; any other answer failed for good."""
    if 200 <= status < 300:
        return "delivered"
    if status >= 500 or status in RETRYABLE_STATUS:
        return "retry"
    return "failed"


def classify_smtp(code: int) -> Outcome:
    """SMTP reply codes: 2xx delivered, 4xx transient (retry), 5xx permanent."""
    if 200 <= code < 300:
        return "delivered"
    if 400 <= code < 500:
        return "retry"
    return "failed"


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay after failed attempt ``attempt`` (1-based): base·2^(n-1) capped, with ±20 % jitter."""
    r = rng or random
    raw = min(cap, base * 2 ** max(0, attempt - 1))
    return min(cap, raw * r.uniform(0.8, 1.2))


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def next_delay(attempt: int, *, base: float, cap: float, retry_after: float | None,
               rng: random.Random | None = None) -> float:
    """The wait before the next attempt: the backoff, or longer if the receiver asked (capped)."""
    delay = backoff_delay(attempt, base=base, cap=cap, rng=rng)
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


def after_attempt(outcome: Outcome, attempt: int, max_attempts: int) -> str:
    """Delivery status after an attempt: delivered, failed, pending (retry later) or dead (cap reached)."""
    if outcome == "delivered":
        return "delivered"
    if outcome == "failed":
        return "failed"
    return "dead" if attempt >= max_attempts else "pending"


# --- SMTP --------------------------------------------------------------------------------

@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send e-mail."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool = False


def parse_smtp_url(url: str) -> SmtpConfig:
    """``smtp://user:pass@host:port`` (plain), ``smtp+starttls://…`` or ``smtps://…`` (implicit TLS)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtp+starttls", "smtps") or not parts.hostname:
        raise ValueError(f"unsupported SMTP URL scheme {scheme!r}: use smtp, smtp+starttls or smtps")
    default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[scheme]
    return SmtpConfig(
        host=parts.hostname, port=parts.port or default_port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=scheme == "smtps", start_tls=scheme == "smtp+starttls",
    )


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
    """The area ids to store for a requested scope (empty = every area); raises Invalid or Forbidden.

    ``municipality_areas`` maps each known municipality to its areas (from the organisation).
    Without ``area_ids`` a caller gets every area of the municipality they may see.
    """
    if municipality_id not in municipality_areas:
        raise Invalid(f"Unknown municipality {municipality_id!r}.", f"Okänd kommun {municipality_id!r}.",
                      field="scope.municipality_id")
    known = municipality_areas[municipality_id]
    if area_ids:
        unknown = [a for a in area_ids if a not in known]
        if unknown:
            raise Invalid(f"Areas not in {municipality_id}: {', '.join(unknown)}.",
                          f"Områden som inte hör till {municipality_id}: {', '.join(unknown)}.",
                          field="scope.area_ids")
        if not caller.admin:
            outside = [a for a in area_ids if a not in caller.areas]
            if outside:
                raise Forbidden(f"You may not subscribe to areas {', '.join(outside)}.",
                                f"Du får inte prenumerera på områdena {', '.join(outside)}.")
        return sorted(set(area_ids))
    if caller.admin:
        return []
    mine = sorted(a for a in known if a in caller.areas)
    if not mine:
        raise Forbidden(f"You have no areas in {municipality_id}.", f"Du har inga områden i {municipality_id}.")
    return mine
