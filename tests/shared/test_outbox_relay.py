"""The outbox relay: a flush goes out pipelined, in order, marked in one transaction; with NATS down nothing
is marked, and everything goes out once NATS is back; an event JetStream can never take is set aside, loudly,
and the events behind it go out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from est_shared.bus import encode, ensure_streams
from est_shared.db import (
    OutboxMetrics,
    OutboxRelay,
    add_to_outbox,
    make_engine,
    outbox_table,
    session_factory,
    transaction,
    utcnow,
)
from est_shared.events import OrgChanged, new_event
from est_shared.natsserver import NatsServer
from est_shared.subjects import ORG, ORG_CHANGED
from prometheus_client import CollectorRegistry
from sqlalchemy import MetaData, Table, func, insert, select, update


def _event(n: int, size: int = 0) -> Any:
    """An org event; ``size`` pads it to about that many bytes (an old inline snapshot of a large organisation)."""
    return new_event(type="se.est.org.changed", source="/test", id=f"relay-test-{n}", subject="org",
                     data=OrgChanged(version=n, snapshot={"pad": "x" * size} if size else {},
                                     changes=[f"change {n}"]))


async def _stored(js: Any) -> list[str]:
    info = await js.stream_info(ORG.name)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(ORG.name, seq)
        ids.append(msg.headers["Nats-Msg-Id"])
    return ids


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/o.db"


async def _outbox(url: str) -> tuple[Table, Any, Any]:
    """An outbox table in a fresh database (a new SQLite file, or a new PostgreSQL database): (table, engine,
    sessions)."""
    metadata = MetaData()
    table = outbox_table(metadata)
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return table, engine, session_factory(engine)


async def test_relay_publishes_in_order_and_keeps_what_nats_did_not_take(tmp_path: Path,
                                                                         fresh_nats: NatsServer) -> None:
    table, engine, sessions = await _outbox(_sqlite(tmp_path))
    nc = await nats.connect(fresh_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        relay = OutboxRelay(sessions=sessions, table=table, js=js)

        async def pending() -> int:
            async with sessions() as s:
                return int(await s.scalar(select(func.count()).select_from(table).where(table.c.published.is_(False))))

        async with transaction(sessions) as s:
            for n in range(1, 4):
                await add_to_outbox(s, table, ORG_CHANGED, _event(n))
        assert await relay.flush() == 3
        assert await pending() == 0
        assert await relay.flush() == 0  # marked: not sent again
        assert await _stored(js) == ["relay-test-1", "relay-test-2", "relay-test-3"]

        fresh_nats.kill()
        async with transaction(sessions) as s:
            for n in range(4, 6):
                await add_to_outbox(s, table, ORG_CHANGED, _event(n))
        assert await relay.flush() == 0  # no ack: nothing marked
        assert await pending() == 2
        assert relay.failed == 0 and await relay.count_failed() == 0  # NATS away is no reason to set rows aside

        fresh_nats.start()
        for _ in range(100):
            if nc.is_connected:
                break
            await asyncio.sleep(0.1)
        assert await relay.flush() == 2
        assert await pending() == 0
        ids = await _stored(js)
        assert ids[-2:] == ["relay-test-4", "relay-test-5"] and len(ids) == len(set(ids)) == 5
    finally:
        await nc.close()
        await engine.dispose()


@asynccontextmanager
async def _relay(url: str, nats_url: str, in_loop: bool) -> AsyncIterator[tuple[OutboxRelay, Table, Any]]:
    """A relay (keeping published rows an hour) on a fresh outbox: (relay, table, sessions); ``in_loop``:
    SQLite's in-loop connection reads and writes the rows."""
    from est_shared.adapters.sqlite import in_loop_sqlite

    table, engine, sessions = await _outbox(url)
    local = in_loop_sqlite(url) if in_loop else None
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        yield OutboxRelay(sessions=sessions, table=table, js=js, keep_published=3600, local=local), table, sessions
    finally:
        await nc.close()
        if local is not None:
            local.dispose()
        await engine.dispose()


