"""The report ledger's tables (accepted reports for idempotency) and the rows they hold."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from est_shared.db import utcnow
from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, select
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


