"""Embedded default: a service killed with SIGKILL and restarted loses nothing.

The aggregator is killed twice while reports stream in (once while it is still starting): every accepted
report is counted exactly once. The notifier is killed while its events wait in the stream and again in the
middle of a webhook delivery: every published picture version reaches the endpoint (a resend carries the same
Idempotency-Key, so the receiver can drop it)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.support import (
    Receiver,
    auth,
    make_reports,
    post_steadily,
    publish_all,
    start_embedded,
    subscribe_webhook,
    wait_counted,
    weeks,
)

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(120)
async def test_aggregator_killed_twice_under_load_counts_every_accepted_report_once(tmp_path: Path) -> None:
    system = start_embedded(tmp_path, ("intake", "aggregator"))
    agg = system["aggregator"]
    try:
        reports = make_reports(200, weeks(2), seed=2)
        load = await post_steadily(system["intake"].url, reports, rate=25, ticks={
            1.5: agg.kill, 2.5: lambda: agg.start(wait=False),  # killed again before it is ready
            3.0: agg.kill, 4.0: lambda: agg.start(wait=False)})
        assert not load.unexpected and not load.gave_up, (load.statuses, load.unexpected[:3])
        assert len(load.accepted) == 200
        agg.wait_ready(60)
        pictures = await wait_counted(agg.url, load.expected_totals(), timeout=60)
        assert sum(p["reports"] for p in pictures.values()) == 200
    except BaseException:
        print(system.logs())
        raise
    finally:
        system.stop()


@pytest.mark.timeout(120)
async def test_notifier_killed_while_idle_and_mid_delivery_still_delivers_every_version(tmp_path: Path) -> None:
    system = start_embedded(tmp_path, ("intake", "aggregator", "notifier"),
                            env={"notifier": {"EST_NOTIFIER_LEASE_SECONDS": "4",
                                              "EST_NOTIFIER_CONSUMER_ACK_WAIT": "5"}})
    notifier = system["notifier"]
    try:
        load = await post_steadily(system["intake"].url, make_reports(24, weeks(2), seed=3), rate=50)
        assert len(load.accepted) == 24, load.statuses
        expected = load.expected_totals()
        await wait_counted(system["aggregator"].url, expected, timeout=60)

        with Receiver(delay=3.0) as receiver:  # a slow endpoint: a kill lands in the middle of a delivery
            sub = await asyncio.to_thread(subscribe_webhook, notifier.url, receiver)
            notifier.kill()  # the pictures are published while the notifier is dead: the events wait
            want = await publish_all(system["aggregator"].url, expected, "Feltest.")
            await asyncio.to_thread(notifier.start)
            deadline = time.monotonic() + 30
            while not receiver.received:  # the first delivery is in progress (the endpoint holds it 3 s)
                assert time.monotonic() < deadline, "no delivery after the notifier came back"
                await asyncio.sleep(0.05)
            notifier.kill()
            in_flight = len(receiver.received)
            await asyncio.to_thread(notifier.start)

            # the ledger shows every version delivered (answered 2xx), the ones cut off resent after the lease
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient(timeout=10) as http:
                while True:
                    rows = (await http.get(f"{notifier.url}/v1/deliveries", headers=auth("t-lena"),
                                           params={"subscription_id": sub["id"]})).json()
                    done = [d for d in rows if d["event_type"] == "se.est.picture.published"
                            and d["status"] == "delivered"]
                    if len(done) >= len(want):
                        break
                    assert time.monotonic() < deadline, rows
                    await asyncio.sleep(0.5)
            assert len(done) == len(want), done
            got = receiver.published()  # idempotency key -> version; signatures checked
            assert set(got.values()) == want
            assert len(got) == len(want), f"each version under one Idempotency-Key: {got}"
            assert set(got) == {d["delivery_id"] for d in done}
            assert len(receiver.received) >= len(want) + in_flight, "the cut-off deliveries were not resent"
            print(f"{len(receiver.received)} requests for {len(want)} versions ({in_flight} in flight at the kill)")
    except BaseException:
        print(system.logs())
        raise
    finally:
        system.stop()
