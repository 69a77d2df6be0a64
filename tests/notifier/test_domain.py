"""Unit tests of the notifier's plain rules."""

from __future__ import annotations

import hashlib
import hmac
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from est_notifier.adapters.smtp import parse_smtp_url
from est_notifier.deliveries.domain import (
    after_attempt,
    backoff_delay,
    classify_smtp,
    classify_status,
    delivery_id,
    next_delay,
    retry_after_seconds,
    sign,
    verify,
)
from est_notifier.subscriptions.domain import (
    Caller,
    Scope,
    SubscriptionView,
    channel_target,
    matches,
    recipients,
    resolve_scope,
    valid_webhook_url,
)
from est_shared.errors import Forbidden, Invalid


def test_signature_is_hex_hmac_sha256_of_raw_body() -> None:
    body = b'{"specversion":"1.0","id":"x"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) == f"sha256={expected}"
    assert verify("s3cret", body, sign("s3cret", body))
    assert not verify("other", body, sign("s3cret", body))
    assert not verify("s3cret", body + b" ", sign("s3cret", body))


def test_delivery_id_is_deterministic_per_subscription_and_event() -> None:
    assert delivery_id("s1", "e1") == delivery_id("s1", "e1")
    assert delivery_id("s1", "e1") != delivery_id("s2", "e1")
    assert delivery_id("s1", "e1") != delivery_id("s1", "e2")


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "delivered"), (204, "delivered"), (500, "retry"), (503, "retry"), (408, "retry"), (409, "retry"),
    (425, "retry"), (429, "retry"), (400, "failed"), (401, "failed"), (404, "failed"), (410, "failed"),
    (301, "failed"),
])
def test_http_status_classification(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


def test_smtp_reply_classification() -> None:
    assert classify_smtp(250) == "delivered"
    assert classify_smtp(451) == "retry"
    assert classify_smtp(550) == "failed"


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, base=1.0, cap=100.0, rng=rng) for n in range(1, 6)]
    for n, d in enumerate(delays, start=1):
        assert 0.8 * 2 ** (n - 1) <= d <= 1.2 * 2 ** (n - 1)
    assert backoff_delay(30, base=1.0, cap=60.0, rng=rng) <= 60.0


def test_retry_after_is_honoured_but_capped() -> None:
    assert retry_after_seconds("7") == 7.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert retry_after_seconds("soon") is None
    assert next_delay(1, base=0.1, cap=100.0, retry_after=7.0) == 7.0
    assert next_delay(1, base=0.1, cap=5.0, retry_after=7000.0) == 5.0


def test_status_after_attempt_reaches_dead_at_the_cap() -> None:
    assert after_attempt("delivered", 1, 3) == "delivered"
    assert after_attempt("failed", 1, 3) == "failed"
    assert after_attempt("retry", 2, 3) == "pending"
    assert after_attempt("retry", 3, 3) == "dead"


def _sub(i: str, *, areas: tuple[str, ...] = (), events: tuple[str, ...] = ("picture.published", "alert.raised"),
         target: str = "webhook:https://x/", **kw: object) -> SubscriptionView:
    return SubscriptionView(id=i, municipality_id="vaxjo", area_ids=areas, events=events, channel_target=target,
                            **kw)  # type: ignore[arg-type]


def test_matching_by_municipality_area_event_and_pause() -> None:
    pic = Scope("picture.published", "vaxjo", "araby")
    assert matches(_sub("1"), pic)
    assert matches(_sub("1", areas=("araby",)), pic)
    assert not matches(_sub("1", areas=("teleborg",)), pic)
    assert not matches(_sub("1", events=("alert.raised",)), pic)
    assert not matches(_sub("1", paused=True), pic)
    assert not matches(_sub("1"), Scope("picture.published", "ljungby", "araby"))
    assert matches(_sub("1", areas=("teleborg",), events=("analysis.published",)),
                   Scope("analysis.published", "vaxjo", None))


def test_min_severity_filters_alerts_only() -> None:
    sub = _sub("1", min_severity="critical")
    assert not matches(sub, Scope("alert.raised", "vaxjo", "araby", "warning"))
    assert matches(sub, Scope("alert.raised", "vaxjo", "araby", "critical"))
    assert matches(sub, Scope("picture.published", "vaxjo", "araby"))


def test_overlapping_subscriptions_to_one_target_get_the_event_once() -> None:
    subs = [_sub("b", created_at=2.0), _sub("a", created_at=1.0), _sub("c", target="email:a@example.org")]
    chosen = recipients(subs, Scope("picture.published", "vaxjo", "araby"))
    assert [s.id for s in chosen] == ["c", "a"] or [s.id for s in chosen] == ["a", "c"]
    assert len({s.channel_target for s in chosen}) == 2


def test_channel_target_normalises_email_case() -> None:
    assert channel_target({"type": "email", "to": "A@Example.org "}) == "email:a@example.org"
    assert channel_target({"type": "webhook", "url": "https://x/y", "secret": "s"}) == "webhook:https://x/y"


def test_webhook_url_must_be_http() -> None:
    assert valid_webhook_url("https://example.org/est")
    assert valid_webhook_url("http://127.0.0.1:9000/hook")
    assert not valid_webhook_url("ftp://example.org/x")
    assert not valid_webhook_url("javascript:alert(1)")
    assert not valid_webhook_url("https://")


def test_smtp_urls() -> None:
    plain = parse_smtp_url("smtp://user:p%40ss@mail.example.org:2525")
    assert (plain.host, plain.port, plain.username, plain.password, plain.use_tls, plain.start_tls) == (
        "mail.example.org", 2525, "user", "p@ss", False, False)
    assert parse_smtp_url("smtps://mail.example.org").port == 465
    assert parse_smtp_url("smtps://mail.example.org").use_tls
    assert parse_smtp_url("smtp+starttls://mail.example.org").start_tls
    with pytest.raises(ValueError):
        parse_smtp_url("http://mail.example.org")


def test_scope_is_bounded_by_the_callers_areas() -> None:
    known = {"vaxjo": ["araby", "teleborg"]}
    anna = Caller(person_id="anna", roles=("key_function",), areas=("araby",))
    admin = Caller(person_id="root", roles=("admin",), areas=())
    assert resolve_scope(anna, "vaxjo", ["araby"], municipality_areas=known) == ["araby"]
    assert resolve_scope(anna, "vaxjo", None, municipality_areas=known) == ["araby"]
    assert resolve_scope(admin, "vaxjo", None, municipality_areas=known) == []
    with pytest.raises(Forbidden):
        resolve_scope(anna, "vaxjo", ["teleborg"], municipality_areas=known)
    with pytest.raises(Invalid):
        resolve_scope(admin, "vaxjo", ["nowhere"], municipality_areas=known)
    with pytest.raises(Invalid):
        resolve_scope(admin, "ljungby", None, municipality_areas=known)
