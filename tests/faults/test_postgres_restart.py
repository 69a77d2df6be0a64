"""The aggregator on PostgreSQL outlives a database restart: /readyz answers 503 while the server is away and
200 once it is back, and the report events it had to nack meanwhile are counted (once) after.

Two variants: a private throwaway server (initdb, runs by default where the binaries exist) and this machine's
shared server (``pg_ctlcluster … stop/start``), which runs ONLY with EST_TEST_PG_RESTART=1 because every other
PostgreSQL test uses that server."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.faults.pgserver import MachinePostgres, PrivatePostgres, machine_available, private_available
from tests.faults.support import make_reports, post_steadily, start_embedded, totals_of, wait_counted, weeks

pytestmark = pytest.mark.e2e


async def _create_db(admin_url: str) -> tuple[str, str]:
    name = f"est_pgrestart_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, f"{admin_url}/{name}"


@pytest.fixture(params=["private", pytest.param("machine", marks=pytest.mark.postgres)])
async def restartable_pg(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Any, str]]:
    """(server with stop()/start(), database URL of a fresh database on it)."""
    if request.param == "private":
        why = private_available()
        if why:
            pytest.skip(why)
        server: Any = await asyncio.to_thread(PrivatePostgres().init)
        await asyncio.to_thread(server.start)
        try:
            _, url = await _create_db(server.admin_url)
            yield server, url
        finally:
            await asyncio.to_thread(server.destroy)
        return
    why = machine_available()
    if why:
        pytest.skip(why)
    admin = request.getfixturevalue("postgres_admin_url")
    server = MachinePostgres(admin)
    name, url = await _create_db(admin)
    try:
        yield server, url
    finally:
        await asyncio.to_thread(server.start)  # never leave the shared server down
        conn = await asyncpg.connect(admin.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def _readyz(http: httpx.AsyncClient, url: str, want: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = await http.get(f"{url}/readyz")
            if r.status_code == want:
                return r.json()  # type: ignore[no-any-return]
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"/readyz never answered {want}"
        await asyncio.sleep(0.2)


@pytest.mark.timeout(120)
async def test_aggregator_on_postgres_recovers_from_a_database_restart(
        tmp_path: Path, restartable_pg: tuple[Any, str]) -> None:
    server, db_url = restartable_pg
    system = start_embedded(tmp_path, ("intake", "aggregator"),
                            env={"aggregator": {"EST_AGGREGATOR_DATABASE_URL": db_url}})
    agg = system["aggregator"]
    try:
        reports = make_reports(40, weeks(2), seed=6)
        first = await post_steadily(system["intake"].url, reports[:20], rate=50)
        assert len(first.accepted) == 20, first.statuses
        async with httpx.AsyncClient(timeout=10) as http:
            await wait_counted(agg.url, first.expected_totals(), timeout=60)

            await asyncio.to_thread(server.stop)
            down = await _readyz(http, agg.url, 503, timeout=20)
            assert down["checks"]["database"] is False, down
            # reports keep coming (the intake has its own database): the aggregator must nack, not lose them
            second = await post_steadily(system["intake"].url, reports[20:], rate=50)
            assert len(second.accepted) == 20, second.statuses
            await asyncio.sleep(3.0)
            metrics = (await http.get(f"{agg.url}/metrics")).text
            assert _metric(metrics, "est_aggregator_events_total", outcome="retried") > 0, \
                "no event was nacked while the database was down"

            await asyncio.to_thread(server.start)
            up = await _readyz(http, agg.url, 200, timeout=30)
            assert up["checks"] == {"nats": True, "database": True, "tables": True, "outbox": True}, up
            everything = {**first.accepted, **second.accepted}
            assert len(everything) == 40
            pictures = await wait_counted(agg.url, totals_of(everything.values()), timeout=60)
            assert sum(p["reports"] for p in pictures.values()) == 40
            metrics = (await http.get(f"{agg.url}/metrics")).text
            assert _metric(metrics, "est_aggregator_dead_lettered_total") == 0, \
                re.findall(r".*dead_letter.*", metrics)
    except BaseException:
        print(system.logs())
        raise
    finally:
        system.stop()
