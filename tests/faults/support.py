"""Helpers for fault and cluster tests: a steady report load with retries, a webhook receiver, picture totals."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import yaml
from est_cli.procs import ServiceProcess
from est_shared.natsserver import NatsServer
from est_shared.periods import Period

from tests.support import WebhookReceiver, e2e_org

AREAS = ("araby", "dalbo")
SECRET = "s3cret-webhook"
LOOPBACK_RECEIVERS = "127.0.0.1/32"  # EST_NOTIFIER_WEBHOOK_ALLOW: the receivers here listen on loopback


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def weeks(n: int = 2) -> list[str]:
    """The current ISO week and the n-1 before it (reports may name past periods, never future ones)."""
    this = Period.week_containing(date.today())
    return [this.shift(-i).id for i in range(n)]


def write_org(path: Path) -> Path:
    """The e2e organisation, with Anna reporting for both areas."""
    org = e2e_org()
    for p in org["people"]:
        if p["id"] == "anna":
            p["areas"] = list(AREAS)
    path.write_text(yaml.safe_dump(org, allow_unicode=True), encoding="utf-8")
    return path


def make_reports(n: int, periods: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """n distinct reports spread over the areas and periods, each with a skadegorelse value 0-3."""
    out = []
    for i in range(n):
        out.append({"report_id": str(uuid.UUID(int=(seed << 64) + i + 1, version=4)),
                    "area_id": AREAS[i % len(AREAS)], "period": periods[(i // len(AREAS)) % len(periods)],
                    "checklist": "est-standard@1", "answers": {"skadegorelse": {"value": i % 4}},
                    "nothing_to_report": False, "note": "", "supersedes": None})
    return out


@dataclass
class Load:
    """What a steady load saw: the accepted reports, every status, and 503s without Retry-After."""

    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: Counter[int | str] = field(default_factory=Counter)
    no_retry_after: list[str] = field(default_factory=list)
    not_problem_json: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)

    def expected_totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(area, period) -> (reports, sum of skadegorelse) over the accepted reports."""
        return totals_of(self.accepted.values())


