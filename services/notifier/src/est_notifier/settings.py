"""Configuration of the notifier (``EST_NOTIFIER_*`` and ``EST_SMTP_URL``)."""

from __future__ import annotations

from est_shared.settings import ServiceSettings, service_field
from pydantic import Field, SecretStr, field_validator

from est_notifier.subscriptions.egress import AllowList


class NotifierSettings(ServiceSettings):
    """Settings of the notifier service."""

    service: str = "notifier"
    database_url: str = service_field(
        "notifier", "database_url", "", "SQLAlchemy async URL; empty = SQLite file in the data dir")
    port: int = service_field("notifier", "port", 8002, "HTTP port")
    smtp_url: str | None = Field(
        default=None, description="smtp://user:pass@host:port, smtp+starttls://… or smtps://…; "
        "unset = mails are written as .eml files to DATA_DIR/outbox/")
    mail_from: str = service_field(
        "notifier", "mail_from", "EST Lägesbild <est-lagesbild@localhost>", "From address of e-mails")
    durable_pictures: str = service_field(
        "notifier", "durable_pictures", "notifier-pictures", "durable consumer on EST_PICTURES")
    durable_alerts: str = service_field(
        "notifier", "durable_alerts", "notifier-alerts", "durable consumer on EST_ALERTS")
    durable_analyses: str = service_field(
        "notifier", "durable_analyses", "notifier-analyses", "durable consumer on EST_ANALYSES")
    municipality_filter: str = service_field(
        "notifier", "municipality_filter", "*", "municipality id token of the consumed subjects ('*' = all)")
    poll_interval: float = service_field(
        "notifier", "poll_interval", 1.0, "seconds between delivery worker polls when idle")
    retry_base_delay: float = service_field(
        "notifier", "retry_base_delay", 5.0, "seconds before the first retry; doubles per attempt")
    retry_max_delay: float = service_field(
        "notifier", "retry_max_delay", 3600.0, "upper bound of one retry delay (also caps Retry-After)")
    max_attempts: int = service_field(
        "notifier", "max_attempts", 8, "attempts before a delivery is dead-lettered")
    webhook_allow: str = service_field(
        "notifier", "webhook_allow", "",
        "comma-separated CIDR ranges and host names webhooks may reach although they are loopback, private, "
        "link-local or otherwise internal (e.g. 127.0.0.1/32,10.20.0.0/16,hooks.intern.example); "
        "empty = public internet addresses only")
    http_timeout: float = service_field(
        "notifier", "http_timeout", 10.0, "seconds a webhook endpoint may take to answer")
    smtp_timeout: float = service_field(
        "notifier", "smtp_timeout", 30.0, "seconds for one SMTP conversation")
    lease_seconds: float = service_field(
        "notifier", "lease_seconds", 120.0, "how long a claimed delivery is owned by one replica")
    worker_batch: int = service_field(
        "notifier", "worker_batch", 20, "deliveries claimed per worker round")
    pause_after_dead: int = service_field(
        "notifier", "pause_after_dead", 3, "consecutive dead deliveries that pause a subscription (0 = never)")
    digest_max_items: int = service_field(
        "notifier", "digest_max_items", 20, "events listed in one digest before a 'more' line")
    digest_grace_seconds: float = service_field(
        "notifier", "digest_grace_seconds", 3600.0, "seconds after a period's deadline before its digest goes out")
    consumer_ack_wait: float = service_field(
        "notifier", "consumer_ack_wait", 30.0, "JetStream ack wait of the fan-out consumers")
    stream_heartbeat: float = service_field(
        "notifier", "stream_heartbeat", 15.0, "seconds without events before /v1/stream sends a heartbeat")
    stream_resume_window: float = service_field(
        "notifier", "stream_resume_window", 7 * 86400.0,
        "how far back /v1/stream looks for a Last-Event-ID it has not seen itself")
    stream_resume_margin: float = service_field(
        "notifier", "stream_resume_margin", 30.0,
        "seconds before a resumed event at which the other streams restart (repeats are possible)")
    stream_max_replay: float = service_field(
        "notifier", "stream_max_replay", 86400.0,
        "how far back (seconds) /v1/stream replays: ?since= older is refused (422), an older Last-Event-ID "
        "gives stream.reset")
    stream_max_per_person: int = service_field(
        "notifier", "stream_max_per_person", 5, "open /v1/stream connections one person may hold per replica "
        "(429 for one more)")
    outbox_retention_days: float = service_field(
        "notifier", "outbox_retention_days", 30.0, "days an .eml file stays in DATA_DIR/outbox/ (without SMTP) "
        "before the retention job deletes it")
    public_url: str = service_field(
        "notifier", "public_url", "http://127.0.0.1:8080", "base URL of the web front end, for links in e-mails "
        "(the notification to social services links to {public_url}/app/#forfeitures/<protocol id>)")
    durable_updates: str = service_field(
        "notifier", "durable_updates", "notifier-picture-updates",
        "durable consumer of se.est.picture.updated (for reminders)")
    reminders_enabled: bool = service_field(
        "notifier", "reminders_enabled", True, "send reminders to reporters who have not reported")
    reminder_before: float = service_field(
        "notifier", "reminder_before", 24 * 3600.0, "seconds before a period's deadline the first reminder goes")
    reminder_after: float = service_field(
        "notifier", "reminder_after", 2 * 3600.0, "seconds after a period's deadline the second reminder goes")
    reminder_late_limit: float = service_field(
        "notifier", "reminder_late_limit", 3 * 86400.0,
        "a reminder not sent this long after its time is skipped (e.g. after downtime)")
    reminder_interval: float = service_field(
        "notifier", "reminder_interval", 60.0, "seconds between checks for due reminders")
    durable_notifications: str = service_field(
        "notifier", "durable_notifications", "notifier-forfeiture-notifications",
        "durable consumer of se.est.forfeiture.notification_due on EST_REPORTS (social services)")
    pii_key: SecretStr | None = Field(
        default=None, description="EST_PII_KEY: the same keys as the intake's (comma-separated, the first "
        "encrypts, all decrypt); the notifier only opens notifications sealed for social services. Unset: "
        "DATA_DIR/pii.key made by the intake (embedded default); the notifier never creates a key")

    @field_validator("webhook_allow")
    @classmethod
    def _allow_list(cls, v: str) -> str:
        AllowList.parse(v)  # a typo fails at start-up, not silently at the first webhook
        return v

    @property
    def webhook_allow_list(self) -> AllowList:
        """EST_NOTIFIER_WEBHOOK_ALLOW, parsed."""
        return AllowList.parse(self.webhook_allow)
