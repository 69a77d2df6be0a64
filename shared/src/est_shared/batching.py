"""A batch variant of ``est_shared.bus.add_consumer``: a durable pull consumer whose handler gets many events.

Why not FastStream's ``PullSub(batch=True)``: in 0.7.8 its fetch loop catches only
``nats.errors.TimeoutError``, but nats-py's ``_fetch_n`` also raises the builtin ``TimeoutError``
when a short collection window runs out; the task then dies (the supervisor restarts it) and the
partial batch it held stays unacknowledged until ``ack_wait`` (30 s) — seen as flaky 30 s stalls.
It also waits to fill the batch, which adds latency. So this module runs its own pull loop
(``est_shared.adapters.jetstream_pull.Puller``), lighter per message than nats-py's ``fetch``.

Every message still ends explicitly, one by one:

* undecodable / unknown events are dead-lettered right away (``est_shared.bus.process_message``
  with the shared poison path), the rest of the batch goes on;
* the batch handler runs once for the others; on success every message is acked (after the
  handler's commit), except those the handler returns as refused (event id → reason, e.g. a
  value it cannot tally): they are dead-lettered as poison with that reason;
* if the batch handler raises, each message is handled again on its own with the shared
  single-message semantics (ack, nack with backoff, dead-letter at ``max_deliver``), so one bad
  event never holds back or poisons the others.

Used by the aggregator's report consumer; any service that wants many events per transaction uses it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from est_shared.adapters.jetstream_pull import OneMessage, Puller
from est_shared.bus import Handler, PoisonEvent, _dead_letter, parse_event, process_message
from est_shared.events import EVENT_TYPES, CloudEvent, EventData, envelope_of
from est_shared.observability import BusMetrics, error_name
from est_shared.subjects import StreamDef

log = logging.getLogger("est.bus")


def parse_expected(raw: bytes, expected: type[EventData] | None = None) -> CloudEvent[Any]:
    """``parse_event``, with one validation instead of two when the event is of the ``expected`` data type.

    The result is the same as ``parse_event``'s; anything unexpected (another type, invalid data)
    takes ``parse_event`` itself (which raises PoisonEvent where it must).
    """
    if expected is not None:
        try:
            event = envelope_of(expected).model_validate_json(raw)
            if EVENT_TYPES.get(event.type) is expected:
                return event
        except ValidationError:
            pass
    return parse_event(raw)

# returns the events it refused as poison (event id → reason, no event text in it), or None
BatchHandler = Callable[[Sequence[CloudEvent[Any]]], Awaitable[Mapping[str, str] | None]]


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
            refused = await handle_batch([event for _, event in good]) or {}
    except Exception as exc:
        log.warning("batch failed, settling its events one by one",
                    extra={"events": len(good), "error": error_name(exc)})
        for raw, _event in good:
            await process_message(OneMessage(raw), service=service, handle=handle_one, metrics=metrics,
                                  max_deliver=max_deliver, js=js)
        return
    for etype, n in Counter(event.type for _, event in good if event.id not in refused).items():
        metrics.events.labels(etype, "ok").inc(n)
    for raw, event in good:
        why = refused.get(event.id)
        if why is None:
            await raw.ack()
            continue
        await _dead_letter(js, OneMessage(raw), service=service, reason="poison", error=why, metrics=metrics)
        metrics.events.labels(event.type, "dead_lettered").inc()


class BatchConsumer:
    """A durable pull consumer run by its own task: fetch up to ``batch_size``, hand them over, settle each.

    A take returns at once with whatever is pending (up to ``batch_size``) and waits only when
    nothing is: full batches under load, no added latency when events trickle in. With ``linger``,
    a batch that is not full waits up to that many seconds for more before it is handled: a steady
    trickle (hundreds a second, one or two at a time) then makes a few larger transactions instead
    of many tiny ones, for at most ``linger`` more latency.
    """

    def __init__(self, *, service: str, stream: StreamDef, subject: str, durable: str,
                 handle_batch: BatchHandler, handle_one: Handler, metrics: BusMetrics, max_deliver: int = 8,
                 batch_size: int = 256, ack_wait: float = 30.0, linger: float = 0.0,
                 deliver_policy: DeliverPolicy = DeliverPolicy.ALL, expected: type[EventData] | None = None) -> None:
        self.service, self.stream, self.subject, self.durable = service, stream, subject, durable
        self.linger = linger  # seconds a batch that is not full waits for company before it is handled
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
        self._puller: Puller | None = None
        self._stopping = False
        self.behind = False  # the last fetch came back full: more events are waiting (catching up)

    async def start(self, js: Any, nc: Any) -> None:
        """Bind (or create) the durable consumer and start consuming (``nc``: the connection ``js`` is of)."""
        self._js = js
        try:
            info = await js.consumer_info(self.stream.name, self.durable)
        except nats.js.errors.NotFoundError:
            info = await js.add_consumer(self.stream.name, dataclasses.replace(self.config, name=self.durable,
                                                                               filter_subject=self.subject))
        self.fetch_size = self._fetch_size(info.config.max_ack_pending)
        # requests expire a little before a take gives up on them: their status then ends the wait
        self._puller = await Puller(nc, self.stream.name, self.durable, window=self.fetch_size, expires=0.9).start()
        self._task = asyncio.create_task(self._run(self._puller), name=f"consumer:{self.durable}")

    async def stop(self, grace: float = 10.0) -> None:
        """Finish the batch in hand (up to ``grace`` seconds), then stop; unsettled events are redelivered.

        Events that arrived for the next batch are handed back (nak) at once, so a restart or
        another replica gets them without waiting out ``ack_wait``.
        """
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), grace)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._puller is not None:  # else the broker's connection drain waits for its inbox (30 s)
            left = await self._puller.stop()
            self._puller = None
            for msg in left:
                try:
                    await msg.nak()
                except Exception:
                    break  # the connection is gone: they come back after ack_wait

    def _fetch_size(self, window: int | None) -> int:
        """``batch_size``, or half the durable's ``max_ack_pending`` (``window``) if that is smaller.

        A durable keeps the configuration it was created with. Fetching more than half its window
        would leave the batch in flight (while one is handled) waiting for acks until its request
        expires: one batch a second instead of as fast as the events can be stored.
        """
        if window is None or window <= 0:  # unlimited
            return self.batch_size
        size = max(1, min(self.batch_size, window // 2))
        if size < self.batch_size:
            log.warning("batch size limited by the consumer's max_ack_pending",
                        extra={"durable": self.durable, "batch_size": self.batch_size, "fetch_size": size,
                               "max_ack_pending": window})
        return size

    async def _fetch(self, puller: Puller) -> list[Any]:
        """The next batch, or [] when none came within a second or the fetch failed (after a pause)."""
        try:
            return await puller.take(self.fetch_size, timeout=1.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection lost, server busy: the durable keeps our place
            log.warning("fetch failed, will retry", extra={"durable": self.durable, "error": error_name(exc)})
            await asyncio.sleep(1.0)
            return []

    async def _run(self, puller: Puller) -> None:
        """Take the next batch and handle it; the one after travels meanwhile (the puller's window)."""
        while not self._stopping:
            msgs = await self._fetch(puller)
            if msgs and self.linger > 0 and len(msgs) < self.fetch_size:
                msgs += await puller.more(self.fetch_size - len(msgs), within=self.linger)
            self.behind = len(msgs) >= self.fetch_size
            if not msgs:
                continue
            try:
                await process_batch(msgs, service=self.service, handle_batch=self.handle_batch,
                                    handle_one=self.handle_one, metrics=self.metrics,
                                    max_deliver=self.max_deliver, js=self._js, expected=self.expected)
            except Exception:  # settling failed (e.g. the connection dropped): redelivery after ack_wait
                log.exception("could not settle a batch", extra={"durable": self.durable})
                await asyncio.sleep(1.0)
