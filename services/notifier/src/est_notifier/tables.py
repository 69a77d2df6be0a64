"""The notifier's tables (one MetaData, SQLite and PostgreSQL) and their upkeep at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from est_shared.adapters.schema import add_missing_columns
from est_shared.db import processed_events_table
from est_shared.orghistory import add_org_history
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

Sessions = async_sessionmaker[AsyncSession]
"""Where the notifier's sessions come from (one factory on the engine ``app.py`` builds)."""


@dataclass(frozen=True)
class Tables:
    """The notifier's tables on one MetaData."""

    metadata: MetaData
    subscriptions: Table
    deliveries: Table
    attempts: Table
    digest_items: Table
    processed: Table
    reminder_state: Table
    reminders: Table
    personal_data_log: Table
    credentials: Table
    org_history: Table
    people_seen: Table
    handovers: Table
    forfeiture_notices: Table


def make_tables() -> Tables:
    """Define the tables (works on SQLite and PostgreSQL)."""
    md = MetaData()
    subscriptions = Table(
        "subscriptions", md,
        Column("id", String(36), primary_key=True),
        Column("owner_id", String(100), nullable=False, index=True),
        Column("name", String(200), nullable=False),
        Column("municipality_id", String(100), nullable=False, index=True),
        Column("area_ids", JSON, nullable=False),            # [] = every area of the municipality
        Column("events", JSON, nullable=False),
        Column("channel", JSON, nullable=False),  # webhook: url + secret; email: to
        Column("channel_target", String(600), nullable=False),
        Column("digest", String(20), nullable=False),
        Column("language", String(5), nullable=False),
        Column("min_severity", String(20)),
        Column("paused", Boolean, nullable=False, default=False),
        Column("paused_reason", String(200)),
        Column("consecutive_dead", Integer, nullable=False, default=0),
        Column("source", String(20), nullable=False, default="api"),  # api | org (declared)
        Column("declared_key", String(300), unique=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("created_seq", Float, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("deleted_at", DateTime(timezone=True)),
        Column("ended_at", DateTime(timezone=True)),             # ended for good (owner left, scope lost)
        Column("ended_reason", String(40)),                      # a key of domain.END_REASONS
    )
    deliveries = Table(
        "deliveries", md,
        Column("id", String(36), primary_key=True),
        Column("subscription_id", String(36), nullable=False, index=True),
        Column("event_id", String(200), nullable=False, index=True),
        Column("event_type", String(100), nullable=False),
        Column("event_time", DateTime(timezone=True), nullable=False),
        Column("channel", String(20), nullable=False),
        Column("channel_target", String(600), nullable=False),
        Column("target", JSON, nullable=False),              # webhook: url + headers; email: sender + recipients
        Column("payload", LargeBinary, nullable=False),      # the exact bytes sent on every attempt
        Column("status", String(20), nullable=False),        # pending | delivering | delivered | failed | dead
        Column("attempts", Integer, nullable=False, default=0),
        Column("next_attempt_at", Float, nullable=False),    # epoch seconds
        Column("claimed_until", Float),
        Column("claimed_by", String(100)),
        Column("last_status_code", Integer),
        Column("last_error", Text),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("finished_at", DateTime(timezone=True)),
        Column("period_close_at", Float),  # epoch seconds of the period's deadline: first published pictures only
        UniqueConstraint("subscription_id", "event_id", name="uq_delivery_subscription_event"),
        UniqueConstraint("channel_target", "event_id", name="uq_delivery_target_event"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )
    attempts = Table(
        "delivery_attempts", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("delivery_id", String(36), nullable=False, index=True),
        Column("subscription_id", String(36), nullable=False),
        Column("event_id", String(200), nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("channel", String(20), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("status", String(20), nullable=False),        # delivered | retry | failed | dead
        Column("response_code", Integer),
        Column("error", Text),
        Column("duration_ms", Integer),
        UniqueConstraint("delivery_id", "attempt", name="uq_attempt"),
    )
    digest_items = Table(
        "digest_items", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("subscription_id", String(36), nullable=False, index=True),
        Column("event_id", String(200), nullable=False),
        Column("channel_target", String(600), nullable=False),
        Column("digest_window", String(100), nullable=False),       # period id the digest closes with
        Column("due_at", Float, nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("event_time", DateTime(timezone=True), nullable=False),
        Column("data", JSON, nullable=False),
        Column("sent", Boolean, nullable=False, default=False),
        UniqueConstraint("subscription_id", "event_id", name="uq_digest_subscription_event"),
        UniqueConstraint("channel_target", "event_id", name="uq_digest_target_event"),
    )
    reminder_state = Table(
        "reminder_state", md,                                    # latest completeness per area and period
        Column("area_id", String(100), primary_key=True),
        Column("period", String(20), primary_key=True),
        Column("municipality_id", String(100), nullable=False),
        Column("missing", JSON, nullable=False),                 # person ids who have not reported
        Column("event_time", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    reminders = Table(
        "reminders", md,                                         # one row per reminder ever sent
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("person_id", String(100), nullable=False),
        Column("period", String(20), nullable=False),
        Column("kind", String(10), nullable=False),              # before | after (the deadline)
        Column("areas", JSON, nullable=False),
        Column("delivery_id", String(36)),
        Column("person_name", String(200)),                      # the name the reminder greeted
        Column("created_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("person_id", "period", "kind", name="uq_reminder_person_period_kind"),
    )
    personal_data_log = Table(
        "personal_data_log", md,                                 # append-only: every opening of sealed data
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("protocol_id", String(100), nullable=False, index=True),
        Column("event_id", String(200), nullable=False),
        Column("delivery_id", String(36), nullable=False, index=True),
        Column("attempt", Integer, nullable=False),
        Column("subscription_id", String(36), nullable=False),
        Column("owner_id", String(100), nullable=False),         # the person the data was opened for
        Column("channel", String(20), nullable=False),
        Column("target", String(600), nullable=False),           # webhook URL or e-mail address
        Column("purpose", String(100), nullable=False),
        Column("outcome", String(20), nullable=False),           # delivered | retry | failed | dead
    )
    people_seen = Table(
        "people_seen", md,                                       # everyone the organisation held: a hand-over
        Column("person_id", String(100), primary_key=True),      # names and re-addresses a person who left
        Column("name", String(200), nullable=False),
        Column("email", String(320)),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    handovers = Table(
        "subscription_handovers", md,                            # who a subscription went from and to, by whom
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("delivery_id", String(36), nullable=False, unique=True),  # its row in the delivery ledger
        Column("subscription_id", String(36), nullable=False, index=True),
        Column("kind", String(20), nullable=False),              # handed_over | restored
        Column("from_person_id", String(100), nullable=False),
        Column("from_name", String(200)),
        Column("to_person_id", String(100), nullable=False),
        Column("to_name", String(200)),
        Column("by_person_id", String(100)),                     # None: the organisation file
        Column("by_name", String(200)),
        Column("org_version", Integer),                          # the organisation's version that made it
        Column("at", DateTime(timezone=True), nullable=False),
    )
    credentials = Table(
        "credential_fingerprints", md,                           # police and social services: to tell them
        Column("person_id", String(100), primary_key=True),      # when their sign-in credential changes
        Column("fingerprint", String(16), nullable=False),       # a shortened hash of the token hash ("" = none)
        Column("org_version", Integer, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    forfeiture_notices = Table(
        "forfeiture_notices", md,                                # notifications due to social services, without
        Column("protocol_id", String(100), primary_key=True),    # the sealed person: what their page lists
        Column("event_id", String(200), nullable=False),
        Column("municipality_id", String(100), nullable=False, index=True),
        Column("area_id", String(100)),
        Column("place", String(100)),
        Column("occurred_at", DateTime(timezone=True), nullable=False),
        Column("age_band", String(10), nullable=False),
        Column("reason", String(30), nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False),
    )
    org_history = add_org_history(md)  # what the organisation held, and when (est_shared.orghistory)
    return Tables(md, subscriptions, deliveries, attempts, digest_items, processed_events_table(md),
                  reminder_state, reminders, personal_data_log, credentials, org_history, people_seen, handovers,
                  forfeiture_notices)


def ensure_schema(conn: Any, tables: Tables) -> None:
    """Create missing tables, and add nullable columns added since an older version (run_sync)."""
    tables.metadata.create_all(conn)
    for table in tables.metadata.sorted_tables:
        add_missing_columns(conn, table)


@overload
def aware(dt: datetime) -> datetime: ...
@overload
def aware(dt: None) -> None: ...
def aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
