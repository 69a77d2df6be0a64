"""The organisation as a file (``GET /v1/admin/org/document``): what an administrator reads is written back
as it is (no new version), and an edit of it changes only what was edited."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from est_shared.natsserver import NatsServer

from tests.intake.support import auth, running, settings_for, two_municipalities_org


def rich_org() -> dict[str, Any]:
    """Two municipalities on their own checklists, a municipality without areas, whole-municipality and
    area-by-area people (one across municipalities), a successor, an alert rule override."""
    org = two_municipalities_org()
    org["municipalities"][0]["alerts"] = {"default": {"rising_periods": 2}, "items": {"klotter": {"critical_at": 3}}}
    org["municipalities"][0]["deadline_time"] = "10:30"
    org["municipalities"].append({"id": "lessebo", "name": "Lessebo kommun", "analysis_period": "quarter"})
    org["people"].append({"id": "per", "name": "Per Persson", "actor": "kommunen", "roles": ["key_function"],
                          "areas": ["braas", "araby", "lessebo"], "successor": "bo"})
    return org


async def test_the_document_read_is_applied_back_without_a_new_version(tmp_path: Path,
                                                                        fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, rich_org())) as (client, _app):
        r = await client.post("/v1/admin/people/anna/tokens", json={"name": "telefonen"}, headers=auth("admin"))
        assert r.status_code == 201, r.text
        issued = r.json()["token"]
        before = (await client.get("/v1/admin/org", headers=auth("admin"))).json()
        assert before["version"] == 2

        got = await client.get("/v1/admin/org/document", headers=auth("admin"))
        assert got.status_code == 200, got.text
        doc = got.json()
        assert "t-" not in str([p.get("token") for p in doc["people"]]) and all("token" not in p for p in doc["people"])
        by_id = {p["id"]: p for p in doc["people"]}
        assert by_id["bo"]["areas"] == ["vaxjo"]  # declared as the whole municipality, read back so
        assert by_id["kim"]["areas"] == ["araby", "alvesta"]  # Alvesta has that one area
        assert by_id["per"]["areas"] == ["braas", "araby", "lessebo"]  # Växjö's areas, not in its order
        assert [c["id"] + "@" + str(c["version"]) for c in doc["checklists"]] == ["vaxjo-trygg@1"]

        for body in ({"json": doc},
                     {"content": yaml.safe_dump(doc, allow_unicode=True),
                      "headers": {"Content-Type": "application/yaml"}}):
            headers = {**auth("admin"), **body.pop("headers", {})}  # type: ignore[dict-item]
            dry = await client.put("/v1/admin/org", params={"dry_run": "true"}, headers=headers, **body)
            assert dry.json() == {"dry_run": True, "version": 2, "changed": False, "changes": []}, dry.text
            put = await client.put("/v1/admin/org", headers=headers, **body)
            assert put.json() == {"version": 2, "changed": False, "changes": []}, put.text
        assert (await client.get("/v1/admin/org", headers=auth("admin"))).json() == before
        assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {issued}"})).status_code == 200

        # an edit changes what it edits: a place, an area of Växjö (bo holds the whole municipality, so it too)
        edited = copy.deepcopy(doc)
        vaxjo = edited["municipalities"][0]
        vaxjo["areas"][0]["places"].append("stationen")
        vaxjo["areas"].append({"id": "teleborg", "name": "Teleborg", "places": ["torget"]})
        edited["people"].append({"id": "nils", "name": "Nils Nord", "actor": "kommunen", "roles": ["reporter"],
                                 "areas": ["teleborg"]})
        r = await client.put("/v1/admin/org", json=edited, headers=auth("admin"))
        assert r.status_code == 200, r.text
        assert set(r.json()["changes"]) == {"area araby changed (places)", "area teleborg added",
                                            "municipality vaxjo changed (area_ids)", "person nils added",
                                            "person bo changed (areas)", "person lena changed (areas)"}
        snap = (await client.get("/v1/admin/org", headers=auth("admin"))).json()
        assert snap["people"]["bo"]["areas"] == ["araby", "braas", "teleborg"]
        assert snap["people"]["per"]["areas"] == ["braas", "araby"]
        assert snap["people"]["anna"]["token_sha256"] and len(snap["tokens"]) == 1

        again = (await client.get("/v1/admin/org/document", headers=auth("admin"))).json()
        r = await client.put("/v1/admin/org", json=again, headers=auth("admin"))
        assert r.json() == {"version": 3, "changed": False, "changes": []}


async def test_the_document_is_for_admins(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, rich_org())) as (client, _app):
        assert (await client.get("/v1/admin/org/document", headers=auth("bo"))).status_code == 403
        r = await client.get("/v1/admin/org/document")
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
        spec = (await client.get("/openapi.json")).json()
        assert "get" in spec["paths"]["/v1/admin/org/document"]


async def test_an_edit_made_on_an_old_version_is_refused_rather_than_undoing_anothers(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, rich_org())) as (client, _app):
        got = await client.get("/v1/admin/org/document", headers=auth("admin"))
        tag = got.headers["etag"]
        assert tag == f'"{(await client.get("/v1/admin/org", headers=auth("admin"))).json()["version"]}"'
        mine, theirs = copy.deepcopy(got.json()), copy.deepcopy(got.json())
        mine["municipalities"][0]["areas"][0]["places"].append("stationen")
        theirs["municipalities"][0]["areas"].append({"id": "teleborg", "name": "Teleborg", "places": ["torget"]})

        first = await client.put("/v1/admin/org", json=theirs, headers={**auth("admin"), "If-Match": tag})
        assert first.status_code == 200 and first.json()["changed"], first.text
        # the second administrator's page still shows the old version: dry run and apply both refused
        for params in ({"dry_run": "true"}, {}):
            late = await client.put("/v1/admin/org", params=params, json=mine,
                                    headers={**auth("admin"), "If-Match": tag})
            assert late.status_code == 412, late.text
            assert late.headers["content-type"].startswith("application/problem+json")
            assert "Organisationen har ändrats sedan du öppnade den" in late.json()["detail"]
            assert late.headers["etag"] == f'"{first.json()["version"]}"'
        areas = (await client.get("/v1/admin/org", headers=auth("admin"))).json()["areas"]
        assert "teleborg" in areas and "stationen" not in str(areas["araby"]), "the first change stands"

        # on the version it now is (weak tags too), the edit applies; a malformed If-Match is a 400, not a 5xx
        fresh = await client.get("/v1/admin/org/document", headers=auth("admin"))
        edited = fresh.json()
        edited["municipalities"][0]["areas"][0]["places"].append("stationen")
        ok = await client.put("/v1/admin/org", json=edited,
                              headers={**auth("admin"), "If-Match": f"W/{fresh.headers['etag']}"})
        assert ok.status_code == 200 and ok.json()["changed"], ok.text
        for bad in ('"sju"', '"' + "9" * 40 + '"', "1,2"):
            r = await client.put("/v1/admin/org", json=edited, headers={**auth("admin"), "If-Match": bad})
            assert r.status_code == 400, (bad, r.text)
        # without If-Match (est org apply, scripts) the file applies as before
        assert (await client.put("/v1/admin/org", json=edited, headers=auth("admin"))).status_code == 200
