"""Alert rules of the organisation through the real aggregator: real NATS JetStream, real SQLite and PostgreSQL,
reports as events, pictures published through the HTTP API, alerts taken from EST_ALERTS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from est_shared.org import AlertRules

from tests.aggregator.support import Bus, World, make_world, picture_when, report, running, settings_for

CONFIRM = {"confirm_incomplete": True}

# as the organisation file says it (``municipalities[].alerts``)
RULES = AlertRules.model_validate({
    "default": {"raise_on": ["high", "rising"], "rising_periods": 3, "quiet_periods": 2},
    "items": {"klotter": {"critical_at": 3, "quiet_periods": 1}, "tillhall": {"enabled": False}}})


def with_rules(world: World, rules: AlertRules) -> World:
    muni = world.org.municipalities[world.muni].model_copy(update={"alerts": rules})
    return World(world.muni, world.area, world.org.model_copy(update={
        "municipalities": {world.muni: muni}, "version": world.org.version + 1}))


async def _publish(c: httpx.AsyncClient, base: str, bus: Bus, world: World, week: str,
                   reports: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Send a week's reports (reporter, answers), wait until the picture holds them, publish it."""
    for reporter, answers in reports:
        await bus.send(report(world, f"{world.muni}-{week}-{reporter}", answers, period=week, reporter=reporter))
    await picture_when(c, base, world, week, lambda p: p["reports"] == len(reports))
    r = await c.post(f"{base}/v1/areas/{world.area}/pictures/{week}/publish", headers=world.headers(), json=CONFIRM)
    assert r.status_code == 200, r.text
    pic = await c.get(f"{base}/v1/areas/{world.area}/pictures/{week}", headers=world.headers())
    return pic.json()  # type: ignore[no-any-return]


async def test_the_municipalitys_per_item_rules_decide_what_is_raised_and_when_it_ends(
        bus: Bus, nats_url: str, tmp_path: Path) -> None:
    await _per_item_rules(bus, nats_url, tmp_path)


@pytest.mark.postgres
async def test_per_item_rules_on_postgresql(bus: Bus, nats_url: str, tmp_path: Path, postgres_url: str) -> None:
    await _per_item_rules(bus, nats_url, tmp_path, database_url=postgres_url)


async def _per_item_rules(bus: Bus, nats_url: str, tmp_path: Path, **over: Any) -> None:
    world = with_rules(make_world(), RULES)
    raised = await bus.tap(f"est.alert.raised.{world.muni}.>", "EST_ALERTS")
    resolved = await bus.tap(f"est.alert.resolved.{world.muni}.>", "EST_ALERTS")
    async with running(world, settings_for(world, nats_url, tmp_path, **over)) as (base, _app), \
            httpx.AsyncClient() as c:
        # week 10: klotter, inbrott and tillhåll are all flagged high
        pic = await _publish(c, base, bus, world, "2026-W10", [
            ("anna", {"klotter": 3, "inbrott": 3, "tillhall": True, "skadegorelse": 2}), ("bo", {"tillhall": True})])
        assert {k: v["flag"] for k, v in pic["items"].items() if v.get("flag")} == \
            {"klotter": "high", "inbrott": "high", "tillhall": "high"}
        evs = sorted(await Bus.take(raised, 3, timeout=3.0), key=lambda e: e["data"]["item"])
        # tillhåll is disabled for this municipality: flagged, not raised; klotter at its critical_at is critical
        assert [(e["data"]["item"], e["data"]["kind"], e["data"]["severity"]) for e in evs] == [
            ("inbrott", "flag:high", "warning"), ("klotter", "flag:high", "critical")]
        klotter = evs[1]["data"]["message"]
        assert klotter["sv"] == ("Klotter i Testområdet v. 10 (2–8 mar 2026): högt läge, nivå 3, omfattande "
                                 "(inga tidigare perioder). Allvarlighet: kritisk.")
        assert klotter["en"] == ("Graffiti in Testområdet week 10 (2–8 Mar 2026): high level, level 3, extensive "
                                 "(no earlier periods). Severity: severe.")

        # week 11 quiet: klotter (quiet_periods 1) ends, inbrott (the municipality's default 2) stays open
        await _publish(c, base, bus, world, "2026-W11", [("anna", {"skadegorelse": 2})])
        [done] = await Bus.take(resolved, 2, timeout=2.0)
        assert (done["data"]["item"], done["data"]["alert_id"]) == ("klotter", evs[1]["id"])
        assert "har upphört v. 11 (9–15 mar 2026)" in done["data"]["message"]["sv"]
        # week 12 quiet again: inbrott ends; skadegörelse starts rising (2, 2, 3)
        pic = await _publish(c, base, bus, world, "2026-W12", [("anna", {"skadegorelse": 3})])
        assert pic["items"]["skadegorelse"]["flag"] == "rising"
        [done] = await Bus.take(resolved, 2, timeout=2.0)
        assert done["data"]["item"] == "inbrott"

        # rising raises only in its third published period in a row (4, then 5)
        await _publish(c, base, bus, world, "2026-W13", [("anna", {"skadegorelse": 4})])
        assert await Bus.take(raised, timeout=1.0) == []
        pic = await _publish(c, base, bus, world, "2026-W14", [("anna", {"skadegorelse": 5})])
        assert pic["items"]["skadegorelse"]["flag"] == "rising"
        [up] = await Bus.take(raised, 2, timeout=2.0)
        assert (up["data"]["item"], up["data"]["kind"], up["data"]["severity"], up["data"]["period"]) == \
            ("skadegorelse", "flag:rising", "info", "2026-W14")
        assert "ökande 3 perioder i rad, nu 5 (normalt 2,8)" in up["data"]["message"]["sv"]
        assert "flag:" not in up["data"]["message"]["sv"] + up["data"]["message"]["en"]

        alerts = (await c.get(f"{base}/v1/areas/{world.area}/alerts", headers=world.headers())).json()
        assert sorted((a["item"], a["status"]) for a in alerts) == [
            ("inbrott", "resolved"), ("klotter", "resolved"), ("skadegorelse", "open")]
