"""Rebuilding the projection from the EST_PICTURES history gives what the live consumer built."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nats
from est_analysis.app import rebuild
from est_analysis.settings import AnalysisSettings
from est_analysis.strategic import db
from est_shared.bus import publish_event
from est_shared.db import make_engine, session_factory
from est_shared.subjects import picture_published
from prometheus_client import generate_latest

from tests.analysis.support import acceptance_history, org, picture_event, unique
from tests.support import eventually


async def _tables(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as s:
            pics = (await s.execute(db.pictures.select())).mappings().all()
            states = (await s.execute(db.problem_states.select())).mappings().all()
            outbox = len((await s.execute(db.outbox.select())).all())
    finally:
        await engine.dispose()
    return {"pictures": sorted(({k: v for k, v in r.items() if k != "updated_at"} for r in pics),
                               key=lambda r: (r["area_id"], r["period"])),
            "states": sorted(({k: v for k, v in r.items() if k != "updated_at"} for r in states),
                             key=lambda r: (r["area_id"], r["item"])),
            "outbox": outbox}


async def test_rebuild_from_the_stream_equals_the_live_projection(service: Any, nats_url: str,
                                                                  tmp_path: Path) -> None:
    m, a, b = unique("m"), unique("a"), unique("b")
    events = acceptance_history(m, a, b)
    # revisions: one that removes a flag in the middle of a's run, one that adds flags to b after the measure
    events.insert(30, picture_event(m, a, "2026-W44", {"klotter": (1, None), "samling": (1, None)}, version=2))
    events.append(picture_event(m, b, "2026-W50", {"klotter": (3, "high")}, version=2))
    events.append(picture_event(m, b, "2026-W51", {"klotter": (3, "high")}, version=2))
    late = picture_event(m, b, "2026-W50", {"klotter": (1, None)}, version=1)  # stale: an older version late
    events.append(late.model_copy(update={"id": f"{late.id}:late"}))
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    live_dir = tmp_path / "live"
    try:
        async with service(m, data_dir=live_dir) as (_, app):
            await app.state.runtime.apply_org(org(m, [a, b]))
            for ev in events:
                await publish_event(js, picture_published(m, ev.data.picture.area_id), ev)
            await publish_event(js, picture_published(m, a), events[3])  # a resend: deduplicated by JetStream

            async def consumed() -> bool:
                metrics = generate_latest(app.state.runtime.registry).decode()
                total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                            if line.startswith("est_analysis_pictures_consumed_total{"))
                return total >= len(events)

            await eventually(consumed, timeout=20)
        settings = AnalysisSettings(nats_url=nats_url, data_dir=live_dir, durable=f"analysis-{m}",
                                    municipality_filter=m)
        live = await _tables(settings.db_url())
        assert live["outbox"] >= 3 and any(s["status"] == "open" for s in live["states"])
        assert any(s["status"] == "resolved" for s in live["states"])

        # into an empty database
        fresh = settings.model_copy(update={"data_dir": tmp_path / "fresh"})
        (tmp_path / "fresh").mkdir()
        seen: list[tuple[int, int]] = []
        result = await rebuild(fresh, progress=lambda done, total: seen.append((done, total)), batch=16)
        assert result.events == len(events) and result.stale == 1 and result.applied == len(events) - 1
        assert seen[0] == (0, len(events)) and seen[-1] == (len(events), len(events))
        rebuilt = await _tables(fresh.db_url())
        assert rebuilt["pictures"] == live["pictures"]
        assert rebuilt["states"] == live["states"]
        assert rebuilt["outbox"] == 0  # alerts are not sent again

        # over the live database itself: same projection, outbox untouched
        result = await rebuild(settings)
        again = await _tables(settings.db_url())
        assert again == live and result.open_problems == sum(s["status"] == "open" for s in live["states"])
    finally:
        await nc.close()
