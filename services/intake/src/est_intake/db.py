"""Intake tables (organisation history, accepted reports for idempotency, outbox) and small repositories."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from est_shared.db import outbox_table, utcnow
from est_shared.org import OrgSnapshot
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

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


async def _find_on(conn: AsyncConnection, report_ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    ids = list(dict.fromkeys(report_ids))
    for i in range(0, len(ids), 500):
        rows = (await conn.execute(
            select(reports.c.report_id, reports.c.content_sha256, reports.c.response, reports.c.area_id)
            .where(reports.c.report_id.in_(ids[i:i + 500])))).all()
        for rid, digest, response, area in rows:
            out[rid] = {"content_sha256": digest, "response": json.loads(response), "area_id": area}
    return out


class ReportLedger:
    """The idempotency store of accepted reports, with concurrent requests coalesced.

    Lookups waiting at the same moment become one ``SELECT … IN``; rows waiting to be recorded
    become one transaction (one commit, one writer: no lock contention on SQLite). ``record``
    returns only after that transaction has committed, so an answer is never given for a row that
    could still be lost. ``inflight`` maps report ids being accepted by this process right now to
    the future of their outcome, so an identical resend waits for the first instead of racing it.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self._reads: list[tuple[list[str], asyncio.Future[dict[str, dict[str, Any]]]]] = []
        self._writes: list[tuple[list[dict[str, Any]], asyncio.Future[set[str]]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def find(self, report_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored rows by id: content hash, stored answer and area."""
        if not report_ids:
            return {}
        fut: asyncio.Future[dict[str, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._reads.append((report_ids, fut))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_loop(), name="report-ledger-reads")
        return await fut

    async def record(self, rows: list[dict[str, Any]]) -> set[str]:
        """Insert rows and wait for the commit; returns the ids that were stored already (not inserted)."""
        if not rows:
            return set()
        fut: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        self._writes.append((rows, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="report-ledger-writes")
        return await fut

    async def _read_loop(self) -> None:
        while self._reads:
            batch, self._reads = self._reads, []
            try:
                async with self.engine.connect() as conn:
                    found = await _find_on(conn, [rid for ids, _ in batch for rid in ids])
            except Exception as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for ids, fut in batch:
                if not fut.done():
                    fut.set_result({rid: found[rid] for rid in ids if rid in found})

    async def _write_loop(self) -> None:
        while self._writes:
            batch, self._writes = self._writes, []
            try:
                skipped = await self._insert([row for rows, _ in batch for row in rows])
            except Exception as exc:
                log.warning("recording accepted reports failed", extra={"error": repr(exc)[:200],
                                                                        "rows": sum(len(r) for r, _ in batch)})
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for rows, fut in batch:
                if not fut.done():
                    fut.set_result({r["report_id"] for r in rows if id(r) in skipped})

    async def _insert(self, rows: list[dict[str, Any]]) -> set[int]:
        """Insert in one transaction; returns ``id()`` of the rows not inserted (their id was stored)."""
        first: dict[str, dict[str, Any]] = {}
        for r in rows:
            first.setdefault(r["report_id"], r)
        unique = list(first.values())
        skipped = {id(r) for r in rows if first[r["report_id"]] is not r}
        for attempt in range(5):
            try:
                async with self.engine.begin() as conn:
                    if attempt == 0:
                        await conn.execute(insert(reports), unique)
                        return skipped
                    # a concurrent writer (another replica) stored some of them: insert the rest
                    stored = set(await _find_on(conn, list(first)))
                    rest = [r for r in unique if r["report_id"] not in stored]
                    if rest:
                        await conn.execute(insert(reports), rest)
                    return skipped | {id(r) for r in unique if r["report_id"] in stored}
            except IntegrityError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")
