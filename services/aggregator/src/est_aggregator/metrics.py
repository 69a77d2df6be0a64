"""Business metrics of the aggregator, on the service's explicit registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AggregatorMetrics:
    """Counters and gauges named ``est_aggregator_…``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reports = Counter("est_aggregator_reports_stored_total", "Report events handled, by outcome",
                               ["outcome"], registry=registry)
        self.published = Counter("est_aggregator_pictures_published_total",
                                 "Picture versions published, by mode (manual, auto, revision)", ["mode"],
                                 registry=registry)
        self.revisions = Counter("est_aggregator_picture_revisions_total",
                                 "Published pictures revised into a new version", registry=registry)
        self.alerts_raised = Counter("est_aggregator_alerts_raised_total", "Alerts raised, by kind", ["kind"],
                                     registry=registry)
        self.alerts_resolved = Counter("est_aggregator_alerts_resolved_total", "Alerts resolved, by kind", ["kind"],
                                       registry=registry)
        self.completeness = Gauge("est_aggregator_completeness_ratio",
                                  "Share of expected reporters heard from in the latest computed picture",
                                  ["municipality", "area"], registry=registry)
        self.outbox_pending = Gauge("est_aggregator_outbox_pending_events", "Outbox rows not yet published",
                                    registry=registry)
        self.conflicts = Counter("est_aggregator_publish_conflicts_total",
                                 "Publications that lost a race to another writer", registry=registry)
