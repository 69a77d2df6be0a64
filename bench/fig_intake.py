"""Intake figures: POST /v1/reports against hello-world, the batch endpoint against publish_async."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.common import (
    ROOT,
    Env,
    LoopbackHttp,
    Row,
    free_port,
    pg_database,
    publish_events,
    record,
    report_events,
    wait_http,
    wrk,
)

SCRIPT = ROOT / "bench" / "report.lua"


def _hello_rps(seconds: int) -> float:
    """Requests/s of the hello-world POST (same stack: uvicorn, FastAPI, the same wrk script)."""
    port = free_port()
    hello = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.hello:app", "--port", str(port),
                              "--log-level", "warning", "--no-access-log"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/openapi.json")
        return wrk(f"http://127.0.0.1:{port}", seconds=seconds, script=SCRIPT, env={"BENCH_PATH": "/hello"})[0]
    finally:
        hello.terminate()
        hello.wait()


def _post_row(url: str, figure: str, hello_rps: float, *, seconds: int, share: float) -> None:
    """wrk's single report POSTs against the intake at ``url``, as a row against the hello-world's rate."""
    time.sleep(1)
    rps, bad = wrk(url, seconds=seconds, script=SCRIPT)
    record(Row(figure, rps, "req/s", hello_rps, "hello-world POST, same stack", f"≥ {share}×",
               rps / hello_rps >= share and bad == 0))
    if bad:
        print(f"  !! {bad} non-2xx answers", flush=True)


def fig_intake(base: Path, quick: bool) -> None:
    seconds = 5 if quick else 15
    env = Env(base, "intake")
    try:
        hello_rps = _hello_rps(seconds)
        intake = env.service("intake")
        _post_row(intake.url, "intake POST /v1/reports (auth, validation, JetStream ack), c=64", hello_rps,
                  seconds=seconds, share=0.5)
        # alternated rounds, best of each side: the machine's noise hits one round, not the figure
        n, rounds = (5_000, 3) if quick else (20_000, 3)
        raws, rates = [], []
        for _ in range(rounds):
            raws.append(asyncio.run(publish_events(env.nats.url, report_events(n, m="rawbench"))))
            rates.append(asyncio.run(_batch_rate(intake.url, n)))
        print(f"  rounds: publish_async {', '.join(f'{r:,.0f}' for r in raws)}; "
              f"batch {', '.join(f'{r:,.0f}' for r in rates)} reports/s", flush=True)
        raw, batch_rate = max(raws), max(rates)
        record(Row("intake POST /v1/reports:batch (500 per request)", batch_rate, "reports/s", raw,
                   "nats-py publish_async of the same events", "≥ 0.4×", batch_rate / raw >= 0.4))
        rss = intake.rss_mb()
        record(Row("intake peak resident memory", rss, "MB", None, "", "< 200 MB", rss < 200))
    finally:
        env.close()


def fig_intake_pg(base: Path, quick: bool) -> None:
    """The POST figure with the intake's ledger on PostgreSQL (a fresh database), against the same hello-world."""
    seconds = 5 if quick else 15
    env = Env(base, "intake-pg")
    try:
        hello_rps = _hello_rps(seconds)
        intake = env.service("intake", EST_INTAKE_DATABASE_URL=asyncio.run(pg_database()))
        _post_row(intake.url, "intake POST /v1/reports, ledger on PostgreSQL, c=64", hello_rps,
                  seconds=seconds, share=0.4)
        rss = intake.rss_mb()
        record(Row("intake peak resident memory (postgresql)", rss, "MB", None, "", "< 200 MB", rss < 200))
    finally:
        env.close()


async def _batch_rate(url: str, n: int, per_request: int = 500, concurrency: int = 4) -> float:
    """Reports/s through ``POST /v1/reports:batch``: ``n`` new reports, ``concurrency`` requests in flight.

    The bodies are written before the clock starts, as the baseline encodes its events before its
    clock starts, and sent by the lean loopback client: what is timed is the intake's work, not the
    load generator's JSON encoding on the same two cores.
    """
    reports = [{"report_id": str(uuid.uuid4()), "area_id": f"a{i % 50}", "checklist": "est-standard@1",
                "answers": {"skadegorelse": {"value": i % 4}, "klotter": {"value": i % 3}}} for i in range(n)]
    bodies = [json.dumps({"reports": reports[i:i + per_request]}).encode() for i in range(0, n, per_request)]
    headers = {"Authorization": "Bearer bench-reporter"}
    async with LoopbackHttp(url, connections=concurrency) as http:  # its connections bound the requests in flight
        async def one(body: bytes) -> None:
            status, answer = await http.post("/v1/reports:batch", body, headers)
            if status != 200:
                raise RuntimeError(f"batch answered {status}: {answer[:300]!r}")
            if json.loads(answer)["accepted"] != per_request:
                raise RuntimeError(f"not every report accepted: {answer[:300]!r}")

        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        return n / (time.perf_counter() - t0)


FIGURES = {"intake": fig_intake, "intake-pg": fig_intake_pg}
