"""InLoopSqlite: writes on the event loop's thread never wait inside SQLite for another writer's lock."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from est_shared.db import SqliteBusy, in_loop_sqlite, retry_busy
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
