"""A 3-node JetStream cluster on loopback: R3 streams survive the leader being killed mid-publish,
and publishers that retry with the same Nats-Msg-Id store every message exactly once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from est_shared.bus import BusUnavailable, ensure_streams, publish_raw
from est_shared.natsserver import NatsCluster
from est_shared.subjects import REPORTS


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = NatsCluster(tmp_path / "cluster").start()
    yield c
    c.stop()


async def test_r3_stream_keeps_every_acked_message_once_when_the_leader_dies(cluster: NatsCluster) -> None:
    nc = await nats.connect(cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    js = nc.jetstream()
    for _ in range(100):
        try:
            await ensure_streams(js, (REPORTS,), replicas=3)
            break
        except Exception:
            await asyncio.sleep(0.2)
    acked: set[str] = set()
    leader = None
    for _ in range(100):
        leader = cluster.stream_leader(REPORTS.name)
        if leader is not None:
            break
        await asyncio.sleep(0.1)
    assert leader is not None

    async def publish(i: int) -> None:
        msg_id = f"r-{i}"
        deadline = time.monotonic() + 30
        while True:
            try:
                await publish_raw(js, "est.report.submitted.m.a", f"{i}".encode(), msg_id=msg_id, timeout=2)
                acked.add(msg_id)
                return
            except BusUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    for i in range(300):
        if i == 100:
            cluster.kill_node(leader)
        await publish(i)
    cluster.start_node(leader)
    cluster.wait_healthy()
    info = await js.stream_info(REPORTS.name)
    assert len(acked) == 300
    assert info.state.messages == 300
    await nc.close()
