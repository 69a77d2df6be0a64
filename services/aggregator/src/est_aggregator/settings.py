"""Settings of the aggregator service (``EST_AGGREGATOR_*`` environment variables)."""

from __future__ import annotations

from est_shared.settings import ServiceSettings, service_field
from pydantic import field_validator


class AggregatorSettings(ServiceSettings):
    """Configuration of the aggregator: database, port, consumer and publishing knobs."""

    service: str = "aggregator"
    database_url: str = service_field(
        "aggregator", "database_url", "",
        "SQLAlchemy async URL; empty means the embedded SQLite file DATA_DIR/aggregator.db")
    port: int = service_field("aggregator", "port", 8001, "HTTP port")
    durable: str = service_field(
        "aggregator", "durable", "aggregator-reports", "durable consumer name on EST_REPORTS")
    report_subject: str = service_field(
        "aggregator", "report_subject", "est.report.submitted.>",
        "subject filter of the report consumer (narrow it to one municipality to shard or isolate)")
    forfeiture_subject: str = service_field(
        "aggregator", "forfeiture_subject", "est.forfeiture.recorded.>",
        "subject filter of the Kronoberg forfeiture consumer (empty = off); its durable is DURABLE-forfeitures")
    auto_publish_interval: float = service_field(
        "aggregator", "auto_publish_interval", 30.0,
        "seconds between runs of the loop that publishes pictures whose deadline has passed (0 = off)")
    baseline_periods: int = service_field(
        "aggregator", "baseline_periods", 8, "number of earlier periods the baseline averages")
    emit_updates: bool = service_field(
        "aggregator", "emit_updates", True, "publish se.est.picture.updated when an open picture changes")
    outbox_interval: float = service_field(
        "aggregator", "outbox_interval", 0.5, "seconds between outbox relay runs when not woken")
    batch_size: int = service_field(
        "aggregator", "batch_size", 1000,
        "most report events stored in one transaction "
        "(the durable consumer is created with max_ack_pending twice this)")
    batch_linger: float = service_field(
        "aggregator", "batch_linger", 0.005,
        "seconds a batch of report events that is not full waits for more before it is stored "
        "(fewer, larger transactions under a steady trickle; adds at most this to the latency; 0 = store at once)")
    update_interval: float = service_field(
        "aggregator", "update_interval", 0.02,
        "seconds between passes of the refresher: at most one se.est.picture.updated per picture per interval, "
        "and never more than one per report (a pass starts at once when the refresher was idle longer than this; "
        "raise it to send fewer updates of busy pictures)")
    refresh_share: float = service_field(
        "aggregator", "refresh_share", 0.5,
        "most of the process's time the refresher takes while reports stream in: passes start at least "
        "their own duration / share apart (0.5: a pass, then as long for consuming)")
    revise_delay: float = service_field(
        "aggregator", "revise_delay", 2.0,
        "seconds a published picture collects late reports before its ONE revision (version N+1) is published")
    kronoberg_min_count: int = service_field(
        "aggregator", "kronoberg_min_count", 3,
        "Kronoberg counts from 1 to this minus one are shown as \"<N\" to callers outside police and social "
        "services and in every picture event (small counts could identify a young person)")
    publish_min_completeness: float = service_field(
        "aggregator", "publish_min_completeness", 0.5,
        "share of the expected reporters (0-1) below which a key function's publication needs "
        "confirm_incomplete (as does one before the deadline); publishing at the deadline needs one report")
    business_metrics_interval: float = service_field(
        "aggregator", "business_metrics_interval", 30.0,
        "seconds between refreshes of the reports expected/received/late gauges (0 = off)")
    max_series_periods: int = service_field(
        "aggregator", "max_series_periods", 160, "most periods one series request may span")
    browser: str = service_field(
        "aggregator", "browser", "auto",
        "headless Chromium/Chrome binary for a picture's report.pdf: 'auto' searches PATH, a path or name uses "
        "that one, 'none' turns PDF off (501; report.html has the same content)")
    browser_timeout_seconds: float = service_field(
        "aggregator", "browser_timeout_seconds", 60.0, "a PDF rendering taking longer is stopped (503)")
    browser_concurrency: int = service_field(
        "aggregator", "browser_concurrency", 2, "at most this many browsers render PDFs at the same time")

    @field_validator("publish_min_completeness")
    @classmethod
    def _a_share(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError("publish_min_completeness is a share from 0 to 1")
        return value

    def db_url(self) -> str:
        """The database URL in effect (the embedded SQLite file unless one is configured)."""
        return self.database_url or self.sqlite_url("aggregator")
