"""Integration tests of the aggregator: real NATS JetStream, real SQLite (and PostgreSQL), HTTP via httpx."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from est_shared.org import period_deadline
from est_shared.periods import Period

from tests.aggregator.support import Bus, World, eventually, make_world, picture_when, report, running, settings_for

CONFIRM = {"confirm_incomplete": True}


async def test_reports_roll_up_duplicates_count_once_and_corrections_replace(
        world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        first = report(world, f"{world.muni}-r1", {"skadegorelse": {"value": 2, "places": ["centrum"]}, "klotter": 1,
                                     "tillhall": True})
        await bus.send(first)
        await bus.send(report(world, f"{world.muni}-r2", {"skadegorelse": 3, "klotter": 2, "tillhall": True},
                              reporter="bo"))
        await bus.send(first)  # same Nats-Msg-Id: the stream drops it
        await bus.send(first, again=True)  # a new message id: the consumer must ignore it
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        await asyncio.sleep(0.5)  # give the duplicate time to be (not) counted
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        items = pic["items"]
        assert items["skadegorelse"]["value"] == 5
        assert items["skadegorelse"]["places"] == {"centrum": 1}
        assert items["klotter"]["value"] == 2 and pic["means"]["klotter"] == 1.5
        assert items["tillhall"]["value"] == 2
        assert pic["status"] == "open" and pic["version"] == 0
        comp = pic["completeness"]
        assert (comp["expected"], comp["received"], comp["missing_reporters"]) == (3, 2, ["cy"])
        assert "Skadegörelse" in pic["first_analysis"]["sv"]

        # a correction replaces the original in every total
        await bus.send(report(world, f"{world.muni}-r3", {"skadegorelse": 1, "klotter": 1},
                              supersedes=f"{world.muni}-r1"))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["items"]["skadegorelse"]["value"] == 4)
        assert pic["reports"] == 2 and pic["completeness"]["received"] == 2

        # a report for an area the organisation does not know yet is kept
        await bus.send(report(world, f"{world.muni}-r4", {"brand": 1}, area="nyomrade" + world.muni))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1,
                                 area="nyomrade" + world.muni, who="adm")
        assert pic["items"]["brand"]["value"] == 1

        # series and the municipality's common picture
        r = await c.get(f"{base}/v1/areas/{world.area}/pictures", params={"from": "2026-W08", "to": "2026-W11"},
                        headers=world.headers())
        assert r.status_code == 200
        series = r.json()["pictures"]
        assert [p["period"] for p in series] == ["2026-W08", "2026-W09", "2026-W10", "2026-W11"]
        assert series[2]["items"]["skadegorelse"]["value"] == 4 and series[0]["reports"] == 0
        r = await c.get(f"{base}/v1/municipalities/{world.muni}/pictures/2026-W10", headers=world.headers())
        assert r.status_code == 200
        assert r.json()["totals"]["items"]["skadegorelse"]["value"] == 4

        # access rules and bad input
        assert (await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10")).status_code == 401
        other = make_world()
        r = await c.get(f"{base}/v1/areas/{other.area}/pictures/2026-W10", headers=world.headers())
        assert r.status_code == 403
        r = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-X10", headers=world.headers())
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers("anna"))
        assert r.status_code == 403
        metrics = (await c.get(f"{base}/metrics")).text
        assert 'est_aggregator_reports_stored_total{outcome="duplicate"} 1.0' in metrics
        assert 'est_aggregator_reports_stored_total{outcome="stored"} 4.0' in metrics


async def test_late_report_revises_published_picture(world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    tap = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, "p1", {"klotter": 1}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1)
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers(),
                         json={"comment": "Lugnt läge.", "confirm_incomplete": True})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 1 and r.json()["revision"] is False
        [ev] = await Bus.take(tap)
        assert ev["id"] == f"picture:{world.area}:2026-W10:v1" and ev["type"] == "se.est.picture.published"
        assert ev["data"]["picture"]["version"] == 1 and ev["data"]["picture"]["status"] == "published"
        assert ev["data"]["picture"]["comments"][0]["text"] == "Lugnt läge."

        await bus.send(report(world, "p2", {"klotter": 2}, reporter="bo"))
        [ev2] = await Bus.take(tap)
        assert ev2["data"]["picture"]["version"] == 2 and ev2["data"]["revision"] is True
        assert "klotter: 1 → 2" in ev2["data"]["changes"]
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["version"] == 2)
        assert pic["revision"] is True and pic["items"]["klotter"]["value"] == 2

        r = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", params={"version": 1},
                        headers=world.headers())
        assert r.status_code == 200
        sent = {k: v for k, v in r.json().items() if k not in ("published_at", "revision", "changes")}
        assert sent == ev["data"]["picture"]  # exactly as it was sent
        assert r.json()["changes"] == [] and r.json()["revision"] is False
        r = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", params={"version": 2},
                        headers=world.headers())
        assert "klotter: 1 → 2" in r.json()["changes"] and r.json()["revision"] is True
        r = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", params={"version": 9},
                        headers=world.headers())
        assert r.status_code == 404


async def test_auto_publish_after_the_deadline_with_a_moved_clock(world: World, bus: Bus, nats_url: str,
                                                                  tmp_path: Path) -> None:
    period = "2026-W48"
    deadline = period_deadline(world.org.municipalities[world.muni], Period.parse(period))
    tap = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")

    def freeze(app: object) -> None:
        app.state.aggregator.clock = lambda: deadline - timedelta(minutes=1)  # type: ignore[attr-defined]

    settings = settings_for(world, nats_url, tmp_path, auto_publish_interval=0.1)
    async with running(world, settings, before=freeze) as (base, app), httpx.AsyncClient() as c:
        await bus.send(report(world, "w1", {"brand": 1}, period=period))
        await picture_when(c, base, world, period, lambda p: p["reports"] == 1)
        await asyncio.sleep(0.4)
        assert (await picture_when(c, base, world, period, lambda p: True))["status"] == "open"
        app.state.aggregator.clock = lambda: deadline + timedelta(minutes=1)
        pic = await picture_when(c, base, world, period, lambda p: p["status"] == "published")
        assert pic["version"] == 1
        [ev] = await Bus.take(tap)
        assert ev["data"].get("published_by") is None and ev["data"]["picture"]["version"] == 1
        assert await app.state.aggregator.auto_publish_once() == []  # nothing twice


async def test_alert_raised_once_then_resolved(world: World, bus: Bus, nats_url: str, tmp_path: Path) -> None:
    raised = await bus.tap(f"est.alert.raised.{world.muni}.>", "EST_ALERTS")
    resolved = await bus.tap(f"est.alert.resolved.{world.muni}.>", "EST_ALERTS")
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        url = f"{base}/v1/areas/{world.area}/pictures"
        await bus.send(report(world, "x1", {"skadegorelse": 5}, period="2026-W20"))
        await picture_when(c, base, world, "2026-W20", lambda p: p["reports"] == 1)
        assert (await c.post(f"{url}/2026-W20/publish", headers=world.headers(), json=CONFIRM)).status_code == 200
        [ev] = await Bus.take(raised)
        assert ev["id"] == f"alert:{world.area}:skadegorelse:flag:high:2026-W20"
        assert ev["data"]["item"] == "skadegorelse" and ev["data"]["kind"] == "flag:high"
        # still flagged: publishing again (a new comment) and a revision raise nothing new
        assert (await c.post(f"{url}/2026-W20/publish", headers=world.headers(),
                             json={"comment": "Följs upp.", **CONFIRM})).json()["version"] == 2
        await bus.send(report(world, "x2", {"skadegorelse": 1}, period="2026-W20", reporter="bo"))
        await picture_when(c, base, world, "2026-W20", lambda p: p["version"] == 3)
        assert await Bus.take(raised, timeout=1.0) == []
        assert ev["data"]["severity"] == "warning"
        assert ev["data"]["message"]["sv"].startswith("Skadegörelse i Testområdet v. 20 (11–17 maj 2026): högt läge")
        # quiet periods keep the alert open (``quiet_periods`` 3 by default); the third resolves it
        for week, rid in (("2026-W21", "x3"), ("2026-W22", "x4"), ("2026-W23", "x5")):
            await bus.send(report(world, rid, {"skadegorelse": 0}, period=week))
            await picture_when(c, base, world, week, lambda p: p["reports"] == 1)
            assert (await c.post(f"{url}/{week}/publish", headers=world.headers(), json=CONFIRM)).status_code == 200
            if week != "2026-W23":
                assert await Bus.take(resolved, timeout=1.0) == []
        [done] = await Bus.take(resolved)
        assert done["data"]["alert_id"] == ev["id"] and done["type"] == "se.est.alert.resolved"
        assert done["data"]["period"] == "2026-W23" and "v. 23 (1–7 jun 2026)" in done["data"]["message"]["sv"]
        alerts = (await c.get(f"{base}/v1/areas/{world.area}/alerts", headers=world.headers())).json()
        assert [a["status"] for a in alerts] == ["resolved"]


async def test_restart_with_the_same_sqlite_file_loses_nothing(world: World, bus: Bus, nats_url: str,
                                                              tmp_path: Path) -> None:
    settings = settings_for(world, nats_url, tmp_path)
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, "s1", {"klotter": 1}))
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 1)
        assert (await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish",
                             headers=world.headers(), json=CONFIRM)).status_code == 200
    await bus.send(report(world, "s2", {"klotter": 3}, reporter="bo"))  # arrives while the service is down
    async with running(world, settings_for(world, nats_url, tmp_path)) as (base, _app), httpx.AsyncClient() as c:
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["version"] == 2)
        assert pic["reports"] == 2 and pic["items"]["klotter"]["value"] == 3
        assert "klotter: 1 → 3" in pic["changes"]
        r = await c.get(f"{base}/v1/areas/{world.area}/pictures/2026-W10", params={"version": 1},
                        headers=world.headers())
        assert r.json()["items"]["klotter"]["value"] == 1


@pytest.mark.postgres
async def test_pictures_publish_on_postgresql(bus: Bus, nats_url: str, postgres_url: str, tmp_path: Path) -> None:
    world = make_world()
    tap = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")
    settings = settings_for(world, nats_url, tmp_path, database_url=postgres_url)
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        await bus.send(report(world, "g1", {"skadegorelse": 2}))
        await bus.send(report(world, "g2", {"skadegorelse": 2}, reporter="bo"))
        await bus.send(report(world, "g1", {"skadegorelse": 2}), again=True)
        await picture_when(c, base, world, "2026-W10", lambda p: p["reports"] == 2)
        r = await c.post(f"{base}/v1/areas/{world.area}/pictures/2026-W10/publish", headers=world.headers())
        assert r.json()["version"] == 1  # 2 of 3 after the deadline: no confirmation asked
        await bus.send(report(world, "g3", {"skadegorelse": 1}, reporter="cy", actor="polis"))
        pic = await picture_when(c, base, world, "2026-W10", lambda p: p["version"] == 2)
        assert pic["items"]["skadegorelse"]["value"] == 5
        evs = await Bus.take(tap, 2)
        assert [e["data"]["picture"]["version"] for e in evs] == [1, 2]
    # a restart against the same database keeps everything
    async with running(world, settings) as (base, _app), httpx.AsyncClient() as c:
        pic = await eventually(lambda: picture_when(c, base, world, "2026-W10", lambda p: p["version"] == 2))
        assert pic["reports"] == 3


@pytest.mark.postgres
async def test_two_replicas_never_publish_one_version_twice(bus: Bus, nats_url: str, postgres_url: str,
                                                            tmp_path: Path) -> None:
    world = make_world()
    period = "2026-W48"
    deadline = period_deadline(world.org.municipalities[world.muni], Period.parse(period))
    tap = await bus.tap(f"est.picture.published.{world.muni}.>", "EST_PICTURES")

    def settings(n: int) -> object:
        return settings_for(world, nats_url, tmp_path / str(n), database_url=postgres_url, auto_publish_interval=0)

    async with running(world, settings(1)) as (base1, app1), running(world, settings(2)) as (base2, app2), \
            httpx.AsyncClient() as c:
        await bus.send(report(world, "c1", {"klotter": 1}, period=period))
        await picture_when(c, base1, world, period, lambda p: p["reports"] == 1)
        # both replicas pass the deadline at once: exactly one version 1
        for app in (app1, app2):
            app.state.aggregator.clock = lambda: deadline + timedelta(minutes=1)
        results = await asyncio.gather(app1.state.aggregator.auto_publish_once(),
                                       app2.state.aggregator.auto_publish_once())
        assert sorted(r.version for rs in results for r in rs) == [1]
        # concurrent manual publications (each with its own comment) on both replicas get distinct versions
        posts = await asyncio.gather(*[c.post(f"{b}/v1/areas/{world.area}/pictures/{period}/publish",
                                              headers=world.headers(), json={"comment": f"Kommentar {n}.", **CONFIRM})
                                       for n, b in enumerate((base1, base2, base1, base2))])
        versions = sorted(r.json()["version"] for r in posts if r.status_code == 200)
        assert len(versions) == len(set(versions)) and all(v > 1 for v in versions)
        evs = await Bus.take(tap, 1 + len(versions))
        assert sorted(e["data"]["picture"]["version"] for e in evs) == [1, *versions]
