"""The report ledger's tables (accepted reports for idempotency) and the rows they hold."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from est_shared.db import utcnow
from sqlalchemy import Boolean, Column, DateTime, Index, MetaData, String, Table, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from est_intake.reports.domain import ACCEPTED_KEYS

metadata = MetaData()


def _ledger_columns() -> list[Column[Any]]:
    return [
        Column("report_id", String(128), primary_key=True),
        Column("content_sha256", String(64), nullable=False),
        Column("response", Text, nullable=False, doc="the 202 body, JSON"),
        Column("municipality_id", String(100), nullable=False),
        Column("area_id", String(100), nullable=False),  # no index: nothing looks reports up by area here
        Column("period", String(20), nullable=False),
        Column("reporter_id", String(100), nullable=False),
        Column("received_at", DateTime(timezone=True), nullable=False),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
    ]


reports = Table("reports", metadata, *_ledger_columns())
"""The idempotency ledger: one row per accepted report id, with its fingerprint and answer."""

reports_recent = Table("reports_recent", metadata, *_ledger_columns())
"""SQLite only: the ledger's newest rows, moved into ``reports`` in bulk (see ``LocalLedger``); a report id
is in one of the two. Empty on PostgreSQL."""


async def find_reports(session: AsyncSession, report_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Stored reports by id (from both ledger tables): what ``ReportLedger.find`` answers."""
    out: dict[str, dict[str, Any]] = {}
    ids = list(dict.fromkeys(report_ids))
    for i in range(0, len(ids), 500):
        for table in (reports_recent, reports):  # the older row wins if an id were in both
            rows = (await session.execute(
                select(*(table.c[c] for c in FOUND_COLUMNS)).where(table.c.report_id.in_(ids[i:i + 500])))).all()
            for row in rows:
                out[row[0]] = found_row(row)
    return out


FOUND_COLUMNS = ("report_id", "content_sha256", "response", "area_id", "municipality_id", "reporter_id")
"""What a lookup reads of a stored report: its fingerprint and answer, and whose report of which area it is
(a correction is judged by the original's sender and municipality)."""


def found_row(row: Any) -> dict[str, Any]:
    """A looked-up row (``FOUND_COLUMNS`` in order) as the ledger answers it."""
    _, digest, response, area, municipality, reporter = row
    return {"content_sha256": digest, "response": json.loads(response), "area_id": area,
            "municipality_id": municipality, "reporter_id": reporter}


def report_row(*, report_id: str, content_sha256: str, response: dict[str, Any], municipality_id: str,
               area_id: str, period: str, reporter_id: str, received_at: datetime,
               recorded_at: datetime | None = None, response_text: str | None = None) -> dict[str, Any]:
    """A row for the reports table (``response_text``: the response as ``response_json`` writes it, if known)."""
    return {"report_id": report_id, "content_sha256": content_sha256,
            "response": response_json(response) if response_text is None else response_text,
            "municipality_id": municipality_id, "area_id": area_id, "period": period,
            "reporter_id": reporter_id, "received_at": received_at, "recorded_at": recorded_at or utcnow()}


_ascii = json.encoder.encode_basestring_ascii  # what json.dumps writes a string with


def accepted_json(report_id: str, period: str, late: bool) -> str:
    """``json.dumps(accepted_body(report_id, period, late))``, written out directly (every accepted report's row)."""
    return (f'{{"report_id": {_ascii(report_id)}, "period": {_ascii(period)}, '
            f'"status": "accepted", "late": {"true" if late else "false"}}}')


def response_json(response: dict[str, Any]) -> str:
    """``json.dumps(response)``; an accepted answer (the common row) written out directly."""
    if list(response) == ACCEPTED_KEYS and response["status"] == "accepted" and type(response["late"]) is bool \
            and type(response["report_id"]) is str and type(response["period"]) is str:
        return accepted_json(response["report_id"], response["period"], response["late"])
    return json.dumps(response)


DROPPED_INDEXES = ("ix_reports_area_id",)
"""Indexes older versions made that nothing reads: each cost every accepted report an index insert."""


REPORT_COLUMNS = ("report_id", "content_sha256", "response", "municipality_id", "area_id", "period", "reporter_id",
                  "received_at", "recorded_at")




