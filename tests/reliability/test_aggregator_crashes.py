"""10,000 reports, 1,000 of them resent, the aggregator killed with SIGKILL three times while it
consumes: every picture total equals the unique reports, exactly."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
import pytest
from est_cli.procs import ServiceProcess
from est_shared.bus import encode, ensure_streams
from est_shared.events import Answer, OrgChanged, ReportSubmitted, new_event
from est_shared.natsserver import NatsServer
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token
from est_shared.periods import Period
from est_shared.subjects import ORG_CHANGED, report_submitted

AREAS = [f"area{i}" for i in range(5)]
N_REPORTS = 10_000
N_RESENT = 1_000


def _org(m: str) -> OrgSnapshot:
    return OrgSnapshot(
        version=1,
        municipalities={m: Municipality(id=m, name="Test kommun", area_ids=AREAS)},
        areas={a: Area(id=a, name=a, municipality_id=m, places=["torget"]) for a in AREAS},
        actors={"kommunen": Actor(id="kommunen", name="Kommunen", kind="municipality")},
        people={"kf": Person(id="kf", name="KF", actor="kommunen", roles=["key_function", "admin"], areas=AREAS,
                             municipalities=[m], token_sha256=hash_token("t-kf"))},
    )


@pytest.mark.timeout(300)
async def test_every_total_equals_the_unique_reports_despite_three_crashes(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    m = "crashtest"
    weeks = [Period.parse("2026-W40").shift(i) for i in range(8)]
    rng = random.Random(1)
    events = []
    expected_reports: dict[tuple[str, str], int] = defaultdict(int)
    expected_skad: dict[tuple[str, str], int] = defaultdict(int)
    for i in range(N_REPORTS):
        area, week = rng.choice(AREAS), rng.choice(weeks)
        value = rng.randint(0, 4)
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        data = ReportSubmitted(report_id=rid, municipality_id=m, area_id=area, period=week.id,
                               checklist="est-standard@1", answers={"skadegorelse": Answer(value=value)},
                               reporter_id=f"r{i % 7}", actor_id="kommunen",
                               received_at=datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=i))
        events.append(new_event(type="se.est.report.submitted", source="/est/intake", data=data, id=rid,
                                subject=area))
        expected_reports[(area, week.id)] += 1
        expected_skad[(area, week.id)] += value
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    await ensure_streams(js)
    org = new_event(type="se.est.org.changed", source="/est/intake", id="org:v1",
                    data=OrgChanged(version=1, snapshot=_org(m).model_dump(mode="json")))
    await js.publish(ORG_CHANGED, encode(org), headers={"Nats-Msg-Id": org.id})

    env = {"EST_NATS_URL": server.url, "EST_DATA_DIR": str(tmp_path / "data")}
    agg = ServiceProcess("aggregator", env, tmp_path / "aggregator.log").start()

    async def publish_all() -> None:
        resent = rng.sample(events, N_RESENT)
        for n, ev in enumerate(events + resent):
            # half the resends reuse the Nats-Msg-Id (JetStream drops them), half come after the
            # duplicate window (new Nats-Msg-Id, same report id): the consumer must drop those
            msg_id = ev.id if n < N_REPORTS + N_RESENT // 2 else f"late-resend-{ev.id}"
            await js.publish_async(report_submitted(m, ev.data.area_id), encode(ev), headers={"Nats-Msg-Id": msg_id})
            if n % 500 == 0:
                await asyncio.sleep(0)
        await js.publish_async_completed()

    publisher = asyncio.create_task(publish_all())
    for _ in range(3):
        await asyncio.sleep(1.5)
        agg.kill()
        await asyncio.sleep(0.3)
        agg.start()
    await publisher
    try:
        async with httpx.AsyncClient(base_url=agg.url, headers={"Authorization": "Bearer t-kf"}, timeout=30) as http:
            async def all_counted() -> bool:
                for (area, week), n in expected_reports.items():
                    p = (await http.get(f"/v1/areas/{area}/pictures/{week}")).json()
                    if p.get("reports") != n:
                        return False
                return True

            for _ in range(240):
                if await all_counted():
                    break
                await asyncio.sleep(0.5)
            for (area, week), n in expected_reports.items():
                p = (await http.get(f"/v1/areas/{area}/pictures/{week}")).json()
                assert p["reports"] == n, (area, week)
                assert p["items"]["skadegorelse"]["value"] == expected_skad[(area, week)], (area, week)
    finally:
        agg.stop()
        await nc.close()
        server.stop()
