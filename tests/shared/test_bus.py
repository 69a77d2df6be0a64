"""The consumer plumbing against a real JetStream: ack, retry with backoff, dead-letter, de-dup."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nats
import nats.errors
from est_shared.bus import PoisonEvent, add_consumer, ensure_streams, make_broker, publish_event, publish_raw
from est_shared.events import AlertData, CloudEvent, new_event
from est_shared.observability import BusMetrics
from est_shared.subjects import ALERTS
from prometheus_client import CollectorRegistry


def _alert(m: str) -> CloudEvent[Any]:
    return new_event(type="se.est.alert.raised", source="/test", subject="a",
                     data=AlertData(alert_id=str(uuid.uuid4()), municipality_id=m, area_id="a", item="klotter",
                                    kind="flag:high", period="2026-W48"))


async def _run(nats_url: str, m: str, handle: Any, max_deliver: int = 3) -> tuple[Any, BusMetrics, Any]:
    metrics = BusMetrics(f"t{uuid.uuid4().hex[:6]}", CollectorRegistry())
    broker = make_broker([nats_url], service="test", metrics=metrics)
    add_consumer(broker, service="test", stream=ALERTS, subject=f"est.alert.raised.{m}.>", durable=f"d-{m}",
                 data=AlertData, types=["se.est.alert.raised"], handle=handle, metrics=metrics,
                 max_deliver=max_deliver)
    await broker.connect()
    await ensure_streams(broker.config.connection_state.stream)
    await broker.start()
    return broker, metrics, broker.config.connection_state.stream


async def _wait(cond: Any, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_duplicate_publish_is_stored_once_and_handled_once(nats_url: str) -> None:
    m = f"m{uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    async def handle(ev: CloudEvent[Any]) -> None:
        seen.append(ev.id)

    broker, _metrics, js = await _run(nats_url, m, handle)
    try:
        ev = _alert(m)
        a1 = await publish_event(js, f"est.alert.raised.{m}.a", ev)
        a2 = await publish_event(js, f"est.alert.raised.{m}.a", ev)
        assert a2.duplicate and a1.seq == a2.seq
        await _wait(lambda: len(seen) == 1)
        await asyncio.sleep(0.3)
        assert seen == [ev.id]
    finally:
        await broker.stop()


async def test_transient_error_is_retried_then_succeeds(nats_url: str) -> None:
    m = f"m{uuid.uuid4().hex[:8]}"
    attempts: list[int] = []

    async def handle(ev: CloudEvent[Any]) -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise RuntimeError("database busy")

    broker, metrics, js = await _run(nats_url, m, handle)
    try:
        await publish_event(js, f"est.alert.raised.{m}.a", _alert(m))
        await _wait(lambda: len(attempts) == 2)
        await asyncio.sleep(0.2)
        assert metrics.events.labels("se.est.alert.raised", "retried")._value.get() == 1
        assert metrics.events.labels("se.est.alert.raised", "ok")._value.get() == 1
    finally:
        await broker.stop()


async def test_garbage_and_poison_go_to_the_dead_letter_subject(nats_url: str) -> None:
    m = f"m{uuid.uuid4().hex[:8]}"
    handled: list[str] = []

    async def handle(ev: CloudEvent[Any]) -> None:
        if ev.data.item == "poison":
            raise PoisonEvent("cannot ever work")
        handled.append(ev.id)

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    dlq = await js.subscribe(f"est.dlq.test.est.alert.raised.{m}.>", stream="EST_DLQ")
    broker, metrics, js2 = await _run(nats_url, m, handle)
    try:
        await publish_raw(js2, f"est.alert.raised.{m}.a", b"\x00not json{", msg_id=str(uuid.uuid4()))
        bad = _alert(m).model_copy(update={"data": _alert(m).data.model_copy(update={"item": "poison"})})
        await publish_event(js2, f"est.alert.raised.{m}.a", bad)
        good = _alert(m)
        await publish_event(js2, f"est.alert.raised.{m}.a", good)
        got = [await dlq.next_msg(timeout=5), await dlq.next_msg(timeout=5)]
        assert {g.headers["EST-DLQ-Reason"] for g in got} == {"poison"}
        await _wait(lambda: handled == [good.id])
        assert metrics.dead_lettered.labels("poison")._value.get() == 2
    finally:
        await broker.stop()
        await nc.close()


async def test_an_event_failing_every_time_is_dead_lettered_after_max_deliver(nats_url: str) -> None:
    m = f"m{uuid.uuid4().hex[:8]}"
    attempts: list[int] = []

    async def handle(ev: CloudEvent[Any]) -> None:
        attempts.append(1)
        raise RuntimeError("always")

    broker, metrics, js = await _run(nats_url, m, handle, max_deliver=2)
    try:
        await publish_event(js, f"est.alert.raised.{m}.a", _alert(m))
        await _wait(lambda: metrics.dead_lettered.labels("max_deliver")._value.get() == 1)
        assert len(attempts) == 2
    finally:
        await broker.stop()


async def test_a_stopped_batch_consumer_hands_back_the_batch_it_fetched_ahead(nats_url: str) -> None:
    """Stopping mid-stream: the batch in hand is finished and acked, the one fetched ahead is nak'ed at once
    (not left to wait out ack_wait), so a restart sees it immediately."""
    from est_shared.batching import BatchConsumer

    m = f"m{uuid.uuid4().hex[:6]}"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    for _ in range(40):
        await publish_event(js, f"est.alert.raised.{m}.a", _alert(m))
    handled: list[int] = []
    first_in_hand = asyncio.Event()

    async def handle_batch(events: Any) -> None:
        first_in_hand.set()
        await asyncio.sleep(0.5)  # long enough for the next fetch to come back
        handled.append(len(events))

    async def handle_one(event: Any) -> None:
        raise AssertionError("not expected")

    metrics = BusMetrics(f"t{uuid.uuid4().hex[:6]}", CollectorRegistry())
    consumer = BatchConsumer(service="test", stream=ALERTS, subject=f"est.alert.raised.{m}.>", durable=f"b-{m}",
                             handle_batch=handle_batch, handle_one=handle_one, metrics=metrics, batch_size=10,
                             ack_wait=30.0)
    try:
        await consumer.start(js, nc)
        await asyncio.wait_for(first_in_hand.wait(), 10)
        await asyncio.sleep(0.1)
        await consumer.stop()
        # one batch in hand: the first take returns at once what has arrived (10 on a quiet machine,
        # fewer on a busy one); the puller asked for 20 (the batch and its window), so the rest of
        # those 20 arrived while the batch was handled
        assert len(handled) == 1 and 1 <= handled[0] <= 10
        rest, ahead = 40 - handled[0], 20 - handled[0]
        # a restart on the same durable gets all the others at once: the ones fetched ahead were
        # nak'ed; without that they would come back only after ack_wait (30 s)
        sub = await js.pull_subscribe(f"est.alert.raised.{m}.>", durable=f"b-{m}", stream=ALERTS.name)
        got: list[Any] = []
        for _ in range(20):
            try:
                got += await sub.fetch(rest - len(got), timeout=0.5)
            except (nats.errors.TimeoutError, TimeoutError):
                pass
            if len(got) >= rest:
                break
        assert len(got) == rest
        assert sum(1 for msg in got if msg.metadata.num_delivered == 2) == ahead  # the handed-back batch
        for msg in got:
            await msg.ack()
    finally:
        await nc.close()


async def test_a_lingering_batch_consumer_gathers_a_trickle_and_never_waits_with_a_full_batch(nats_url: str) -> None:
    """With ``linger``, events trickling in one at a time make one batch (one transaction), not one each;
    a batch that is full is handled at once, without waiting out the linger."""
    from est_shared.batching import BatchConsumer

    m = f"m{uuid.uuid4().hex[:6]}"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    handled: list[tuple[int, float]] = []
    loop = asyncio.get_running_loop()

    async def handle_batch(events: Any) -> None:
        handled.append((len(events), loop.time()))

    async def handle_one(event: Any) -> None:
        raise AssertionError("not expected")

    consumer = BatchConsumer(service="test", stream=ALERTS, subject=f"est.alert.raised.{m}.>", durable=f"l-{m}",
                             handle_batch=handle_batch, handle_one=handle_one,
                             metrics=BusMetrics(f"t{uuid.uuid4().hex[:6]}", CollectorRegistry()), batch_size=10,
                             linger=1.0)
    try:
        await consumer.start(js, nc)
        for _ in range(4):  # a trickle: one every 50 ms, well within the linger
            await publish_event(js, f"est.alert.raised.{m}.a", _alert(m))
            await asyncio.sleep(0.05)
        await _wait(lambda: sum(n for n, _ in handled) == 4)
        assert [n for n, _ in handled] == [4]
        first = loop.time()
        await asyncio.gather(*(publish_event(js, f"est.alert.raised.{m}.a", _alert(m)) for _ in range(10)))
        await _wait(lambda: sum(n for n, _ in handled) == 14)
        assert handled[-1][1] - first < 0.5  # full: no wait for the linger (1 s)
    finally:
        await consumer.stop()
        await nc.close()


async def test_a_durable_with_a_small_ack_window_limits_the_fetch_instead_of_stalling(nats_url: str) -> None:
    """A durable keeps the ``max_ack_pending`` it was created with. A batch size above half of it
    would leave the fetch made ahead waiting out its timeout (one batch a second): the consumer
    fetches half the window instead, and a new durable gets a window of twice the batch size."""
    from est_shared.batching import BatchConsumer
    from nats.js.api import AckPolicy, ConsumerConfig

    m = f"m{uuid.uuid4().hex[:6]}"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    subject = f"est.alert.raised.{m}.>"
    await js.add_consumer(ALERTS.name, ConsumerConfig(durable_name=f"old-{m}", ack_policy=AckPolicy.EXPLICIT,
                                                      filter_subject=subject, max_ack_pending=40))
    for _ in range(400):
        await publish_event(js, f"est.alert.raised.{m}.a", _alert(m))
    handled: list[int] = []

    async def handle_batch(events: Any) -> None:
        handled.append(len(events))

    async def handle_one(event: Any) -> None:
        handled.append(1)

    def consumer(durable: str) -> BatchConsumer:
        return BatchConsumer(service="test", stream=ALERTS, subject=subject, durable=durable,
                             handle_batch=handle_batch, handle_one=handle_one,
                             metrics=BusMetrics(f"t{uuid.uuid4().hex[:6]}", CollectorRegistry()), batch_size=100)

    old, new = consumer(f"old-{m}"), consumer(f"new-{m}")
    try:
        await old.start(js, nc)
        assert old.fetch_size == 20
        loop = asyncio.get_running_loop()
        started = loop.time()
        await _wait(lambda: sum(handled) == 400, timeout=20)
        # 20 batches: at one a second (the stall) this would take 20 s
        assert loop.time() - started < 5
        assert max(handled) <= 20
        await old.stop()
        await new.start(js, nc)
        assert new.fetch_size == 100
        assert (await js.consumer_info(ALERTS.name, f"new-{m}")).config.max_ack_pending == 1000
    finally:
        await old.stop()
        await new.stop()
        await nc.close()