own_reports = Table(
    "own_reports", metadata,
    Column("report_id", String(128), primary_key=True),
    Column("reporter_id", String(100), nullable=False),
    Column("municipality_id", String(100), nullable=False),
    Column("area_id", String(100), nullable=False),
    Column("period", String(20), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("late", Boolean, nullable=False, default=False),
    Column("checklist", String(60), nullable=False),
    Column("content", Text, nullable=False, doc="JSON: answers, nothing_to_report, note"),
    Column("supersedes", String(128)),
    Column("withdrawn", Boolean, nullable=False, default=False, doc="this report withdraws ``supersedes``"),
    Index("ix_own_reports_reporter", "reporter_id", "received_at"),
    Index("ix_own_reports_supersedes", "supersedes"),
)
"""Each accepted report's content, for its sender's own list (``GET /v1/me/reports``); the idempotency
ledger above stays lean."""


def own_row(data: dict[str, Any]) -> dict[str, Any]:
    """A row of ``own_reports`` from an accepted report's event data (``Accepted.fields``)."""
    answers = {code: (a.model_dump() if hasattr(a, "model_dump") else a) for code, a in data["answers"].items()}
    return {"report_id": data["report_id"], "reporter_id": data["reporter_id"],
            "municipality_id": data["municipality_id"], "area_id": data["area_id"], "period": data["period"],
            "received_at": data["received_at"], "late": bool(data["late"]), "checklist": data["checklist"],
            "content": json.dumps({"answers": answers, "nothing_to_report": data["nothing_to_report"],
                                   "note": data["note"]}, ensure_ascii=False),
            "supersedes": data.get("supersedes"), "withdrawn": bool(data.get("withdrawn"))}


async def record_own(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Store rows of ``own_reports``; one stored already is left as it is."""
    if not rows:
        return
    ids = [r["report_id"] for r in rows]
    have = set(await session.scalars(select(own_reports.c.report_id).where(own_reports.c.report_id.in_(ids))))
    fresh = [r for r in rows if r["report_id"] not in have]
    if fresh:
        await session.execute(insert(own_reports), fresh)


async def own_report(session: AsyncSession, report_id: str) -> dict[str, Any] | None:
    """One stored report's row with what supersedes it (``superseded_by``, ``withdrawn_by``), or None."""
    row = (await session.execute(select(own_reports).where(own_reports.c.report_id == report_id))).mappings().first()
    if row is None:
        return None
    [out] = await _with_successors(session, [dict(row)])
    return out


async def correction_states(session: AsyncSession, report_ids: list[str]) -> dict[str, dict[str, Any]]:
    """For the reports a call corrects: whether each is a withdrawal, and the report that corrected or withdrew
    it (``corrected_by``, ``withdrawn_by``); ids the list does not hold are left out."""
    c = own_reports.c
    out: dict[str, dict[str, Any]] = {}
    for (rid, withdrawal) in (await session.execute(select(c.report_id, c.withdrawn)
                                                    .where(c.report_id.in_(report_ids)))).all():
        out[rid] = {"withdrawal": bool(withdrawal), "corrected_by": None, "withdrawn_by": None}
    for rid, sup, withdrawn in (await session.execute(select(c.report_id, c.supersedes, c.withdrawn)
                                                      .where(c.supersedes.in_(report_ids))
                                                      .order_by(c.received_at, c.report_id))).all():
        state = out.setdefault(sup, {"withdrawal": False, "corrected_by": None, "withdrawn_by": None})
        state["withdrawn_by" if withdrawn else "corrected_by"] = rid
    return out


async def list_own(session: AsyncSession, reporter_id: str, *, area_id: str | None, period_from: str | None,
                   period_to: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """A sender's reports (not their withdrawals), newest first, with what supersedes each."""
    c = own_reports.c
    q = select(own_reports).where(c.reporter_id == reporter_id, c.withdrawn.is_(False))
    if area_id is not None:
        q = q.where(c.area_id == area_id)
    if period_from is not None:
        q = q.where(c.period >= period_from)
    if period_to is not None:
        q = q.where(c.period <= period_to)
    rows = (await session.execute(q.order_by(c.received_at.desc(), c.report_id).limit(limit).offset(offset)))
    return await _with_successors(session, [dict(r) for r in rows.mappings()])


async def _with_successors(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    c = own_reports.c
    ids = [r["report_id"] for r in rows]
    later: dict[str, tuple[str, bool]] = {}
    if ids:
        for rid, sup, withdrawn in (await session.execute(
                select(c.report_id, c.supersedes, c.withdrawn).where(c.supersedes.in_(ids)))).all():
            later[sup] = (rid, bool(withdrawn))
    for r in rows:
        by = later.get(r["report_id"])
        r["superseded_by"] = by[0] if by and not by[1] else None
        r["withdrawn_by"] = by[0] if by and by[1] else None
    return rows
