"""SQLite as the services use it, speaking to the driver directly: connection pragmas, the in-loop
connection of the hot paths, waiting out a busy database, and keeping the WAL bounded.

The only module of ``est_shared`` that issues PRAGMAs or touches ``sqlite3`` itself.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("est.db")

T = TypeVar("T")

WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes a SQLite WAL file is cut back to after it was reset
# Page cache of the in-loop connection (SQLite's default is 2 MB): the hot tables' indexes have random
# keys (UUIDs), so with a million rows nearly every insert missed the cache and read pages back in.
IN_LOOP_CACHE_KIB = 32 * 1024
BUSY_TIMEOUT_MS = 30_000  # how long a pooled (driver-thread) SQLite connection waits for a lock
RESTART_WAIT_MS = 200  # longest a RESTART checkpoint waits for other connections (writers wait with it)


def on_connect(engine: Any, *pragmas: str) -> None:
    """Set SQLite pragmas on every new connection of a (sync) engine."""

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in pragmas:
            cur.execute(f"PRAGMA {pragma}")
        cur.close()




def sqlite_file_pragmas(engine: Any) -> None:
    """The pragmas of a service's pooled SQLite connections: WAL, a busy timeout, foreign keys on."""
    on_connect(engine, "journal_mode=WAL", f"busy_timeout={BUSY_TIMEOUT_MS}", "synchronous=NORMAL",
               "foreign_keys=ON", f"journal_size_limit={WAL_SIZE_LIMIT}")


class SqliteBusy(Exception):
    """Another connection holds the SQLite write lock; try again shortly."""


@contextmanager
def _busy_as_sqlite_busy() -> Iterator[None]:
    """SQLite's "database is locked" (through SQLAlchemy or straight from the driver) as ``SqliteBusy``."""
    try:
        yield
    except (OperationalError, sqlite3.OperationalError) as exc:
        orig = getattr(exc, "orig", exc)
        if isinstance(orig, sqlite3.OperationalError) and ("locked" in str(orig) or "busy" in str(orig)):
            raise SqliteBusy() from exc
        raise


class InLoopSqlite:
    """A synchronous SQLAlchemy engine on a service's SQLite file, used on the event loop's thread.

    For hot paths (the intake's idempotency ledger, the aggregator's report batches and picture
    passes): their statements take well under a millisecond, less than handing each to a driver
    thread and back, which also makes two threads take turns on the GIL. A write transaction starts
    with ``BEGIN IMMEDIATE`` (the write lock up front) and never waits inside SQLite
    (``busy_timeout`` 0: waiting there would block the loop that the lock holder may need): a busy
    database raises ``SqliteBusy`` at once, and ``retry_busy`` tries again after an ``asyncio.sleep``.
    Automatic WAL checkpoints are off on this connection (they write and sync the database file at a
    commit); ``checkpoint_loop`` runs them on a pooled connection's thread instead.
    """

    def __init__(self, path: str) -> None:
        self.engine = create_engine(f"sqlite:///{path}", connect_args={"isolation_level": None},
                                    pool_size=1, max_overflow=0)

        on_connect(self.engine, "busy_timeout=0", "synchronous=NORMAL", "wal_autocheckpoint=0", "foreign_keys=ON",
                    f"journal_size_limit={WAL_SIZE_LIMIT}", f"cache_size=-{IN_LOOP_CACHE_KIB}")

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN" if conn.info.get("est_reading") else "BEGIN IMMEDIATE")

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (a WAL snapshot: it takes no lock and waits for none); ``SqliteBusy`` if locked."""
        with _busy_as_sqlite_busy(), self.engine.connect() as conn:
            conn.info["est_reading"] = True
            try:
                yield conn
            finally:
                conn.info.pop("est_reading", None)
                conn.rollback()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction: commits on success, rolls back on any error; ``SqliteBusy`` if locked."""
        with _busy_as_sqlite_busy(), self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def in_loop_sqlite(url: str) -> InLoopSqlite | None:
    """An ``InLoopSqlite`` for a file-backed SQLite URL, else None."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1]
    return InLoopSqlite(path) if path and path != ":memory:" and not path.startswith("file:") else None


async def retry_busy(attempt: Callable[[], Awaitable[T]], seconds: float = 30.0) -> T:
    """Run ``attempt`` until it does not raise ``SqliteBusy``, sleeping a little between; at most ``seconds``."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while True:
        try:
            return await attempt()
        except SqliteBusy:
            if loop.time() > until:
                raise
            await asyncio.sleep(0.005)


async def checkpoint_loop(engine: AsyncEngine, interval: float = 1.0, restart_pages: int = 4096) -> None:
    """Copy a SQLite WAL into the database file every ``interval`` seconds, off the event loop's thread.

    For services whose hot path writes SQLite from the loop's thread with automatic checkpoints off
    (a checkpoint at commit writes and syncs the database file: milliseconds the loop would stand
    still). The PASSIVE checkpoint runs on a pooled connection's driver thread and waits for no one.
    Under a steady stream of writes it never catches up, though (the loop appends while it copies),
    and the WAL would grow without end (1.4 GB in a minute at 500 reports/s): once more than
    ``restart_pages`` pages are in the log, a RESTART checkpoint copies the few left, holding writers
    back meanwhile (the in-loop writers retry, see ``retry_busy``), so the next writer starts the log
    from the beginning; ``journal_size_limit`` then trims the file.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            async with engine.connect() as conn:
                row: Any = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one()
                log_pages = row[1]  # (busy, pages in the log, pages checkpointed)
                if log_pages is not None and log_pages > restart_pages:
                    # RESTART holds writers back while it waits for readers: wait briefly, never the
                    # pool's BUSY_TIMEOUT_MS (a long reader elsewhere); it is tried again next time
                    await conn.exec_driver_sql(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
                    try:
                        await conn.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)")
                    finally:
                        await conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("WAL checkpoint failed", extra={"error": exc.__class__.__name__})


