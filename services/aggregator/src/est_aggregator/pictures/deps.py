"""What every use case of the pictures shares: its collaborators (``Deps``), the ports to the database
(``UnitOfWork``, ``BatchStore``), what a committed unit of work did (``Effects``) and the bookkeeping of
pictures whose computation fails (``FailingPictures``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from est_shared.bus import retry_delay
from est_shared.events import CloudEvent
from est_shared.events import new_event as _new_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_aggregator.metrics import AggregatorMetrics
from est_aggregator.pictures.cache import ReportCache
from est_aggregator.pictures.domain.reports import ReportRecord
from est_aggregator.pictures.domain.tally import Rules

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


class UnitOfWork(Protocol):
    """How the use cases get sessions (``adapters.unit_of_work``: pooled, or in-loop on a SQLite file)."""

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction (a report batch: the hot path)."""
        ...

    def reading(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A read-only session (the refresher's pass)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """One transaction on a pooled session (publishing, forfeitures, a rebuild's clearing)."""
        ...

    async def recover(self, session: AsyncSession, exc: Exception) -> None:
        """Make a ``reading`` session usable again after a failed statement (PostgreSQL aborts its transaction)."""
        ...


class BatchStore(Protocol):
    """The statements of a report batch (``ingest``), in two forms: SQLAlchemy (``db.SqlBatchStore``) and the
    sqlite3 driver's own (``adapters.sqlite_queries.SqliteBatchStore``, for the in-loop session)."""

    async def processed_ids(self, session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> set[str]:
        """Which of these event ids the consumer has already applied."""
        ...

    async def mark_processed_many(self, session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> None:
        """Record event ids as applied (the caller has filtered known ids)."""
        ...

    async def existing_report_ids(self, session: AsyncSession, report_ids: Sequence[str]) -> set[str]:
        """Which of these report ids are stored."""
        ...

    async def insert_reports(self, session: AsyncSession, rows: Sequence[tuple[str, ReportRecord]]) -> None:
        """Store (event id, record) pairs."""
        ...

    async def touch_pictures(self, session: AsyncSession, keys: Sequence[tuple[str, str, str]], token: str, *,
                             tokens: bool) -> dict[tuple[str, str], str | None]:
        """A batch's pictures: create missing rows, mark them dirty with ``token`` and, with ``tokens``, give
        them ``report_token`` = ``token``; returns the report tokens they had (empty without ``tokens``)."""
        ...


@dataclass
class Deps:
    """Collaborators of the use cases (built once, in ``app.build_deps``)."""

    sessions: async_sessionmaker[AsyncSession]
    metrics: AggregatorMetrics
    units: UnitOfWork
    store: BatchStore
    rules: Rules = field(default_factory=Rules)
    consumer: str = "aggregator-reports"
    kronoberg_min_count: int = 3
    publish_min_completeness: float = 0.5  # below it a publication by hand needs confirm_incomplete
    emit_updates: bool = True
    wake: Callable[[], None] = lambda: None
    wake_refresher: Callable[[], None] = lambda: None
    catching_up: Callable[[], bool] = lambda: False  # the report consumer has a backlog
    cache: ReportCache | None = None  # in-loop SQLite, PostgreSQL: tallies of recent pictures' periods in memory
    report_tokens: bool = False  # every batch gives its pictures a new report_token (what keeps ``cache`` honest)
    failing: FailingPictures = field(default_factory=FailingPictures)

    async def write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction (see ``UnitOfWork.write``)."""
        return await self.units.write(work)

    def reading(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A read-only session (see ``UnitOfWork.reading``)."""
        return self.units.reading()

    def unit_of_work(self) -> AbstractAsyncContextManager[AsyncSession]:
        """One transaction (see ``UnitOfWork.transaction``)."""
        return self.units.transaction()


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
