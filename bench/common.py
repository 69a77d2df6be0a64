"""What every benchmark figure uses: result rows, a fresh NATS + data dir per figure, load helpers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from est_cli.procs import ServiceProcess, free_port  # noqa: E402, F401
from est_shared.bus import encode, ensure_streams  # noqa: E402
from est_shared.events import Answer, ReportSubmitted, new_event  # noqa: E402
from est_shared.natsserver import NatsServer  # noqa: E402


@dataclass
class Row:
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    passed: bool | None = None

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


ROWS: list[Row] = []


def record(row: Row) -> None:
    ROWS.append(row)
    r = f"{row.ratio:.2f}" if row.ratio is not None else "-"
    print(f"  {row.figure}: {row.value:,.1f} {row.unit} (baseline {row.baseline or '-'}; ratio {r}) "
          f"{'PASS' if row.passed else 'FAIL' if row.passed is False else ''}", flush=True)


def bench_org(m: str = "bench", areas: int = 50) -> dict[str, Any]:
    ids = [f"a{i}" for i in range(areas)]
    return {
        "municipalities": [{"id": m, "name": "Benchkommun", "analysis_period": "tertial",
                            "areas": [{"id": a, "name": f"Område {a}", "cadence": "weekly",
                                       "places": ["torget", "skolgarden"]} for a in ids]}],
        "actors": [{"id": "kommunen", "name": "Kommunen", "kind": "municipality"}],
        "people": [
            {"id": "rep", "name": "Reporter", "actor": "kommunen", "roles": ["reporter"], "areas": [m],
             "token": "bench-reporter"},
            {"id": "adm", "name": "Admin", "actor": "kommunen", "roles": ["admin", "key_function", "styrgrupp"],
             "areas": [m], "token": "bench-admin"},
        ],
    }


class Env:
    """A fresh NATS server and data dir for one figure."""

    def __init__(self, base: Path, name: str) -> None:
        self.dir = base / name
        self.dir.mkdir(parents=True)
        self.nats = NatsServer(self.dir / "nats").start()
        self.org_file = self.dir / "org.yaml"
        self.org_file.write_text(yaml.safe_dump(bench_org(), allow_unicode=True))
        self.env = {"EST_NATS_URL": self.nats.url, "EST_DATA_DIR": str(self.dir / "data"),
                    "EST_INTAKE_ORG_FILE": str(self.org_file), "EST_LOG_LEVEL": "WARNING"}
        self.procs: list[ServiceProcess] = []

    def service(self, name: str, **extra: str) -> ServiceProcess:
        p = ServiceProcess(name, dict(self.env, **extra), self.dir / f"{name}.log").start()
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        self.nats.stop()


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Wait until a server answers at ``url``."""
    until = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > until:
                raise
            time.sleep(0.1)


def wrk(url: str, *, seconds: int, connections: int = 64, script: Path | None = None,
        env: dict[str, str] | None = None) -> tuple[float, int]:
    """Requests/s and non-2xx count from wrk."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                         timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, int(bad.group(1)) if bad else 0


def report_events(n: int, m: str = "bench", areas: int = 50) -> list[Any]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        rid = str(uuid.uuid4())
        data = ReportSubmitted(report_id=rid, municipality_id=m, area_id=f"a{i % areas}", period="2026-W40",
                               checklist="est-standard@1",
                               answers={"skadegorelse": Answer(value=i % 4), "klotter": Answer(value=i % 3)},
                               reporter_id="rep", actor_id="kommunen", received_at=now)
        out.append(new_event(type="se.est.report.submitted", source="/bench", data=data, id=rid))
    return out


async def publish_events(url: str, events: list[Any]) -> float:
    """Raw nats-py publish_async of events; returns events/s."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await ensure_streams(js)
    payloads = [(f"est.report.submitted.{e.data.municipality_id}.{e.data.area_id}", encode(e), e.id) for e in events]
    t0 = time.perf_counter()
    for subject, body, msg_id in payloads:
        await js.publish_async(subject, body, headers={"Nats-Msg-Id": msg_id})
    await js.publish_async_completed()
    dt = time.perf_counter() - t0
    await nc.close()
    return len(events) / dt


async def raw_consume(url: str, n: int) -> float:
    """A raw nats-py pull consumer fetching and acking n events; returns events/s."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe("est.report.submitted.>", durable=f"raw-{uuid.uuid4().hex[:6]}",
                                  stream="EST_REPORTS")
    got = 0
    t0 = time.perf_counter()
    while got < n:
        msgs = await sub.fetch(256, timeout=5)
        for msg in msgs:
            json.loads(msg.data)
            await msg.ack()
        got += len(msgs)
    dt = time.perf_counter() - t0
    await nc.close()
    return n / dt


class LoopbackHttp:
    """A lean HTTP/1.1 keep-alive client for load generation on loopback.

    httpx spends more CPU per request than the services under test, so a generator built on it
    cannot offer 500 requests/s on two cores. This one writes a prepared request on one of
    ``connections`` open sockets and reads the status line, the headers and ``Content-Length``
    bytes of body. Enough for the services' JSON answers, nothing more.
    """

    def __init__(self, url: str, connections: int = 64) -> None:
        parts = url.split("://", 1)[-1].split(":")
        self.host, self.port, self.connections = parts[0], int(parts[1].rstrip("/")), connections
        self._free: Any = None

    async def __aenter__(self) -> LoopbackHttp:
        import asyncio

        self._free = asyncio.Queue()
        for _ in range(self.connections):
            self._free.put_nowait(await asyncio.open_connection(self.host, self.port))
        return self

    async def __aexit__(self, *_: Any) -> None:
        while not self._free.empty():
            _reader, writer = self._free.get_nowait()
            writer.close()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST and return (status, body)."""
        reader, writer = await self._free.get()
        try:
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n{head}\r\n".encode() + body)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            return status, await reader.readexactly(length)
        finally:
            self._free.put_nowait((reader, writer))


def metric_sum(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def pg_database() -> str:
    import asyncpg

    base = os.environ.get("EST_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432").rstrip("/")
    name = f"est_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return f"{base}/{name}"


