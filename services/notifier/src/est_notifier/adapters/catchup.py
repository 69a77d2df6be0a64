"""Whether durable JetStream consumers have handled what their stream held: read from consumer info."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CatchUp:
    """Answers whether the durables ``durables`` of ``stream`` have caught up: nothing left to deliver and
    nothing delivered but unsettled. Once they have, the answer stays yes for the life of the process: what
    was in the stream at start-up has been handled, and later events are handled as they arrive."""

    def __init__(self, js: Callable[[], Any], stream: str, durables: list[str]) -> None:
        self._js, self.stream, self.durables = js, stream, list(durables)
        self.done = False

    async def __call__(self) -> bool:
        if self.done:
            return True
        for durable in self.durables:
            try:
                info = await self._js().consumer_info(self.stream, durable)
            except Exception:  # not created yet, or NATS away: not known to be caught up
                return False
            if (info.num_pending or 0) or (info.num_ack_pending or 0):
                return False
        self.done = True
        return True
