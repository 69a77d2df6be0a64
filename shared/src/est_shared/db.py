"""Database plumbing: async engines (SQLite by default, PostgreSQL in production), the processed-event
table for idempotent consumers, the transactional outbox with its relay, and the tables gate.

What speaks to a driver directly (SQLite pragmas, the in-loop connection, raw DDL) is in ``est_shared.adapters``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from est_shared.adapters.schema import add_missing_columns, lock_schema
from est_shared.adapters.sqlite import InLoopSqlite, retry_busy, sqlite_file_pragmas
from est_shared.bus import encode, publish_pipelined
from est_shared.clock import utcnow
from est_shared.errors import Unavailable
from est_shared.events import CloudEvent

log = logging.getLogger("est.db")

T = TypeVar("T")


class Gate:
    """Something that opens once (the tables exist): consumers ``wait()`` for it, routes ``require()`` it
    (503 until it is open, with ``Retry-After``), ``/readyz`` reports it."""

    def __init__(self, what_sv: str, what_en: str) -> None:
        self.what_sv, self.what_en = what_sv, what_en
        self._open = False
        self._event: asyncio.Event | None = None

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self._open:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()

    def require(self) -> None:
        """Raise ``Unavailable`` (503, retry in 5 s) until the gate is open."""
        if not self._open:
            raise Unavailable(f"Tjänsten startar: {self.what_sv} är inte klara än; försök igen om en stund.",
                              f"The service is starting: {self.what_en} are not ready yet; try again shortly.",
                              retry_after=5, reason="starting")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; for SQLite: WAL journal, a busy timeout and foreign keys on."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        sqlite_file_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def processed_events_table(metadata: MetaData) -> Table:
    """Event ids a consumer has applied; written in the same transaction as the effect."""
    return Table(
        "processed_events", metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(200), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, default=utcnow),
    )


def outbox_table(metadata: MetaData) -> Table:
    """Events to publish, written in the same transaction as the state that caused them."""
    return Table(
        "outbox", metadata,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("event_id", String(200), nullable=False, unique=True),
        Column("subject", String(300), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
        Column("published", Boolean, nullable=False, default=False, index=True),
        Column("published_at", DateTime(timezone=True)),
        Column("failed_at", DateTime(timezone=True), doc="set aside: JetStream can never take this event"),
        Column("error", String(200), doc="why it was set aside: the error's class"),
    )


OUTBOX_ADDED_COLUMNS = ("failed_at", "error")
"""Outbox columns newer than the first release (added to an existing table by ``add_outbox_columns``)."""


def add_outbox_columns(conn: Connection, table: Table) -> None:
    """Add the outbox columns an older version did not create (nullable, so existing rows stay pending)."""
    add_missing_columns(conn, table, OUTBOX_ADDED_COLUMNS)


async def mark_processed(session: AsyncSession, table: Table, *, consumer: str, event_id: str) -> bool:
    """Record an event as processed; False if it was already (then the caller must not apply it again)."""
    exists = await session.scalar(select(table.c.event_id).where(
        table.c.consumer == consumer, table.c.event_id == event_id))
    if exists:
        return False
    await session.execute(insert(table).values(consumer=consumer, event_id=event_id, processed_at=utcnow()))
    return True


async def add_to_outbox(session: AsyncSession, table: Table, subject: str, event: CloudEvent[Any]) -> None:
    """Queue an event for publishing once the transaction commits (an id already queued is skipped)."""
    await add_many_to_outbox(session, table, [(subject, event)])


_OUTBOX_INSERTS: dict[tuple[Table, str], Any] = {}


async def add_many_to_outbox(session: AsyncSession, table: Table,
                             items: list[tuple[str, CloudEvent[Any]]]) -> None:
    """Queue (subject, event) pairs with one statement, to publish once the transaction commits; an event
    id already queued is skipped (``ON CONFLICT DO NOTHING`` on the unique ``event_id``)."""
    if not items:
        return
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    dialect = session.get_bind().dialect.name
    stmt = _OUTBOX_INSERTS.get((table, dialect))
    if stmt is None:  # built once per table and dialect (building costs more than running it)
        stmt = _OUTBOX_INSERTS[(table, dialect)] = (pg_insert if dialect == "postgresql" else sqlite_insert)(
            table).on_conflict_do_nothing(index_elements=["event_id"])
    now = utcnow()
    await session.execute(stmt, [{"event_id": event.id, "subject": subject, "payload": encode(event),
                                  "created_at": now, "published": False} for subject, event in items])


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A unit of work: commits on success, rolls back on any error."""
    async with sessions() as session, session.begin():
        yield session


