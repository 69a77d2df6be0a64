"""The event-loop lag metric every service exports (``est_<service>_event_loop_lag_seconds``)."""

from __future__ import annotations

import asyncio
import time
import uuid

from est_shared.observability import BusMetrics, watch_loop
from prometheus_client import CollectorRegistry, generate_latest


def _samples(registry: CollectorRegistry, name: str) -> dict[str, float]:
    return {f"{s.name}{s.labels.get('le', '')}": s.value for m in registry.collect() for s in m.samples
            if s.name.startswith(name)}


async def test_a_blocked_loop_shows_as_lag_and_a_free_one_does_not() -> None:
    registry = CollectorRegistry()
    service = f"t{uuid.uuid4().hex[:6]}"
    metrics = BusMetrics(service, registry)
    name = f"est_{service}_event_loop_lag_seconds"
    task = asyncio.create_task(watch_loop(metrics.loop_lag, interval=0.02))
    try:
        await asyncio.sleep(0.2)  # a free loop: every timer on time, give or take a few ms
        free = _samples(registry, name)
        assert free[f"{name}_count"] >= 3
        assert free[f"{name}_bucket1.0"] == free[f"{name}_count"]  # nothing near a second
        time.sleep(0.3)  # noqa: ASYNC251 -- on purpose: one step holds the loop (a long synchronous call)
        await asyncio.sleep(0.1)
        blocked = _samples(registry, name)
        assert blocked[f"{name}_count"] > free[f"{name}_count"]
        assert blocked[f"{name}_bucket0.25"] < blocked[f"{name}_count"]  # one observation of over 0.25 s
        assert blocked[f"{name}_sum"] - free[f"{name}_sum"] >= 0.25
        assert f"{name}_bucket".encode() in generate_latest(registry)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
