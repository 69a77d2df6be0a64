"""JetStream pulls spoken on the wire: our own pull requests on one callback subscription.

nats-py's ``fetch`` spends a task, a timer and a kernel random read on every message it returns; a
batch consumer that pulls thousands of events a second asks for them itself (``$JS.API.CONSUMER.MSG.NEXT``
with a batch size and an expiry) and reads the answers, status messages included, on one inbox. ``OneMessage``
gives a raw message the settle methods ``est_shared.bus.process_message`` calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

log = logging.getLogger("est.bus")


class Puller:
    """A JetStream pull consumer's messages, taken through one core subscription with a callback.

    Pull requests (JetStream's ``CONSUMER.MSG.NEXT`` API, each expiring after ``expires`` seconds)
    keep the batch asked for plus ``window`` more in flight: the next batch travels while this one
    is handled, and arrives in ``buffer`` as it comes (no task or timer per message, as nats-py's
    ``fetch`` has). A status message ends a request and says how many of its messages will not come
    (``Nats-Pending-Messages``); they are asked for again. A request lost with a connection is given
    up after ``take``'s timeout (so ``expires`` should be a little shorter than that timeout).
    Messages still in ``buffer`` when the consumer stops are the caller's to hand back (nak) if it
    acknowledges them.

    ``outstanding`` is a count, not a list of requests: a status that comes after its request was
    given up can make it too high or too low for a moment. Too low asks for more than needed (the
    consumer's ``max_ack_pending`` still bounds what is delivered); too high waits until a take's
    timeout resets it. Neither loses or repeats a message: the server delivers each one once.
    """

    def __init__(self, nc: Any, stream: str, consumer: str, *, window: int, expires: float = 1.0) -> None:
        self.nc, self.window, self.expires = nc, window, expires
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.inbox = ""
        self.buffer: deque[Any] = deque()
        self.outstanding = 0  # asked for, and neither arrived nor given up by the server
        self.want = 1
        self.status: str | None = None  # the last status message since the current take began
        self.arrived = asyncio.Event()
        self.sub: Any = None

    async def start(self) -> Puller:
        self.inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe(self.inbox, cb=self._on_msg, pending_msgs_limit=-1,
                                           pending_bytes_limit=-1)
        return self

    async def stop(self) -> list[Any]:
        """Stop taking; returns the messages that arrived and were not taken."""
        if self.sub is not None:
            try:
                await self.sub.unsubscribe()
            except Exception:
                log.warning("could not unsubscribe the pull inbox")
            self.sub = None
        left, self.buffer = list(self.buffer), deque()
        return left

    async def _on_msg(self, msg: Any) -> None:
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            self.buffer.append(msg)
            if self.outstanding > 0:
                self.outstanding -= 1
            if len(self.buffer) >= self.want:
                self.arrived.set()
            return
        if status == "100":  # an idle heartbeat or flow control: not asked for here
            return
        missing = msg.headers.get("Nats-Pending-Messages")
        self.outstanding = max(0, self.outstanding - int(missing)) if missing and missing.isdigit() else 0
        self.status = status
        self.arrived.set()

    async def take(self, n: int, *, timeout: float, full: bool = False, left: int | None = None) -> list[Any]:
        """Up to ``n`` messages: at once what has arrived, else the first to come within ``timeout``
        (with ``full``, wait for all ``n``). ``left``: how many the consumer still has, if known.
        Returns [] when none came: the timeout passed, or the server answered with a status (a request
        expired, or an error: then the rest of the timeout is waited out, so a caller's loop never spins)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.want = n if full else 1
        self.status = None
        while len(self.buffer) < self.want:
            target = n + self.window if left is None else min(left, n + self.window)
            ask = target - len(self.buffer) - self.outstanding
            if ask > 0:
                self.outstanding += ask
                request = {"batch": ask, "expires": int(self.expires * 1e9)}
                await self.nc.publish(self.subject, json.dumps(request).encode(), reply=self.inbox)
            self.arrived.clear()
            if len(self.buffer) >= self.want:
                break
            try:
                await asyncio.wait_for(self.arrived.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                self.outstanding = 0  # a request lost with a connection: ask again next time
                break
            if self.status is not None:
                if not self.buffer and self.status != "408":  # e.g. 409: not a plain expiry
                    log.warning("pull request answered with a status", extra={"status": self.status})
                    await asyncio.sleep(max(0.0, deadline - loop.time()))
                break
        return [self.buffer.popleft() for _ in range(min(n, len(self.buffer)))]

    async def more(self, n: int, *, within: float) -> list[Any]:
        """Up to ``n`` more messages: at once when ``n`` are here, else those that arrived within
        ``within`` seconds. Asks the server for nothing: the requests ``take`` keeps in flight bring
        them (and a deadline passing here says nothing about those requests)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        self.want = n
        while len(self.buffer) < n:
            self.arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                break
        return [self.buffer.popleft() for _ in range(min(n, len(self.buffer)))]


class OneMessage:
    """A raw nats-py message with the small interface ``process_message`` expects of a FastStream message."""

    __slots__ = ("raw_message",)

    def __init__(self, raw: Any) -> None:
        self.raw_message = raw

    @property
    def body(self) -> bytes:
        return self.raw_message.data

    async def ack(self) -> None:
        await self.raw_message.ack()

    async def nack(self, delay: float | None = None) -> None:
        await self.raw_message.nak(delay=delay)

    async def reject(self) -> None:
        await self.raw_message.term()