class OutboxMetrics:
    """What an outbox relay counts: events set aside because JetStream can never take them."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.failed = Counter(f"est_{service}_outbox_failed_total", "Outbox events set aside because they can "
                              "never be published (too large, no stream for the subject, …), by error",
                              ["error"], registry=registry)
        self.failed_rows = Gauge(f"est_{service}_outbox_failed_events", "Outbox events set aside and still "
                                 "there (an operator retries or deletes them)", registry=registry)


class OutboxRelay:
    """Publishes outbox rows to JetStream in order; several replicas are safe (Nats-Msg-Id dedups).

    A row JetStream can never take (``est_shared.bus.Published.permanent``: larger than the server's
    payload limit, a subject no stream captures, refused as a bad request) is set aside: marked with
    ``failed_at`` and its error's class, logged, counted, never tried again by itself, and the rows behind
    it go on. A transient failure (NATS away, no ack in time) stops the run at that row, to keep the order.
    ``failed`` is the number of rows set aside (recounted from the table now and then, so an operator's
    retry, ``UPDATE outbox SET failed_at = NULL, error = NULL …``, or deletion shows).
    """

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], table: Table, js: Any,
                 interval: float = 0.5, on_published: Any = None, local: InLoopSqlite | None = None,
                 keep_published: float = 3600.0, metrics: OutboxMetrics | None = None) -> None:
        self.sessions, self.table, self.js, self.interval = sessions, table, js, interval
        self.keep_published = keep_published  # seconds a published row stays (to look at), then it is deleted
        self._pruned_at = 0.0
        self.local = local  # SQLite: read and mark the rows on the loop's thread (no driver thread, no busy wait)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_published = on_published
        self.metrics = metrics
        self.failed = 0
        self._prepared = False

    def wake(self) -> None:
        """Ask for a prompt run (after a commit that queued events)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def prepare(self) -> None:
        """Add the columns an older version's table lacks, and count the rows set aside (once per relay)."""
        if self._prepared:
            return
        engine = self.sessions.kw["bind"]
        async with engine.begin() as conn:
            await lock_schema(conn)
            await conn.run_sync(add_outbox_columns, self.table)
        self._prepared = True
        await self.count_failed()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.flush()
                if loop.time() - self._pruned_at > min(60.0, self.keep_published):
                    self._pruned_at = loop.time()
                    await self.prune()
                    await self.count_failed()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay run failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()

    async def flush(self, limit: int = 500) -> int:
        """Publish pending rows; returns how many were published."""
        await self.prepare()
        t = self.table
        pending = (select(t.c.seq, t.c.event_id, t.c.subject, t.c.payload)
                   .where(t.c.published.is_(False), t.c.failed_at.is_(None)).order_by(t.c.seq).limit(limit))
        if (local := self.local) is not None:
            async def read() -> list[Any]:
                with local.reading() as conn:
                    return list(conn.execute(pending).all())

            rows = await retry_busy(read)
        else:
            async with self.sessions() as s:
                rows = list((await s.execute(pending)).all())
        if not rows:
            return 0
        # pipelined: one wait for all acks, then one transaction marks what was acknowledged or set aside
        outcomes = await publish_pipelined(self.js, [(subject, payload, event_id)
                                                     for _seq, event_id, subject, payload in rows])
        acked: list[Any] = []
        failed: list[tuple[Any, str]] = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome.ok:
                acked.append(row)
            elif outcome.permanent:
                failed.append((row, outcome.error or "Error"))
            else:  # this row and those behind it wait for the next run, in order
                log.warning("outbox publish failed; will retry", extra={"subject": row[2], "error": outcome.error})
                break
        if not acked and not failed:
            return 0
        at = utcnow()
        seqs = [seq for seq, _e, _s, _p in acked]
        marks = [update(t).where(t.c.seq.in_(seqs[i:i + 500])).values(published=True, published_at=at)
                 for i in range(0, len(seqs), 500)]
        marks += [update(t).where(t.c.seq == row[0]).values(failed_at=at, error=error[:200]) for row, error in failed]
        if local is not None:
            async def mark() -> None:
                with local.transaction() as conn:
                    for statement in marks:
                        conn.execute(statement)

            await retry_busy(mark)
        else:
            async with self.sessions() as s, s.begin():
                for statement in marks:
                    await s.execute(statement)
        for (_seq, event_id, subject, payload), error in failed:
            # ids and sizes only: the payload may hold free text
            log.error("outbox event can never be published; set aside, the events behind it go on", extra={
                "event_id": event_id, "subject": subject, "error": error, "bytes": len(payload)})
            if self.metrics is not None:
                self.metrics.failed.labels(error.split("(", 1)[0]).inc()
        if failed:
            self.failed += len(failed)
            if self.metrics is not None:
                self.metrics.failed_rows.set(self.failed)
        if self._on_published:
            for _seq, _e, subject, _p in acked:
                self._on_published(subject)
        return len(acked)

    async def prune(self, now: datetime | None = None, chunk: int = 500) -> int:
        """Delete rows published more than ``keep_published`` seconds ago (the outbox would grow without end).

        Oldest first, a chunk at a time: each step looks at the ``chunk`` published rows lowest in
        ``seq`` and deletes those that expired, and the next step comes only if all of them had. Rows
        go out in ``seq`` order, so the expired ones are the oldest; a step never reads more than
        ``chunk`` rows. (One ``DELETE … WHERE published_at < …`` read every published row, since
        ``published_at`` has no index: with an hour of picture events at hundreds a second, seconds
        on the event loop's thread, once a minute.) Between steps the loop serves others.
        """
        from datetime import timedelta

        t = self.table
        before = (now or utcnow()) - timedelta(seconds=self.keep_published)
        oldest = (select(t.c.seq, t.c.published_at).where(t.c.published.is_(True)).order_by(t.c.seq)
                  .limit(chunk).subquery())
        statement = delete(t).where(t.c.seq.in_(select(oldest.c.seq).where(oldest.c.published_at < before)))
        local = self.local

        async def step() -> int:
            if local is not None:
                with local.transaction() as conn:
                    return int(conn.execute(statement).rowcount or 0)
            async with self.sessions() as s, s.begin():
                result: CursorResult[Any] = await s.execute(statement)  # type: ignore[assignment]
                return int(result.rowcount or 0)

        total = 0
        while True:
            deleted = await (retry_busy(step) if local is not None else step())
            total += deleted
            if deleted < chunk:
                return total
            await asyncio.sleep(0)

    async def pending(self) -> int:
        """Rows waiting to be published (the ones set aside not counted)."""
        from sqlalchemy import func
        t = self.table
        async with self.sessions() as s:
            return int(await s.scalar(select(func.count()).select_from(t)
                                      .where(t.c.published.is_(False), t.c.failed_at.is_(None))) or 0)

    async def count_failed(self) -> int:
        """Count the rows set aside (and keep ``failed`` and its gauge current)."""
        from sqlalchemy import func
        t = self.table
        async with self.sessions() as s:
            self.failed = int(await s.scalar(select(func.count()).select_from(t)
                                             .where(t.c.published.is_(False), t.c.failed_at.is_not(None))) or 0)
        if self.metrics is not None:
            self.metrics.failed_rows.set(self.failed)
        return self.failed


__all__ = [
    "IntegrityError",
    "OutboxMetrics",
    "OutboxRelay",
    "add_many_to_outbox",
    "add_to_outbox",
    "make_engine",
    "mark_processed",
    "outbox_table",
    "processed_events_table",
    "session_factory",
    "transaction",
    "utcnow",
]
