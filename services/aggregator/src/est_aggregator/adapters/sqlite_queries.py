"""The hot statements of a report batch written out for the sqlite3 driver: ``SqliteBatchStore``, the in-loop
twin of ``pictures.db.SqlBatchStore`` (the ``BatchStore`` port of ``pictures.deps``).

Values go through the columns' own bind processors, so rows are stored exactly as SQLAlchemy stores
them and every query of ``pictures.db`` reads them back unchanged. The statements skip SQLAlchemy's
compilation and result machinery, which costs more than SQLite's own work on a batch of small rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from est_shared.clock import utcnow
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.adapters.unit_of_work import InLoopSession
from est_aggregator.pictures.db import CHUNK, PictureKey, chunks, processed, reports
from est_aggregator.pictures.domain.notes import split_notes
from est_aggregator.pictures.domain.reports import ReportRecord

REPORT_COLUMNS = ("report_id", "event_id", "municipality_id", "area_id", "period", "checklist", "answers",
                  "nothing_to_report", "supersedes", "reporter_id", "actor_id", "received_at", "late", "notes",
                  "stored_at")
INSERT_REPORTS = (f"INSERT INTO reports ({', '.join(REPORT_COLUMNS)}) "
                  f"VALUES ({', '.join('?' * len(REPORT_COLUMNS))})")


def _in_list(n: int) -> str:
    return ", ".join("?" * n)


def _driver(session: AsyncSession) -> sqlite3.Connection:
    """The sqlite3 connection under an in-loop session (the only session these statements run on)."""
    if not isinstance(session, InLoopSession):
        raise TypeError("the raw SQLite statements run on an in-loop session only")
    driver: sqlite3.Connection = session.conn.connection.driver_connection
    return driver


class SqliteBatchStore:
    """The report batch's statements for the sqlite3 driver, on the in-loop session."""

    def __init__(self) -> None:
        dialect = sqlite.dialect()
        self.processors = [reports.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in REPORT_COLUMNS]
        self.time = processed.c.processed_at.type.dialect_impl(dialect).bind_processor(dialect)

    def _now(self) -> Any:
        return self.time(utcnow()) if self.time else utcnow()

    def _report_params(self, rows: Sequence[tuple[str, ReportRecord]], now: datetime) -> list[tuple[Any, ...]]:
        procs = [(i, p) for i, p in enumerate(self.processors[:-1]) if p is not None]
        last = self.processors[-1]
        stored_at = last(now) if last is not None else now  # the same for every row: processed once
        out = []
        for event_id, r in rows:
            answers, notes = split_notes(r.answers)
            values = [r.report_id, event_id, r.municipality_id, r.area_id, r.period, r.checklist, answers,
                      r.nothing_to_report, r.supersedes, r.reporter_id, r.actor_id, r.received_at, r.late,
                      notes or None, stored_at]
            for i, p in procs:
                v = values[i]
                if v is not None:
                    values[i] = p(v)
            out.append(tuple(values))
        return out

    async def processed_ids(self, session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        drv = _driver(session)
        for part in chunks(list(event_ids)):
            found.update(e for (e,) in drv.execute(
                f"SELECT event_id FROM processed_events WHERE consumer = ? AND event_id IN ({_in_list(len(part))})",
                [consumer, *part]))
        return found

    async def mark_processed_many(self, session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> None:
        if event_ids:
            at = self._now()
            _driver(session).executemany("INSERT INTO processed_events (consumer, event_id, processed_at) "
                                         "VALUES (?, ?, ?)", [(consumer, e, at) for e in event_ids])

    async def existing_report_ids(self, session: AsyncSession, report_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        drv = _driver(session)
        for part in chunks(list(report_ids)):
            found.update(r for (r,) in drv.execute(
                f"SELECT report_id FROM reports WHERE report_id IN ({_in_list(len(part))})", list(part)))
        return found

    async def insert_reports(self, session: AsyncSession, rows: Sequence[tuple[str, ReportRecord]]) -> None:
        if rows:
            _driver(session).executemany(INSERT_REPORTS, self._report_params(rows, utcnow()))

    async def touch_pictures(self, session: AsyncSession, keys: Sequence[tuple[str, str, str]], token: str, *,
                             tokens: bool) -> dict[PictureKey, str | None]:
        """Four statements: one look-up of the old report tokens (with ``tokens``), three upserts."""
        keys = sorted(keys)  # a stable lock order
        if not keys:
            return {}
        drv = _driver(session)
        at = self._now()
        old: dict[PictureKey, str | None] = {}
        if tokens:
            old = dict.fromkeys(((a, p) for a, p, _m in keys), None)
            for part in chunks(keys, CHUNK // 2):
                where = " OR ".join(["(area_id = ? AND period = ?)"] * len(part))
                params = [v for area, period, _m in part for v in (area, period)]
                for area, period, t in drv.execute(
                        f"SELECT area_id, period, report_token FROM pictures WHERE {where}", params):
                    old[(area, period)] = t
        drv.executemany("INSERT INTO pictures (area_id, period, municipality_id, status, version, updated_at, "
                        "report_token) VALUES (?, ?, ?, 'open', 0, ?, ?) ON CONFLICT (area_id, period) DO "
                        + ("UPDATE SET report_token = excluded.report_token" if tokens else "NOTHING"),
                        [(a, p, m, at, token if tokens else None) for a, p, m in keys])
        drv.executemany("INSERT INTO picture_dirty (area_id, period, municipality_id, token, first_at, changed_at) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (area_id, period) DO UPDATE SET token = "
                        "excluded.token, changed_at = excluded.changed_at",
                        [(a, p, m, token, at, at) for a, p, m in keys])
        return old
