"""EST Lägesbild benchmark: every performance figure of the issues in one run, as ratios against
baselines measured in the same run (machines are noisy), printed as one table and written as JSON.

    .venv/bin/python bench/run.py [--quick] [--only intake,aggregator,...] [--json FILE]

Figures live in ``bench/fig_*.py`` (each exports ``FIGURES``: name -> function(base_dir, quick)).
Needs ``wrk`` (Debian package) for the HTTP figures; PostgreSQL figures use EST_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from est_shared.runtime import tune_gc  # noqa: E402

from bench.common import ROWS, Row  # noqa: E402


def discover() -> dict[str, Callable[[Path, bool], None]]:
    figures: dict[str, Callable[[Path, bool], None]] = {}
    for path in sorted((ROOT / "bench").glob("fig_*.py")):
        module = importlib.import_module(f"bench.{path.stem}")
        figures.update(module.FIGURES)
    return figures


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
    ap.add_argument("--only", default="", help="comma-separated figure groups: " + "see bench/fig_*.py")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to write the results")
    args = ap.parse_args()
    figures = discover()
    if not shutil.which("wrk"):
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    chosen = [f for f in (args.only.split(",") if args.only else figures) if f]
    # the baselines run in this process: give it the services' collector settings (EST_GC_TUNING),
    # else a baseline measured before the rebuild figure (which applies them) runs up to 2x slower
    # than one measured after it, and the ratios depend on the order of the figures
    tune_gc()
    machine = f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()}"
    print(f"EST Lägesbild benchmark on {machine}", flush=True)
    with tempfile.TemporaryDirectory(prefix="est-bench-") as tmp:
        for name in chosen:
            print(f"[{name}]", flush=True)
            try:
                figures[name](Path(tmp), args.quick)
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
