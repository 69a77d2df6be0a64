"""What every use case of the pictures shares: its collaborators (``Deps``), what a committed unit of work
did (``Effects``) and the bookkeeping of pictures whose computation fails (``FailingPictures``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from est_shared.adapters.sqlite import InLoopSqlite, retry_busy
from est_shared.bus import retry_delay
from est_shared.db import transaction
from est_shared.events import CloudEvent
from est_shared.events import new_event as _new_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_aggregator.metrics import AggregatorMetrics
from est_aggregator.pictures import db
from est_aggregator.pictures.cache import ReportCache
from est_aggregator.pictures.domain import Rules

T = TypeVar("T")

log = logging.getLogger("est.aggregator")

SOURCE = "/est/aggregator"


@dataclass
class FailingPictures:
    """Pictures whose computation failed: each is tried again after a growing delay, the others go on.

    Kept per process (a replica that fails on its own retries on its own); a success forgets it.
    """

    entries: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)  # failures, next try (monotonic)

    def due(self, key: tuple[str, str], now: float) -> bool:
        """Whether the picture may be computed at ``now``."""
        entry = self.entries.get(key)
        return entry is None or entry[1] <= now

    def failed(self, key: tuple[str, str], now: float) -> tuple[int, float]:
        """Count a failure; returns (failures so far, seconds until the next try)."""
        failures = self.entries.get(key, (0, 0.0))[0] + 1
        delay = retry_delay(failures)
        self.entries[key] = (failures, now + delay)
        return failures, delay

    def recovered(self, key: tuple[str, str]) -> None:
        self.entries.pop(key, None)


@dataclass
class Deps:
    """Collaborators of the use cases (built once in create_app)."""

    sessions: async_sessionmaker[AsyncSession]
    metrics: AggregatorMetrics
    rules: Rules = field(default_factory=Rules)
    consumer: str = "aggregator-reports"
    serialise_writes: bool = True
    kronoberg_min_count: int = 3
    emit_updates: bool = True
    wake: Callable[[], None] = lambda: None
    wake_refresher: Callable[[], None] = lambda: None
    catching_up: Callable[[], bool] = lambda: False  # the report consumer has a backlog
    local: InLoopSqlite | None = None  # SQLite: the report batches' statements run on the loop's thread
    cache: ReportCache | None = None  # SQLite: tallies of recent pictures' periods in memory (see ReportCache)
    failing: FailingPictures = field(default_factory=FailingPictures)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.local is not None and self.cache is None:
            self.cache = ReportCache()

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction: in-loop on SQLite (a busy database retried), else a unit of work."""
        local = self.local
        if local is None:
            async with self.unit_of_work() as s:
                return await work(s)

        async def attempt() -> T:
            async with self._lock:  # this process's other SQLite writers finish first
                with local.transaction() as conn:
                    return await work(db.InLoopSession(conn))  # type: ignore[arg-type]

        return await retry_busy(attempt)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A read-only session: in-loop on SQLite, else a pooled one."""
        if self.local is not None:
            with self.local.reading() as conn:
                yield db.InLoopSession(conn)  # type: ignore[misc]
        else:
            async with self.sessions() as s:
                yield s

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction; SQLite writers in this process queue on a lock instead of failing busy."""
        if self.serialise_writes:
            async with self._lock, transaction(self.sessions) as s:
                yield s
        else:
            async with transaction(self.sessions) as s:
                yield s


@dataclass
class Effects:
    """What a committed unit of work did, for metrics and the outbox relay."""

    outbox: int = 0
    published: list[tuple[str, int, str]] = field(default_factory=list)
    raised: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    rates: list[tuple[str, str, float]] = field(default_factory=list)
    delays: list[tuple[str, float]] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # seconds from the oldest change shown to the commit

    def apply(self, deps: Deps) -> None:
        """Count the effects once the transaction committed, and wake the relay."""
        m = deps.metrics
        for _area, _version, mode in self.published:
            m.published.labels(mode).inc()
            if mode == "revision":
                m.revisions.inc()
        for kind in self.raised:
            m.alerts_raised.labels(kind).inc()
        for kind in self.resolved:
            m.alerts_resolved.labels(kind).inc()
        for muni, area, rate in self.rates:
            m.completeness.labels(muni, area).set(rate)
        for mode, seconds in self.delays:
            m.publish_delay.labels(mode).observe(max(0.0, seconds))
        for seconds in self.lags:
            m.picture_lag.observe(max(0.0, seconds))
        if self.outbox:
            deps.wake()


def new_event(**kwargs: Any) -> CloudEvent[Any]:
    """An event from this service."""
    return _new_event(source=SOURCE, **kwargs)


def picture_failed(deps: Deps, stage: str, area_id: str, period: str, exc: Exception) -> None:
    """Count, log and back off a picture whose computation failed (only the error's class is logged:
    a message can quote stored data)."""
    failures, delay = deps.failing.failed((area_id, period), time.monotonic())
    deps.metrics.picture_failures.labels(stage).inc()
    deps.metrics.pictures_failing.set(len(deps.failing.entries))
    log.error("picture could not be computed; the other pictures go on and this one is tried again later",
              extra={"area": area_id, "period": period, "stage": stage, "error": type(exc).__name__,
                     "failures": failures, "retry_in": round(delay, 1)})
    log.debug("picture failure", exc_info=exc)


def picture_ok(deps: Deps, area_id: str, period: str) -> None:
    if (area_id, period) in deps.failing.entries:
        deps.failing.recovered((area_id, period))
        deps.metrics.pictures_failing.set(len(deps.failing.entries))
        log.info("picture computed again after failures", extra={"area": area_id, "period": period})
