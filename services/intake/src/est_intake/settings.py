"""Settings of the intake service (``EST_INTAKE_*`` plus the common ``EST_*``)."""

from __future__ import annotations

from pathlib import Path

from est_shared.settings import ServiceSettings, service_field


class IntakeSettings(ServiceSettings):
    """Configuration of the intake: database, port, organisation file and publishing knobs."""

    service: str = "intake"
    database_url: str = service_field(  # type: ignore[assignment]
        "intake", "database_url", "",
        "SQLAlchemy URL of the intake database; empty means DATA_DIR/intake.db (SQLite)")
    port: int = service_field("intake", "port", 8000, "HTTP port")  # type: ignore[assignment]
    org_file: Path | None = service_field(  # type: ignore[assignment]
        "intake", "org_file", None, "organisation file (YAML) applied at start-up (idempotent)")
    max_body_bytes: int = service_field(  # type: ignore[assignment]
        "intake", "max_body_bytes", 2_000_000, "largest accepted request body in bytes (413 above)")
    publish_timeout: float = service_field(  # type: ignore[assignment]
        "intake", "publish_timeout", 5.0, "seconds to wait for a JetStream ack before answering 503")
    publish_concurrency: int = service_field(  # type: ignore[assignment]
        "intake", "publish_concurrency", 64, "publishes in flight at once for batches and imports")
    max_batch: int = service_field(  # type: ignore[assignment]
        "intake", "max_batch", 500, "most reports in one batch or import request")

    def db_url(self) -> str:
        """The database URL to use (the embedded SQLite file unless configured)."""
        return self.database_url or self.sqlite_url("intake")
