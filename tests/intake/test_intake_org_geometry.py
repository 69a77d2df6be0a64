"""Areas' geometry and places' locations in the organisation file: validation, SWEREF 99 TM → WGS 84 at
apply time, and what GET /v1/admin/org and /v1/me give back."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from est_intake.org.domain import OrgInvalid, build_snapshot
from est_shared.natsserver import NatsServer

from tests.intake.support import auth, make_org, running, settings_for

SQUARE = [[14.80, 56.87], [14.82, 56.87], [14.82, 56.89], [14.80, 56.89], [14.80, 56.87]]
# Ljungby's centre in SWEREF 99 TM, a kilometre square
SWEREF_SQUARE = [[438034.0, 6307130.0], [439034.0, 6307130.0], [439034.0, 6308130.0], [438034.0, 6308130.0],
                 [438034.0, 6307130.0]]


def mapped_org() -> dict[str, Any]:
    org = make_org()
    araby, braas = org["municipalities"][0]["areas"]
    araby["geometry"] = {"type": "Polygon", "coordinates": [SQUARE]}
    araby["places"] = [{"name": "centrum", "location": {"type": "Point", "coordinates": [14.81, 56.88]}},
                       "skolgarden", {"name": "parkeringen"}]
    braas["geometry"] = {"type": "MultiPolygon", "crs": "EPSG:3006", "coordinates": [[SWEREF_SQUARE]]}
    return org


def test_geometry_and_locations_reach_the_snapshot_in_wgs84() -> None:
    snap, _ = build_snapshot(mapped_org(), None)
    araby, braas = snap.areas["araby"], snap.areas["braas"]
    assert araby.geometry == {"type": "Polygon", "coordinates": [SQUARE]}
    assert araby.places == ["centrum", "skolgarden", "parkeringen"]
    assert araby.place_locations == {"centrum": [14.81, 56.88]}
    assert braas.geometry is not None and braas.geometry["type"] == "MultiPolygon"
    lon, lat = braas.geometry["coordinates"][0][0][0]
    assert lon == pytest.approx(13.9825522, abs=1e-7) and lat == pytest.approx(56.9037244, abs=1e-7)
    assert braas.place_locations == {}


def test_a_municipality_crs_applies_to_its_areas_and_places() -> None:
    org = make_org()
    m = org["municipalities"][0]
    m["crs"] = "EPSG:3006"
    m["areas"][1]["geometry"] = {"type": "Polygon", "coordinates": [SWEREF_SQUARE]}
    m["areas"][1]["places"] = [{"name": "torget", "location": {"type": "Point", "coordinates": [438500.0, 6307600.0]}}]
    snap, _ = build_snapshot(org, None)
    lon, lat = snap.areas["braas"].place_locations["torget"]
    assert 13.98 < lon < 14.0 and 56.90 < lat < 56.92


def test_a_changed_outline_is_a_change() -> None:
    first, _ = build_snapshot(mapped_org(), None)
    moved = mapped_org()
    moved["municipalities"][0]["areas"][0]["geometry"]["coordinates"][0][1] = [14.83, 56.87]
    second, changes = build_snapshot(moved, first)
    assert second.version == 2 and any("araby" in c for c in changes)
    assert build_snapshot(moved, second) == (second, [])


@pytest.mark.parametrize(("change", "field", "says"), [
    (lambda a: a.__setitem__("geometry", {"type": "Polygon", "coordinates": [[*SQUARE[:-1], [14.81, 56.9]]]}),
     "municipalities.0.areas.0.geometry", "ringen är inte sluten"),
    (lambda a: a.__setitem__("geometry", {"type": "Polygon", "coordinates": [[[p[1], p[0]] for p in SQUARE]]}),
     "municipalities.0.areas.0.geometry", "outside Sweden"),
    (lambda a: a["places"].__setitem__(0, {"name": "centrum", "location": {"type": "Point", "coordinates": [1, 2]}}),
     "municipalities.0.areas.0.places.0.location", "utanför Sverige"),
    (lambda a: a["places"].__setitem__(0, {"name": "centrum", "location": {"type": "Point", "crs": "EPSG:3006",
                                                                          "coordinates": [14.8, 56.8]}}),
     "municipalities.0.areas.0.places.0.location", "SWEREF 99 TM"),
])
def test_bad_coordinates_name_their_field(change: Any, field: str, says: str) -> None:
    org = mapped_org()
    change(org["municipalities"][0]["areas"][0])
    with pytest.raises(OrgInvalid) as exc:
        build_snapshot(org, None)
    assert [e["field"] for e in exc.value.errors] == [field] and says in exc.value.errors[0]["message"]


def test_an_unknown_crs_and_a_place_twice_are_refused() -> None:
    org = mapped_org()
    org["municipalities"][0]["crs"] = "EPSG:3857"
    org["municipalities"][0]["areas"][0]["places"].append({"name": "skolgarden"})
    with pytest.raises(OrgInvalid) as exc:
        build_snapshot(org, None)
    fields = {e["field"] for e in exc.value.errors}
    assert fields == {"municipalities.0.crs", "municipalities.0.areas.0.places"}


async def test_geometry_round_trips_through_the_admin_api(tmp_path: Path, fresh_nats: NatsServer) -> None:
    async with running(settings_for(tmp_path, fresh_nats.url, make_org())) as (client, _app):
        body = yaml.safe_dump(mapped_org(), allow_unicode=True)
        put = await client.put("/v1/admin/org", content=body, headers={**auth("admin"),
                                                                       "Content-Type": "application/yaml"})
        assert put.status_code == 200, put.text
        org = (await client.get("/v1/admin/org", headers=auth("admin"))).json()
        assert org["areas"]["araby"]["geometry"] == {"type": "Polygon", "coordinates": [SQUARE]}
        assert org["areas"]["araby"]["place_locations"] == {"centrum": [14.81, 56.88]}
        assert org["areas"]["braas"]["geometry"]["coordinates"][0][0][0][0] == pytest.approx(13.9825522, abs=1e-7)
        me = (await client.get("/v1/me", headers=auth("bo"))).json()
        assert me["areas"][0]["geometry"] == {"type": "Polygon", "coordinates": [SQUARE]}
        assert me["areas"][0]["place_locations"] == {"centrum": [14.81, 56.88]}
        assert me["areas"][0]["places"] == ["centrum", "skolgarden", "parkeringen"]

        bad = copy.deepcopy(mapped_org())
        bad["municipalities"][0]["areas"][0]["geometry"]["coordinates"][0].pop()
        answer = await client.put("/v1/admin/org", json=bad, headers=auth("admin"))
        assert answer.status_code == 422 and answer.headers["content-type"].startswith("application/problem+json")
        [error] = answer.json()["errors"]
        assert error["field"] == "municipalities.0.areas.0.geometry"
        assert "inte sluten" in error["message"] and "not closed" in error["message"]
        again = (await client.get("/v1/admin/org", headers=auth("admin"))).json()
        assert again["version"] == org["version"]
