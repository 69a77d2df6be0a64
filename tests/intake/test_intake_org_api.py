"""Integration tests of the organisation admin API, its history and events, /v1/me and checklists."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import nats
import yaml
from est_shared.bus import load_org_snapshot
from est_shared.events import OrgChanged
from est_shared.natsserver import NatsServer
from est_shared.org import OrgSnapshot

from tests.intake.support import auth, make_org, running, settings_for


async def org_events(url: str) -> list[tuple[str, dict]]:
    """All org events on the stream: (Nats-Msg-Id, CloudEvent)."""
    nc = await nats.connect(url)
    out = []
    try:
        js = nc.jetstream()
        info = await js.stream_info("EST_ORG")
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            m = await js.get_msg("EST_ORG", seq)
            out.append(((m.headers or {}).get("Nats-Msg-Id", ""), json.loads(m.data)))
    finally:
        await nc.close()
    return out


async def announced_snapshot(url: str, data: dict) -> OrgSnapshot:  # type: ignore[type-arg]
    """The snapshot an est.org.changed event's data names (read from the object store)."""
    nc = await nats.connect(url)
    try:
        return await load_org_snapshot(nc.jetstream(), OrgChanged.model_validate(data))
    finally:
        await nc.close()


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_admin_org_apply_revokes_token_at_once(tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org())
    async with running(settings) as (client, _app):
        assert (await client.get("/v1/me", headers=auth("anna"))).status_code == 200

        async def has_v1() -> bool:
            return [i for i, _ in await org_events(fresh_nats.url)] == ["org:v1"]
        await wait_for(has_v1)

        doc = make_org()
        doc["people"] = [p for p in doc["people"] if p["id"] != "anna"]
        text = yaml.safe_dump(doc, allow_unicode=True)
        ytype = {"Content-Type": "application/yaml"}
        assert (await client.put("/v1/admin/org", content=text, headers={**auth("bo"), **ytype})).status_code == 403
        r = await client.put("/v1/admin/org", content=text, headers={**auth("admin"), **ytype})
        assert r.status_code == 200, r.text
        assert r.json() == {"version": 2, "changed": True, "changes": ["person anna removed"]}
        assert (await client.get("/v1/me", headers=auth("anna"))).status_code == 401
        assert (await client.post("/v1/reports", json={}, headers=auth("anna"))).status_code == 401

        same = await client.put("/v1/admin/org", json=doc, headers=auth("admin"))
        assert same.json() == {"version": 2, "changed": False, "changes": []}

        async def has_v2() -> bool:
            return [i for i, _ in await org_events(fresh_nats.url)] == ["org:v1", "org:v2"]
        await wait_for(has_v2)
        _, event = (await org_events(fresh_nats.url))[-1]
        assert event["type"] == "se.est.org.changed" and event["data"]["version"] == 2
        assert "anna" not in (await announced_snapshot(fresh_nats.url, event["data"])).people
        assert event["data"]["changes"] == ["person anna removed"]
        assert "tok-" not in json.dumps(event)

        h = (await client.get("/v1/admin/org/history", headers=auth("admin"))).json()["versions"]
        assert [v["version"] for v in h] == [2, 1]
        assert h[0]["applied_by"] == "admin" and h[0]["changes"] == ["person anna removed"]
        assert h[1]["applied_by"] == "file:org.yaml"
        v1 = (await client.get("/v1/admin/org/history/1", headers=auth("admin"))).json()
        assert "anna" in v1["people"]
        assert (await client.get("/v1/admin/org/history", headers=auth("bo"))).status_code == 403

        bad = copy.deepcopy(doc)
        bad["people"][0]["actor"] = "nobody"
        r = await client.put("/v1/admin/org", json=bad, headers=auth("admin"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "people.0.actor"
        r = await client.put("/v1/admin/org", content="people: [", headers={**auth("admin"), **ytype})
        assert r.status_code == 400
        r = await client.put("/v1/admin/org", content="{", headers={**auth("admin"),
                                                                    "Content-Type": "application/json"})
        assert r.status_code == 400

    # restart on the same database with the same start-up file: the change made through the API stays
    async with running(settings) as (client, _app):
        assert (await client.get("/v1/me", headers=auth("anna"))).status_code == 401
        h = (await client.get("/v1/admin/org/history", headers=auth("admin"))).json()["versions"]
        assert h[0]["version"] == 2 and h[0]["changes"] == ["person anna removed"]
        assert (await client.get("/readyz")).json()["status"] == "ok"


async def test_latest_version_republished_to_a_new_bus(tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org())
    async with running(settings):
        pass
    other = NatsServer(tmp_path / "nats2").start()
    try:
        async with running(settings.model_copy(update={"nats_url": other.url})) as (client, _app):
            assert (await client.get("/v1/me", headers=auth("anna"))).status_code == 200
            events = await org_events(other.url)
            assert events and events[-1][1]["data"]["version"] == 1
    finally:
        other.kill()


async def test_me_and_checklists(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        me = (await client.get("/v1/me", headers=auth("bo"))).json()
        assert me["id"] == "bo" and me["roles"] == ["reporter", "key_function"]
        assert [a["id"] for a in me["areas"]] == ["araby", "braas"]
        assert me["areas"][1]["cadence"] == "biweekly" and me["areas"][1]["places"] == ["torget"]
        assert me["actor"] == {"id": "kommunen", "name": "Växjö kommun", "kind": "municipality"}
        assert (await client.get("/v1/me")).status_code == 401

        cur = (await client.get("/v1/checklists/current", headers=auth("anna"))).json()
        assert cur["ref"] == "est-standard@1" and len(cur["items"]) == 18
        klotter = next(i for i in cur["items"] if i["code"] == "klotter")
        assert klotter == {"code": "klotter", "label_sv": "Klotter", "label_en": "Graffiti", "answer": "level"}
        assert cur["levels"][2] == {"value": 2, "sv": "återkommande", "en": "recurring"}
        assert [a["id"] for a in cur["areas"]] == ["araby"]
        assert cur["areas"][0]["places"] == ["centrum", "skolgarden", "parkeringen"]
        same = (await client.get("/v1/checklists/est-standard@1", headers=auth("anna"))).json()
        assert same == cur
        assert (await client.get("/v1/checklists/est-standard@7", headers=auth("anna"))).status_code == 404
        docs = (await client.get("/openapi.json")).json()
        assert "/v1/reports" in docs["paths"] and "/v1/reports:batch" in docs["paths"]
