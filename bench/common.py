"""What every benchmark figure uses: result rows, a fresh NATS + data dir per figure, load helpers."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import defaultdict
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


def report_events(n: int, m: str = "bench", areas: int = 50, period: str = "2026-W40") -> list[Any]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        rid = str(uuid.uuid4())
        data = ReportSubmitted(report_id=rid, municipality_id=m, area_id=f"a{i % areas}", period=period,
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




def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pids_named(comm: str) -> list[int]:
    """Processes whose command name is ``comm`` (e.g. the PostgreSQL server's backends)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().split("(", 1)[1].split(")", 1)[0] == comm:
                out.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return out


def cpu_of(pids: list[int]) -> float:
    """CPU seconds of the processes still alive among ``pids``."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks, from /proc/stat: the share of
    the cores in use over an interval is the difference of busy over the difference of total."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return float(sum(ticks) - idle), float(sum(ticks))


def one_reporter(areas: int = 50, token: str = "bench-reporter") -> Any:
    """``latency_run``'s reports of ``bench_org``: area ``a{i % areas}``, all by its one reporter."""
    return lambda i: (f"a{i % areas}", token)


async def latency_run(intake_url: str, nats_url: str, *, rate: int, seconds: int, report: Any = None,
                      connections: int = 64, settle: float = 5.0) -> tuple[list[float], int, list[str]]:
    """Post reports at ``rate``/s for ``seconds`` while watching ``est.picture.updated.>``: the latencies (s)
    202 → picture.updated of the accepted ones, the number posted and the area of each latency.

    ``report(i)`` names the area and the bearer token of the i-th report (default ``one_reporter()``).
    PictureUpdated does not name the reports it includes, so a report counts as shown by the first
    picture.updated of its area that arrives after the report was sent AND whose ``reports`` total is at
    least the number of reports of that area accepted up to and including this one; never shown (waiting
    at most ``settle`` seconds after the last post) is infinitely late. The garbage collector of this
    (measuring) process is off meanwhile: its full collections walk the growing lists of requests and
    arrivals, and a pause delays the arrival times it stamps (seen as spikes of 100–300 ms, from the load
    generator, not the services).
    """
    gc.disable()
    try:
        return await _latency_posts(intake_url, nats_url, rate=rate, seconds=seconds,
                                    report=report or one_reporter(), connections=connections, settle=settle)
    finally:
        gc.enable()


async def _latency_posts(intake_url: str, nats_url: str, *, rate: int, seconds: int, report: Any,
                         connections: int, settle: float) -> tuple[list[float], int, list[str]]:
    import asyncio

    accepted: list[tuple[str, float, float, int]] = []  # area, sent, 202, accepted count of the area then
    count: dict[str, int] = defaultdict(int)
    updates: dict[str, list[tuple[float, int]]] = defaultdict(list)  # area -> (arrival, reports)
    nc = await nats.connect(nats_url.split(","))

    async def on_update(msg: Any) -> None:
        now = time.perf_counter()
        pic = json.loads(msg.data)["data"]["picture"]
        updates[pic["area_id"]].append((now, int(pic["reports"])))

    await nc.subscribe("est.picture.updated.>", cb=on_update)
    async with LoopbackHttp(intake_url, connections=connections) as http:
        async def post(i: int) -> None:
            area, token = report(i)
            body = json.dumps({"report_id": str(uuid.uuid4()), "area_id": area, "checklist": "est-standard@1",
                               "answers": {"skadegorelse": {"value": i % 4}, "klotter": {"value": i % 3}}}).encode()
            sent = time.perf_counter()
            status, _ = await http.post("/v1/reports", body, {"Authorization": f"Bearer {token}"})
            if status == 202:
                t = time.perf_counter()
                count[area] += 1
                accepted.append((area, sent, t, count[area]))

        tasks = []
        start = time.perf_counter()
        total = rate * seconds
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        achieved = total / (time.perf_counter() - start)
        print(f"  offered {rate}/s, achieved {achieved:.0f}/s", flush=True)
    until = time.perf_counter() + settle  # the last updates: until every area shows all its reports
    for _ in range(int(settle * 4)):
        if time.perf_counter() > until or all(max((n for _, n in updates[a]), default=0) >= k
                                              for a, k in count.items()):
            break
        await asyncio.sleep(0.25)
    await nc.close()
    latencies = []
    for area, sent, t, k in accepted:
        first = next((at for at, n in updates[area] if at >= sent and n >= k), None)
        latencies.append(max(0.0, first - t) if first is not None else float("inf"))
    return latencies, total, [a for a, *_ in accepted]
