"""The one clock: "now" in UTC, and a clock a test can set.

Every rule that depends on time takes a ``Clock`` (or a ``now`` argument) instead of reading the system
time itself, so that deadlines, reminders and retention can be tested at any moment of the year.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


def utcnow() -> datetime:
    """Now, aware, in UTC."""
    return datetime.now(UTC)


class Clock(Protocol):
    """Something that tells the time."""

    def now(self) -> datetime: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> datetime:
        return utcnow()


class SettableClock:
    """The machine's clock, which a test (or an operator rehearsing a deadline) can stop at a moment
    (``set``), let run again (``set(None)``) or move on (``advance``)."""

    def __init__(self, at: datetime | None = None) -> None:
        self.fixed: datetime | None = at
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return self.fixed if self.fixed is not None else utcnow() + self.offset

    def set(self, at: datetime | None) -> None:
        """Stop the clock at ``at`` (None: run with the machine's clock again)."""
        self.fixed = at

    def advance(self, by: timedelta | float) -> None:
        """Move the clock on (seconds or a timedelta), stopped or running."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if self.fixed is not None:
            self.fixed += step
        else:
            self.offset += step
