"""Delivery rules as plain functions: delivery ids, signatures, the retry policy and when reminders go."""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from est_shared.clock import utcnow

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
DELIVERY_NAMESPACE = uuid.UUID("0b6f7c1e-5a43-4c57-9a51-3e1f4e0d7a10")
Outcome = Literal["delivered", "retry", "failed", "refused"]
"""``refused``: the webhook target is not allowed (``est_notifier.subscriptions.egress``); nothing was sent and
no retry helps."""


def delivery_id(subscription_id: str, event_id: str) -> str:
    """Deterministic delivery id: the same subscription and event always give the same id."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{subscription_id}|{event_id}"))


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt came to (``reason``: why a refused target was refused, a key of
    ``est_notifier.subscriptions.egress.REASONS``)."""

    outcome: Outcome
    code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    reason: str | None = None


# --- signatures --------------------------------------------------------------------------

def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of body with secret>`` for the X-EST-Signature header."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str) -> bool:
    """Constant-time check of a signature header (what a receiver does)."""
    return hmac.compare_digest(sign(secret, body), signature)


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
    return max(0.0, (when - (now or utcnow())).total_seconds())


def next_delay(attempt: int, *, base: float, cap: float, retry_after: float | None,
               rng: random.Random | None = None) -> float:
    """The wait before the next attempt: the backoff, or longer if the receiver asked (capped)."""
    delay = backoff_delay(attempt, base=base, cap=cap, rng=rng)
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


def after_attempt(outcome: Outcome, attempt: int, max_attempts: int) -> str:
    """Delivery status after an attempt: delivered, failed, refused, pending (retry later) or dead (cap reached)."""
    if outcome in ("delivered", "failed", "refused"):
        return outcome
    return "dead" if attempt >= max_attempts else "pending"


# --- reminders -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReminderTimes:
    """When reminders go: ``before`` seconds before a deadline and ``after`` seconds after it;
    one whose time passed more than ``late_limit`` seconds ago is skipped."""

    before: float = 24 * 3600.0
    after: float = 2 * 3600.0
    late_limit: float = 3 * 86400.0


def reminder_kind(now: datetime, deadline: datetime, times: ReminderTimes) -> str | None:
    """``before``, ``after`` or None: which reminder of a period is due at ``now``."""
    t, d = now.timestamp(), deadline.timestamp()
    before_at, after_at = d - times.before, d + times.after
    if before_at <= t < d and t - before_at <= times.late_limit:
        return "before"
    if after_at <= t <= after_at + times.late_limit:
        return "after"
    return None


def reminder_event_id(kind: str, period: str, person_id: str) -> str:
    """The ledger's event id of a reminder: one per person, period and kind."""
    return f"reminder:{kind}:{period}:{person_id}"


REMINDERS_SUBSCRIPTION = "reminders"  # the ledger's subscription id of reminder deliveries

