"""EST Lägesbild benchmark: every performance figure of the issues in one run, as ratios against
baselines measured in the same run (machines are noisy), printed as one table and written as JSON.

    .venv/bin/python bench/run.py [--quick] [--only intake,batch,aggregator,notifier,analysis] [--json FILE]

Needs ``wrk`` (Debian package) for the HTTP figures; PostgreSQL figures use EST_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from est_cli.procs import ServiceProcess, free_port  # noqa: E402
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


def metric_sum(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- figures -----------------------------------------------------------------------------------------

def fig_intake(base: Path, quick: bool) -> None:
    seconds = 5 if quick else 15
    env = Env(base, "intake")
    try:
        port = free_port()
        hello = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.hello:app", "--port", str(port),
                                  "--log-level", "warning", "--no-access-log"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(1.5)
        script = ROOT / "bench" / "report.lua"
        hello_rps, _ = wrk(f"http://127.0.0.1:{port}", seconds=seconds, script=script,
                           env={"BENCH_PATH": "/hello"})
        hello.terminate()
        hello.wait()
        intake = env.service("intake")
        time.sleep(1)
        rps, bad = wrk(intake.url, seconds=seconds, script=script)
        record(Row("intake POST /v1/reports (auth, validation, JetStream ack), c=64", rps, "req/s", hello_rps,
                   "hello-world POST, same stack", "≥ 0.5×", rps / hello_rps >= 0.5 and bad == 0))
        if bad:
            print(f"  !! {bad} non-2xx answers", flush=True)
        n = 5_000 if quick else 20_000
        events = report_events(n, m="rawbench")
        raw = asyncio.run(publish_events(env.nats.url, events))
        reports = [{"report_id": str(uuid.uuid4()), "area_id": f"a{i % 50}", "checklist": "est-standard@1",
                    "answers": {"skadegorelse": {"value": i % 4}, "klotter": {"value": i % 3}}} for i in range(n)]

        async def batch() -> float:
            async with httpx.AsyncClient(base_url=intake.url, timeout=120,
                                         headers={"Authorization": "Bearer bench-reporter"}) as http:
                chunks = [reports[i:i + 500] for i in range(0, n, 500)]
                sem = asyncio.Semaphore(4)

                async def one(chunk: list[dict[str, Any]]) -> None:
                    async with sem:
                        r = await http.post("/v1/reports:batch", json={"reports": chunk})
                        r.raise_for_status()

                t0 = time.perf_counter()
                await asyncio.gather(*(one(c) for c in chunks))
                return n / (time.perf_counter() - t0)

        batch_rate = asyncio.run(batch())
        record(Row("intake POST /v1/reports:batch (500 per request)", batch_rate, "reports/s", raw,
                   "nats-py publish_async of the same events", "≥ 0.4×", batch_rate / raw >= 0.4))
        rss = intake.rss_mb()
        record(Row("intake peak resident memory", rss, "MB", None, "", "< 200 MB", rss < 200))
    finally:
        env.close()


def fig_aggregator(base: Path, quick: bool, db: str = "sqlite") -> None:
    n = 5_000 if quick else 20_000
    env = Env(base, f"aggregator-{db}")
    try:
        events = report_events(n)
        asyncio.run(publish_events(env.nats.url, events))
        raw = asyncio.run(raw_consume(env.nats.url, n))
        extra: dict[str, str] = {}
        if db == "postgresql":
            extra["EST_AGGREGATOR_DATABASE_URL"] = asyncio.run(_pg_database())
        agg = env.service("aggregator", **extra)
        t0 = time.perf_counter()
        while metric_sum(agg.url, "est_aggregator_events_total", outcome="ok") < n:
            if time.perf_counter() - t0 > 600:
                raise TimeoutError("aggregator did not consume in time")
            time.sleep(0.2)
        rate = n / (time.perf_counter() - t0)
        record(Row(f"aggregator consume + store ({db})", rate, "events/s", raw,
                   "nats-py pull consumer fetch+ack", "≥ 0.4×" if db == "sqlite" else "(reported)",
                   rate / raw >= 0.4 if db == "sqlite" else None))
        record(Row(f"aggregator peak resident memory ({db})", agg.rss_mb(), "MB", None, "", "< 200 MB",
                   agg.rss_mb() < 200))
    finally:
        env.close()


async def _pg_database() -> str:
    import asyncpg

    base = os.environ.get("EST_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432").rstrip("/")
    name = f"est_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(base.replace("postgresql+asyncpg://", "postgresql://") + "/postgres")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return f"{base}/{name}"


FIGURES: dict[str, Callable[[Path, bool], None]] = {
    "intake": fig_intake,
    "aggregator": fig_aggregator,
    "aggregator-pg": lambda b, q: fig_aggregator(b, q, "postgresql"),
}


def print_table(rows: list[Row]) -> str:
    head = "| figure | value | baseline | ratio | target | result |\n|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        base = f"{r.baseline:,.0f} ({r.baseline_name})" if r.baseline else "-"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        res = "pass" if r.passed else "FAIL" if r.passed is False else "-"
        lines.append(f"| {r.figure} | {r.value:,.1f} {r.unit} | {base} | {ratio} | {r.target} | {res} |")
    return head + "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs (a smoke test of the benchmark)")
    ap.add_argument("--only", default="", help="comma-separated figure groups: " + ",".join(FIGURES))
    ap.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to write the results")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    chosen = [f for f in (args.only.split(",") if args.only else FIGURES) if f]
    machine = f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}"
    print(f"EST Lägesbild benchmark on {machine}", flush=True)
    with tempfile.TemporaryDirectory(prefix="est-bench-") as tmp:
        for name in chosen:
            print(f"[{name}]", flush=True)
            try:
                FIGURES[name](Path(tmp), args.quick)
            except Exception as exc:  # report and go on with the other figures
                print(f"  !! {name} failed: {exc!r}", flush=True)
                ROWS.append(Row(f"{name} (failed: {exc.__class__.__name__})", 0, "", passed=False))
    table = print_table(ROWS)
    print()
    print(table)
    Path(args.json).write_text(json.dumps({"machine": machine, "time": datetime.now(UTC).isoformat(),
                                           "rows": [dict(asdict(r), ratio=r.ratio) for r in ROWS]}, indent=2))
    return 0 if all(r.passed is not False for r in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
