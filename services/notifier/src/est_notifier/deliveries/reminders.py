"""The reminder loop: checks for due reminders on a clock that tests (and operators) can move."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

log = logging.getLogger("est.notifier")


class Clock:
    """Wall-clock time, optionally fixed or shifted (``set``/``advance``) to test deadlines."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self.fixed if self.fixed is not None else datetime.now(UTC) + self.offset

    def set(self, when: datetime | None) -> None:
        """Stop the clock at ``when`` (None: run with the wall clock again)."""
        self.fixed = when

    def advance(self, seconds: float) -> None:
        if self.fixed is not None:
            self.fixed += timedelta(seconds=seconds)
        else:
            self.offset += timedelta(seconds=seconds)


class ReminderLoop:
    """Every ``interval`` seconds (or when woken) queue the reminders due at ``clock.now()``."""

    def __init__(self, *, clock: Clock, check: Callable[[datetime], Awaitable[int]], interval: float = 60.0) -> None:
        self.clock, self.check, self.interval = clock, check, interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.check(self.clock.now())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reminder check failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