@pytest.mark.parametrize("in_loop", [False, True], ids=["pooled", "in-loop"])
async def test_published_rows_are_deleted_after_a_while_and_pending_ones_never(tmp_path: Path,
                                                                           fresh_nats: NatsServer,
                                                                           in_loop: bool) -> None:
    """Without pruning the outbox keeps every payload it ever sent (a picture event per report)."""
    async with _relay(_sqlite(tmp_path), fresh_nats.url, in_loop) as (relay, table, sessions):
        async with transaction(sessions) as s:
            for n in range(1, 4):
                await add_to_outbox(s, table, ORG_CHANGED, _event(n))
        assert await relay.flush() == 3
        async with transaction(sessions) as s:
            await add_to_outbox(s, table, ORG_CHANGED, _event(4))  # not published yet
        assert await relay.prune() == 0  # published just now: kept for an hour
        assert await relay.prune(now=utcnow() + timedelta(hours=2)) == 3
        async with sessions() as s:
            left = list(await s.scalars(select(table.c.event_id)))
        assert left == ["relay-test-4"]  # the pending row stays, however old


async def _prune_in_chunks(relay: OutboxRelay, table: Table, sessions: Any) -> None:
    """Across chunk boundaries every expired row goes; nothing published later than the cut-off, nor
    anything pending, is touched."""
    async with transaction(sessions) as s:
        for n in range(1, 26):
            await add_to_outbox(s, table, ORG_CHANGED, _event(n))
    assert await relay.flush() == 25
    now = utcnow()
    async with transaction(sessions) as s:  # the first 12 went out two hours ago, the rest just now
        await s.execute(update(table).where(table.c.seq <= 12).values(published_at=now - timedelta(hours=2)))
        await add_to_outbox(s, table, ORG_CHANGED, _event(26))  # pending
    assert await relay.prune(now=now, chunk=5) == 12  # chunks of 5, 5, then 2 of 5: done
    assert await relay.prune(now=now, chunk=5) == 0
    async with sessions() as s:
        left = list(await s.scalars(select(table.c.event_id).order_by(table.c.seq)))
    assert left == [f"relay-test-{n}" for n in range(13, 27)]
    assert await relay.prune(now=now + timedelta(hours=2), chunk=5) == 13  # all published ones, 3 steps
    async with sessions() as s:
        assert list(await s.scalars(select(table.c.event_id))) == ["relay-test-26"]


@pytest.mark.parametrize("in_loop", [False, True], ids=["pooled", "in-loop"])
async def test_pruning_goes_oldest_first_in_chunks_and_keeps_what_has_not_expired(tmp_path: Path,
                                                                                  fresh_nats: NatsServer,
                                                                                  in_loop: bool) -> None:
    """Pruning takes the oldest published rows a chunk at a time (SQLite, both connections)."""
    async with _relay(_sqlite(tmp_path), fresh_nats.url, in_loop) as (relay, table, sessions):
        await _prune_in_chunks(relay, table, sessions)


@pytest.mark.postgres
async def test_pruning_in_chunks_on_postgresql(postgres_url: str, fresh_nats: NatsServer) -> None:
    """The same on PostgreSQL (its ``DELETE … IN (SELECT … LIMIT)`` is the one replicas run)."""
    async with _relay(postgres_url, fresh_nats.url, False) as (relay, table, sessions):
        await _prune_in_chunks(relay, table, sessions)


