"""A withdrawn report leaves the picture (its counts and its sender's "heard from"), and a published picture
gets a revision for it: real NATS JetStream, real SQLite, HTTP via httpx."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.aggregator.support import Bus, World, picture_when, report, running, settings_for


def withdrawal(world: World, rid: str, original: str, reporter: str = "anna") -> object:
    event = report(world, rid, {}, supersedes=original, reporter=reporter)
    return event.model_copy(update={"data": event.data.model_copy(update={"withdrawn": True})})


async def test_a_withdrawn_report_leaves_the_picture_and_revises_the_published_one(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    tap = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, f"{world.muni}-w1", {"skadegorelse": 2, "klotter": 2}))
        await bus.send(report(world, f"{world.muni}-w2", {"skadegorelse": 1}, reporter="bo"))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        assert pic["items"]["skadegorelse"]["value"] == 3
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers(),
                         json={"comment": "Två rapporter.", "confirm_incomplete": True})
        assert r.status_code == 200, r.text
        [ev] = await Bus.take(tap)
        assert ev["data"]["picture"]["version"] == 1

        await bus.send(withdrawal(world, f"{world.muni}-w3", f"{world.muni}-w1"))
        [ev2] = await Bus.take(tap)
        assert ev2["data"]["picture"]["version"] == 2 and ev2["data"]["revision"] is True
        assert "skadegorelse: 3 → 1" in ev2["data"]["changes"]
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["version"] == 2)
        assert pic["reports"] == 1 and pic["items"]["skadegorelse"]["value"] == 1
        assert pic["items"]["klotter"]["value"] == 0
        comp = pic["completeness"]
        assert comp["received"] == 1 and "anna" in comp["missing_reporters"]  # a withdrawal is not a report

        # the same withdrawal again (a new message id) changes nothing
        await bus.send(withdrawal(world, f"{world.muni}-w3", f"{world.muni}-w1"), again=True)
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["version"] == 2)
        assert pic["reports"] == 1 and pic["items"]["skadegorelse"]["value"] == 1
