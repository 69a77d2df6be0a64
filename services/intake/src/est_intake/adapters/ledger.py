"""The report ledger on the database driver itself: pre-written statements (``LedgerSql``), the in-loop
SQLite connection with its bulk move (``LocalLedger``) and the coalescing store (``ReportLedger``)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from est_shared.adapters.sqlite import BUSY_TIMEOUT_MS, WAL_SIZE_LIMIT, InLoopSqlite, in_loop_sqlite, retry_busy
from est_shared.observability import error_name
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from est_intake.reports.db import FOUND_COLUMNS, REPORT_COLUMNS, found_row, reports

try:
    from asyncpg.exceptions import UniqueViolationError

    _UNIQUE_VIOLATIONS: tuple[type[BaseException], ...] = (UniqueViolationError,)
except ImportError:  # an image without PostgreSQL support
    _UNIQUE_VIOLATIONS = ()

log = logging.getLogger("est.intake")


class LedgerSql:
    """The ledger's two statements written out once for the engine's driver (no SQL compilation per call).

    Values go through the column types' bind processors, so rows are stored exactly as SQLAlchemy
    stores them (the other queries of this module read them back).
    """

    def __init__(self, engine: AsyncEngine, *, insert_into: str = "reports") -> None:
        dialect = engine.dialect
        self.postgres = dialect.name == "postgresql"
        cols = ", ".join(REPORT_COLUMNS)
        self.processors = [reports.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in REPORT_COLUMNS]
        self._processing = [(i, proc) for i, proc in enumerate(self.processors) if proc is not None]
        self._processed: dict[tuple[int, Any, Any], Any] = {}
        if self.postgres:
            self.insert_sql = f"INSERT INTO reports ({cols}) VALUES ({', '.join(f'${i + 1}' for i in range(9))})"
            self.find_sql = (f"SELECT {', '.join(FOUND_COLUMNS)} FROM reports "
                             "WHERE report_id = ANY($1::varchar[])")
        else:
            self.insert_sql = f"INSERT INTO {insert_into} ({cols}) VALUES ({', '.join('?' * 9)})"
        self._find_sql: dict[int, str] = {}
        self.integrity: tuple[type[BaseException], ...] = (*_UNIQUE_VIOLATIONS, sqlite3.IntegrityError, IntegrityError)

    def _select(self, n: int) -> str:
        sql = self._find_sql.get(n)
        if sql is None:
            # both tables (see reports_recent); the older row comes last and wins if an id were in both
            sql = self._find_sql[n] = " UNION ALL ".join(
                f"SELECT {', '.join(FOUND_COLUMNS)} FROM {table} "
                f"WHERE report_id IN ({', '.join('?' * n)})" for table in ("reports_recent", "reports"))
        return sql

    async def find(self, drv: Any, report_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored rows by id (500 ids a statement)."""
        out: dict[str, dict[str, Any]] = {}
        ids = list(dict.fromkeys(report_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            rows = await (drv.fetch(self.find_sql, chunk) if self.postgres
                          else drv.execute_fetchall(self._select(len(chunk)), chunk + chunk))
            for row in rows:
                out[row[0]] = found_row(row)
        return out

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """A row as statement parameters, through the column types' bind processors."""
        out = [row[c] for c in REPORT_COLUMNS]
        memo = self._processed
        for i, proc in self._processing:
            v = out[i]
            if v is not None:
                # the rows of a batch share their times: process each distinct value once (with its
                # tzinfo in the key: equal instants in other zones are equal but are written differently)
                key = (i, v, getattr(v, "tzinfo", None))
                hit = memo.get(key)
                if hit is None:
                    if len(memo) >= 64:
                        memo.clear()
                    hit = memo[key] = proc(v)
                out[i] = hit
        return tuple(out)

    async def insert(self, drv: Any, rows: list[dict[str, Any]]) -> None:
        """Insert rows in one transaction (raises one of ``integrity`` if an id exists)."""
        params = [self.values(r) for r in rows]
        if isinstance(drv, LocalLedger):
            await drv.insert_many(self.insert_sql, params)
            return
        if self.postgres:
            async with drv.transaction():
                await drv.executemany(self.insert_sql, params)
            return
        try:
            await drv.executemany(self.insert_sql, params)
            await drv.commit()
        except BaseException:
            await drv.rollback()
            raise


def _sqlite3(conn: Connection) -> sqlite3.Connection:
    """The ``sqlite3`` connection under an in-loop SQLAlchemy connection (statements go to it directly)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


class LocalLedger:
    """The ledger's statements on the service's ``InLoopSqlite`` (the event loop's thread, the raw driver).

    New rows go into the small ``reports_recent`` table and move into ``reports`` in bulk. The key is
    the client's report id, in random order: an insert into a large key index dirties about one page
    of it per row, and each dirty page is written to the WAL at the commit and again at the
    checkpoint. Measured on 100,000 stored reports: 11 µs a row, against 5 µs into a table of at
    most 20,000 rows; moving them in key order costs 4–6 µs a row. The move runs on a worker thread,
    in chunks of ``MOVE_CHUNK`` rows, a transaction of two statements each, during which ``sqlite3``
    does not hold the GIL; the loop's writers wait for one chunk at most (as for any other writer,
    see ``retry_busy``). Lookups read both tables.
    """

    RECENT_LIMIT = 20_000
    MOVE_CHUNK = 5_000
    MOVE_PAUSE = 0.02  # seconds between chunks
    MOVE_RETRY = 30.0  # seconds before a move is tried again after one failed

    def __init__(self, local: InLoopSqlite, *, recent_limit: int = RECENT_LIMIT) -> None:
        self.local = local
        self.recent_limit = recent_limit
        self.recent: int | None = None  # rows in reports_recent, counted at the first insert
        self.moves = 0  # bulk moves done (tests, logs)
        self._moving: asyncio.Task[int] | None = None
        self._retry_at = 0.0
        self._executor: Any = None
        self._conn: sqlite3.Connection | None = None

    async def execute_fetchall(self, sql: str, params: Any) -> list[Any]:
        async def attempt() -> list[Any]:
            with self.local.reading() as conn:
                return list(_sqlite3(conn).execute(sql, params).fetchall())

        return await retry_busy(attempt)

    async def insert_many(self, sql: str, params: list[Any]) -> None:
        """Insert in one transaction: all rows or none; start a bulk move once ``recent_limit`` rows wait."""
        async def attempt() -> None:
            with self.local.transaction() as conn:
                _sqlite3(conn).executemany(sql, params)

        if self.recent is None:  # before this insert: it is counted below
            [(self.recent,)] = await self.execute_fetchall("SELECT count(*) FROM reports_recent", ())
        await retry_busy(attempt)
        self.recent += len(params)
        loop = asyncio.get_running_loop()
        if self.recent >= self.recent_limit and (self._moving is None or self._moving.done()) \
                and loop.time() >= self._retry_at:
            self._moving = asyncio.create_task(self.move(), name="ledger-move")

    async def move(self) -> int:
        """Move the rows of ``reports_recent`` into ``reports`` (on the worker thread, in chunks); a failure
        leaves them where they are (still found there) and the next move waits ``MOVE_RETRY`` seconds."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-move")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            moved: int = await loop.run_in_executor(self._executor, self._move_rows)
        except Exception as exc:  # e.g. a full disk: the rows stay in reports_recent, still found there
            self._retry_at = loop.time() + self.MOVE_RETRY
            log.warning("could not move ledger rows", extra={"error": error_name(exc)})
            return 0
        self.recent = max(0, (self.recent or 0) - moved)
        self.moves += 1
        log.info("ledger rows moved", extra={"rows": moved, "seconds": round(loop.time() - started, 3)})
        return moved

    def _move_rows(self) -> int:
        if self._conn is None:
            conn = sqlite3.connect(self.local.engine.url.database or "", isolation_level=None,
                                   check_same_thread=False)
            for pragma in (f"busy_timeout={BUSY_TIMEOUT_MS}", "synchronous=NORMAL", "wal_autocheckpoint=0",
                           f"journal_size_limit={WAL_SIZE_LIMIT}", "cache_size=-8192"):
                conn.execute(f"PRAGMA {pragma}")
            self._conn = conn
        cols = ", ".join(REPORT_COLUMNS)
        conn = self._conn
        [(waiting,)] = conn.execute("SELECT count(*) FROM reports_recent").fetchall()
        moved = 0
        # in chunks of the lowest ids, a transaction each: the loop's writers wait for one chunk at most
        for _ in range(waiting // self.MOVE_CHUNK + 2):
            conn.execute("BEGIN IMMEDIATE")
            try:
                # an id in both (not expected: lookups read both tables first) keeps its older row
                conn.execute(f"INSERT OR IGNORE INTO reports ({cols}) SELECT {cols} FROM reports_recent "
                             f"ORDER BY report_id LIMIT {self.MOVE_CHUNK}")
                n = conn.execute(f"DELETE FROM reports_recent WHERE report_id IN (SELECT report_id FROM "
                                 f"reports_recent ORDER BY report_id LIMIT {self.MOVE_CHUNK})").rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            moved += n
            if n < self.MOVE_CHUNK or moved >= waiting:
                break
            time.sleep(self.MOVE_PAUSE)  # the loop's writers retry every 5 ms: let them in between chunks
        return moved

    def close(self) -> None:
        if self._moving is not None:
            self._moving.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)  # a move under way finishes (or rolls back) first
            self._executor = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.local.dispose()


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's own connection (aiosqlite or asyncpg) under a pooled SQLAlchemy connection."""
    return (await conn.get_raw_connection()).driver_connection


class ReportLedger:
    """The idempotency store of accepted reports, with concurrent requests coalesced.

    Lookups waiting at the same moment become one ``SELECT … IN``; rows waiting to be recorded
    become one transaction (one commit, one writer: no lock contention on SQLite). ``record``
    returns only after that transaction has committed, so an answer is never given for a row that
    could still be lost. ``inflight`` maps report ids being accepted by this process right now to
    the future of their outcome, so an identical resend waits for the first instead of racing it.
    Both loops keep one pooled connection while work keeps coming and talk to its driver directly
    with pre-written statements (``LedgerSql``): this is the hot path of every report.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        local = in_loop_sqlite(str(engine.url)) if engine.dialect.name == "sqlite" else None
        self.local = LocalLedger(local) if local is not None else None
        self.sql = LedgerSql(engine, insert_into="reports" if self.local is None else "reports_recent")
        self.inflight: dict[str, asyncio.Future[Any]] = {}
        self._reads: list[tuple[list[str], asyncio.Future[dict[str, dict[str, Any]]]]] = []
        self._writes: list[tuple[list[dict[str, Any]], asyncio.Future[set[str]]]] = []
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def find(self, report_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored rows by id: content hash, stored answer, area, municipality and sender."""
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

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        """The driver connection to use: the in-loop SQLite one, else a pooled connection's driver."""
        if self.local is not None:
            await asyncio.sleep(0)  # let the requests of this moment join the batch
            yield self.local
            return
        async with self.engine.connect() as conn:
            yield await _driver(conn)

    def close(self) -> None:
        """Close the in-loop SQLite connection (the pooled ones belong to the engine)."""
        if self.local is not None:
            self.local.close()

    async def _read_loop(self) -> None:
        while self._reads:
            batch: list[tuple[list[str], asyncio.Future[dict[str, dict[str, Any]]]]] = []
            try:
                async with self._connection() as drv:
                    while self._reads:
                        batch, self._reads = self._reads, []
                        found = await self.sql.find(drv, [rid for ids, _ in batch for rid in ids])
                        for ids, fut in batch:
                            if not fut.done():
                                fut.set_result({rid: found[rid] for rid in ids if rid in found})
                        batch = []
            except Exception as exc:  # this batch fails; the next one gets a fresh connection
                if not batch:
                    batch, self._reads = self._reads, []
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)

    async def _write_loop(self) -> None:
        while self._writes:
            batch: list[tuple[list[dict[str, Any]], asyncio.Future[set[str]]]] = []
            try:
                async with self._connection() as drv:
                    while self._writes:
                        batch, self._writes = self._writes, []
                        skipped = await self._insert(drv, [row for rows, _ in batch for row in rows])
                        for rows, fut in batch:
                            if not fut.done():
                                fut.set_result({r["report_id"] for r in rows if id(r) in skipped})
                        batch = []
            except Exception as exc:
                if not batch:
                    batch, self._writes = self._writes, []
                log.warning("recording accepted reports failed", extra={"error": error_name(exc),
                                                                        "rows": sum(len(r) for r, _ in batch)})
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)

    async def _insert(self, drv: Any, rows: list[dict[str, Any]]) -> set[int]:
        """Insert in one transaction; returns ``id()`` of the rows not inserted (their id was stored)."""
        first: dict[str, dict[str, Any]] = {}
        for r in rows:
            first.setdefault(r["report_id"], r)
        unique = list(first.values())
        skipped = {id(r) for r in rows if first[r["report_id"]] is not r}
        for attempt in range(5):
            try:
                if attempt == 0:
                    await self.sql.insert(drv, unique)
                    return skipped
                # a concurrent writer (another replica) stored some of them: insert the rest
                stored = set(await self.sql.find(drv, list(first)))
                rest = [r for r in unique if r["report_id"] not in stored]
                if rest:
                    await self.sql.insert(drv, rest)
                return skipped | {id(r) for r in unique if r["report_id"] in stored}
            except self.sql.integrity:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")
