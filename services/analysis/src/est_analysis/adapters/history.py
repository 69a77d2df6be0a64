"""The picture history of EST_PICTURES read from its first event, for the rebuild (``PictureHistory``).

An ephemeral pull consumer (its own name, deliver-all, ack-all) reads what the stream holds when it is made:
``total`` is fixed then, so pictures published during the rebuild are left to the live consumer. Acking the
last message of a batch after the caller has taken it acknowledges everything up to there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from types import TracebackType

import nats
from est_shared.subjects import PICTURES
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext


class StreamHistory:
    """``async with StreamHistory(servers, subject) as history``: ``history.total`` events in ``batches()``."""

    def __init__(self, servers: list[str], subject: str, *, batch: int = 500, fetch_timeout: float = 5.0) -> None:
        self.servers, self.subject, self.batch, self.fetch_timeout = servers, subject, batch, fetch_timeout
        self.total = 0
        self._nc = Client()
        self._sub: JetStreamContext.PullSubscription | None = None

    async def __aenter__(self) -> StreamHistory:
        self._nc = await nats.connect(servers=self.servers, connect_timeout=5, max_reconnect_attempts=3)
        try:
            self._sub = await self._nc.jetstream().pull_subscribe(
                self.subject, durable=None, stream=PICTURES.name,
                config=ConsumerConfig(name=f"analysis-rebuild-{uuid.uuid4().hex[:8]}",
                                      deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.ALL, ack_wait=300,
                                      inactive_threshold=120, max_ack_pending=-1))
            self.total = (await self._sub.consumer_info()).num_pending or 0
        except BaseException:
            await self._nc.close()
            raise
        return self

    async def batches(self) -> AsyncIterator[list[bytes]]:
        """The events' raw bytes in stream order, a batch at a time, each acked once the caller took it."""
        assert self._sub is not None, "read inside ``async with``"
        read = 0
        while read < self.total:
            msgs = await self._sub.fetch(min(self.batch, self.total - read), timeout=self.fetch_timeout)
            read += len(msgs)
            yield [msg.data for msg in msgs]
            await msgs[-1].ack()  # AckPolicy.ALL: everything up to here

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if exc_type is None and self._sub is not None:
                await self._sub.unsubscribe()
        finally:
            await self._nc.close()
