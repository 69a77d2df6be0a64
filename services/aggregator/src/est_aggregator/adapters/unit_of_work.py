"""The unit-of-work strategies: pooled SQLAlchemy sessions, or (a SQLite file) the in-loop connection.

``app.py`` picks one by the database URL; the use cases see only the ``UnitOfWork`` port of
``pictures.deps``. In-loop, a report batch's statements run on the event loop's thread over one
synchronous connection: no hand-over to the driver's thread and back for each statement (a batch
makes about ten), which leaves the consumer working instead of waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from est_shared.adapters.sqlite import InLoopSqlite, retry_busy
from est_shared.db import transaction
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")


class InLoopSession:
    """The part of ``AsyncSession`` the queries of ``pictures.db`` use, over a synchronous connection."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def get_bind(self) -> Any:
        return self.conn.engine

    async def execute(self, statement: Any, params: Any = None) -> Any:
        return self.conn.execute(statement, params) if params is not None else self.conn.execute(statement)

    async def scalars(self, statement: Any) -> Any:
        return self.conn.scalars(statement)

    async def scalar(self, statement: Any) -> Any:
        return self.conn.scalar(statement)


def in_loop_session(conn: Any) -> AsyncSession:
    """An ``InLoopSession`` where the queries take an ``AsyncSession``: it offers every method they call."""
    return cast(AsyncSession, InLoopSession(conn))


class PooledUnitOfWork:
    """Every transaction and read on a session from the pool (PostgreSQL, or SQLite without a file)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, serialise_writes: bool,
                 snapshot_reads: bool = False) -> None:
        self.sessions, self.serialise_writes, self.snapshot_reads = sessions, serialise_writes, snapshot_reads
        self._lock = asyncio.Lock()

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction."""
        async with self.transaction() as s:
            return await work(s)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only session; with ``snapshot_reads`` (PostgreSQL) every statement of it reads one snapshot
        (REPEATABLE READ: a picture's report token and its reports read together, which the report cache
        needs; a read-only transaction of that level never fails to serialise)."""
        async with self.sessions() as s:
            if self.snapshot_reads:
                await s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield s

    async def recover(self, session: AsyncSession, exc: Exception) -> None:
        """Roll a read session back after a failed statement (PostgreSQL aborts its transaction)."""
        if isinstance(exc, DBAPIError):
            await session.rollback()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One transaction; SQLite writers in this process queue on a lock instead of failing busy."""
        if self.serialise_writes:
            async with self._lock, transaction(self.sessions) as s:
                yield s
        else:
            async with transaction(self.sessions) as s:
                yield s


class InLoopUnitOfWork(PooledUnitOfWork):
    """A SQLite file: ``write`` and ``reading`` in-loop (a busy database retried), ``transaction`` pooled;
    this process's writers of either kind take turns on one lock."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], local: InLoopSqlite) -> None:
        super().__init__(sessions, serialise_writes=True)
        self.local = local

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one in-loop transaction."""
        local = self.local

        async def attempt() -> T:
            async with self._lock:  # this process's other SQLite writers finish first
                with local.transaction() as conn:
                    return await work(in_loop_session(conn))

        return await retry_busy(attempt)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only in-loop session."""
        with self.local.reading() as conn:
            yield in_loop_session(conn)

    async def recover(self, session: AsyncSession, exc: Exception) -> None:
        """Nothing to do: an in-loop read holds no transaction a failed statement could abort."""
