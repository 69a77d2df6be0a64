"""Organisation tables (versions, start-up files) and the outbox, with their small repositories."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from est_shared.db import outbox_table, utcnow
from est_shared.org import OrgSnapshot
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger("est.intake")

metadata = MetaData()

org_versions = Table(
    "org_versions", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("snapshot", Text, nullable=False, doc="OrgSnapshot JSON (tokens only as SHA-256)"),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("applied_by", String(200), nullable=False),
    Column("changes", Text, nullable=False, doc="JSON list of human-readable changes"),
)

org_startup_files = Table(
    "org_startup_files", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, doc="SHA-256 of the file's bytes"),
    Column("file_name", String(300), nullable=False),
    Column("version", Integer, nullable=False, doc="the organisation version the file made or found"),
    Column("outcome", String(20), nullable=False, doc="applied (a new version) or current (no change)"),
    Column("at", DateTime(timezone=True), nullable=False),
)
"""Start-up organisation files that took effect (see ``est_intake.org.domain``, the start-up file rule)."""


outbox = outbox_table(metadata)


async def latest_org(session: AsyncSession) -> OrgSnapshot | None:
    """The newest stored organisation snapshot, or None before the first apply."""
    raw = await session.scalar(select(org_versions.c.snapshot).order_by(org_versions.c.version.desc()).limit(1))
    return await _snapshot(raw) if raw else None


async def _snapshot(raw: str) -> OrgSnapshot:
    """A stored snapshot parsed; a large one in a thread (tens of megabytes of JSON hold the loop a while)."""
    if len(raw) < 100_000:
        return OrgSnapshot.model_validate_json(raw)
    return await asyncio.to_thread(OrgSnapshot.model_validate_json, raw)


async def add_org_version(session: AsyncSession, snapshot: OrgSnapshot, *, applied_by: str,
                          changes: list[str], applied_at: datetime | None = None,
                          snapshot_json: str | None = None) -> None:
    """Store one organisation version (the primary key refuses a concurrent duplicate); ``snapshot_json`` is
    the snapshot's JSON when the caller has it already."""
    await session.execute(insert(org_versions).values(
        version=snapshot.version, snapshot=snapshot_json or snapshot.model_dump_json(),
        applied_at=applied_at or utcnow(), applied_by=applied_by, changes=json.dumps(changes, ensure_ascii=False)))


async def org_version_number(session: AsyncSession) -> int:
    """The newest stored organisation version number (0 before the first)."""
    return int(await session.scalar(select(func.max(org_versions.c.version))) or 0)


async def last_startup_file(session: AsyncSession) -> tuple[str | None, int]:
    """(SHA-256, organisation version) of the start-up file that last took effect. Before any was recorded:
    no digest, and the newest version a start-up file made (``applied_by`` ``file:…``), else 0."""
    row = (await session.execute(select(org_startup_files.c.sha256, org_startup_files.c.version)
                                 .order_by(org_startup_files.c.id.desc()).limit(1))).first()
    if row is not None:
        return row[0], int(row[1])
    made = await session.scalar(select(func.max(org_versions.c.version))
                                .where(org_versions.c.applied_by.like("file:%")))
    return None, int(made or 0)


async def record_startup_file(session: AsyncSession, *, sha256: str, file_name: str, version: int,
                              outcome: str) -> None:
    """Note that a start-up file took effect as ``version``."""
    await session.execute(insert(org_startup_files).values(sha256=sha256, file_name=file_name[:300],
                                                           version=version, outcome=outcome, at=utcnow()))


async def org_history(session: AsyncSession, limit: int = 100) -> list[dict[str, Any]]:
    """Stored versions, newest first, without the snapshots."""
    rows = (await session.execute(
        select(org_versions.c.version, org_versions.c.applied_at, org_versions.c.applied_by, org_versions.c.changes)
        .order_by(org_versions.c.version.desc()).limit(limit))).all()
    return [{"version": v, "applied_at": at, "applied_by": by, "changes": json.loads(ch)} for v, at, by, ch in rows]


async def org_version(session: AsyncSession, version: int) -> OrgSnapshot | None:
    """One stored organisation version."""
    raw = await session.scalar(select(org_versions.c.snapshot).where(org_versions.c.version == version))
    return await _snapshot(raw) if raw else None


