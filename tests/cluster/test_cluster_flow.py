"""Scale-out on one machine: a 3-node NATS JetStream cluster (R3 streams), two replicas each of aggregator and
notifier on PostgreSQL, one intake. Under a steady load of reports the EST_REPORTS stream leader is killed and
later restarted, and one replica each of aggregator and notifier is killed with SIGKILL: every report accepted
with 202 is counted exactly once, and every published picture version reaches the webhook once, signed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from est_cli.procs import ServiceProcess
from est_shared.natsserver import NatsCluster
from est_shared.subjects import REPORTS

from tests.faults.support import (
    LOOPBACK_RECEIVERS,
    Receiver,
    make_reports,
    post_steadily,
    publish_all,
    subscribe_webhook,
    tail,
    wait_counted,
    weeks,
    write_org,
)
from tests.support import fresh_databases

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

N_REPORTS = 300
RATE = 20.0  # reports per second: 15 s of load


@pytest.fixture
async def databases(postgres_admin_url: str) -> AsyncIterator[dict[str, str]]:
    """One fresh PostgreSQL database per service (shared by that service's replicas), dropped afterwards."""
    names = {svc: f"est_cluster_{svc}_{uuid.uuid4().hex[:8]}" for svc in ("aggregator", "notifier")}
    async with fresh_databases(postgres_admin_url, names) as urls:
        yield urls


async def _stream_counts(cluster: NatsCluster, stream: str, *, want: int, timeout: float) -> list[int | None]:
    """Messages in ``stream`` as each node's monitoring endpoint reports them, polled until all equal ``want``."""
    counts: list[int | None] = []
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(int(timeout / 0.5)):
            counts = []
            for port in cluster.monitor_ports:
                try:
                    data = (await http.get(f"http://127.0.0.1:{port}/jsz", params={"streams": "true"})).json()
                except httpx.HTTPError:
                    counts.append(None)
                    continue
                found = [s["state"]["messages"] for acc in data.get("account_details", [])
                         for s in acc.get("stream_detail", []) if s.get("name") == stream]
                counts.append(found[0] if found else None)
            if counts == [want] * len(cluster.monitor_ports):
                break
            await asyncio.sleep(0.5)
    return counts


@pytest.mark.timeout(240)
async def test_cluster_counts_every_accepted_report_once_and_delivers_every_version_despite_kills(
        tmp_path: Path, databases: dict[str, str]) -> None:
    cluster = NatsCluster(tmp_path / "nats").start()
    common = {"EST_NATS_URL": cluster.url, "EST_STREAM_REPLICAS": "3", "EST_LOG_LEVEL": "WARNING"}
    org_file = write_org(tmp_path / "org.yaml")

    def proc(name: str, i: int, **env: str) -> ServiceProcess:
        data = tmp_path / f"{name}{i}"
        data.mkdir()
        return ServiceProcess(name, {**common, "EST_DATA_DIR": str(data), **env}, tmp_path / f"{name}{i}.log")

    intake = proc("intake", 0, EST_INTAKE_ORG_FILE=str(org_file))
    aggs = [proc("aggregator", i, EST_AGGREGATOR_DATABASE_URL=databases["aggregator"],
                 EST_AGGREGATOR_AUTO_PUBLISH_INTERVAL="0") for i in range(2)]
    nots = [proc("notifier", i, EST_NOTIFIER_DATABASE_URL=databases["notifier"],
                 EST_NOTIFIER_REMINDERS_ENABLED="false", EST_NOTIFIER_LEASE_SECONDS="20",
                 EST_NOTIFIER_WEBHOOK_ALLOW=LOOPBACK_RECEIVERS) for i in range(2)]
    everything = [intake, *aggs, *nots]
    try:
        # the first replica of each service creates its tables, then the second joins
        for p in (intake, aggs[0], nots[0]):
            p.start(wait=False)
        for p in (intake, aggs[0], nots[0]):
            await asyncio.to_thread(p.wait_ready, 90)
        for p in (aggs[1], nots[1]):
            p.start(wait=False)
        for p in (aggs[1], nots[1]):
            await asyncio.to_thread(p.wait_ready, 90)

        with Receiver() as receiver:
            # the subscription is made on the replica that will be killed: the database is what they share
            await asyncio.to_thread(subscribe_webhook, nots[0].url, receiver)

            leader: dict[str, int | None] = {"node": None}

            def kill_leader() -> None:
                leader["node"] = cluster.stream_leader(REPORTS.name)
                assert leader["node"] is not None, "no leader for EST_REPORTS"
                cluster.kill_node(leader["node"])

            def restart_leader() -> None:
                assert leader["node"] is not None
                cluster.start_node(leader["node"])

            periods = weeks(2)
            reports = make_reports(N_REPORTS, periods, seed=7)
            load = await post_steadily(intake.url, reports, rate=RATE, give_up_after=90, ticks={
                3.0: kill_leader, 6.0: aggs[0].kill, 8.0: nots[0].kill, 10.0: restart_leader})
            await asyncio.to_thread(cluster.wait_healthy, 60)
            print(f"load: {dict(load.statuses)}; EST_REPORTS leader killed: n{leader['node']}")

            assert not load.unexpected, load.unexpected[:5]
            assert not load.gave_up, f"{len(load.gave_up)} reports never accepted; {load.statuses}"
            assert not load.no_retry_after, load.no_retry_after[:3]
            assert not load.not_problem_json, load.not_problem_json[:3]
            assert len(load.accepted) == N_REPORTS, load.statuses

            # the stream holds each report once (Nats-Msg-Id = report id), on every node: the restarted one caught up
            counts = await _stream_counts(cluster, REPORTS.name, want=N_REPORTS, timeout=30)
            assert counts == [N_REPORTS] * 3, counts

            # every 202 counted exactly once (reports and the summed answer), read on the surviving replica
            expected = load.expected_totals()
            assert sum(n for n, _ in expected.values()) == N_REPORTS
            pictures = await wait_counted(aggs[1].url, expected, timeout=90)
            assert sum(p["reports"] for p in pictures.values()) == len(load.accepted)

            # publish every picture on the surviving aggregator: one signed delivery per version
            want = await publish_all(aggs[1].url, expected, "Klustertest.")
            for _ in range(240):
                if set(receiver.published().values()) >= want:
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(2.0)  # a moment for any duplicate to show
            got = receiver.published()
            assert set(got.values()) == want, (got, want, tail(tmp_path / "notifier1.log"))
            assert len(got) == len(want), f"one delivery key per version: {got}"
            deliveries = [d for d in receiver.received if b"se.est.picture.published" in d["body"]]
            assert len(deliveries) == len(want), f"{len(deliveries)} deliveries for {len(want)} versions"
    except BaseException:
        for p in everything:
            print(f"--- {p.name} {p.port} ---\n{tail(p.log)}")
        raise
    finally:
        for p in everything:
            p.stop()
        cluster.stop()
