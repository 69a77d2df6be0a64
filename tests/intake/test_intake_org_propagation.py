"""The organisation reaches the other services whatever its size, and an outbox event the bus can never take
holds up nothing: it is set aside, loudly, and the organisation changes behind it go out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from est_aggregator.app import create_app as aggregator_app
from est_aggregator.settings import AggregatorSettings
from est_intake.org import db
from est_shared.db import add_to_outbox, transaction
from est_shared.events import OrgChanged, new_event
from est_shared.natsserver import NatsServer
from est_shared.periods import current_period
from est_shared.subjects import ORG_CHANGED
from est_shared.testing import serve

from tests.intake.org_support import announced_snapshot, large_org, org_events
from tests.intake.support import auth, make_org, running, settings_for
from tests.support import eventually

YAML = {"Content-Type": "application/yaml"}
ADMIN = {"Authorization": "Bearer tok-admin"}


def _aggregator(nats_url: str, data_dir: Path) -> AggregatorSettings:
    return AggregatorSettings(nats_url=nats_url, data_dir=data_dir, auto_publish_interval=0, log_level="WARNING",
                              business_metrics_interval=0)


async def test_an_organisation_of_20000_people_and_2000_areas_reaches_the_aggregator(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    """Its snapshot (megabytes) is far over the bus's 1 MiB message limit: the event that announces it stays
    small, the aggregator reads the snapshot from the object store, and a person removed later is refused there
    as soon as the aggregator follows the next version's announcement. (How long these take is a figure of
    bench/, not an assertion here.)"""
    big = large_org()
    text = yaml.dump(big, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False)
    assert len(text) > 3_000_000
    week = current_period("weekly", datetime.now(UTC), "Europe/Stockholm").id
    (tmp_path / "intake").mkdir()
    agg_app = aggregator_app(_aggregator(fresh_nats.url, tmp_path / "agg"))
    async with running(settings_for(tmp_path / "intake", fresh_nats.url, make_org())) as (intake, _app), \
            serve(agg_app) as agg_url, httpx.AsyncClient(base_url=agg_url, timeout=30) as agg:
        r = await intake.put("/v1/admin/org", content=text, headers={**ADMIN, **YAML}, timeout=300)
        assert r.status_code == 200, r.text[:500]
        version = r.json()["version"]

        async def announced() -> bool:  # the outbox relay publishes right after the commit
            return (await org_events(fresh_nats.url))[-1][1]["data"]["version"] == version
        await eventually(announced, timeout=30)
        _msg_id, event, size = (await org_events(fresh_nats.url))[-1]
        assert size < 64_000  # the announcement, not the snapshot
        assert event["data"]["snapshot_bytes"] > 1024 * 1024 and "snapshot" not in event["data"]
        assert event["data"]["changes_total"] > 20_000 and len(event["data"]["changes"]) == 100
        assert len((await announced_snapshot(fresh_nats.url, event["data"])).people) == 20_001

        picture = f"/v1/areas/m3-a0/pictures/{week}"  # p3 reports for m3-a0 and m3-a1

        async def admitted() -> bool:
            return (await agg.get(picture, headers={"Authorization": "Bearer tok-3"})).status_code != 401
        await eventually(admitted, timeout=60)

        big["people"] = [p for p in big["people"] if p["id"] != "p3"]
        r = await intake.put("/v1/admin/org", json=big, headers=ADMIN, timeout=300)
        assert r.status_code == 200 and r.json()["changes"] == ["person p3 removed"], r.text[:500]
        assert (await intake.get("/v1/me", headers={"Authorization": "Bearer tok-3"})).status_code == 401
        directory = agg_app.state.aggregator.runtime.directory

        async def refused() -> bool:
            return (await agg.get(picture, headers={"Authorization": "Bearer tok-3"})).status_code == 401
        await eventually(refused, timeout=30)
        assert directory.snapshot.version == r.json()["version"] == version + 1  # refused by following that version
        assert (await agg.get(picture, headers={"Authorization": "Bearer tok-23"})).status_code != 401


async def test_an_outbox_event_the_bus_can_never_take_leaves_readyz_degraded_and_later_changes_go_out(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    """The reported failure: an event over the payload limit (here an inline snapshot of the old form) used to
    be retried forever and every organisation change behind it waited with it."""
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, app):
        ctx = app.state.org
        oversized = new_event(type="se.est.org.changed", source="/est/intake", id="org:too-large", subject="org",
                              data=OrgChanged(version=99, snapshot={"pad": "x" * 1_200_000}))
        async with transaction(ctx.sessions) as s:
            await add_to_outbox(s, db.outbox, ORG_CHANGED, oversized)
        doc = make_org()
        doc["people"] = [p for p in doc["people"] if p["id"] != "anna"]
        r = await client.put("/v1/admin/org", json=doc, headers=auth("admin"))
        assert r.status_code == 200 and r.json()["version"] == 2

        async def v2_out() -> bool:
            return [i for i, _, _ in await org_events(fresh_nats.url)] == ["org:v1", "org:v2"]
        await eventually(v2_out, timeout=10)

        async def degraded() -> bool:  # the relay marks the rows just after the acks came
            return (await client.get("/readyz")).json()["status"] == "degraded"
        await eventually(degraded, timeout=10)
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text  # degraded, still serving: reports are accepted
        body = ready.json()
        assert body["status"] == "degraded" and body["checks"]["outbox"] == "degraded"
        assert body["checks"]["nats"] is True and "1 outbox events" in body["degraded"]["outbox"]
        metrics = (await client.get("/metrics")).text
        assert 'est_intake_outbox_failed_total{error="MaxPayloadError"} 1.0' in metrics
        assert "est_intake_outbox_failed_events 1.0" in metrics
        async with ctx.sessions() as s:
            row = (await s.execute(db.outbox.select().where(db.outbox.c.event_id == "org:too-large"))).one()
        assert row.error == "MaxPayloadError" and row.failed_at is not None and not row.published
