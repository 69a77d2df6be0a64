"""SWEREF 99 TM → WGS 84 and the checks of areas' geometry and places' locations."""

from __future__ import annotations

import pytest
from est_shared.geo import GeometryError, area_geometry, crs_of, place_location, sweref99tm_to_wgs84

# control points: SWEREF 99 TM (easting, northing) and their WGS 84 (longitude, latitude) as PROJ gives them
# (EPSG:3006 → EPSG:4326), from the south coast to Norrbotten, on and far from the central meridian
CONTROL = [
    ((500000.0, 6000000.0), (15.0000000000, 54.1481041050)),
    ((499850.8, 6307017.0), (14.9975500649, 56.9068501990)),  # Växjö
    ((674032.357, 6580821.991), (18.0591959942, 59.3302309991)),  # Stockholm
    ((438034.0, 6307130.0), (13.9825521832, 56.9037244273)),  # Ljungby
    ((910000.0, 7600000.0), (24.9357702619, 68.2154324707)),
    ((300000.0, 6200000.0), (11.8005410078, 55.9038087829)),
    ((571600.0, 7529350.0), (16.7033461775, 67.8699412009)),
]


@pytest.mark.parametrize(("grid", "geodetic"), CONTROL)
def test_sweref99tm_matches_the_control_points(grid: tuple[float, float], geodetic: tuple[float, float]) -> None:
    lon, lat = sweref99tm_to_wgs84(*grid)
    # 1e-8 degrees: about a millimetre
    assert lon == pytest.approx(geodetic[0], abs=1e-8) and lat == pytest.approx(geodetic[1], abs=1e-8)


SQUARE = [[14.80, 56.87], [14.82, 56.87], [14.82, 56.89], [14.80, 56.89], [14.80, 56.87]]


def test_a_wgs84_polygon_comes_back_as_written() -> None:
    assert area_geometry({"type": "Polygon", "coordinates": [SQUARE]}) == {"type": "Polygon", "coordinates": [SQUARE]}
    multi = {"type": "MultiPolygon", "coordinates": [[SQUARE], [[[p[0] + 0.1, p[1]] for p in SQUARE]]]}
    assert area_geometry(multi)["coordinates"][1][0][0] == [14.9, 56.87]


def test_sweref_geometry_and_points_become_wgs84() -> None:
    ring = [[499850.8, 6307017.0], [500850.8, 6307017.0], [500850.8, 6308017.0], [499850.8, 6307017.0]]
    g = area_geometry({"type": "Polygon", "crs": "EPSG:3006", "coordinates": [ring]})
    assert g["coordinates"][0][0] == [pytest.approx(14.99755, abs=1e-5), pytest.approx(56.90685, abs=1e-5)]
    assert "crs" not in g
    # the municipality's crs is the default; the geometry's own one wins
    assert area_geometry({"type": "Polygon", "coordinates": [ring]}, "EPSG:3006") == g
    assert place_location({"type": "Point", "coordinates": [438034.0, 6307130.0]}, crs_of("sweref99tm")) == [
        pytest.approx(13.9825522, abs=1e-7), pytest.approx(56.9037244, abs=1e-7)]
    assert place_location({"type": "Point", "crs": 4326, "coordinates": [14.8, 56.88]}, "EPSG:3006") == [14.8, 56.88]


@pytest.mark.parametrize(("geometry", "says"), [
    ({"type": "Polygon", "coordinates": [[*SQUARE[:-1], [14.81, 56.88]]]}, "not closed"),
    ({"type": "Polygon", "coordinates": [SQUARE[:3]]}, "at least four positions"),
    ({"type": "Polygon", "coordinates": [[[56.87, 14.80], [56.87, 14.82], [56.89, 14.82], [56.87, 14.80]]]},
     "outside Sweden"),
    ({"type": "Polygon", "coordinates": [[[200, 56], [201, 56], [201, 57], [200, 56]]]}, "outside WGS 84"),
    ({"type": "Polygon", "crs": "EPSG:3006", "coordinates": [SQUARE]}, "not a SWEREF 99 TM position"),
    ({"type": "Polygon", "crs": "EPSG:3857", "coordinates": [SQUARE]}, "unknown coordinate system"),
    ({"type": "Point", "coordinates": [14.8, 56.88]}, "Polygon or a MultiPolygon"),
    ({"type": "Polygon", "coordinates": [[["a", 1], [2, 3], [4, 5], ["a", 1]]]}, "two numbers"),
    ({"type": "Polygon", "coordinates": []}, "list of rings"),
    ({"type": "Polygon", "coordinates": [SQUARE], "properties": {}}, "unknown keys"),
    ("POLYGON((14 56))", "GeoJSON object"),
])
def test_bad_geometry_is_refused_in_both_languages(geometry: object, says: str) -> None:
    with pytest.raises(GeometryError) as exc:
        area_geometry(geometry)
    assert says in exc.value.en and exc.value.sv and exc.value.sv != exc.value.en


def test_bad_locations_are_refused() -> None:
    for bad in ({"type": "Point", "coordinates": [56.88, 14.8]}, {"type": "Polygon", "coordinates": [SQUARE]},
                {"type": "Point", "coordinates": [14.8]}, {"type": "Point", "coordinates": [14.8, float("nan")]}):
        with pytest.raises(GeometryError):
            place_location(bad)
