"""Forfeiture tables (protocols with encrypted personal fields, the append-only access log) and repositories.

They have their own MetaData and are created by the forfeiture start hook, in the intake's database.
Plaintext personal data never reaches SQL: the personal columns hold ciphertexts only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from est_shared.adapters.schema import lock_schema
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from est_intake.org.db import org_versions

metadata = MetaData()

protocols = Table(
    "forfeiture_protocols", metadata,
    Column("protocol_id", String(100), primary_key=True),
    Column("municipality_id", String(100), nullable=False, index=True),
    Column("area_id", String(100)),
    Column("place", String(100)),
    Column("occurred_at", DateTime(timezone=True), nullable=False, index=True),
    Column("age_band", String(20), nullable=False),
    Column("items", JSON, nullable=False),
    Column("direct_forfeiture", Boolean, nullable=False),
    Column("guardian_contacted", Boolean, nullable=False),
    Column("guardian_came", Boolean, nullable=False),
    Column("source", String(40), nullable=False),
    Column("social_services_notified", Boolean, nullable=False),
    Column("unit", String(100)),
    Column("recorded_by", String(100), nullable=False, doc="person id of the officer who recorded it"),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("content_sha256", String(64), nullable=False, doc="fingerprint of the non-personal content"),
    Column("response", JSON, nullable=False, doc="the 202 body"),
    Column("event", Text, nullable=False, doc="the se.est.forfeiture.recorded CloudEvent (no personal data)"),
    Column("published_at", DateTime(timezone=True), doc="when JetStream acknowledged the event"),
    # personal data: each value sealed on its own (AES-GCM, bound to protocol id and column)
    Column("person_name", Text),
    Column("personal_number", Text),
    Column("officer", Text),
    Column("source_details", Text),
    Column("pii_key_id", String(32), index=True, doc="id of the key the personal columns are sealed with"),
    Column("personal_data_deleted_at", DateTime(timezone=True)),
)

access_log = Table(
    "forfeiture_access_log", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("person_id", String(100), nullable=False, doc="who asked ('-' without a valid token)"),
    Column("actor_id", String(100)),
    Column("roles", String(200), nullable=False, default=""),
    Column("protocol_id", String(100), nullable=False, index=True),
    Column("purpose", String(200)),
    Column("outcome", String(40), nullable=False),
    Column("correlation_id", String(100)),
)

credential_changes = Table(
    "forfeiture_credential_changes", metadata,
    Column("org_version", Integer, primary_key=True, autoincrement=False),
    Column("person_id", String(100), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, doc="when the organisation version was applied"),
    Column("applied_by", String(200), nullable=False, doc="who applied it (person id or file)"),
    Column("kind", String(40), nullable=False, doc="person_added | token_changed | token_issued | read_role_granted"),
    Column("roles", String(200), nullable=False, doc="the person's read roles in that version"),
)
"""A new token (or a read role) of a police or social-services person: shown beside their later reads."""

ENCRYPTED = ("person_name", "personal_number", "officer", "source_details")
APPEND_ONLY = ("forfeiture_access_log", "forfeiture_credential_changes")


def _sqlite_append_only(table: str) -> list[str]:
    return [f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END" for verb in ("UPDATE", "DELETE")]


def _pg_append_only(table: str) -> list[str]:
    return [f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION est_forfeiture_access_log_append_only()",
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION est_forfeiture_access_log_append_only()"]


_PG_LOCK = "SELECT pg_advisory_xact_lock(7316002451)"  # replicas starting together: one creates, the others wait
_PG_APPEND_ONLY = [
    "CREATE OR REPLACE FUNCTION est_forfeiture_access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
    *(stmt for table in APPEND_ONLY for stmt in _pg_append_only(table)),
]
_SQLITE_APPEND_ONLY = [stmt for table in APPEND_ONLY for stmt in _sqlite_append_only(table)]


async def create_tables(conn: AsyncConnection) -> None:
    """Create the tables and make the access log append-only in the database itself (triggers)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.execute(text(_PG_LOCK))
    await lock_schema(conn)
    await conn.run_sync(metadata.create_all)
    statements = _PG_APPEND_ONLY if dialect == "postgresql" else _SQLITE_APPEND_ONLY if dialect == "sqlite" else []
    for stmt in statements:
        await conn.execute(text(stmt))


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back: they are UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


