"""Business metrics of the aggregator, on the service's explicit registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# From the deadline to publication: minutes (manual before the meeting) up to a week (late auto-publish).
# Seconds from a report's acceptance to its batch's commit, and to the picture.updated that shows it.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
DELAY_BUCKETS = (0, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


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
        self.expected = Gauge("est_aggregator_reports_expected",
                              "Reporters expected to report in the latest closed period, per municipality",
                              ["municipality"], registry=registry)
        self.received = Gauge("est_aggregator_reports_received",
                              "Expected reporters heard from in the latest closed period, per municipality",
                              ["municipality"], registry=registry)
        self.late = Gauge("est_aggregator_reports_late",
                          "Reporters whose reports for the latest closed period all came after the deadline",
                          ["municipality"], registry=registry)
        self.publish_delay = Histogram("est_aggregator_publish_delay_seconds",
                                       "Time from a period's deadline to the first publication of a picture "
                                       "(0 when published before the deadline), by mode (auto, manual)",
                                       ["mode"], buckets=DELAY_BUCKETS, registry=registry)
        self.store_lag = Histogram("est_aggregator_report_store_lag_seconds",
                                   "From the intake's acceptance of the oldest report of a batch to the batch's "
                                   "commit (how far the consumer is behind)", buckets=LAG_BUCKETS, registry=registry)
        self.picture_lag = Histogram("est_aggregator_picture_update_lag_seconds",
                                     "From the oldest change not yet shown in an open picture to the commit of "
                                     "the se.est.picture.updated that shows it", buckets=LAG_BUCKETS,
                                     registry=registry)
        self.refresh_seconds = Histogram("est_aggregator_refresh_pass_seconds",
                                         "Duration of one refresher pass (recompute and write the dirty pictures)",
                                         buckets=LAG_BUCKETS, registry=registry)
        self.picture_failures = Counter("est_aggregator_picture_failures_total",
                                        "Pictures whose computation failed, by stage (refresh, revision, auto_publish, "
                                        "read); the picture is tried again with backoff and the others go on",
                                        ["stage"], registry=registry)
        self.pictures_failing = Gauge("est_aggregator_pictures_failing",
                                      "Pictures the refresher is holding back after a failed computation "
                                      "(tried again with backoff)", registry=registry)
        self.conflicts = Counter("est_aggregator_publish_conflicts_total",
                                 "Publications that lost a race to another writer", registry=registry)
