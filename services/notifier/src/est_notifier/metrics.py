"""Prometheus metrics of the notifier, on the service's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NotifierMetrics:
    """Deliveries by channel and outcome, attempts, backlog, latency and dead letters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.created = Counter("est_notifier_fanout_deliveries_total", "Deliveries created by fan-out",
                               ["channel"], registry=registry)
        self.deliveries = Counter("est_notifier_deliveries_total",
                                  "Deliveries finished, by channel and outcome (delivered, failed, dead)",
                                  ["channel", "outcome"], registry=registry)
        self.attempts = Counter("est_notifier_delivery_attempts_total",
                                "Delivery attempts, by channel and result (delivered, retry, failed, dead)",
                                ["channel", "result"], registry=registry)
        self.dead = Counter("est_notifier_dead_deliveries_total", "Deliveries dead-lettered after the retry cap",
                            ["channel"], registry=registry)
        self.backlog = Gauge("est_notifier_backlog_deliveries", "Deliveries pending or in flight",
                             registry=registry)
        self.latency = Histogram("est_notifier_event_to_delivery_seconds",
                                 "Time from the event to its successful delivery", ["channel"],
                                 buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
                                 registry=registry)
        self.paused = Counter("est_notifier_subscriptions_paused_total",
                              "Subscriptions paused automatically after dead deliveries", registry=registry)
        self.declared_invalid = Counter("est_notifier_declared_subscriptions_invalid_total",
                                        "Declared subscriptions skipped as invalid, by reason", ["reason"],
                                        registry=registry)
        self.ended = Counter("est_notifier_subscriptions_ended_total",
                             "Subscriptions ended because the owner left or lost the areas, by reason", ["reason"],
                             registry=registry)
        self.stream_clients = Gauge("est_notifier_stream_clients", "Open /v1/stream connections",
                                    registry=registry)
        self.stream_events = Counter("est_notifier_stream_events_total", "Events sent on /v1/stream",
                                     registry=registry)
        self.reminders = Counter("est_notifier_reminders_total",
                                 "Reporting reminders, by kind (before/after the deadline) and outcome "
                                 "(queued, no_email)", ["kind", "outcome"], registry=registry)
        self.personal = Counter("est_notifier_personal_data_deliveries_total",
                                "Openings of sealed personal data to deliver a notification to social services, "
                                "by outcome of the attempt (delivered, retry, failed, dead)", ["outcome"],
                                registry=registry)
