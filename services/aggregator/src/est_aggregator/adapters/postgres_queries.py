"""The hot statements of a report batch written out for the asyncpg driver: ``PostgresBatchStore``, the
PostgreSQL twin of ``pictures.db.SqlBatchStore`` (the ``BatchStore`` port of ``pictures.deps``).

Each statement is set-based, whatever the size of the batch: the values travel as one array per column
(``unnest``), look-ups join such an array, and a redelivered event or report changes nothing (``ON
CONFLICT``). They run on the asyncpg connection under the session, inside the session's transaction,
and asyncpg keeps them prepared per connection. Values go through the columns' own bind processors,
so rows are stored exactly as SQLAlchemy stores them and every query of ``pictures.db`` reads them
back unchanged. What this skips is SQLAlchemy's compilation and its executemany (one round trip per
row with asyncpg), which cost far more than PostgreSQL's own work on a batch of small rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from est_shared.clock import utcnow
from sqlalchemy import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.pictures.db import PictureKey, reports
from est_aggregator.pictures.domain.notes import split_notes
from est_aggregator.pictures.domain.reports import ReportRecord

# column, the array type its values travel as, and the cast back to the column's type
REPORT_COLUMNS = (("report_id", "text", ""), ("event_id", "text", ""), ("municipality_id", "text", ""),
                  ("area_id", "text", ""), ("period", "text", ""), ("checklist", "text", ""),
                  ("answers", "text", "::json"), ("nothing_to_report", "boolean", ""), ("supersedes", "text", ""),
                  ("reporter_id", "text", ""), ("actor_id", "text", ""), ("received_at", "timestamptz", ""),
                  ("late", "boolean", ""), ("notes", "text", "::json"))

INSERT_REPORTS = (
    f"INSERT INTO reports ({', '.join(c for c, _, _ in REPORT_COLUMNS)}, stored_at) "
    f"SELECT {', '.join(f'{c}{cast}' for c, _, cast in REPORT_COLUMNS)}, ${len(REPORT_COLUMNS) + 1}::timestamptz "
    f"FROM unnest({', '.join(f'${i}::{t}[]' for i, (_, t, _) in enumerate(REPORT_COLUMNS, 1))}) "
    f"AS r ({', '.join(c for c, _, _ in REPORT_COLUMNS)}) "
    "ON CONFLICT (report_id) DO NOTHING")

# look-ups join the ids (an index look-up each) instead of ``= ANY($n)``: the generic plan of a prepared
# statement filters every row of the consumer through the whole array, 1,000 comparisons a row; varchar[],
# the columns' type (a text[] compares the column cast to text, which no index serves)
PROCESSED_IDS = ("SELECT p.event_id FROM unnest($2::varchar[]) AS k (event_id) "
                 "JOIN processed_events p ON p.consumer = $1 AND p.event_id = k.event_id")
MARK_PROCESSED = ("INSERT INTO processed_events (consumer, event_id, processed_at) "
                  "SELECT $1, e, $3 FROM unnest($2::text[]) AS e ON CONFLICT DO NOTHING")
EXISTING_REPORTS = ("SELECT r.report_id FROM unnest($1::varchar[]) AS k (report_id) "
                    "JOIN reports r ON r.report_id = k.report_id")

# the batch's pictures, (area, period, municipality) sorted: every writer locks them in one order
_KEYS = "unnest($1::text[], $2::text[], $3::text[]) AS k (area_id, period, municipality_id)"
ENSURE_PICTURES = ("INSERT INTO pictures (area_id, period, municipality_id, status, version, updated_at) "
                   f"SELECT area_id, period, municipality_id, 'open', 0, $4 FROM {_KEYS} "
                   "ORDER BY area_id, period ON CONFLICT (area_id, period) DO NOTHING")
# FOR UPDATE: under READ COMMITTED a row another batch changed meanwhile is read as it committed,
# so the old tokens are the ones this batch replaces (what keeps ReportCache honest across replicas)
LOCK_TOKENS = ("SELECT p.area_id, p.period, p.report_token FROM pictures p "
               "JOIN unnest($1::varchar[], $2::varchar[]) AS k (area_id, period) USING (area_id, period) "
               "ORDER BY p.area_id, p.period FOR UPDATE OF p")
SET_TOKENS = ("UPDATE pictures p SET report_token = $3 "
              "FROM unnest($1::varchar[], $2::varchar[]) AS k (area_id, period) "
              "WHERE p.area_id = k.area_id AND p.period = k.period")
MARK_DIRTY = ("INSERT INTO picture_dirty (area_id, period, municipality_id, token, first_at, changed_at) "
              f"SELECT area_id, period, municipality_id, $4, $5, $5 FROM {_KEYS} ORDER BY area_id, period "
              "ON CONFLICT (area_id, period) DO UPDATE SET token = excluded.token, changed_at = excluded.changed_at")


class BatchConflict(IntegrityError):
    """Another writer stored some of the batch's events or reports meanwhile: the batch is rolled back and
    tried again (``ingest.handle_report_batch``), and its second look leaves them out."""


async def _insert_all(drv: Any, statement: str, expected: int, *args: Any) -> None:
    """Run an ``INSERT … ON CONFLICT DO NOTHING``; a row it skipped is a conflict (``BatchConflict``)."""
    status = await drv.execute(statement, *args)
    if int(status.rsplit(" ", 1)[-1]) != expected:
        raise BatchConflict(statement, None, Exception(f"{status}: {expected} rows expected"))


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection under ``session``, inside the session's transaction."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None or not hasattr(driver, "fetch"):
        raise TypeError("the raw PostgreSQL statements run on an asyncpg connection only")
    if not driver.is_in_transaction():  # SQLAlchemy begins on the driver at its first statement
        await conn.exec_driver_sql("SELECT 1")
    return driver


class PostgresBatchStore:
    """The report batch's statements for the asyncpg driver, set-based and on the session's connection."""

    def __init__(self, dialect: Dialect) -> None:
        self.processors = [reports.c[c].type.dialect_impl(dialect).bind_processor(dialect)
                           for c, _, _ in REPORT_COLUMNS]

    def _columns(self, rows: Sequence[tuple[str, ReportRecord]]) -> list[list[Any]]:
        columns: list[list[Any]] = [[] for _ in REPORT_COLUMNS]
        for event_id, r in rows:
            answers, notes = split_notes(r.answers)
            values = (r.report_id, event_id, r.municipality_id, r.area_id, r.period, r.checklist, answers,
                      r.nothing_to_report, r.supersedes, r.reporter_id, r.actor_id, r.received_at, r.late,
                      notes or None)
            for col, v in zip(columns, values, strict=True):
                col.append(v)
        for i, proc in enumerate(self.processors):
            if proc is not None:
                columns[i] = [None if v is None else proc(v) for v in columns[i]]
        return columns

    async def processed_ids(self, session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        drv = await _driver(session)
        return {r[0] for r in await drv.fetch(PROCESSED_IDS, consumer, list(event_ids))}

    async def mark_processed_many(self, session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> None:
        if event_ids:
            drv = await _driver(session)
            await _insert_all(drv, MARK_PROCESSED, len(event_ids), consumer, list(event_ids), utcnow())

    async def existing_report_ids(self, session: AsyncSession, report_ids: Sequence[str]) -> set[str]:
        if not report_ids:
            return set()
        drv = await _driver(session)
        return {r[0] for r in await drv.fetch(EXISTING_REPORTS, list(report_ids))}

    async def insert_reports(self, session: AsyncSession, rows: Sequence[tuple[str, ReportRecord]]) -> None:
        if rows:
            drv = await _driver(session)
            await _insert_all(drv, INSERT_REPORTS, len(rows), *self._columns(rows), utcnow())

    async def touch_pictures(self, session: AsyncSession, keys: Sequence[tuple[str, str, str]], token: str, *,
                             tokens: bool) -> dict[PictureKey, str | None]:
        """Two statements (four with ``tokens``: the old report tokens locked and read, then replaced)."""
        keys = sorted(keys)  # a stable lock order
        if not keys:
            return {}
        drv = await _driver(session)
        areas, periods, munis = [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]
        at = utcnow()
        await drv.execute(ENSURE_PICTURES, areas, periods, munis, at)
        old: dict[PictureKey, str | None] = {}
        if tokens:
            old = dict.fromkeys(zip(areas, periods, strict=True), None)
            for area, period, t in await drv.fetch(LOCK_TOKENS, areas, periods):
                old[(area, period)] = t
            await drv.execute(SET_TOKENS, areas, periods, token)
        await drv.execute(MARK_DIRTY, areas, periods, munis, token, at)
        return old
