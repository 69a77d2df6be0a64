"""Aggregator figures: consume-and-store throughput against a raw nats-py pull consumer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bench.common import Env, Row, metric_sum, pg_database, publish_events, raw_consume, record, report_events


def fig_aggregator(base: Path, quick: bool, db: str = "sqlite") -> None:
    n = 5_000 if quick else 20_000
    env = Env(base, f"aggregator-{db}")
    try:
        events = report_events(n)
        asyncio.run(publish_events(env.nats.url, events))
        raw = asyncio.run(raw_consume(env.nats.url, n))
        extra: dict[str, str] = {}
        if db == "postgresql":
            extra["EST_AGGREGATOR_DATABASE_URL"] = asyncio.run(pg_database())
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



FIGURES = {
    "aggregator": fig_aggregator,
    "aggregator-pg": lambda b, q: fig_aggregator(b, q, "postgresql"),
}
