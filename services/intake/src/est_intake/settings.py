"""Settings of the intake service (``EST_INTAKE_*`` plus the common ``EST_*``)."""

from __future__ import annotations

from pathlib import Path

from est_shared.settings import ServiceSettings, service_field
from pydantic import AliasChoices, Field, SecretStr


class IntakeSettings(ServiceSettings):
    """Configuration of the intake: database, port, organisation file and publishing knobs."""

    service: str = "intake"
    database_url: str = service_field(
        "intake", "database_url", "",
        "SQLAlchemy URL of the intake database; empty means DATA_DIR/intake.db (SQLite)")
    port: int = service_field("intake", "port", 8000, "HTTP port")
    org_file: Path | None = service_field(
        "intake", "org_file", None, "organisation file (YAML) applied at start-up when its content changed "
        "since it was last applied, and never over a version made since by other means (README)")
    max_org_body_bytes: int = service_field(
        "intake", "max_org_body_bytes", 20_000_000,
        "largest organisation file PUT /v1/admin/org accepts, in bytes (413 above; the web gateway's limit for "
        "the path, EST_WEB_BODY_LIMITS, is the same by default); the other routes keep max_body_bytes")
    org_snapshots_kept: int = Field(
        default=10, ge=2, validation_alias=AliasChoices("EST_INTAKE_ORG_SNAPSHOTS_KEPT", "org_snapshots_kept"),
        description="organisation versions whose snapshot stays in the EST_ORG_SNAPSHOTS object store (older "
        "ones are deleted; the intake's history keeps every version)")
    max_body_bytes: int = service_field(
        "intake", "max_body_bytes", 2_000_000, "largest accepted request body in bytes (413 above)")
    publish_timeout: float = service_field(
        "intake", "publish_timeout", 5.0, "seconds to wait for a JetStream ack before answering 503")
    publish_concurrency: int = service_field(
        "intake", "publish_concurrency", 64, "publishes in flight at once for batches and imports")
    max_batch: int = service_field(
        "intake", "max_batch", 500, "most reports in one batch or import request")

    pii_key: SecretStr | None = Field(
        default=None, description="EST_PII_KEY: comma-separated keys for personal-data encryption, each 32 random "
        "bytes in URL-safe base64 (python -m est_intake.forfeitures.pii new-key); the first encrypts, all decrypt "
        "(rotation). Unset: a key file DATA_DIR/pii.key is generated (embedded default only)")
    forfeiture_retention_days: int = service_field(
        "intake", "forfeiture_retention_days", 365,
        "days after occurred_at when a forfeiture protocol's personal data (name, personal identity number, "
        "officer, source details) is deleted; default 12 months because the follow-up meeting with the young "
        "person and the guardians and the notification of social services happen within months; the "
        "non-personal facts and all aggregates stay")
    forfeiture_upkeep_interval: float = service_field(
        "intake", "forfeiture_upkeep_interval", 300.0,
        "seconds between runs of the forfeiture job (retention deletion, publishing protocols a crash left "
        "unpublished)")

    def db_url(self) -> str:
        """The database URL to use (the embedded SQLite file unless configured)."""
        return self.database_url or self.sqlite_url("intake")
