"""Several reports from one reporter in one period, against a running aggregator (real NATS JetStream,
real SQLite, HTTP via httpx): each report is its own observation, completeness counts reporters."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.aggregator.support import Bus, World, picture_when, report, running, settings_for


async def test_three_reports_from_one_reporter_are_three_reports_from_one_reporter(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, "anna-1", {"skadegorelse": 1, "klotter": 1, "tillhall": True}))
        await bus.send(report(world, "anna-2", {"skadegorelse": 2, "klotter": 2, "tillhall": True}))
        await bus.send(report(world, "anna-3", {"skadegorelse": 0, "klotter": 1, "tillhall": False}))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 3)
        items = pic["items"]
        assert items["skadegorelse"]["value"] == 3  # counts add up
        assert items["klotter"]["value"] == 2  # levels take the highest
        assert items["tillhall"]["value"] == 2  # yes/no: the reports that said yes
        comp = pic["completeness"]
        assert (comp["expected"], comp["received"], comp["missing_reporters"]) == (3, 1, ["bo", "cy"])
        assert comp["rate"] == 0.3333
        assert "3 rapporter från 1 rapportör (1 i tid) av 3 förväntade (33,3 %)." in pic["first_analysis"]["sv"]
        assert "3 reports from 1 reporter (1 on time) of 3 expected (33.3 %)." in pic["first_analysis"]["en"]

        # a correction replaces the report it supersedes: still three reports' worth, one of them new
        await bus.send(report(world, "anna-4", {"skadegorelse": 5, "klotter": 1, "tillhall": False},
                              supersedes="anna-2"))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["items"]["skadegorelse"]["value"] == 6)
        assert pic["reports"] == 3 and pic["items"]["tillhall"]["value"] == 1
        assert pic["completeness"]["received"] == 1

        # a second reporter: plural reporters
        await bus.send(report(world, "bo-1", {"skadegorelse": 1}, reporter="bo"))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 4)
        assert pic["completeness"]["received"] == 2
        assert "4 rapporter från 2 rapportörer (2 i tid) av 3 förväntade (66,7 %)." in pic["first_analysis"]["sv"]
        assert "4 reports from 2 reporters (2 on time) of 3 expected (66.7 %)." in pic["first_analysis"]["en"]
