"""Handler tests of forfeiture recording without a broker: a fake publisher, real SQLite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from est_intake.forfeitures import db as fdb
from est_intake.forfeitures.domain import ForfeitureIn
from est_intake.forfeitures.handlers import ForfeitureDeps, record_protocol, upkeep_once
from est_intake.forfeitures.pii import PiiCipher, generate_key, parse_keys
from est_intake.metrics import ForfeitureMetrics
from est_intake.org.domain import build_snapshot, principal_for
from est_shared.bus import BusUnavailable
from est_shared.db import make_engine, session_factory
from est_shared.events import CloudEvent
from prometheus_client import CollectorRegistry

from tests.security.support import forfeiture_org, protocol


class FakeBus:
    """Records published events; ``mode`` makes it acknowledge, refuse (bus down) or crash the caller."""

    def __init__(self) -> None:
        self.events: list[tuple[str, CloudEvent[Any]]] = []
        self.mode = "ok"

    async def publish(self, subject: str, event: CloudEvent[Any]) -> bool:
        if self.mode == "down":
            raise BusUnavailable("down")
        if self.mode == "crash":
            raise SystemExit("process died after storing, before the ack")
        duplicate = any(e.id == event.id for _, e in self.events)
        self.events.append((subject, event))
        return duplicate


@pytest.fixture
async def deps(tmp_path: Path) -> AsyncIterator[tuple[ForfeitureDeps, FakeBus]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
    async with engine.begin() as conn:
        await fdb.create_tables(conn)
    bus = FakeBus()
    yield ForfeitureDeps(sessions=session_factory(engine), publish=bus.publish,
                         metrics=ForfeitureMetrics(CollectorRegistry()), retention=timedelta(days=365),
                         cipher=PiiCipher(parse_keys(generate_key()))), bus
    await engine.dispose()


SNAP, _ = build_snapshot(forfeiture_org(), None)
PETRA = principal_for(SNAP, "petra")


async def record(body: dict, d: ForfeitureDeps):
    assert PETRA is not None
    return await record_protocol(ForfeitureIn.model_validate(body), caller=PETRA, snapshot=SNAP, deps=d)


async def stored(d: ForfeitureDeps, pid: str) -> dict | None:
    async with d.sessions() as s:
        return await fdb.find_protocol(s, pid)


async def test_bus_down_undoes_the_stored_row(deps: tuple[ForfeitureDeps, FakeBus]) -> None:
    d, bus = deps
    body = protocol()
    bus.mode = "down"
    r = await record(body, d)
    assert r.status == 503 and r.headers == {"Retry-After": "5"}
    assert await stored(d, body["protocol_id"]) is None
    bus.mode = "ok"
    assert (await record(body, d)).status == 202 and len(bus.events) == 2  # recorded + notification (under 18)


async def test_a_crash_between_storing_and_the_ack_is_healed_by_the_upkeep_job(
        deps: tuple[ForfeitureDeps, FakeBus]) -> None:
    d, bus = deps
    body = protocol()
    bus.mode = "crash"
    with pytest.raises(SystemExit):
        await record(body, d)
    row = await stored(d, body["protocol_id"])
    assert row is not None and row["published_at"] is None
    bus.mode = "ok"
    assert (await upkeep_once(deps=d))["published"] == []  # within the grace period a request may still be busy
    real = d.clock
    d.clock = lambda: real() + timedelta(minutes=2)
    assert (await upkeep_once(deps=d))["published"] == [body["protocol_id"]]
    assert [e.id for _, e in bus.events] == [f"forfeiture:{body['protocol_id']}",
                                             f"forfeiture-notification:{body['protocol_id']}"]
    assert (await stored(d, body["protocol_id"]))["published_at"] is not None  # type: ignore[index]
    r = await record(body, d)
    assert r.status == 202 and r.body["status"] == "accepted" and len(bus.events) == 2


async def test_an_identical_resend_after_a_crash_publishes_and_answers_202(
        deps: tuple[ForfeitureDeps, FakeBus]) -> None:
    d, bus = deps
    body = protocol()
    bus.mode = "crash"
    with pytest.raises(SystemExit):
        await record(body, d)
    bus.mode = "ok"
    r = await record(body, d)
    assert r.status == 202 and len(bus.events) == 2
    assert (await record({**body, "person": {**body["person"], "name": "X"}}, d)).status == 409


async def test_concurrent_identical_posts_store_one_protocol(deps: tuple[ForfeitureDeps, FakeBus]) -> None:
    d, bus = deps
    body = protocol()
    results = await asyncio.gather(*(record(body, d) for _ in range(5)))
    assert {r.status for r in results} == {202}
    assert {e.id for _, e in bus.events} == {f"forfeiture:{body['protocol_id']}",
                                             f"forfeiture-notification:{body['protocol_id']}"}


async def test_stored_row_holds_no_personal_data_in_clear(deps: tuple[ForfeitureDeps, FakeBus]) -> None:
    d, _bus = deps
    body = protocol()
    await record(body, d)
    row = await stored(d, body["protocol_id"])
    assert row is not None
    flat = repr(row)
    for secret in ("Kim Testsson", body["person"]["personal_number"], "4711", "Maxi"):
        assert secret not in flat
    assert row["pii_key_id"] == d.cipher.primary_id  # type: ignore[union-attr]
