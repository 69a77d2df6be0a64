"""Intake tables (organisation history, accepted reports for idempotency, outbox) and small repositories."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from est_shared.db import outbox_table, utcnow
from est_shared.org import OrgSnapshot
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

metadata = MetaData()

org_versions = Table(
    "org_versions", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("snapshot", Text, nullable=False, doc="OrgSnapshot JSON (tokens only as SHA-256)"),
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Column("applied_by", String(200), nullable=False),
    Column("changes", Text, nullable=False, doc="JSON list of human-readable changes"),
)

reports = Table(
    "reports", metadata,
    Column("report_id", String(128), primary_key=True),
    Column("content_sha256", String(64), nullable=False),
    Column("response", Text, nullable=False, doc="the 202 body, JSON"),
    Column("municipality_id", String(100), nullable=False),
    Column("area_id", String(100), nullable=False, index=True),
    Column("period", String(20), nullable=False),
    Column("reporter_id", String(100), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

outbox = outbox_table(metadata)


async def latest_org(session: AsyncSession) -> OrgSnapshot | None:
    """The newest stored organisation snapshot, or None before the first apply."""
    raw = await session.scalar(select(org_versions.c.snapshot).order_by(org_versions.c.version.desc()).limit(1))
    return OrgSnapshot.model_validate_json(raw) if raw else None


async def add_org_version(session: AsyncSession, snapshot: OrgSnapshot, *, applied_by: str,
                          changes: list[str], applied_at: datetime | None = None) -> None:
    """Store one organisation version (the primary key refuses a concurrent duplicate)."""
    await session.execute(insert(org_versions).values(
        version=snapshot.version, snapshot=snapshot.model_dump_json(), applied_at=applied_at or utcnow(),
        applied_by=applied_by, changes=json.dumps(changes, ensure_ascii=False)))


async def org_history(session: AsyncSession, limit: int = 100) -> list[dict[str, Any]]:
    """Stored versions, newest first, without the snapshots."""
    rows = (await session.execute(
        select(org_versions.c.version, org_versions.c.applied_at, org_versions.c.applied_by, org_versions.c.changes)
        .order_by(org_versions.c.version.desc()).limit(limit))).all()
    return [{"version": v, "applied_at": at, "applied_by": by, "changes": json.loads(ch)} for v, at, by, ch in rows]


async def org_version(session: AsyncSession, version: int) -> OrgSnapshot | None:
    """One stored organisation version."""
    raw = await session.scalar(select(org_versions.c.snapshot).where(org_versions.c.version == version))
    return OrgSnapshot.model_validate_json(raw) if raw else None


async def find_reports(session: AsyncSession, report_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Stored reports by id: content hash, stored answer and area."""
    out: dict[str, dict[str, Any]] = {}
    ids = list(dict.fromkeys(report_ids))
    for i in range(0, len(ids), 500):
        rows = (await session.execute(
            select(reports.c.report_id, reports.c.content_sha256, reports.c.response, reports.c.area_id)
            .where(reports.c.report_id.in_(ids[i:i + 500])))).all()
        for rid, digest, response, area in rows:
            out[rid] = {"content_sha256": digest, "response": json.loads(response), "area_id": area}
    return out


def report_row(*, report_id: str, content_sha256: str, response: dict[str, Any], municipality_id: str,
               area_id: str, period: str, reporter_id: str, received_at: datetime) -> dict[str, Any]:
    """A row for the reports table."""
    return {"report_id": report_id, "content_sha256": content_sha256, "response": json.dumps(response),
            "municipality_id": municipality_id, "area_id": area_id, "period": period,
            "reporter_id": reporter_id, "received_at": received_at, "recorded_at": utcnow()}


async def insert_reports(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert accepted-report rows (raises IntegrityError if one exists already)."""
    if rows:
        await session.execute(insert(reports), rows)
