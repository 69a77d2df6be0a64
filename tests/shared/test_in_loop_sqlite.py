"""InLoopSqlite: writes on the event loop's thread never wait inside SQLite for another writer's lock."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from est_shared.adapters.sqlite import SqliteBusy, in_loop_sqlite, retry_busy
from sqlalchemy import text


def _setup(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    return other


async def test_a_busy_database_is_retried_while_the_loop_keeps_running(tmp_path: Path) -> None:
    other = _setup(tmp_path / "x.db")
    local = in_loop_sqlite(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert local is not None
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        other.execute("INSERT INTO t VALUES (1)")

        async def write() -> None:
            with local.transaction() as conn:
                conn.execute(text("INSERT INTO t VALUES (2)"))

        task = asyncio.create_task(retry_busy(write, seconds=10))
        ticks = 0
        for _ in range(20):  # the loop runs while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not task.done() and ticks == 20
        other.execute("COMMIT")
        await asyncio.wait_for(task, 5)
        assert sorted(r for (r,) in other.execute("SELECT id FROM t")) == [1, 2]
        with local.reading() as conn:  # a read sees the committed rows and takes no lock
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 2
    finally:
        local.dispose()
        other.close()


async def test_a_lock_held_too_long_ends_in_sqlite_busy_and_nothing_is_written(tmp_path: Path) -> None:
    other = _setup(tmp_path / "y.db")
    local = in_loop_sqlite(f"sqlite+aiosqlite:///{tmp_path / 'y.db'}")
    assert local is not None
    try:
        other.execute("BEGIN IMMEDIATE")

        async def write() -> None:
            with local.transaction() as conn:
                conn.execute(text("INSERT INTO t VALUES (3)"))

        with pytest.raises(SqliteBusy):
            await retry_busy(write, seconds=0.2)
        other.execute("COMMIT")
        assert list(other.execute("SELECT id FROM t")) == []
    finally:
        local.dispose()
        other.close()


def test_only_file_backed_sqlite_gets_an_in_loop_connection() -> None:
    assert in_loop_sqlite("sqlite+aiosqlite:///:memory:") is None
    assert in_loop_sqlite("postgresql+asyncpg://u@h/db") is None


WRITES = 1500  # enough commits for many RESTART resets (64 pages each), few enough for a busy CI machine


async def test_the_wal_stays_bounded_under_a_steady_stream_of_in_loop_writes(tmp_path: Path) -> None:
    """The background PASSIVE checkpoint alone never catches up with a writer that never pauses: the WAL
    grew to 1.4 GB in a minute. With the RESTART step it is reset again and again, and no write is lost."""
    from est_shared.adapters.sqlite import checkpoint_loop
    from est_shared.db import make_engine

    _setup(tmp_path / "x.db").close()
    local = in_loop_sqlite(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert local is not None
    checkpoints = asyncio.create_task(checkpoint_loop(engine, interval=0.05, restart_pages=64))
    wal = tmp_path / "x.db-wal"
    biggest = 0
    try:
        for i in range(WRITES):  # every commit appends at least a page (4 KB) to the WAL
            async def write(i: int = i) -> None:
                with local.transaction() as conn:
                    conn.execute(text("INSERT INTO t (id) VALUES (:i)"), {"i": i})

            await retry_busy(write)
            await asyncio.sleep(0)  # as a service does between batches: the checkpoint's thread runs meanwhile
            if wal.exists():
                biggest = max(biggest, wal.stat().st_size)
        with local.reading() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == WRITES
    finally:
        checkpoints.cancel()
        await asyncio.gather(checkpoints, return_exceptions=True)
        local.dispose()
        await engine.dispose()
    assert biggest < WRITES * 4096 // 2, biggest  # without the reset the WAL holds at least a page per commit


async def test_a_long_reader_holds_writers_back_only_briefly_during_a_restart_checkpoint(tmp_path: Path) -> None:
    """RESTART waits for readers and keeps writers out meanwhile: with the pool's 30 s busy timeout a
    long read elsewhere (a report query, a backup) would stop every in-loop write that long."""
    from est_shared.adapters.sqlite import checkpoint_loop
    from est_shared.db import make_engine

    _setup(tmp_path / "x.db").close()
    local = in_loop_sqlite(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert local is not None

    async def write(i: int) -> None:
        async def attempt() -> None:
            with local.transaction() as conn:
                conn.execute(text("INSERT INTO t (id) VALUES (:i)"), {"i": i})

        await retry_busy(attempt)

    for i in range(20):  # a WAL above the RESTART threshold below
        await write(i)
    reader = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchone()  # holds its snapshot of the WAL
    for i in range(20, 40):
        await write(i)
    checkpoints = asyncio.create_task(checkpoint_loop(engine, interval=0.01, restart_pages=1))
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(0.1)  # the RESTART is pending behind the reader
        for i in range(40, 60):
            t0 = loop.time()
            await asyncio.wait_for(write(i), timeout=5)
            assert loop.time() - t0 < 2.0
    finally:
        checkpoints.cancel()
        await asyncio.gather(checkpoints, return_exceptions=True)
        reader.rollback()
        reader.close()
        local.dispose()
        await engine.dispose()
