"""Replicas of a service are started at the same moment (as an orchestrator does) on one fresh PostgreSQL
database: each creates the tables at start, and all of them must come up ready."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from est_cli.procs import ServiceProcess
from est_shared.natsserver import NatsServer

from tests.faults.support import tail
from tests.support import fresh_databases

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

SERVICES = ("aggregator", "notifier", "intake", "analysis")
REPLICAS = 3



@pytest.fixture
async def databases(postgres_admin_url: str) -> AsyncIterator[dict[str, str]]:
    """One fresh PostgreSQL database per service (shared by that service's replicas), dropped afterwards."""
    names = {svc: f"est_together_{svc}_{uuid.uuid4().hex[:8]}" for svc in SERVICES}
    async with fresh_databases(postgres_admin_url, names) as urls:
        yield urls


@pytest.mark.timeout(150)
@pytest.mark.parametrize("service", SERVICES)
async def test_replicas_started_at_once_on_a_fresh_postgres_database_all_become_ready(
        tmp_path: Path, databases: dict[str, str], service: str) -> None:
    nats = NatsServer(tmp_path / "nats").start()
    procs = [ServiceProcess(service, {"EST_NATS_URL": nats.url, "EST_DATA_DIR": str(tmp_path / f"d{i}"),
                                      "EST_LOG_LEVEL": "WARNING",
                                      f"EST_{service.upper()}_DATABASE_URL": databases[service]},
                            tmp_path / f"{service}{i}.log") for i in range(REPLICAS)]
    try:
        for p in procs:
            p.start(wait=False)
        failures = []
        for p in procs:
            try:
                await asyncio.to_thread(p.wait_ready, 90)
            except AssertionError as exc:
                failures.append(str(exc)[-1500:])
        assert not failures, "\n\n".join(failures)
    except BaseException:
        for p in procs:
            print(f"--- {p.name} {p.port} ---\n{tail(p.log)}")
        raise
    finally:
        for p in procs:
            p.stop()
        nats.kill()
