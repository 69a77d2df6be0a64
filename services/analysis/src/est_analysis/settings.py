"""Settings of the analysis service (``EST_ANALYSIS_*`` environment variables)."""

from __future__ import annotations

from est_shared.settings import ServiceSettings, service_field


class AnalysisSettings(ServiceSettings):
    """Configuration of the analysis service; every knob is an ``EST_ANALYSIS_<NAME>`` variable."""

    service: str = "analysis"
    database_url: str = service_field(
        "analysis", "database_url", "",
        "SQLAlchemy URL; empty means the embedded SQLite file DATA_DIR/analysis.db "
        "(PostgreSQL: postgresql+asyncpg://user:pass@host/db)")
    port: int = service_field("analysis", "port", 8003, "HTTP port")
    durable: str = service_field(
        "analysis", "durable", "analysis-pictures",
        "durable JetStream consumer name for published pictures (replicas share it)")
    consumer_batch_size: int = service_field(
        "analysis", "consumer_batch_size", 1,
        "published pictures fetched per pull. A fetched batch is handled concurrently and may be applied out of "
        "stream order, and k of n depends on the order in which an area's periods arrive (a later week first "
        "leaves a temporary gap), so the default 1 applies pictures in stream order")
    municipality_filter: str = service_field(
        "analysis", "municipality_filter", "*",
        "municipality id whose pictures this instance consumes; '*' for all")
    persistent_k: int = service_field(
        "analysis", "persistent_k", 3,
        "a problem is persistent when an item is flagged in at least k …")
    persistent_n: int = service_field(
        "analysis", "persistent_n", 4, "… of the last n reporting periods (the window ends at the evaluated "
        "period; missing periods count as not flagged)")
    persistent_overrides: dict[str, dict[str, int]] = service_field(
        "analysis", "persistent_overrides", {},
        'k/n overrides as a JSON map; keys "<item>", "<municipality>" or "<municipality>/<item>" (most '
        'specific wins), e.g. {"brand": {"k": 2, "n": 4}, "vaxjo": {"k": 2, "n": 3}}')
    resolve_after: int = service_field(
        "analysis", "resolve_after", 2,
        "a persistent problem is resolved after this many consecutive reporting periods in which "
        "k of n no longer holds")
    effect_max_periods: int = service_field(
        "analysis", "effect_max_periods", 8,
        "measure effect: at most this many reporting periods before and after the start are compared")
    auto_compile: bool = service_field(
        "analysis", "auto_compile", True,
        "compile each municipality's just-ended quarter/tertial by itself")
    compile_interval_seconds: float = service_field(
        "analysis", "compile_interval_seconds", 300.0,
        "how often the background loop checks for ended quarters/tertials")
    compile_grace_hours: float = service_field(
        "analysis", "compile_grace_hours", 24.0,
        "wait this long after the last reporting week of a quarter/tertial ended (Thursday rule) before "
        "compiling it automatically, so its last pictures can be published")
    browser: str = service_field(
        "analysis", "browser", "auto",
        "headless Chromium/Chrome binary for report.pdf: 'auto' searches PATH (chromium, chromium-browser, "
        "google-chrome), a path or name uses that one, 'none' turns PDF off (501)")
    browser_timeout_seconds: float = service_field(
        "analysis", "browser_timeout_seconds", 60.0,
        "a PDF rendering taking longer is stopped (503)")
    browser_concurrency: int = service_field(
        "analysis", "browser_concurrency", 2,
        "at most this many browsers render PDFs at the same time")
    outbox_interval_seconds: float = service_field(
        "analysis", "outbox_interval_seconds", 0.5, "outbox relay polling interval")

    def db_url(self) -> str:
        """The database URL to use (the embedded SQLite file when none is set)."""
        return self.database_url or self.sqlite_url("analysis")
