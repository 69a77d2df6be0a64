"""The waits people feel: ``est up --demo`` until every service is ready and the tokens are printed (a fresh
data dir, then a restart on the same one), and the strategic report's PDF for a 50-area municipality.

``est up`` runs as the user runs it (the ``est`` script of this environment) and is timed from its start to the
line ``Running.`` it prints once the demo tokens are out; Ctrl-C (SIGINT) then stops it. The PDF is the analysis
service's ``GET /v1/analyses/{id}/report.pdf`` printed by the headless Chromium it finds (the row is skipped
without one); the first request of a revision is timed, then a repeat.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from est_shared.adapters.browser import find_browser

from bench.common import Env, Row, record
from bench.fig_analysis import PERIOD, TOKEN, _history, _load, _org, wait_consumed


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _est_up(data_dir: Path) -> tuple[float, float]:
    """Seconds from ``est up --demo`` to its ``Running.`` line, and the largest RSS (MB) of its processes then."""
    est = Path(sys.executable).with_name("est")
    env = dict(os.environ, EST_LOG_LEVEL="WARNING")
    for var in [k for k in env if k.endswith("_PORT") and k.startswith("EST_")]:
        env.pop(var)
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(est), "up", "--demo", "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env, cwd=data_dir.parent)
    assert proc.stdout is not None
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Running."):
                break
        else:
            raise RuntimeError("est up stopped before it was running:\n" + "".join(lines[-30:]))
        took = time.perf_counter() - t0
        rss = max([_rss_mb(p) for p in _children(proc.pid)] or [0.0])
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return took, rss


def fig_up(base: Path, quick: bool) -> None:
    data = base / "up" / "var"
    data.parent.mkdir(parents=True)
    first, rss = _est_up(data)
    record(Row("est up --demo first start (fresh data dir)", first, "s", None, "", "< 30 s", first < 30))
    again = [_est_up(data)[0] for _ in range(1 if quick else 3)]
    restart = sorted(again)[len(again) // 2]
    record(Row("est up --demo restart", restart, "s", None, "", "< 10 s", restart < 10))
    record(Row("est up --demo: largest service RSS after start", rss, "MB", None, "", "< 200 MB", rss < 200))


def fig_pdf(base: Path, quick: bool) -> None:
    if find_browser(os.environ.get("EST_ANALYSIS_BROWSER", "auto")) is None:
        print("  no headless browser found: PDF rows skipped", flush=True)
        return
    env = Env(base, "pdf")
    try:
        org = _org({"p50": 50})
        messages = _history("p50", 50, 1.0, 5)
        asyncio.run(_load(env.nats.url, org, messages))
        svc = env.service("analysis", EST_ANALYSIS_AUTO_COMPILE="false")
        wait_consumed(svc.url, len(messages), timeout=600)
        with httpx.Client(base_url=svc.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=180) as c:
            analysis = c.post("/v1/analyses", json={"municipality_id": "p50", "period": PERIOD})
            analysis.raise_for_status()
            path = f"/v1/analyses/{analysis.json()['id']}/report.pdf"
            t0 = time.perf_counter()
            r = c.get(path)
            first = time.perf_counter() - t0
            r.raise_for_status()
            t0 = time.perf_counter()
            c.get(path).raise_for_status()
            repeat = time.perf_counter() - t0
        size = len(r.content) / 1e6
        print(f"  report.pdf: {size:.2f} MB, first {first:.2f} s, repeat {repeat:.2f} s", flush=True)
        record(Row("strategic report PDF, 50 areas", first, "s", None, "", "< 3 s", first < 3))
        record(Row("strategic report PDF, 50 areas, asked again", repeat, "s", None, "", "(reported)", None))
        rss = svc.rss_mb()
        record(Row("analysis service peak RSS after the 50-area PDF", rss, "MB", None, "", "< 200 MB", rss < 200))
    finally:
        env.close()
        shutil.rmtree(env.dir / "data", ignore_errors=True)


FIGURES = {"up": fig_up, "pdf": fig_pdf}