def totals_of(reports: Iterable[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(area, period) -> (number of reports, sum of their skadegorelse values)."""
    totals: dict[tuple[str, str], tuple[int, int]] = {}
    for r in reports:
        n, v = totals.get((r["area_id"], r["period"]), (0, 0))
        totals[(r["area_id"], r["period"])] = (n + 1, v + r["answers"]["skadegorelse"]["value"])
    return totals


async def post_steadily(intake_url: str, reports: list[dict[str, Any]], *, rate: float, token: str = "t-anna",
                        give_up_after: float = 60.0, retry_pause: float = 0.5,
                        ticks: dict[float, Any] | None = None) -> Load:
    """Post each report at a steady rate (one task per report); a 503 or a lost connection is retried with
    the same report_id until 202 (or ``give_up_after`` seconds). ``ticks`` maps seconds since the start to
    callables (sync or async) run at that moment, e.g. killing a node under load."""
    load = Load()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(client: httpx.AsyncClient, report: dict[str, Any]) -> None:
        rid = report["report_id"]
        until = loop.time() + give_up_after
        while True:
            try:
                r = await client.post(f"{intake_url}/v1/reports", json=report, headers=auth(token))
            except httpx.HTTPError as exc:  # intake away or slow: the answer is unknown, resend the same id
                load.statuses[type(exc).__name__] += 1
            else:
                load.statuses[r.status_code] += 1
                if r.status_code == 202:
                    assert r.json()["report_id"] == rid
                    load.accepted[rid] = report
                    return
                if not r.headers.get("content-type", "").startswith("application/problem+json"):
                    load.not_problem_json.append(f"{r.status_code} {r.text[:200]}")
                if r.status_code == 503:
                    if not r.headers.get("retry-after"):
                        load.no_retry_after.append(r.text[:200])
                else:
                    load.unexpected.append(f"{r.status_code} {r.text[:300]}")
                    return
            if loop.time() > until:
                load.gave_up.append(rid)
                return
            await asyncio.sleep(retry_pause)

    async def run_ticks() -> None:
        for at, fn in sorted((ticks or {}).items()):
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            res = await asyncio.to_thread(fn)
            if asyncio.iscoroutine(res):
                await res

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        tick_task = asyncio.create_task(run_ticks())
        tasks = []
        for i, report in enumerate(reports):
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            tasks.append(asyncio.create_task(one(client, report)))
        await asyncio.gather(*tasks)
        await tick_task
    return load


async def wait_counted(aggregator_url: str, expected: dict[tuple[str, str], tuple[int, int]], *,
                       timeout: float = 60.0, token: str = "t-lena") -> dict[tuple[str, str], dict[str, Any]]:
    """Poll the pictures until every (area, period) has exactly the expected totals; return the pictures."""
    seen: dict[tuple[str, str], Any] = {}
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            try:
                for area, period in expected:
                    r = await http.get(f"{aggregator_url}/v1/areas/{area}/pictures/{period}", headers=auth(token))
                    seen[(area, period)] = r.json() if r.status_code == 200 else r.status_code
            except httpx.HTTPError as exc:
                seen[("error", "")] = repr(exc)
            got = {k: (p.get("reports"), (p.get("items", {}).get("skadegorelse") or {}).get("value"))
                   for k, p in seen.items() if isinstance(p, dict)}
            if all(got.get(k) == v for k, v in expected.items()):
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"totals not reached in {timeout}s: expected {expected}, got {got}")
            await asyncio.sleep(0.5)


class Receiver(WebhookReceiver):
    """The shared webhook receiver, plus reading the signed picture deliveries it got."""

    def published(self) -> dict[str, tuple[str, str, int]]:
        """Deliveries of se.est.picture.published with a valid signature: idempotency key -> (area, period, version).

        Raises if a delivery's signature does not verify."""
        out: dict[str, tuple[str, str, int]] = {}
        for d in list(self.received):
            body: bytes = d["body"]
            expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert d["headers"].get("x-est-signature") == f"sha256={expected}", d["headers"]
            event = json.loads(body)
            if event.get("type") != "se.est.picture.published":
                continue
            p = event["data"]["picture"]
            out[d["headers"].get("idempotency-key", event["id"])] = (p["area_id"], p["period"], p["version"])
        return out


async def publish_all(aggregator_url: str, keys: Iterable[tuple[str, str]], comment: str
                      ) -> set[tuple[str, str, int]]:
    """Publish the pictures of (area, period) keys as the key function; returns (area, period, version)."""
    published: set[tuple[str, str, int]] = set()
    async with httpx.AsyncClient(timeout=30) as http:
        for area, period in keys:
            r = await http.post(f"{aggregator_url}/v1/areas/{area}/pictures/{period}/publish",
                                headers=auth("t-lena"), json={"comment": comment, "confirm_incomplete": True})
            assert r.status_code in (200, 201, 202), r.text
            published.add((area, period, r.json()["version"]))
    return published


def subscribe_webhook(notifier_url: str, receiver: Receiver, timeout: float = 30.0) -> dict[str, Any]:
    """Subscribe the receiver to published pictures of both areas (as the key function, t-lena); retried until
    the notifier has learnt the organisation (and so the token) from est.org.changed. Blocking: use to_thread."""
    body = {"name": "Driftcentral", "scope": {"municipality_id": "vaxjo", "area_ids": list(AREAS)},
            "events": ["picture.published"],
            "channel": {"type": "webhook", "url": receiver.url, "secret": SECRET},
            "digest": "immediate", "language": "sv"}
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.post(f"{notifier_url}/v1/subscriptions", headers=auth("t-lena"), timeout=15, json=body)
        if r.status_code == 201 or time.monotonic() > deadline or r.status_code not in (401, 403):
            break
        time.sleep(0.2)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


@dataclass
class Embedded:
    """The embedded default run piecewise: one NATS server from the wheel and services as ``est run`` processes
    sharing one data dir with SQLite files (as ``est up`` does), each of which a test may kill and restart."""

    base: Path
    nats: NatsServer
    procs: dict[str, ServiceProcess]

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.procs[name]

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{tail(p.log)}" for n, p in self.procs.items())

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()
        self.nats.kill()


def start_embedded(base: Path, services: tuple[str, ...] = ("intake", "aggregator"),
                   env: dict[str, dict[str, str]] | None = None) -> Embedded:
    """Start NATS and the services (in parallel) and wait until every one is ready."""
    nats = NatsServer(base / "nats", log_file=base / "nats.log").start()
    common = {"EST_NATS_URL": nats.url, "EST_DATA_DIR": str(base / "var"), "EST_LOG_LEVEL": "WARNING",
              "EST_INTAKE_ORG_FILE": str(write_org(base / "org.yaml")),
              "EST_AGGREGATOR_AUTO_PUBLISH_INTERVAL": "0", "EST_NOTIFIER_REMINDERS_ENABLED": "false",
              "EST_NOTIFIER_WEBHOOK_ALLOW": LOOPBACK_RECEIVERS}
    procs = {s: ServiceProcess(s, {**common, **(env or {}).get(s, {})}, base / f"{s}.log") for s in services}
    system = Embedded(base, nats, procs)
    try:
        for p in procs.values():
            p.start(wait=False)
        for p in procs.values():
            p.wait_ready(90)
    except BaseException:
        system.stop()
        raise
    return system


def tail(path: Path, n: int = 3000) -> str:
    """The end of a service's log (of its copy when the log is a FIFO, see ``fifo_log``)."""
    if path.is_fifo():
        path = path.with_name(path.name + ".txt")
    return path.read_text(errors="replace")[-n:] if path.exists() else f"({path} missing)"


def fifo_log(path: Path) -> threading.Thread:
    """Make ``path`` a FIFO copied to ``path.txt`` by a thread: a service whose file writes are made to fail
    (RLIMIT_FSIZE) can still log through it, since the limit applies to regular files only."""
    os.mkfifo(path)
    copy = path.with_name(path.name + ".txt")

    def pump() -> None:
        with open(path, "rb", buffering=0) as src, open(copy, "ab", buffering=0) as dst:
            while chunk := src.read(65536):
                dst.write(chunk)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread

