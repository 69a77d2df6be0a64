"""Removing a person, or changing their token, takes effect in every service within seconds, and ends the live
stream they hold open on the notifier.

All four services run as `est run` processes on one NATS server (the embedded default, piecewise). Lena (key
function of Växjö) calls an endpoint of each, with a live stream open; then the organisation changes through
PUT /v1/admin/org on the intake."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from est_shared.periods import current_period

from tests.faults.support import Embedded, auth, start_embedded
from tests.support import eventually

pytestmark = pytest.mark.e2e

WITHIN = 5.0  # seconds after the PUT answered


def _calls(system: Embedded) -> dict[str, str]:
    """One endpoint per service that Lena may call."""
    week = current_period("weekly", datetime.now(UTC), "Europe/Stockholm").id
    return {"intake": f"{system['intake'].url}/v1/me",
            "aggregator": f"{system['aggregator'].url}/v1/municipalities/vaxjo/pictures/{week}",
            "notifier": f"{system['notifier'].url}/v1/subscriptions",
            "analysis": f"{system['analysis'].url}/v1/measures?area_id=araby"}


async def _statuses(http: httpx.AsyncClient, calls: dict[str, str], token: str) -> dict[str, int]:
    answers = await asyncio.gather(*(http.get(url, headers=auth(token)) for url in calls.values()))
    return {name: r.status_code for name, r in zip(calls, answers, strict=True)}


class LiveStream:
    """A live stream (GET /v1/stream) read in the background until the server ends it."""

    def __init__(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        self.lines: list[str] = []
        self.connected = asyncio.Event()
        self.status = 0
        self.task = asyncio.create_task(self._read(http, url, token))

    async def _read(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        async with http.stream("GET", url, headers=auth(token), timeout=httpx.Timeout(10, read=120)) as r:
            self.status = r.status_code
            async for line in r.aiter_lines():
                self.lines.append(line)
                if line == ": connected":
                    self.connected.set()

    @property
    def ended(self) -> bool:
        return self.task.done()


async def _revoke(system: Embedded, change: Callable[[dict[str, Any]], None], new_token: str | None) -> None:
    calls = _calls(system)
    async with httpx.AsyncClient(timeout=15) as http:
        await eventually(lambda: _all(http, calls, "t-lena", 200), timeout=30)  # every service knows Lena
        stream = LiveStream(http, f"{system['notifier'].url}/v1/stream", "t-lena")
        await asyncio.wait_for(stream.connected.wait(), 15)
        assert stream.status == 200

        doc = yaml.safe_load((system.base / "org.yaml").read_text(encoding="utf-8"))  # what the services started with
        change(doc)
        r = await http.put(f"{system['intake'].url}/v1/admin/org", headers={**auth("t-admin"),
                           "Content-Type": "application/yaml"}, content=yaml.safe_dump(doc, allow_unicode=True))
        assert r.status_code == 200, r.text
        started = time.monotonic()
        await eventually(lambda: _all(http, calls, "t-lena", 401), timeout=WITHIN, interval=0.1)
        took = time.monotonic() - started
        assert took < WITHIN
        await eventually(lambda: _ended(stream), timeout=WITHIN)
        assert await stream.task is None  # ended by the server, cleanly (no protocol error)
        assert "event: stream.closed" in stream.lines, stream.lines[-5:]
        again = await http.get(f"{system['notifier'].url}/v1/stream", headers=auth("t-lena"))
        assert again.status_code == 401  # reconnecting with the old token
        if new_token:
            await eventually(lambda: _all(http, calls, new_token, 200), timeout=WITHIN)


async def _all(http: httpx.AsyncClient, calls: dict[str, str], token: str, status: int) -> bool:
    return set((await _statuses(http, calls, token)).values()) == {status}


async def _ended(stream: LiveStream) -> bool:
    return stream.ended


@pytest.fixture
def system(tmp_path: Path) -> Any:
    s = start_embedded(tmp_path, ("intake", "aggregator", "notifier", "analysis"))
    yield s
    s.stop()


@pytest.mark.timeout(180)
async def test_a_person_removed_from_the_organisation_is_refused_by_every_service_within_seconds(
        system: Embedded) -> None:
    def remove(doc: dict[str, Any]) -> None:
        doc["people"] = [p for p in doc["people"] if p["id"] != "lena"]

    try:
        await _revoke(system, remove, None)
    except BaseException:
        print(system.logs())
        raise


@pytest.mark.timeout(180)
async def test_a_changed_token_is_refused_by_every_service_within_seconds_and_the_new_one_works(
        system: Embedded) -> None:
    def new_token(doc: dict[str, Any]) -> None:
        lena = next(p for p in doc["people"] if p["id"] == "lena")
        lena["token"] = "t-lena-2"

    try:
        await _revoke(system, new_token, "t-lena-2")
    except BaseException:
        print(system.logs())
        raise
