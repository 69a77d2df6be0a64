"""Integration tests of the organisation admin API, its history and events, /v1/me and checklists."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx
import yaml
from est_shared.natsserver import NatsServer

from tests.intake.org_support import BILLION_LAUGHS, announced_snapshot, large_org, org_events
from tests.intake.support import TRYGG_1, auth, make_org, running, settings_for, two_municipalities_org
from tests.support import eventually


async def test_admin_org_apply_revokes_token_at_once(tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org())
    async with running(settings) as (client, _app):
        assert (await client.get("/v1/me", headers=auth("anna"))).status_code == 200

        async def has_v1() -> bool:
            return [i for i, _, _ in await org_events(fresh_nats.url)] == ["org:v1"]
        await eventually(has_v1)

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
            return [i for i, _, _ in await org_events(fresh_nats.url)] == ["org:v1", "org:v2"]
        await eventually(has_v2)
        _, event, _ = (await org_events(fresh_nats.url))[-1]
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
            # the snapshot the event names was written to the new bus too
            assert "anna" in (await announced_snapshot(other.url, events[-1][1]["data"])).people
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
        assert {k: klotter[k] for k in ("code", "label_sv", "label_en", "answer")} == {
                "code": "klotter", "label_sv": "Klotter", "label_en": "Graffiti", "answer": "level"}
        assert "max_count" not in klotter and klotter["places"] is True
        assert cur["levels"][2] == {"value": 2, "sv": "återkommande", "en": "recurring"}
        assert [a["id"] for a in cur["areas"]] == ["araby"]
        assert cur["areas"][0]["places"] == ["centrum", "skolgarden", "parkeringen"]
        same = (await client.get("/v1/checklists/est-standard@1", headers=auth("anna"))).json()
        assert same == cur
        assert (await client.get("/v1/checklists/est-standard@7", headers=auth("anna"))).status_code == 404
        docs = (await client.get("/openapi.json")).json()
        assert "/v1/reports" in docs["paths"] and "/v1/reports:batch" in docs["paths"]


async def test_hostile_organisation_bodies_get_400_or_422_never_500(tmp_path: Path, fresh_nats: NatsServer) -> None:
    """Deep nesting, alias bombs, huge values, control characters: refused with a problem naming the cause,
    before anything is applied. The route has a body limit of its own, larger than the service's."""
    settings = settings_for(tmp_path, fresh_nats.url, make_org(), max_body_bytes=100_000,
                            max_org_body_bytes=3_000_000)
    ytype = {**auth("admin"), "Content-Type": "application/yaml"}
    jtype = {**auth("admin"), "Content-Type": "application/json"}
    async with running(settings) as (client, _app):
        refused = [
            (b'{"subscriptions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", jtype, 400, "nested deeper"),
            (("subscriptions:\n" + "".join("  " * i + "- \n" for i in range(1, 40))).encode(), ytype, 400,
             "nested deeper"),
            (BILLION_LAUGHS.encode(), ytype, 400, "alias"),
            (b"actors:\n  - id: a\n    name: " + b"x" * 20_000 + b"\n", ytype, 400, "longer than"),
            (b"people: !!python/object/apply:os.system [echo]\n", ytype, 400, "tag"),
        ]
        for body, headers, status, words in refused:
            r = await client.put("/v1/admin/org", content=body, headers=headers)
            assert r.status_code == status, (words, r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith("application/problem+json")
            assert words in json.dumps(r.json()["errors"]), r.json()
        doc = make_org()
        doc["municipalities"][0]["areas"][0]["name"] = "Araby\r\nX-Injected: 1"
        doc["actors"][0]["name"] = "Ring 0470-12 34 56"
        r = await client.put("/v1/admin/org", json=doc, headers=auth("admin"))
        assert r.status_code == 422
        assert {(e["field"], e["reason"]) for e in r.json()["errors"]} >= {
            ("municipalities.0.areas.0.name", "control_character"), ("actors.0.name", "phone_number")}
        assert "0470" not in r.text

        big = large_org(people=1_000, areas=40, municipalities=2)  # over the service-wide limit, under the route's
        text = yaml.safe_dump(big, allow_unicode=True)
        assert settings.max_body_bytes < len(text.encode()) < settings.max_org_body_bytes
        r = await client.put("/v1/admin/org", content=text, headers=ytype)
        assert r.status_code == 200 and r.json()["version"] == 2, r.text[:300]
        too_large = await client.put("/v1/admin/org", content=b"#" * 3_100_000, headers=ytype)
        assert too_large.status_code == 413
        report = await client.post("/v1/reports", content=b" " * 150_000,
                                   headers={"Authorization": "Bearer tok-admin", "Content-Type": "application/json"})
        assert report.status_code == 413  # the service-wide limit stays for every other route
        h = (await client.get("/v1/admin/org/history", headers={"Authorization": "Bearer tok-admin"})).json()
        assert [v["version"] for v in h["versions"]] == [2, 1]  # none of the refused bodies made a version


async def test_each_municipality_gets_its_own_checklist(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, two_municipalities_org())) as (client, _app):
        anna = (await client.get("/v1/checklists/current", headers=auth("anna"))).json()
        assert anna["ref"] == "vaxjo-trygg@1" and anna["name_sv"] == "Växjös trygghetslista"
        assert [g["code"] for g in anna["groups"]] == ["miljo", "manniskor"]
        tag = anna["items"][0]
        assert tag["group"] == "miljo" and tag["help_sv"] == "Räkna inte lagliga väggar."
        assert tag["scale"]["2"] == {"sv": "mycket", "en": "a lot"} and "max_count" not in tag
        assert anna["items"][1]["max_count"] == 50 and anna["items"][2]["places"] is False
        assert [(a["id"], a["checklist"]) for a in anna["areas"]] == [("araby", "vaxjo-trygg@1")]
        assert (await client.get("/v1/me", headers=auth("anna"))).json()["checklist"] == "vaxjo-trygg@1"

        olle = (await client.get("/v1/checklists/current", headers=auth("olle"))).json()
        assert olle["ref"] == "est-standard@1" and len(olle["items"]) == 18
        assert (await client.get("/v1/me", headers=auth("olle"))).json()["checklist"] == "est-standard@1"

        # in two municipalities: the first area's municipality's, and each area names its own
        kim = (await client.get("/v1/me", headers=auth("kim"))).json()
        assert kim["checklist"] == "vaxjo-trygg@1"
        assert [(a["id"], a["checklist"]) for a in kim["areas"]] == [("araby", "vaxjo-trygg@1"),
                                                                     ("alv-centrum", "est-standard@1")]
        assert (await client.get("/v1/checklists/current", headers=auth("kim"))).json()["ref"] == "vaxjo-trygg@1"
        # any caller may read any version (a picture of another municipality names its items)
        assert (await client.get("/v1/checklists/vaxjo-trygg@1", headers=auth("olle"))).json()["items"] == \
            anna["items"]


async def test_a_checklist_read_from_the_api_is_written_back_as_a_new_version(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, two_municipalities_org())) as (client, _app):
        read = (await client.get("/v1/checklists/vaxjo-trygg@1", headers=auth("admin"))).json()

        async def put(org: dict) -> httpx.Response:
            return await client.put("/v1/admin/org", json=org, headers=auth("admin"))

        # the answer as it is, under its own version: the same content, nothing changes
        org = two_municipalities_org()
        org["checklists"] = [read]
        r = await put(org)
        assert r.status_code == 200 and r.json()["changed"] is False, r.text

        # edited under a new version: a renamed item continues the series of an earlier one
        v2 = copy.deepcopy(read)
        v2["version"] = 2
        v2["items"][0] |= {"code": "klotter_alla", "label_sv": "Klotter", "continues": ["klotter_tag"]}
        v2["items"].append({"code": "samlingar", "label_sv": "Samlingar", "label_en": "Gatherings",
                            "answer": "level", "group": "manniskor", "help_en": "Groups that make people uneasy."})
        org["checklists"] = [v2]  # the earlier version is kept without being declared again
        org["municipalities"][0] |= {"checklist": "vaxjo-trygg@2", "accepted_checklists": ["vaxjo-trygg@1"]}
        r = await put(org)
        assert r.status_code == 200, r.text
        assert "checklist vaxjo-trygg@2 added" in r.json()["changes"]
        def version(view: dict) -> dict:  # the areas (the caller's, with their checklists now) aside
            return {k: v for k, v in view.items() if k != "areas"}

        again = (await client.get("/v1/checklists/vaxjo-trygg@2", headers=auth("admin"))).json()
        assert version(again) == version({**v2, "ref": "vaxjo-trygg@2", "items": [
            *v2["items"][:-1], {**v2["items"][-1], "places": True, "continues": []}]})
        assert version((await client.get("/v1/checklists/vaxjo-trygg@1", headers=auth("admin"))).json()) == \
            version(read)
        cur = (await client.get("/v1/checklists/current", headers=auth("anna"))).json()
        assert cur["ref"] == "vaxjo-trygg@2" and cur["items"][0]["continues"] == ["klotter_tag"]
        snap = (await client.get("/v1/admin/org", headers=auth("admin"))).json()
        assert set(snap["checklists"]) == {"est-standard@1", "vaxjo-trygg@1", "vaxjo-trygg@2"}

        # a version that exists never changes: make a new one
        changed = copy.deepcopy(read)
        changed["items"][1]["max_count"] = 60
        org["checklists"] = [changed]
        r = await put(org)
        assert r.status_code == 422, r.text
        [e] = r.json()["errors"]
        assert e["field"] == "checklists.0" and "gör en ny version (vaxjo-trygg@2)" in e["message"]
        assert "make a new version" in e["message"]

        async def errors_of(checklist: dict) -> list[tuple[str, str]]:
            bad = two_municipalities_org()
            bad["checklists"] = [checklist]
            bad["municipalities"][0]["checklist"] = f"{checklist['id']}@{checklist['version']}"
            r = await put(bad)
            assert r.status_code == 422, r.text
            return [(e["field"], e["message"]) for e in r.json()["errors"]]

        v3 = copy.deepcopy(TRYGG_1) | {"version": 3}
        v3["items"][0] = {**v3["items"][0], "group": "ute"}
        v3["items"][1] = {**v3["items"][1], "continues": ["finns_inte"]}
        v3["items"][2] = {**v3["items"][2], "scale": {0: {"sv": "nej", "en": "no"}}}
        errs = await errors_of(v3)
        assert [f for f, _ in errs] == ["checklists.0.items.0.group", "checklists.0.items.1.continues.0",
                                        "checklists.0.items.2.scale"]
        assert "gruppen 'ute' finns inte bland checklistans groups (miljo, manniskor)" in errs[0][1]
        assert "the group 'ute' is not one of the checklist's groups" in errs[0][1]
        assert "'finns_inte' finns inte i någon tidigare version av vaxjo-trygg" in errs[1][1]
        assert "is in no earlier version of vaxjo-trygg" in errs[1][1]
        # an item continues only what came before: not a later version's item, nor its own version's
        first = {"id": "ny-lista", "version": 1, "name_sv": "Ny", "name_en": "New", "items": [
            {"code": "ny_a", "label_sv": "A", "label_en": "A", "answer": "boolean"},
            {"code": "ny_b", "label_sv": "B", "label_en": "B", "answer": "boolean", "continues": ["ny_a"]}]}
        assert [f for f, _ in await errors_of(first)] == ["checklists.0.items.1.continues.0"]
        twice = copy.deepcopy(TRYGG_1) | {"version": 4, "groups": [*TRYGG_1["groups"], TRYGG_1["groups"][0]]}
        twice["items"] = [*twice["items"], twice["items"][0]]
        assert [f for f, _ in await errors_of(twice)] == ["checklists.0.groups", "checklists.0.items"]
        h = (await client.get("/v1/admin/org/history", headers=auth("admin"))).json()["versions"]
        assert [v["version"] for v in h] == [2, 1]  # none of the refused files made a version
