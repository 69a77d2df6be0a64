"""The report publisher: pipelined JetStream publishes with one wait for all acks of a call."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from est_shared.bus import CLOUDEVENTS_JSON, encode
from est_shared.subjects import stream_for

from est_intake.adapters.hpub import RawPublish
from est_intake.metrics import IntakeMetrics
from est_intake.reports.handlers import STORED, Acked, AnyEvent, EncodedEvent

log = logging.getLogger("est.intake")


def _settle(done: asyncio.Future[None]) -> None:
    """End a wave's wait (its timeout): the acks that did not come stay None."""
    if not done.done():
        done.set_result(None)


class _Wave:
    """The acks one ``publish_many`` call is waiting for."""

    __slots__ = ("acks", "done", "left")

    def __init__(self, n: int, done: asyncio.Future[None]) -> None:
        self.acks: list[Acked | None] = [None] * n
        self.left = n
        self.done = done


class JetStreamReports:
    """Publishes report events to JetStream pipelined, with one wait for all acks of a call.

    This is what nats-py's ``publish_async`` does, without what costs most per report on this path:
    a kernel random read for each reply token, a future and a semaphore per message, and the
    ``PubAck`` parsing. Each message gets a reply subject ``<prefix>.<counter>`` on one wildcard
    subscription of this publisher; an ack fills its slot of the call's wave and the last one wakes
    the caller. An ack that does not come within ``timeout`` leaves its slot ``None`` (not stored,
    as far as the caller knows: the client retries, and the ``Nats-Msg-Id`` makes that safe).
    """

    def __init__(self, runtime: Any, metrics: IntakeMetrics, *, timeout: float = 5.0,
                 max_pending: int = 20_000) -> None:
        self.runtime, self.metrics, self.timeout, self.max_pending = runtime, metrics, timeout, max_pending
        self._prefix = ""
        self._sub: Any = None
        self._sub_of: Any = None
        self._next = 0
        self._pending: dict[bytes, tuple[_Wave, int]] = {}
        self._published: dict[str, Any] = {}
        self._headers: dict[str, dict[str, str]] = {}
        self._blocks: dict[str, bytes] = {}

    def _client(self) -> Any:
        try:
            nc = self.runtime.broker.connection
            return nc if nc is not None and nc.is_connected else None
        except Exception:
            return None

    async def _subscribe(self, nc: Any) -> None:
        if self._sub is not None and self._sub_of is nc:
            return
        self._prefix = f"_INBOX.{nc.new_inbox().rsplit('.', 1)[-1]}."
        self._sub = await nc.subscribe(self._prefix + "*", cb=self._on_ack)
        self._sub_of = nc

    async def _on_ack(self, msg: Any) -> None:
        token = msg.subject[len(self._prefix):].encode()
        found = self._pending.pop(token, None)
        if found is None:  # came after its timeout
            return
        wave, i = found
        wave.acks[i] = self._ack_of(msg.data)
        wave.left -= 1
        if wave.left == 0 and not wave.done.done():
            wave.done.set_result(None)

    @staticmethod
    def _ack_of(data: bytes) -> Acked | None:
        """A JetStream PubAck as ``Acked``; None for an error or an unreadable answer."""
        if data[:10] == b'{"stream":' and data[-1:] == b"}" and b'"duplicate"' not in data \
                and b'"error"' not in data:
            return STORED  # the common answer: stored now (its sequence is needed only for a duplicate)
        try:
            ack = json.loads(data)
            if "error" in ack:  # e.g. a stream-name mismatch: not stored
                log.warning("JetStream refused a report", extra={"error": str(ack["error"].get("code"))})
                return None
            return Acked(duplicate=bool(ack.get("duplicate")), seq=ack.get("seq"), stream=ack.get("stream"))
        except (ValueError, TypeError, AttributeError):
            return None

    def _header(self, subject: str) -> dict[str, str]:
        stream = stream_for(subject)
        base = self._headers.get(stream)
        if base is None:
            base = self._headers[stream] = {"Content-Type": CLOUDEVENTS_JSON, "Nats-Expected-Stream": stream}
        return base

    def _header_block(self, subject: str) -> bytes:
        """``_header(subject)`` as the start of a NATS header block, up to the ``Nats-Msg-Id`` value."""
        stream = stream_for(subject)
        block = self._blocks.get(stream)
        if block is None:
            block = self._blocks[stream] = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in self._header(
                subject).items()) + "Nats-Msg-Id: ").encode()
        return block

    async def publish_many(self, items: list[tuple[str, AnyEvent]]) -> list[Acked | None]:
        """Publish all events, then wait (at most ``timeout``) for their acks."""
        bus = self.runtime.metrics
        if not items:
            return []
        nc = self._client()
        if nc is None or len(self._pending) >= self.max_pending:
            bus.publish_failures.inc(len(items))
            return [None] * len(items)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        wave = _Wave(len(items), loop.create_future())
        tokens: list[bytes] = []
        try:
            await self._subscribe(nc)
            raw = RawPublish.of(nc)
            for i, (subject, event) in enumerate(items):
                self._next += 1
                token = str(self._next).encode()
                self._pending[token] = (wave, i)
                tokens.append(token)
                payload = event.payload if isinstance(event, EncodedEvent) else encode(event)
                if raw is None or not raw.add(subject, self._prefix, token, self._header_block(subject), event.id,
                                              payload):
                    if raw is not None:
                        await raw.send()  # keep the order
                    await nc.publish(subject, payload, reply=self._prefix + token.decode(),
                                     headers={**self._header(subject), "Nats-Msg-Id": event.id})
            if raw is not None:
                await raw.send()
        except Exception as exc:  # a closed connection: what was sent may still be acked
            log.warning("publish failed", extra={"error": exc.__class__.__name__})
            wave.left -= len(items) - len(tokens)
            if wave.left <= 0 and not wave.done.done():
                wave.done.set_result(None)
        if wave.left > 0:
            timer = loop.call_later(self.timeout, _settle, wave.done)
            try:
                await wave.done
            finally:
                timer.cancel()
        for token in tokens:  # the ones that did not come
            self._pending.pop(token, None)
        elapsed = time.perf_counter() - started
        acked: dict[str, int] = {}  # per event type
        for (_, event), ack in zip(items, wave.acks, strict=True):
            if ack is not None:
                acked[event.type] = acked.get(event.type, 0) + 1
        failed = len(items) - sum(acked.values())
        if failed:
            bus.publish_failures.inc(failed)
        for type_, n in acked.items():
            counter = self._published.get(type_)
            if counter is None:
                counter = self._published[type_] = bus.published.labels(type_)
            counter.inc(n)
            for _ in range(n):  # one observation per report, as before
                self.metrics.publish_seconds.observe(elapsed)
        return wave.acks

    async def original(self, stream: str, seq: int) -> bytes | None:
        """The stored message at ``seq`` (the first publish of an id JetStream reported as duplicate)."""
        try:
            msg = await self.runtime.js.get_msg(stream, seq)
        except Exception as exc:
            log.warning("could not read the original of a duplicate", extra={"error": exc.__class__.__name__})
            return None
        return bytes(msg.data) if msg.data is not None else None
