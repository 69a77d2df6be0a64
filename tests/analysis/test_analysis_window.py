"""The bounded-window reconciliation gives the same problem states as the whole history, always."""

from __future__ import annotations

import random
from pathlib import Path

from est_analysis.metrics import AnalysisMetrics
from est_analysis.settings import AnalysisSettings
from est_analysis.strategic import db
from est_analysis.strategic.handlers import Context, _plan, handle_picture_published
from est_shared.db import make_engine, session_factory
from est_shared.periods import Period
from prometheus_client import CollectorRegistry

from tests.analysis.support import org, picture_event, unique


async def test_windowed_reconciliation_matches_the_full_history(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(db.metadata.create_all)
    settings = AnalysisSettings(data_dir=tmp_path, durable="window-test", resolve_after=2,
                                persistent_overrides={"brand": {"k": 2, "n": 3}})
    m = unique("m")
    areas = [unique("a") for _ in range(6)]
    snap = org(m, areas)
    ctx = Context(sessions=session_factory(engine), settings=settings, metrics=AnalysisMetrics(CollectorRegistry()),
                  snapshot=lambda: snap)
    try:
        for seed, a in enumerate(areas):
            rnd = random.Random(seed)
            week, versions = Period.parse("2026-W01"), {}
            for _ in range(70):
                roll = rnd.random()
                if roll < 0.15 and versions:  # a revision of an earlier period
                    target = rnd.choice(sorted(versions))
                elif roll < 0.22:  # a gap: a week without a picture
                    week = week.shift(2)
                    target = week.id
                else:
                    week = week.next()
                    target = week.id
                versions[target] = versions.get(target, 0) + 1
                p_flag = 0.75 if (seed + len(versions) // 9) % 2 else 0.25  # calm and troubled stretches
                items = {code: (2.0, rnd.choice(["high", "rising"])) if rnd.random() < p_flag else (0.0, None)
                         for code in ("klotter", "brand", "samling")}
                ev = picture_event(m, a, target, items, version=versions[target])
                assert await handle_picture_published(ev, ctx=ctx) == "applied"
                async with ctx.sessions() as s:
                    rows = await db.area_pictures(s, a, kind="week")
                    states = await db.area_problem_states(s, a)
                changes, _ = _plan(rows, states, ctx=ctx, area_id=a)
                assert changes == [], (seed, target, changes)  # the stored state is the whole history's answer
        async with ctx.sessions() as s:
            opened = (await s.execute(db.problem_states.select())).mappings().all()
        assert len(opened) >= 6  # the scenarios did open (and resolve) problems
        assert any(r["status"] == "resolved" for r in opened) and any(r["status"] == "open" for r in opened)
    finally:
        await engine.dispose()


