"""``est aggregator rebuild`` and ``est analysis rebuild``: projections rebuilt from the streams give
what the live services had."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
from est_cli.procs import ServiceProcess
from est_shared.bus import encode, ensure_streams
from est_shared.events import Answer, OrgChanged, ReportSubmitted, new_event
from est_shared.natsserver import NatsServer
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token
from est_shared.subjects import ORG_CHANGED, report_submitted


async def _load(url: str, m: str, n: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_streams(js)
    snap = OrgSnapshot(version=1, municipalities={m: Municipality(id=m, name=m, area_ids=["a1"])},
                       areas={"a1": Area(id="a1", name="A1", municipality_id=m)},
                       actors={"k": Actor(id="k", name="K", kind="municipality")},
                       people={"kf": Person(id="kf", name="KF", actor="k", roles=["key_function"], areas=["a1"],
                                            municipalities=[m], token_sha256=hash_token("t-kf"))})
    org = new_event(type="se.est.org.changed", source="/test", id="org:v1",
                    data=OrgChanged(version=1, snapshot=snap.model_dump(mode="json")))
    await js.publish(ORG_CHANGED, encode(org), headers={"Nats-Msg-Id": org.id})
    for i in range(n):
        rid = str(uuid.uuid4())
        ev = new_event(type="se.est.report.submitted", source="/test", id=rid, data=ReportSubmitted(
            report_id=rid, municipality_id=m, area_id="a1", period="2026-W40", checklist="est-standard@1",
            answers={"skadegorelse": Answer(value=i % 3)}, reporter_id="r", actor_id="k",
            received_at=datetime.now(UTC)))
        await js.publish(report_submitted(m, "a1"), encode(ev), headers={"Nats-Msg-Id": rid})
    await nc.close()


def test_aggregator_rebuild_command_gives_the_live_picture(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    env = {"EST_NATS_URL": server.url, "EST_DATA_DIR": str(tmp_path / "data")}
    try:
        asyncio.run(_load(server.url, "rb", 40))
        agg = ServiceProcess("aggregator", env, tmp_path / "agg.log").start()
        url = f"{agg.url}/v1/areas/a1/pictures/2026-W40"
        auth = {"Authorization": "Bearer t-kf"}
        for _ in range(100):
            live = httpx.get(url, headers=auth).json()
            if live.get("reports") == 40:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert live["reports"] == 40
        agg.stop()
        out = subprocess.run([sys.executable, "-m", "est_cli.main", "aggregator", "rebuild"], capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, **env))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "40 reports" in out.stdout.replace("\n", " ")
        agg.start()
        rebuilt = httpx.get(url, headers=auth).json()
        assert rebuilt["reports"] == 40
        assert rebuilt["items"] == live["items"]
        agg.stop()
        analysis = subprocess.run([sys.executable, "-m", "est_cli.main", "analysis", "rebuild"],
                                  capture_output=True, text=True, timeout=120, env=dict(os.environ, **env))
        assert analysis.returncode == 0, analysis.stdout + analysis.stderr
        assert "events replayed" in analysis.stdout
    finally:
        server.stop()
