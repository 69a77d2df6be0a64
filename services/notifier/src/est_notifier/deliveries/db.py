"""Tables of the notifier and small repository functions taking an AsyncSession."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from est_shared.db import processed_events_table
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
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession


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
    credentials = Table(
        "credential_fingerprints", md,                           # police and social services: to tell them
        Column("person_id", String(100), primary_key=True),      # when their sign-in credential changes
        Column("fingerprint", String(16), nullable=False),       # a shortened hash of the token hash ("" = none)
        Column("org_version", Integer, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )
    return Tables(md, subscriptions, deliveries, attempts, digest_items, processed_events_table(md),
                  reminder_state, reminders, personal_data_log, credentials)


def ensure_schema(conn: Any, tables: Tables) -> None:
    """Create missing tables, and add nullable columns added since an older version (run_sync)."""
    from sqlalchemy import inspect

    tables.metadata.create_all(conn)
    insp = inspect(conn)
    for table in tables.metadata.sorted_tables:
        have = {c["name"] for c in insp.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have and col.nullable:
                conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN {col.name} '
                                     f'{col.type.compile(dialect=conn.dialect)}')


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored is UTC."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# --- subscriptions -------------------------------------------------------------------------

async def insert_subscription(s: AsyncSession, t: Tables, row: dict[str, Any]) -> None:
    now = utcnow()
    await s.execute(insert(t.subscriptions).values(
        created_at=now, updated_at=now, created_seq=time.time(), paused=False, consecutive_dead=0, **row))


async def get_subscription(s: AsyncSession, t: Tables, sub_id: str, *,
                           include_deleted: bool = False) -> dict[str, Any] | None:
    q = select(t.subscriptions).where(t.subscriptions.c.id == sub_id)
    if not include_deleted:
        q = q.where(t.subscriptions.c.deleted_at.is_(None))
    row = (await s.execute(q)).mappings().first()
    return dict(row) if row else None


async def list_subscriptions(s: AsyncSession, t: Tables, *, owner_id: str | None) -> list[dict[str, Any]]:
    q = select(t.subscriptions).where(t.subscriptions.c.deleted_at.is_(None))
    if owner_id is not None:
        q = q.where(t.subscriptions.c.owner_id == owner_id)
    return [dict(r) for r in (await s.execute(q.order_by(t.subscriptions.c.created_seq))).mappings()]


async def update_subscription(s: AsyncSession, t: Tables, sub_id: str, values: dict[str, Any]) -> None:
    await s.execute(update(t.subscriptions).where(t.subscriptions.c.id == sub_id)
                    .values(updated_at=utcnow(), **values))


async def candidate_subscriptions(s: AsyncSession, t: Tables, municipality_id: str) -> list[dict[str, Any]]:
    """Live, unpaused subscriptions of a municipality (matching is finished in the domain)."""
    c = t.subscriptions.c
    q = select(t.subscriptions).where(c.municipality_id == municipality_id, c.deleted_at.is_(None),
                                      c.paused.is_(False), c.ended_at.is_(None))
    return [dict(r) for r in (await s.execute(q)).mappings()]


# --- deliveries ----------------------------------------------------------------------------

async def delivery_exists(s: AsyncSession, t: Tables, *, subscription_id: str, channel_target: str,
                          event_id: str) -> bool:
    """Whether this event already went (or goes) to this subscription or this channel target."""
    c = t.deliveries.c
    found = await s.scalar(select(c.id).where(c.event_id == event_id, or_(
        c.subscription_id == subscription_id, c.channel_target == channel_target)).limit(1))
    if found:
        return True
    d = t.digest_items.c
    found = await s.scalar(select(d.id).where(d.event_id == event_id, or_(
        d.subscription_id == subscription_id, d.channel_target == channel_target)).limit(1))
    return bool(found)


async def already_sent(s: AsyncSession, t: Tables, event_id: str) -> tuple[set[str], set[str]]:
    """Subscription ids and channel targets this event already went (or goes) to, in two queries."""
    c, d = t.deliveries.c, t.digest_items.c
    subs: set[str] = set()
    targets: set[str] = set()
    for sub_id, target in (await s.execute(select(c.subscription_id, c.channel_target)
                                           .where(c.event_id == event_id))).all():
        subs.add(sub_id)
        targets.add(target)
    for sub_id, target in (await s.execute(select(d.subscription_id, d.channel_target)
                                           .where(d.event_id == event_id))).all():
        subs.add(sub_id)
        targets.add(target)
    return subs, targets


async def insert_delivery(s: AsyncSession, t: Tables, row: dict[str, Any]) -> None:
    await s.execute(insert(t.deliveries).values(status="pending", attempts=0, created_at=utcnow(), **row))


async def due_delivery_ids(s: AsyncSession, t: Tables, *, now: float, limit: int) -> list[str]:
    """Deliveries ready for an attempt, including ones whose claim expired (a crashed replica)."""
    c = t.deliveries.c
    q = select(c.id).where(or_(
        (c.status == "pending") & (c.next_attempt_at <= now),
        (c.status == "delivering") & (c.claimed_until < now),
    )).order_by(c.next_attempt_at).limit(limit)
    return list((await s.scalars(q)).all())


async def claim(s: AsyncSession, t: Tables, delivery_id: str, *, now: float, lease: float,
                worker: str) -> bool:
    """Take a delivery for one attempt; True only for the one replica whose UPDATE changed the row."""
    c = t.deliveries.c
    result = await s.execute(update(t.deliveries).where(c.id == delivery_id, or_(
        (c.status == "pending") & (c.next_attempt_at <= now),
        (c.status == "delivering") & (c.claimed_until < now),
    )).values(status="delivering", claimed_until=now + lease, claimed_by=worker))
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def get_delivery(s: AsyncSession, t: Tables, delivery_id: str) -> dict[str, Any] | None:
    row = (await s.execute(select(t.deliveries).where(t.deliveries.c.id == delivery_id))).mappings().first()
    return dict(row) if row else None


async def backlog(s: AsyncSession, t: Tables) -> tuple[dict[str, int], float | None]:
    """Undelivered deliveries (pending, retrying, in flight) per channel, and when the oldest was created."""
    c = t.deliveries.c
    undelivered = c.status.in_(("pending", "delivering"))
    counts = {str(ch): int(n) for ch, n in (await s.execute(
        select(c.channel, func.count()).where(undelivered).group_by(c.channel))).all()}
    oldest = aware(await s.scalar(select(c.created_at).where(undelivered).order_by(c.created_at).limit(1)))
    return counts, (oldest.timestamp() if oldest is not None else None)


async def list_deliveries(s: AsyncSession, t: Tables, *, subscription_ids: list[str] | None,
                          event_id: str | None, limit: int) -> list[dict[str, Any]]:
    c = t.deliveries.c
    q = select(*[col for col in t.deliveries.c if col.name != "payload"])
    if subscription_ids is not None:
        q = q.where(c.subscription_id.in_(subscription_ids))
    if event_id:
        q = q.where(c.event_id == event_id)
    rows = [dict(r) for r in (await s.execute(q.order_by(c.created_at.desc()).limit(limit))).mappings()]
    if not rows:
        return rows
    a = t.attempts.c
    attempts = (await s.execute(select(t.attempts).where(a.delivery_id.in_([r["id"] for r in rows]))
                                .order_by(a.delivery_id, a.attempt))).mappings()
    by_id: dict[str, list[dict[str, Any]]] = {}
    for att in attempts:
        by_id.setdefault(att["delivery_id"], []).append(dict(att))
    for r in rows:
        r["attempt_log"] = by_id.get(r["id"], [])
    return rows


# --- personal data -------------------------------------------------------------------------

async def add_personal_read(s: AsyncSession, t: Tables, **values: Any) -> None:
    """Append one row to the log of openings of sealed personal data (there is no update or delete)."""
    await s.execute(insert(t.personal_data_log).values(at=utcnow(), **values))


async def personal_reads(s: AsyncSession, t: Tables, *, protocol_id: str | None, subscription_id: str | None,
                         limit: int) -> list[dict[str, Any]]:
    """Openings of sealed personal data, newest first."""
    c = t.personal_data_log.c
    q = select(t.personal_data_log)
    if protocol_id:
        q = q.where(c.protocol_id == protocol_id)
    if subscription_id:
        q = q.where(c.subscription_id == subscription_id)
    rows = [dict(r) for r in (await s.execute(q.order_by(c.id.desc()).limit(limit))).mappings()]
    for r in rows:
        r["at"] = aware(r["at"])
    return rows
