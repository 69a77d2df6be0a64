"""Prometheus metrics of the notifier, on the service's registry."""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

CHANNELS = ("webhook", "email")  # the only label values of ``channel``: bounded

CLOSE_TO_DELIVERY_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 24 * 3600,
                             2 * 24 * 3600, 3 * 24 * 3600, 5 * 24 * 3600, 7 * 24 * 3600)


class NotifierMetrics:
    """Deliveries by channel and outcome, attempts, backlog, latency and dead letters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.created = Counter("est_notifier_fanout_deliveries_total", "Deliveries created by fan-out",
                               ["channel"], registry=registry)
        self.deliveries = Counter("est_notifier_deliveries_total",
                                  "Deliveries finished, by channel and outcome (delivered, failed, refused, dead)",
                                  ["channel", "outcome"], registry=registry)
        self.attempts = Counter("est_notifier_delivery_attempts_total",
                                "Delivery attempts, by channel and result (delivered, retry, failed, refused, dead)",
                                ["channel", "result"], registry=registry)
        self.dead = Counter("est_notifier_dead_deliveries_total", "Deliveries dead-lettered after the retry cap",
                            ["channel"], registry=registry)
        self.backlog = Gauge("est_notifier_backlog_deliveries",
                             "Deliveries pending, retrying or in flight, by channel (read from the database)",
                             ["channel"], registry=registry)
        for channel in CHANNELS:
            self.backlog.labels(channel).set(0)
        self._oldest: float | None = None  # epoch seconds of the oldest undelivered delivery's creation
        self.oldest_age = Gauge("est_notifier_oldest_undelivered_age_seconds",
                                "Age of the oldest delivery still pending, retrying or in flight (0 when none)",
                                registry=registry)
        self.oldest_age.set_function(self._oldest_age)
        self.close_to_delivery = Histogram(
            "est_notifier_period_close_to_delivery_seconds",
            "Time from the period's deadline to the successful delivery of its first published picture "
            "(version 1), by channel; pictures delivered before the deadline count as 0",
            ["channel"], buckets=CLOSE_TO_DELIVERY_BUCKETS, registry=registry)
        self.latency = Histogram("est_notifier_event_to_delivery_seconds",
                                 "Time from the event to its successful delivery", ["channel"],
                                 buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
                                 registry=registry)
        self.paused = Counter("est_notifier_subscriptions_paused_total",
                              "Subscriptions paused automatically after dead deliveries", registry=registry)
        self.refused = Counter("est_notifier_webhook_targets_refused_total",
                               "Webhook targets refused by the egress policy, by stage (subscribe, send) and reason "
                               "(loopback, private, link_local, metadata, multicast, unspecified, reserved, "
                               "invalid_host, url)", ["stage", "reason"], registry=registry)
        self.declared_invalid = Counter("est_notifier_declared_subscriptions_invalid_total",
                                        "Declared subscriptions skipped as invalid, by reason", ["reason"],
                                        registry=registry)
        self.ended = Counter("est_notifier_subscriptions_ended_total",
                             "Subscriptions ended because the owner left or lost the areas, by reason", ["reason"],
                             registry=registry)
        self.handed_over = Counter("est_notifier_subscriptions_handed_over_total",
                                   "Subscriptions handed over to another owner, by how (org: the organisation "
                                   "file's successor; admin: the hand-over endpoint; restored)", ["via"],
                                   registry=registry)
        self.stream_clients = Gauge("est_notifier_stream_clients", "Open /v1/stream connections",
                                    registry=registry)
        self.stream_events = Counter("est_notifier_stream_events_total", "Events sent on /v1/stream",
                                     registry=registry)
        self.reminders = Counter("est_notifier_reminders_total",
                                 "Reporting reminders, by kind (before/after the deadline) and outcome "
                                 "(queued, no_email)", ["kind", "outcome"], registry=registry)
        self.withheld = Counter("est_notifier_withheld_total",
                                "Events not sent to a subscription (or digest) because its owner may not receive "
                                "their kind now, by kind", ["kind"], registry=registry)
        self.stream_refused = Counter("est_notifier_stream_refused_total",
                                      "/v1/stream requests refused, by reason (replay_window, too_many_streams)",
                                      ["reason"], registry=registry)
        self.outbox_pruned = Counter("est_notifier_outbox_files_deleted_total",
                                     "Outbox .eml files deleted after EST_NOTIFIER_OUTBOX_RETENTION_DAYS",
                                     registry=registry)
        self.credential_notices = Counter("est_notifier_credential_notices_total",
                                          "E-mails telling police and social services that their sign-in "
                                          "credential changed", registry=registry)
        self.personal = Counter("est_notifier_personal_data_deliveries_total",
                                "Openings of sealed personal data to deliver a notification to social services, "
                                "by outcome of the attempt (delivered, retry, failed, dead)", ["outcome"],
                                registry=registry)

    def set_backlog(self, by_channel: Mapping[str, int], oldest: float | None) -> None:
        """The backlog per channel and the creation time of the oldest undelivered delivery, from the database."""
        for channel in CHANNELS:
            self.backlog.labels(channel).set(by_channel.get(channel, 0))
        self._oldest = oldest

    def _oldest_age(self) -> float:
        """Computed at scrape time, so the age grows between worker refreshes."""
        return 0.0 if self._oldest is None else max(0.0, time.time() - self._oldest)
