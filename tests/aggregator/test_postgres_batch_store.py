"""The report batch's asyncpg statements (``adapters.postgres_queries.PostgresBatchStore``) store on PostgreSQL
exactly what the SQLAlchemy statements (``pictures.db.SqlBatchStore``) store, row for row as ``pictures.db``
reads them back, and a redelivered batch changes nothing (exactly once)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from est_aggregator.adapters.postgres_queries import PostgresBatchStore
from est_aggregator.pictures import db
from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.ingest import handle_report_batch
from sqlalchemy import select

from tests.aggregator.support import World, built_deps, report
from tests.support import fresh_databases

pytestmark = pytest.mark.postgres

TIMES = {"stored_at", "processed_at", "updated_at", "first_at", "changed_at"}  # the clock of the write


async def _rows(deps: Deps) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables a batch writes, as SQLAlchemy reads them, without the write's clock."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with deps.reading() as s:
        for table in (db.reports, db.processed, db.pictures, db.picture_dirty):
            rows = (await s.execute(select(table))).mappings().all()
            kept = [{k: v for k, v in r.items() if k not in TIMES and k not in ("token", "report_token")}
                    for r in rows]
            out[table.name] = sorted(kept, key=lambda r: sorted((k, str(v)) for k, v in r.items()))
    return out


def _batch(world: World) -> list[Any]:
    return [
        report(world, "r1", {"klotter": {"value": 2, "places": ["torget"], "note": "Ny tagg vid torget"},
                             "skadegorelse": 1}),
        report(world, "r2", {"klotter": 3}, reporter="bo"),
        report(world, "r3", nothing=True, reporter="cy", actor="polis"),
        report(world, "r4", {"klotter": 1}, period="2026-W11"),
        report(world, "r1", {"klotter": 0}),  # the same report (and event) again in the batch: once
    ]


async def test_the_asyncpg_batch_stores_what_the_sqlalchemy_batch_stores_and_only_once(
        world: World, tmp_path: Path, postgres_admin_url: str) -> None:
    names = {"fast": f"est_test_{uuid.uuid4().hex[:12]}", "generic": f"est_test_{uuid.uuid4().hex[:12]}"}
    async with fresh_databases(postgres_admin_url, names) as urls, \
            built_deps(tmp_path / "f", urls["fast"], pooled=False) as fast, \
            built_deps(tmp_path / "g", urls["generic"], pooled=True) as generic:
        assert isinstance(fast.store, PostgresBatchStore)
        outcomes = [await handle_report_batch(_batch(world), deps=d, org=world.org) for d in (fast, generic)]
        assert [(o.stored, o.duplicates, o.dirty) for o in outcomes] == [(4, 1, 2)] * 2
        # a correction in the next batch (it marks the picture of the report it replaces)
        fix = [report(world, "r5", {"klotter": 1}, supersedes="r4", period="2026-W10")]
        for d in (fast, generic):
            assert (await handle_report_batch(fix, deps=d, org=world.org)).stored == 1
        stored = await _rows(fast)
        assert stored == await _rows(generic)
        assert len(stored["reports"]) == 5 and len(stored["processed_events"]) == 5
        async with fast.reading() as s:  # read back by pictures.db as the SQLAlchemy rows are
            fast_r1 = await db.get_report(s, "r1")
        async with generic.reading() as s:
            assert fast_r1 == await db.get_report(s, "r1")
            assert fast_r1 is not None and fast_r1.answers["klotter"]["value"] == 2

        # redelivered: the same events, and the same reports under new event ids, change nothing
        again = await handle_report_batch(_batch(world), deps=fast, org=world.org)
        assert (again.stored, again.duplicates) == (0, 5)
        renamed = [e.model_copy(update={"id": f"{e.id}-again"}) for e in _batch(world)[:4]]
        again = await handle_report_batch(renamed, deps=fast, org=world.org)
        assert (again.stored, again.duplicates) == (0, 4)
        after = await _rows(fast)
        assert after["reports"] == stored["reports"]
        assert len(after["processed_events"]) == 9  # the renamed events are marked applied, nothing else


async def test_the_asyncpg_batch_gives_pictures_report_tokens_and_returns_the_old_ones(
        world: World, tmp_path: Path, postgres_url: str) -> None:
    async with built_deps(tmp_path, postgres_url, pooled=False) as deps:
        keys = [(world.area, "2026-W10", world.muni), (world.area, "2026-W11", world.muni)]

        async def touch(token: str) -> dict[tuple[str, str], str | None]:
            return await deps.write(lambda s: deps.store.touch_pictures(s, keys, token, tokens=True))

        assert await touch("t1") == {(world.area, "2026-W10"): None, (world.area, "2026-W11"): None}
        assert await touch("t2") == {(world.area, "2026-W10"): "t1", (world.area, "2026-W11"): "t1"}
        async with deps.reading() as s:
            assert await db.report_tokens(s, world.area, ["2026-W10", "2026-W11"]) == {"2026-W10": "t2",
                                                                                       "2026-W11": "t2"}
            dirty = await db.dirty_rows(s)
        assert {(r.area_id, r.period, r.token) for r in dirty} == {(world.area, "2026-W10", "t2"),
                                                                   (world.area, "2026-W11", "t2")}
