"""The report cache behind picture computation (SQLite): it must give exactly what the database gives.

Two "replicas" (two engines, two caches) write batches to one SQLite file in turns, with reports
arriving out of order, resends and a correction; after every step the picture each replica computes
through its cache equals the picture computed from the database alone, and the caches are used.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from est_aggregator.adapters.sqlite_queries import SqliteBatchStore
from est_aggregator.adapters.unit_of_work import InLoopUnitOfWork
from est_aggregator.metrics import AggregatorMetrics
from est_aggregator.pictures import db
from est_aggregator.pictures.cache import ReportCache
from est_aggregator.pictures.compute import AreaInfo, compute_picture
from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.domain.tally import Rules
from est_aggregator.pictures.ingest import handle_report_batch
from est_shared.adapters.sqlite import in_loop_sqlite
from est_shared.db import make_engine, session_factory
from est_shared.periods import Period
from prometheus_client import CollectorRegistry

from tests.aggregator.support import World, report


async def _replica(path: Path) -> tuple[Deps, Any]:
    url = f"sqlite+aiosqlite:///{path}"
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(db.metadata.create_all)
    sessions, local = session_factory(engine), in_loop_sqlite(url)
    assert local is not None
    deps = Deps(sessions=sessions, metrics=AggregatorMetrics(CollectorRegistry()),
                units=InLoopUnitOfWork(sessions, local), store=SqliteBatchStore(), rules=Rules(),
                cache=ReportCache(), report_tokens=True)
    return deps, engine


async def _pictures(deps: Deps, world: World, period: str) -> tuple[str, str]:
    """(through the cache, from the database) for one period, as JSON (key order counts: it is what is sent)."""
    info = AreaInfo(world.area, world.muni, "Testområdet", "weekly", True)
    p = Period.parse(period)
    async with deps.reading() as s:
        cached = await compute_picture(s, org=world.org, info=info, period=p, rules=deps.rules,
                                                cache=deps.cache)
    async with deps.sessions() as s:
        fresh = await compute_picture(s, org=world.org, info=info, period=p, rules=deps.rules)
    return cached.picture.model_dump_json(), fresh.picture.model_dump_json()


def _later(event: Any, minutes: int) -> Any:
    data = event.data.model_copy(update={"received_at": event.data.received_at + timedelta(minutes=minutes)})
    return event.model_copy(update={"data": data})


async def test_cached_pictures_equal_database_pictures_across_two_replicas(world: World, tmp_path: Path) -> None:
    a, engine_a = await _replica(tmp_path / "agg.db")
    b, engine_b = await _replica(tmp_path / "agg.db")
    try:
        first = [_later(report(world, answers={"klotter": {"value": i % 3, "places": ["torget"]}},
                               period=week), i) for i, week in enumerate(["2026-W08", "2026-W09", "2026-W10"] * 3)]
        tie_1 = report(world, answers={"klotter": {"value": 1, "places": ["torget"]}}, period="2026-W07")
        tie_2 = _later(report(world, answers={"klotter": {"value": 1, "places": ["centrum"]}}, reporter="bo",
                              period="2026-W07"), 5)  # equal counts: the order of the places is the reports' order
        steps: list[tuple[Deps, list[Any]]] = [
            (a, [tie_1]),
            (a, [tie_2]),
            (a, first[:5]),
            (a, first[5:]),
            # out of order: received before everything stored so far, another reporter
            (a, [_later(report(world, answers={"skadegorelse": 4, "klotter": 1}, reporter="bo", period="2026-W10"),
                        -600)]),
            # the other replica writes in between: replica a's entries must not be trusted after this
            (b, [report(world, answers={"klotter": {"value": 3, "places": ["centrum"]}}, reporter="cy")]),
            (a, [first[0], first[3]]),  # resends change nothing
            # a correction replaces an earlier report of the area in every total
            (a, [report(world, answers={"klotter": 0}, supersedes=first[2].data.report_id)]),
            (b, [_later(report(world, answers={"klotter": 2}), 30)]),
        ]
        for i, (deps, events) in enumerate(steps):
            await handle_report_batch(events, deps=deps, org=world.org)
            # only the writer looks now: the other one's entries go stale unseen, as on a busy replica
            for period in ("2026-W07", "2026-W09", "2026-W10"):
                cached, fresh = await _pictures(deps, world, period)
                assert cached == fresh, f"step {i}, {period}"
        for replica in (a, b):
            for period in ("2026-W07", "2026-W08", "2026-W09", "2026-W10"):
                cached, fresh = await _pictures(replica, world, period)
                assert cached == fresh, period
        assert a.cache is not None and a.cache.hits > 0 and a.cache.misses > 0
        # what the cache holds for W10 counts what the database holds
        async with a.reading() as s:
            db_rows = await db.reports_for(s, world.area, ["2026-W10"])
        entry = a.cache.entries.get((world.area, "2026-W10"))
        assert entry is not None
        if entry is not None:  # only the tally is kept, and it counts exactly the stored reports
            assert entry[1].records is None
            assert entry[1].tally is not None and entry[1].tally.ids == {r.report_id for r in db_rows}
    finally:
        for deps, engine in ((a, engine_a), (b, engine_b)):
            assert isinstance(deps.units, InLoopUnitOfWork)
            deps.units.local.dispose()
            await engine.dispose()
