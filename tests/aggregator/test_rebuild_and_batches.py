"""Batched consumption, the coalescing refresher, and the rebuild from the stream history."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from est_aggregator.rebuild import rebuild_async

from tests.aggregator.support import Bus, World, eventually, picture_when, report, running, settings_for

PERIODS = ["2026-W08", "2026-W09", "2026-W10"]


async def _pictures(c: httpx.AsyncClient, base: str, world: World) -> dict[str, Any]:
    out = {}
    for p in PERIODS:
        r = await c.get(f"{base}/v1/areas/{world.area}/pictures/{p}", headers=world.headers())
        assert r.status_code == 200, r.text
        out[p] = r.json()
    return out


async def test_rebuilt_pictures_equal_the_live_ones(world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    settings = settings_for(world, nats_url, tmp_path, forfeiture_subject=f"est.forfeiture.recorded.{world.muni}",
                            revise_delay=0.2)
    sent = 0
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        for i in range(60):
            await bus.send(report(world, f"rb{i}", {"skadegorelse": i % 4, "klotter": i % 3, "tillhall": i % 2 == 0},
                                  period=PERIODS[i % 3], reporter=("anna", "bo", "cy")[i % 3]))
            sent += 1
        await bus.send(report(world, "rb0"), again=True)  # a duplicate the consumer must drop
        await bus.send(report(world, "rbfix", {"skadegorelse": 9}, period=PERIODS[0], supersedes="rb3"))
        await picture_when(c, base, world, PERIODS[0], lambda p: p["items"]["skadegorelse"]["value"] >= 9)
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/{PERIODS[1]}/publish", headers=world.headers(),
                         json={"confirm_incomplete": True})
        assert r.json()["version"] == 1
        await bus.send(report(world, "rblate", {"klotter": 2}, period=PERIODS[1]))  # revises version 1
        await picture_when(c, base, world, PERIODS[1], lambda p: p["version"] == 2)
        live = await _pictures(c, base, world)
    assert live[PERIODS[0]]["reports"] == 20 and live[PERIODS[2]]["reports"] == 20

    seen: list[tuple[int, int]] = []
    result = await rebuild_async(settings, progress=lambda done, total: seen.append((done, total)))
    assert result.events == 63 and result.reports_stored == 62 and result.duplicates == 1
    assert seen[-1] == (63, 63)
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await asyncio.sleep(0.5)  # the durable has nothing new; the refresher finds nothing to revise
        rebuilt = await _pictures(c, base, world)
    assert rebuilt == live


async def test_a_burst_of_late_reports_makes_one_revision(world: World, bus: Bus, nats_url: str,
                                                          tmp_path: Path) -> None:
    tap = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")
    updates = await bus.tap(f"est.picture.updated.{world.muni}.>", "EST_PICTURES")
    settings = settings_for(world, nats_url, tmp_path, revise_delay=1.0, update_interval=0.3)
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        for i in range(50):
            await bus.send(report(world, f"open{i}", {"skadegorelse": 1}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 50)
        got = await Bus.take(updates, 50, timeout=2.0)
        assert 1 <= len(got) < 50  # coalesced: far fewer updates than reports
        assert got[-1]["data"]["picture"]["reports"] == 50
        assert (await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers(),
                             json={"confirm_incomplete": True})).json()["version"] == 1
        for i in range(30):
            await bus.send(report(world, f"late{i}", {"skadegorelse": 1}, reporter="bo"))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["version"] == 2)
        assert pic["reports"] == 80 and pic["items"]["skadegorelse"]["value"] == 80
        evs = await Bus.take(tap, 3, timeout=3.0)
        assert [e["data"]["picture"]["version"] for e in evs] == [1, 2]  # ONE revision for the 30 late reports
        assert "reports: 50 → 80" in evs[1]["data"]["changes"]


async def test_a_poison_event_in_a_batch_is_dead_lettered_and_the_rest_stored(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    from est_shared.bus import publish_raw
    from est_shared.subjects import report_submitted

    dlq = await bus.tap(f"est.dlq.aggregator.est.report.submitted.{world.muni}.>", "EST_DLQ")
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        for i in range(10):
            await bus.send(report(world, f"ok{i}", {"klotter": 1}))
            if i == 4:
                await publish_raw(bus.js, report_submitted(world.muni, world.area), b'{"not": "an event"}',
                                  msg_id=f"poison-{world.muni}")
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 10)
        [bad] = await eventually(lambda: Bus.take(dlq, 1, timeout=1.0))
        assert bad == {"not": "an event"}


async def test_the_rebuild_keeps_the_sqlite_log_bounded(world: World, bus: Bus, nats_url: str,
                                                         tmp_path: Path) -> None:
    """The replay writes in-loop with automatic checkpoints off, as the service does; the rebuild
    runs the service's checkpoint task beside it. Without it the WAL kept every page each batch
    wrote: 1.2 GB for 300,000 reports (about 4 KB a report), and the replay slowed as it grew."""
    n = 20_000
    js = bus.nc.jetstream(publish_async_max_pending=2000)
    subject = f"est.report.submitted.{world.muni}.{world.area}"
    for i in range(n):
        ev = report(world, f"wal{i}", {"skadegorelse": i % 4}, period=PERIODS[i % 3])
        await js.publish_async(subject, ev.model_dump_json(exclude_none=True).encode(),
                               headers={"Nats-Msg-Id": ev.id})
    await js.publish_async_completed()
    settings = settings_for(world, nats_url, tmp_path)
    wal = tmp_path / "aggregator.db-wal"
    largest = 0

    async def watch() -> None:
        nonlocal largest
        while True:
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        result = await rebuild_async(settings, batch_size=1000, checkpoint_interval=0.05)
    finally:
        watcher.cancel()
    assert result.reports_stored == n
    # unbounded: ~80 MB for these reports; each checkpoint round leaves at most a few batches' pages
    print("largest", largest)
    assert 0 < largest < 40 * 2**20, largest


async def test_the_puller_asks_again_after_its_pull_requests_expire(world: World, bus: Bus) -> None:
    """The rebuild and the batch consumer pull with their own requests (``Puller``). A request that
    expires before the messages exist ends with a status; the puller asks again and gets every
    message once, in order; with nothing left it gives back what it has, then nothing."""
    from est_shared.adapters.jetstream_pull import Puller
    from est_shared.subjects import REPORTS
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    name = f"replay-{world.muni}"
    await bus.js.add_consumer(REPORTS.name, ConsumerConfig(
        name=name, ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=30.0,
        filter_subjects=[f"est.report.submitted.{world.muni}.>"]))
    puller = await Puller(bus.nc, REPORTS.name, name, window=4, expires=0.2).start()

    async def later() -> None:
        await asyncio.sleep(0.6)  # after two requests have expired
        for i in range(10):
            await bus.send(report(world, f"{world.muni}-pull{i}"))

    sender = asyncio.create_task(later())
    try:
        first: list[Any] = []
        while not first:  # each expired request ends a take with nothing
            first = await puller.take(6, full=True, left=10, timeout=3.0)
        rest = await puller.take(6, full=True, left=10 - len(first), timeout=1.0)
        while len(first) + len(rest) < 10:
            rest += await puller.take(6, full=True, left=10 - len(first) - len(rest), timeout=1.0)
        assert await puller.take(1, timeout=0.5) == []  # nothing more: a request expires, nothing came
    finally:
        await sender
        await puller.stop()
    ids = [json.loads(m.data)["id"] for m in first + rest]
    assert ids == [f"{world.muni}-pull{i}" for i in range(10)]


async def test_the_puller_waits_out_an_error_status_instead_of_spinning(world: World, bus: Bus) -> None:
    """A pull request answered with an error status (here: the consumer deleted under it) ends the
    take with nothing, but only after the rest of its timeout: a caller that loops on ``take`` (the
    batch consumer does) must not fire requests at the server as fast as it answers them."""
    from est_shared.adapters.jetstream_pull import Puller
    from est_shared.subjects import REPORTS
    from nats.js.api import AckPolicy, ConsumerConfig

    name = f"gone-{world.muni}"
    await bus.js.add_consumer(REPORTS.name, ConsumerConfig(
        name=name, ack_policy=AckPolicy.EXPLICIT, inactive_threshold=30.0,
        filter_subjects=[f"est.report.submitted.{world.muni}.>"]))
    puller = await Puller(bus.nc, REPORTS.name, name, window=4, expires=5.0).start()
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        take = asyncio.create_task(puller.take(4, timeout=1.5))
        await asyncio.sleep(0.3)
        await bus.js.delete_consumer(REPORTS.name, name)
        assert await take == []
        assert puller.status is not None and puller.status != "408"
        assert loop.time() - started >= 1.4  # waited out, not returned at the status
        assert puller.outstanding == 0  # the status gave the request up: the next take asks again
        assert await puller.take(4, timeout=0.5) == []  # and gets nothing: the consumer is gone
    finally:
        await puller.stop()