async def find_protocol(session: AsyncSession, protocol_id: str) -> dict[str, Any] | None:
    """One stored protocol as a mapping (personal columns still sealed)."""
    row = (await session.execute(select(protocols).where(protocols.c.protocol_id == protocol_id))).mappings().first()
    if row is None:
        return None
    out = dict(row)
    for k in ("occurred_at", "received_at", "published_at", "personal_data_deleted_at"):
        out[k] = as_utc(out[k])
    return out


async def insert_protocol(session: AsyncSession, values: dict[str, Any]) -> None:
    """Insert a protocol (IntegrityError if the id exists)."""
    await session.execute(insert(protocols).values(**values))


async def mark_published(session: AsyncSession, protocol_id: str, at: datetime) -> None:
    """Record that JetStream acknowledged the protocol's event."""
    await session.execute(update(protocols).where(protocols.c.protocol_id == protocol_id,
                                                  protocols.c.published_at.is_(None)).values(published_at=at))


async def delete_unpublished(session: AsyncSession, protocol_id: str) -> bool:
    """Remove a protocol whose event was never acknowledged (nothing half-done); False if it was published."""
    result = await session.execute(delete(protocols).where(protocols.c.protocol_id == protocol_id,
                                                           protocols.c.published_at.is_(None)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def unpublished(session: AsyncSession, received_before: datetime, limit: int = 100) -> list[tuple[str, str]]:
    """(protocol id, event JSON) of protocols stored but never acknowledged (a crash in between)."""
    rows = (await session.execute(
        select(protocols.c.protocol_id, protocols.c.event)
        .where(protocols.c.published_at.is_(None), protocols.c.received_at < received_before)
        .order_by(protocols.c.received_at).limit(limit))).all()
    return [(pid, ev) for pid, ev in rows]


async def expired(session: AsyncSession, occurred_before: datetime, limit: int = 500) -> list[str]:
    """Ids of protocols past retention that still hold personal data."""
    rows = await session.scalars(
        select(protocols.c.protocol_id)
        .where(protocols.c.occurred_at < occurred_before, protocols.c.personal_data_deleted_at.is_(None))
        .order_by(protocols.c.occurred_at).limit(limit))
    return list(rows)


async def delete_personal_data(session: AsyncSession, protocol_ids: list[str], at: datetime) -> int:
    """Null the personal columns of protocols; the non-personal facts stay."""
    if not protocol_ids:
        return 0
    result = await session.execute(
        update(protocols).where(protocols.c.protocol_id.in_(protocol_ids),
                                protocols.c.personal_data_deleted_at.is_(None))
        .values(**dict.fromkeys(ENCRYPTED), pii_key_id=None, personal_data_deleted_at=at))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def sealed_with(session: AsyncSession, key_ids: list[str], *, after: str = "",
                      limit: int = 200) -> list[dict[str, Any]]:
    """Protocols (by id, after ``after``) whose personal columns are sealed with one of ``key_ids``."""
    if not key_ids:
        return []
    rows = (await session.execute(
        select(protocols.c.protocol_id, protocols.c.pii_key_id, *(protocols.c[k] for k in ENCRYPTED))
        .where(protocols.c.pii_key_id.in_(key_ids), protocols.c.protocol_id > after)
        .order_by(protocols.c.protocol_id).limit(limit))).mappings()
    return [dict(r) for r in rows]


async def reseal(session: AsyncSession, protocol_id: str, old_key_id: str, new_key_id: str,
                 values: dict[str, str | None]) -> bool:
    """Replace the ciphertexts of one protocol if it is still sealed with ``old_key_id``."""
    result = await session.execute(
        update(protocols).where(protocols.c.protocol_id == protocol_id, protocols.c.pii_key_id == old_key_id)
        .values(**values, pii_key_id=new_key_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def key_usage(session: AsyncSession) -> dict[str, int]:
    """Number of protocols sealed with each key id."""
    rows = (await session.execute(select(protocols.c.pii_key_id, func.count())
                                  .where(protocols.c.pii_key_id.is_not(None))
                                  .group_by(protocols.c.pii_key_id))).all()
    return {kid: int(n) for kid, n in rows}


async def add_access(session: AsyncSession, *, at: datetime, person_id: str, actor_id: str | None,
                     roles: list[str], protocol_id: str, purpose: str | None, outcome: str,
                     correlation_id: str | None) -> None:
    """Append one entry to the access log."""
    await session.execute(insert(access_log).values(
        at=at, person_id=person_id, actor_id=actor_id, roles=",".join(roles), protocol_id=protocol_id[:100],
        purpose=purpose, outcome=outcome, correlation_id=correlation_id))


async def access_entries(session: AsyncSession, *, protocol_id: str | None = None, person_id: str | None = None,
                         since: datetime | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Access-log entries, newest first."""
    q = select(access_log)
    if protocol_id:
        q = q.where(access_log.c.protocol_id == protocol_id)
    if person_id:
        q = q.where(access_log.c.person_id == person_id)
    if since:
        q = q.where(access_log.c.at >= since)
    rows = (await session.execute(q.order_by(access_log.c.seq.desc()).limit(limit))).mappings()
    out = []
    for r in rows:
        d = dict(r)
        d["at"] = as_utc(d["at"])
        d["roles"] = [x for x in (d["roles"] or "").split(",") if x]
        out.append(d)
    return out


async def org_change(session: AsyncSession, version: int) -> dict[str, Any] | None:
    """An organisation version with its predecessor, as the credential record needs them: ``snapshot`` and
    ``previous`` (JSON), ``applied_at``, ``applied_by``; None if the version or its predecessor is not stored."""
    ov = org_versions.c
    row = (await session.execute(select(ov.snapshot, ov.applied_at, ov.applied_by)
                                 .where(ov.version == version))).first()
    previous = await session.scalar(select(ov.snapshot).where(ov.version < version)
                                    .order_by(ov.version.desc()).limit(1))
    if row is None or previous is None:
        return None
    return {"snapshot": row.snapshot, "previous": previous, "applied_at": as_utc(row.applied_at),
            "applied_by": row.applied_by}


async def add_credential_changes(session: AsyncSession, org_version: int, at: datetime, applied_by: str,
                                 changes: list[dict[str, Any]]) -> int:
    """Record the credential changes of one organisation version once (replicas may all try); returns how
    many were new."""
    have = set(await session.scalars(select(credential_changes.c.person_id)
                                     .where(credential_changes.c.org_version == org_version)))
    new = [c for c in changes if c["person_id"] not in have]
    if new:
        await session.execute(insert(credential_changes), [
            {"org_version": org_version, "at": at, "applied_by": applied_by[:200], "person_id": c["person_id"],
             "kind": c["kind"], "roles": ",".join(c["roles"])} for c in new])
    return len(new)


def _credential(row: Any) -> dict[str, Any]:
    return {"org_version": row.org_version, "person_id": row.person_id, "at": as_utc(row.at),
            "applied_by": row.applied_by, "kind": row.kind, "roles": [r for r in row.roles.split(",") if r]}


async def credential_history(session: AsyncSession, *, person_ids: list[str] | None = None,
                             since: datetime | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Credential changes, newest first, of some people (all if None) since a moment."""
    q = select(credential_changes)
    if person_ids is not None:
        q = q.where(credential_changes.c.person_id.in_(person_ids))
    if since:
        q = q.where(credential_changes.c.at >= since)
    rows = await session.execute(q.order_by(credential_changes.c.at.desc(),
                                            credential_changes.c.org_version.desc()).limit(limit))
    return [_credential(r) for r in rows]
