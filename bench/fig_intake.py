"""Intake figures: POST /v1/reports against hello-world, the batch endpoint against publish_async."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, Env, Row, free_port, publish_events, record, report_events, wait_http, wrk


def fig_intake(base: Path, quick: bool) -> None:
    seconds = 5 if quick else 15
    env = Env(base, "intake")
    try:
        port = free_port()
        hello = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.hello:app", "--port", str(port),
                                  "--log-level", "warning", "--no-access-log"], cwd=ROOT,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_http(f"http://127.0.0.1:{port}/openapi.json")
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



FIGURES = {"intake": fig_intake}