async def test_an_event_the_bus_can_never_take_is_set_aside_and_the_events_behind_it_go_out(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    """Over the server's payload limit (1 MiB), on a subject no stream captures, or no valid subject at all: each
    is marked failed with its error's class, counted, never sent again, and does not hold up the others."""
    await _set_aside(_sqlite(tmp_path), fresh_nats.url)


@pytest.mark.postgres
async def test_events_are_set_aside_on_postgresql_too(postgres_url: str, fresh_nats: NatsServer) -> None:
    await _set_aside(postgres_url, fresh_nats.url)


async def _set_aside(url: str, nats_url: str) -> None:
    registry = CollectorRegistry()
    metrics = OutboxMetrics("test", registry)
    async with _relay(url, nats_url, False) as (plain, table, sessions):
        relay = OutboxRelay(sessions=sessions, table=table, js=plain.js, metrics=metrics)
        async with transaction(sessions) as s:
            await add_to_outbox(s, table, ORG_CHANGED, _event(1))
            await add_to_outbox(s, table, ORG_CHANGED, _event(2, size=1_100_000))  # over the 1 MiB limit
            await add_to_outbox(s, table, "est.nowhere.at.all", _event(3))
            await add_to_outbox(s, table, "est.org.two words", _event(4))
            await add_to_outbox(s, table, ORG_CHANGED, _event(5))
        assert await relay.flush() == 2
        assert await _stored(plain.js) == ["relay-test-1", "relay-test-5"]
        async with sessions() as s:
            rows = {r.event_id: r for r in (await s.execute(select(table))).all()}
        assert rows["relay-test-2"].error == "MaxPayloadError" and rows["relay-test-2"].failed_at is not None
        assert rows["relay-test-3"].error == rows["relay-test-4"].error == "NoStreamForSubject"
        assert not any(rows[f"relay-test-{n}"].published for n in (2, 3, 4))
        assert relay.failed == 3 and await relay.count_failed() == 3
        assert registry.get_sample_value("est_test_outbox_failed_events") == 3
        assert registry.get_sample_value("est_test_outbox_failed_total", {"error": "MaxPayloadError"}) == 1
        assert registry.get_sample_value("est_test_outbox_failed_total", {"error": "NoStreamForSubject"}) == 2

        async with transaction(sessions) as s:  # later events keep going out; the failed ones are not retried
            await add_to_outbox(s, table, ORG_CHANGED, _event(6))
        assert await relay.flush() == 1 and await relay.flush() == 0
        assert await _stored(plain.js) == ["relay-test-1", "relay-test-5", "relay-test-6"]
        assert await relay.pending() == 0

        async with transaction(sessions) as s:  # an operator retries one after fixing its cause
            await s.execute(update(table).where(table.c.event_id == "relay-test-3")
                            .values(subject=ORG_CHANGED, failed_at=None, error=None))
        assert await relay.flush() == 1 and await relay.count_failed() == 2
        assert registry.get_sample_value("est_test_outbox_failed_events") == 2


async def test_an_outbox_table_of_an_older_version_gets_the_columns_for_failed_events(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    url = _sqlite(tmp_path)
    engine = make_engine(url)
    async with engine.begin() as conn:  # the outbox as the first release created it, with a row waiting
        await conn.exec_driver_sql(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id VARCHAR(200) NOT NULL UNIQUE, "
            "subject VARCHAR(300) NOT NULL, payload BLOB NOT NULL, created_at DATETIME NOT NULL, "
            "published BOOLEAN NOT NULL, published_at DATETIME)")
    table = outbox_table(MetaData())
    sessions = session_factory(engine)
    async with transaction(sessions) as s:
        await s.execute(insert(table).values(event_id="relay-test-1", subject=ORG_CHANGED,
                                                         payload=encode(_event(1)), created_at=utcnow(),
                                                         published=False))
    nc = await nats.connect(fresh_nats.url)
    try:
        await ensure_streams(nc.jetstream())
        relay = OutboxRelay(sessions=sessions, table=table, js=nc.jetstream())
        assert await relay.flush() == 1
        assert await _stored(nc.jetstream()) == ["relay-test-1"]
    finally:
        await nc.close()
        await engine.dispose()
