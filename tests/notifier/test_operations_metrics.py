"""Operations metrics on /metrics: backlog per channel, oldest undelivered age, period close to delivery."""

from __future__ import annotations

import re
import time
from pathlib import Path

from est_shared.org import period_deadline
from est_shared.periods import Period
from est_shared.testing import free_port

from tests.notifier.support import (
    Org,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    receiver,
    running_notifier,
)
from tests.support import eventually


def sample(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in Prometheus text, or None when it is absent."""
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def test_operations_metrics_backlog_age_and_close_to_delivery(nats_url: str, tmp_path: Path,
                                                                    org: Org) -> None:
    period = Period.parse("2026-W40")
    close = period_deadline(org.snapshot.municipalities[org.m], period).timestamp()
    dead_url = f"http://127.0.0.1:{free_port()}/hook"
    settings = notifier_settings(nats_url, tmp_path, org, max_attempts=20, retry_base_delay=60.0,
                                 retry_max_delay=120.0)
    async with receiver() as rx:
        async with running_notifier(settings, org) as n:
            metrics = (await n.http.get("/metrics")).text
            assert sample(metrics, "est_notifier_backlog_deliveries", '{channel="webhook"}') == 0.0
            assert sample(metrics, "est_notifier_backlog_deliveries", '{channel="email"}') == 0.0
            assert sample(metrics, "est_notifier_oldest_undelivered_age_seconds") == 0.0
            await n.subscribe(channel={"type": "webhook", "url": rx.url, "secret": "s"})
            await n.subscribe(channel={"type": "email", "to": "drift@example.org"})
            await n.subscribe(channel={"type": "webhook", "url": dead_url, "secret": "s"})  # never answers
            await publish(nats_url, picture_subject(org), picture_event(org, period=str(period), version=1))

            async def settled() -> str | None:
                text = (await n.http.get("/metrics")).text
                done = sample(text, "est_notifier_period_close_to_delivery_seconds_count", '{channel="email"}')
                hooks = sample(text, "est_notifier_period_close_to_delivery_seconds_count", '{channel="webhook"}')
                retried = sample(text, "est_notifier_delivery_attempts_total", '{channel="webhook",result="retry"}')
                # the backlog gauges are read from the database after a round, a moment after the counters
                backlog = (sample(text, "est_notifier_backlog_deliveries", '{channel="webhook"}'),
                           sample(text, "est_notifier_backlog_deliveries", '{channel="email"}'))
                return text if done == 1.0 and hooks == 1.0 and retried == 1.0 and backlog == (1.0, 0.0) else None

            metrics = await eventually(settled)
            waited = time.time() - close
            for channel in ("webhook", "email"):
                total = sample(metrics, "est_notifier_period_close_to_delivery_seconds_sum", f'{{channel="{channel}"}}')
                assert total is not None and waited - 60 < total <= waited
            assert sample(metrics, "est_notifier_period_close_to_delivery_seconds_bucket",
                          '{channel="webhook",le="604800.0"}') == 0.0  # 2026-W40 closed more than 7 days ago
            assert sample(metrics, "est_notifier_period_close_to_delivery_seconds_bucket",
                          '{channel="webhook",le="+Inf"}') == 1.0
            assert sample(metrics, "est_notifier_backlog_deliveries", '{channel="webhook"}') == 1.0
            assert sample(metrics, "est_notifier_backlog_deliveries", '{channel="email"}') == 0.0
            age = sample(metrics, "est_notifier_oldest_undelivered_age_seconds")
            assert age is not None and 0.0 < age < 60.0

            # a revision (version 2) is delivered but is not a period close
            await publish(nats_url, picture_subject(org), picture_event(org, period=str(period), version=2))

            async def revised() -> str | None:
                text = (await n.http.get("/metrics")).text
                ok = sample(text, "est_notifier_deliveries_total", '{channel="email",outcome="delivered"}')
                return text if ok == 2.0 else None

            metrics = await eventually(revised)
            assert sample(metrics, "est_notifier_period_close_to_delivery_seconds_count", '{channel="email"}') == 1.0

        # after a restart the backlog and the age come from the database, not from counters of the old process
        async with running_notifier(settings, org) as n:
            metrics = (await n.http.get("/metrics")).text
            assert sample(metrics, "est_notifier_backlog_deliveries", '{channel="webhook"}') == 2.0
            assert sample(metrics, "est_notifier_backlog_deliveries", '{channel="email"}') == 0.0
            age = sample(metrics, "est_notifier_oldest_undelivered_age_seconds")
            assert age is not None and 0.0 < age < 60.0


def test_period_close_only_for_first_published_picture_of_a_known_municipality(org: Org) -> None:
    from est_notifier.deliveries.handlers import period_close

    from tests.notifier.support import alert_event

    mun = org.snapshot.municipalities[org.m]
    expected = period_deadline(mun, Period.parse("2026-W40")).timestamp()
    assert period_close(picture_event(org, period="2026-W40", version=1), org.snapshot) == expected
    assert period_close(picture_event(org, period="2026-W40", version=2), org.snapshot) is None
    assert period_close(picture_event(org, period="2026-W40", version=1), None) is None
    assert period_close(alert_event(org), org.snapshot) is None
    other = org.snapshot.model_copy(update={"municipalities": {}})
    assert period_close(picture_event(org, period="2026-W40", version=1), other) is None
