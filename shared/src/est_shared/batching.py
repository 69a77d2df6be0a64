"""A batch variant of ``est_shared.bus.add_consumer``: a durable pull consumer whose handler gets many events.

Why not FastStream's ``PullSub(batch=True)``: in 0.7.8 its fetch loop catches only
``nats.errors.TimeoutError``, but nats-py's ``_fetch_n`` also raises the builtin ``TimeoutError``
when a short collection window runs out; the task then dies (the supervisor restarts it) and the
partial batch it held stays unacknowledged until ``ack_wait`` (30 s) — seen as flaky 30 s stalls.
It also waits to fill the batch, which adds latency. So this module runs a plain nats-py pull loop.

Every message still ends explicitly, one by one:

* undecodable / unknown events are dead-lettered right away (``est_shared.bus.process_message``
  with the shared poison path), the rest of the batch goes on;
* the batch handler runs once for the others; on success every message is acked (after the
  handler's commit);
* if the batch handler raises, each message is handled again on its own with the shared
  single-message semantics (ack, nack with backoff, dead-letter at ``max_deliver``), so one bad
  event never holds back or poisons the others.

Used by the aggregator's report consumer; any service that wants many events per transaction uses it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from est_shared.bus import Handler, PoisonEvent, parse_event, process_message
from est_shared.events import EVENT_TYPES, CloudEvent, EventData
from est_shared.observability import BusMetrics
from est_shared.subjects import StreamDef

log = logging.getLogger("est.bus")


@functools.cache
def _envelope(model: type[EventData]) -> Any:
    return CloudEvent[model]  # type: ignore[valid-type]


def parse_expected(raw: bytes, expected: type[EventData] | None = None) -> CloudEvent[Any]:
    """``parse_event``, with one validation instead of two when the event is of the ``expected`` data type.

    The result is the same as ``parse_event``'s; anything unexpected (another type, invalid data)
    takes ``parse_event`` itself (which raises PoisonEvent where it must).
    """
    if expected is not None:
        try:
            event = _envelope(expected).model_validate_json(raw)
            if EVENT_TYPES.get(event.type) is expected:
                return event  # type: ignore[no-any-return]
        except ValidationError:
            pass
    return parse_event(raw)

BatchHandler = Callable[[Sequence[CloudEvent[Any]]], Awaitable[Any]]


class OneMessage:
    """A raw nats-py message with the small interface ``process_message`` expects of a FastStream message."""

    __slots__ = ("raw_message",)

    def __init__(self, raw: Any) -> None:
        self.raw_message = raw

    @property
    def body(self) -> bytes:
        return self.raw_message.data  # type: ignore[no-any-return]

    async def ack(self) -> None:
        await self.raw_message.ack()

    async def nack(self, delay: float | None = None) -> None:
        await self.raw_message.nak(delay=delay)

    async def reject(self) -> None:
        await self.raw_message.term()


async def process_batch(raws: Sequence[Any], *, service: str, handle_batch: BatchHandler, handle_one: Handler,
                        metrics: BusMetrics, max_deliver: int, js: Any,
                        expected: type[EventData] | None = None) -> None:
    """Decode, handle and settle a batch of raw nats-py messages (see the module docstring)."""
    good: list[tuple[Any, CloudEvent[Any]]] = []
    for raw in raws:
        try:
            good.append((raw, parse_expected(raw.data, expected)))
        except PoisonEvent:  # the shared path dead-letters it (it fails to parse again there)
            await process_message(OneMessage(raw), service=service, handle=handle_one, metrics=metrics,
                                  max_deliver=max_deliver, js=js)
    if not good:
        return
    try:
        with metrics.handle_seconds.time():
            await handle_batch([event for _, event in good])
    except Exception as exc:
        log.warning("batch failed, settling its events one by one",
                    extra={"events": len(good), "error": repr(exc)[:300]})
        for raw, _event in good:
            await process_message(OneMessage(raw), service=service, handle=handle_one, metrics=metrics,
                                  max_deliver=max_deliver, js=js)
        return
    for etype, n in Counter(event.type for _, event in good).items():
        metrics.events.labels(etype, "ok").inc(n)
    for raw, _event in good:
        await raw.ack()


class BatchConsumer:
    """A durable pull consumer run by its own task: fetch up to ``batch_size``, hand them over, settle each.

    nats-py's ``fetch`` returns at once with whatever is pending (up to ``batch_size``) and waits
    only when nothing is: full batches under load, no added latency when events trickle in.
    """

    def __init__(self, *, service: str, stream: StreamDef, subject: str, durable: str,
                 handle_batch: BatchHandler, handle_one: Handler, metrics: BusMetrics, max_deliver: int = 8,
                 batch_size: int = 256, ack_wait: float = 30.0,
                 deliver_policy: DeliverPolicy = DeliverPolicy.ALL, expected: type[EventData] | None = None) -> None:
        self.service, self.stream, self.subject, self.durable = service, stream, subject, durable
        self.handle_batch, self.handle_one, self.metrics = handle_batch, handle_one, metrics
        self.max_deliver, self.batch_size, self.expected = max_deliver, batch_size, expected
        # room for the batch in hand and the one fetched ahead (JetStream's default, 1000, is the floor)
        self.config = ConsumerConfig(durable_name=durable, max_deliver=max_deliver, ack_wait=ack_wait,
                                     deliver_policy=deliver_policy, ack_policy=AckPolicy.EXPLICIT,
                                     max_ack_pending=max(1000, 2 * batch_size))
        self.fetch_size = batch_size
        metrics.track_consumer(stream.name, durable)
        self._js: Any = None
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._stopping = False
        self.behind = False  # the last fetch came back full: more events are waiting (catching up)

    async def start(self, js: Any) -> None:
        """Bind (or create) the durable consumer and start consuming."""
        self._js = js
        self._sub = await js.pull_subscribe(self.subject, durable=self.durable, stream=self.stream.name,
                                            config=self.config)
        self.fetch_size = await self._fetch_size(js)
        self._task = asyncio.create_task(self._run(self._sub), name=f"consumer:{self.durable}")

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the batch in hand (up to ``grace`` seconds), then stop; unsettled events are redelivered."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._sub is not None:  # else the broker's connection drain waits for it (30 s)
            try:
                await self._sub.unsubscribe()
            except Exception:
                log.warning("could not unsubscribe the pull consumer", extra={"durable": self.durable})
            self._sub = None

    async def _fetch_size(self, js: Any) -> int:
        """``batch_size``, or half the durable's ``max_ack_pending`` if that is smaller.

        A durable keeps the configuration it was created with. Fetching more than half its window
        would leave the fetch made ahead (while a batch is handled) waiting for acks until its
        timeout: one batch a second instead of as fast as the events can be stored.
        """
        try:
            window = (await js.consumer_info(self.stream.name, self.durable)).config.max_ack_pending
        except Exception as exc:
            log.warning("could not read the consumer's configuration", extra={"durable": self.durable,
                                                                              "error": repr(exc)[:200]})
            return min(self.batch_size, 500)
        if window is None or window <= 0:  # unlimited
            return self.batch_size
        size = max(1, min(self.batch_size, window // 2))
        if size < self.batch_size:
            log.warning("batch size limited by the consumer's max_ack_pending",
                        extra={"durable": self.durable, "batch_size": self.batch_size, "fetch_size": size,
                               "max_ack_pending": window})
        return size

    async def _fetch(self, sub: Any) -> list[Any]:
        """The next batch, or [] when none came within a second or the fetch failed (after a pause)."""
        try:
            return list(await sub.fetch(self.fetch_size, timeout=1.0))
        except (nats.errors.TimeoutError, TimeoutError):  # nats-py raises both kinds
            return []
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection lost, server busy: the durable keeps our place
            log.warning("fetch failed, will retry", extra={"durable": self.durable, "error": repr(exc)[:200]})
            await asyncio.sleep(1.0)
            return []

    async def _run(self, sub: Any) -> None:
        """Fetch the next batch while the current one is handled (the fetch's round trip is then free)."""
        ahead: asyncio.Task[list[Any]] | None = None
        try:
            while not self._stopping:
                msgs = await (ahead or self._fetch(sub))
                ahead = None
                self.behind = len(msgs) >= self.fetch_size
                if not msgs:
                    continue
                if not self._stopping:
                    ahead = asyncio.create_task(self._fetch(sub), name=f"fetch:{self.durable}")
                try:
                    await process_batch(msgs, service=self.service, handle_batch=self.handle_batch,
                                        handle_one=self.handle_one, metrics=self.metrics,
                                        max_deliver=self.max_deliver, js=self._js, expected=self.expected)
                except Exception:  # settling failed (e.g. the connection dropped): redelivery after ack_wait
                    log.exception("could not settle a batch", extra={"durable": self.durable})
                    await asyncio.sleep(1.0)
        finally:
            if ahead is not None:  # stopping: hand the batch fetched ahead back at once
                await self._give_back(ahead)

    async def _give_back(self, ahead: asyncio.Task[list[Any]]) -> None:
        try:
            msgs = await asyncio.wait_for(asyncio.shield(ahead), 2.0)
        except BaseException:
            ahead.cancel()
            return
        for msg in msgs:
            try:
                await msg.nak()
            except Exception:
                return  # the connection is gone: they come back after ack_wait
