"""Coordinates of areas and places: GeoJSON geometry in WGS 84 or SWEREF 99 TM, checked and turned into WGS 84.

An organisation file may give an area's ``geometry`` (a GeoJSON Polygon or MultiPolygon) and a place's
``location`` (a GeoJSON Point) in WGS 84 (EPSG:4326, longitude/latitude) or SWEREF 99 TM (EPSG:3006, the
Swedish national grid, easting/northing). Every service and the web app see WGS 84 only: SWEREF 99 TM is
converted when the file is applied, with Lantmäteriet's Gauss–Krüger formulas (exact to well under a
millimetre inside Sweden; tests compare with PROJ's EPSG:3006 → EPSG:4326).
"""

from __future__ import annotations

import math
from typing import Any, Literal

Crs = Literal["EPSG:4326", "EPSG:3006"]
CRS_NAMES: dict[str, Crs] = {"epsg:4326": "EPSG:4326", "wgs84": "EPSG:4326", "wgs 84": "EPSG:4326",
                             "epsg:3006": "EPSG:3006", "sweref99tm": "EPSG:3006", "sweref 99 tm": "EPSG:3006"}
"""What a ``crs:`` key may say (case-insensitive) and the system it names."""

SWEDEN_LON = (10.0, 24.5)
SWEDEN_LAT = (55.0, 69.5)
"""Sweden's bounding box in WGS 84 (a sanity check: coordinates outside it are a mistake, e.g. swapped axes)."""
SWEREF_EASTING = (150_000.0, 1_000_000.0)
SWEREF_NORTHING = (6_000_000.0, 7_800_000.0)
"""The range of SWEREF 99 TM coordinates over Sweden and its sea."""

MAX_POSITIONS = 20_000
"""The most positions one area's geometry may hold (a map of a residential area needs far fewer)."""

# GRS 80 with SWEREF 99 TM's projection: central meridian 15°, scale 0.9996, false easting 500 000 m
_A = 6378137.0
_F = 1 / 298.257222101
_LON0 = math.radians(15.0)
_K0 = 0.9996
_FE = 500_000.0
_E2 = _F * (2 - _F)
_N = _F / (2 - _F)
_A_ROOF = _A / (1 + _N) * (1 + _N ** 2 / 4 + _N ** 4 / 64)
_DELTA = (_N / 2 - 2 * _N ** 2 / 3 + 37 * _N ** 3 / 96 - _N ** 4 / 360,
          _N ** 2 / 48 + _N ** 3 / 15 - 437 * _N ** 4 / 1440,
          17 * _N ** 3 / 480 - 37 * _N ** 4 / 840,
          4397 * _N ** 4 / 161280)
_ASTAR = _E2 + _E2 ** 2 + _E2 ** 3 + _E2 ** 4
_BSTAR = -(7 * _E2 ** 2 + 17 * _E2 ** 3 + 30 * _E2 ** 4) / 6
_CSTAR = (224 * _E2 ** 3 + 889 * _E2 ** 4) / 120
_DSTAR = -(4279 * _E2 ** 4) / 1260


def sweref99tm_to_wgs84(easting: float, northing: float) -> tuple[float, float]:
    """(longitude, latitude) in degrees of a SWEREF 99 TM position (Lantmäteriet, "Gauss Conformal
    Projection (Transverse Mercator), Krüger's formulas", grid to geodetic)."""
    xi = northing / (_K0 * _A_ROOF)
    eta = (easting - _FE) / (_K0 * _A_ROOF)
    xi_p, eta_p = xi, eta
    for j, d in enumerate(_DELTA, start=1):
        xi_p -= d * math.sin(2 * j * xi) * math.cosh(2 * j * eta)
        eta_p -= d * math.cos(2 * j * xi) * math.sinh(2 * j * eta)
    phi_star = math.asin(math.sin(xi_p) / math.cosh(eta_p))
    d_lambda = math.atan(math.sinh(eta_p) / math.cos(xi_p))
    s = math.sin(phi_star)
    lat = phi_star + s * math.cos(phi_star) * (_ASTAR + _BSTAR * s ** 2 + _CSTAR * s ** 4 + _DSTAR * s ** 6)
    return math.degrees(_LON0 + d_lambda), math.degrees(lat)


class GeometryError(ValueError):
    """A geometry that cannot be used; ``sv`` and ``en`` say why."""

    def __init__(self, sv: str, en: str) -> None:
        super().__init__(f"{sv} / {en}")
        self.sv, self.en = sv, en


def crs_of(value: Any, default: Crs = "EPSG:4326") -> Crs:
    """The system a ``crs:`` key names (None: ``default``)."""
    if value is None:
        return default
    if isinstance(value, int) and value in (4326, 3006):
        return "EPSG:4326" if value == 4326 else "EPSG:3006"
    if isinstance(value, str) and value.strip().lower() in CRS_NAMES:
        return CRS_NAMES[value.strip().lower()]
    raise GeometryError(f"okänt koordinatsystem {value!r} (EPSG:4326 eller EPSG:3006)",
                        f"unknown coordinate system {value!r} (EPSG:4326 or EPSG:3006)")


def _position(p: Any, crs: Crs) -> tuple[float, float]:
    """One position in WGS 84, checked: two numbers (a third, a height, is dropped) within the CRS's range."""
    if (not isinstance(p, list | tuple) or len(p) not in (2, 3)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in p)):
        raise GeometryError(f"en position är två tal, fick {str(p)[:60]}",
                            f"a position is two numbers, got {str(p)[:60]}")
    x, y = float(p[0]), float(p[1])
    if crs == "EPSG:3006":
        if not (SWEREF_EASTING[0] <= x <= SWEREF_EASTING[1] and SWEREF_NORTHING[0] <= y <= SWEREF_NORTHING[1]):
            raise GeometryError(
                f"[{x:g}, {y:g}] är inte en SWEREF 99 TM-position i Sverige ([östlig, nordlig], t.ex. "
                f"[500000, 6300000])",
                f"[{x:g}, {y:g}] is not a SWEREF 99 TM position in Sweden ([easting, northing], e.g. "
                f"[500000, 6300000])")
        return sweref99tm_to_wgs84(x, y)
    if not (-180 <= x <= 180 and -90 <= y <= 90):
        raise GeometryError(f"[{x:g}, {y:g}] ligger utanför WGS 84 ([longitud, latitud])",
                            f"[{x:g}, {y:g}] is outside WGS 84 ([longitude, latitude])")
    if not (SWEDEN_LON[0] <= x <= SWEDEN_LON[1] and SWEDEN_LAT[0] <= y <= SWEDEN_LAT[1]):
        raise GeometryError(f"[{x:g}, {y:g}] ligger utanför Sverige (är longitud och latitud förväxlade?)",
                            f"[{x:g}, {y:g}] is outside Sweden (are longitude and latitude swapped?)")
    return x, y


def _rounded(lon_lat: tuple[float, float]) -> list[float]:
    # 7 decimals: about a centimetre, and the same numbers back as were written in WGS 84
    return [round(lon_lat[0], 7), round(lon_lat[1], 7)]


def _ring(ring: Any, crs: Crs) -> list[list[float]]:
    if not isinstance(ring, list) or len(ring) < 4:
        raise GeometryError("en ring behöver minst fyra positioner (den första upprepad sist)",
                            "a ring needs at least four positions (the first repeated last)")
    out = [_rounded(_position(p, crs)) for p in ring]
    if list(ring[0])[:2] != list(ring[-1])[:2]:
        raise GeometryError("ringen är inte sluten: den sista positionen måste vara densamma som den första",
                            "the ring is not closed: its last position must be the same as its first")
    return out


def _polygon(rings: Any, crs: Crs) -> list[list[list[float]]]:
    if not isinstance(rings, list) or not rings:
        raise GeometryError("en polygon är en lista av ringar (den yttre först)",
                            "a polygon is a list of rings (the outer one first)")
    return [_ring(r, crs) for r in rings]


def _count(coords: Any) -> int:
    if isinstance(coords, list) and coords and isinstance(coords[0], list):
        return sum(_count(c) for c in coords)
    return 1


def _known_keys(obj: dict[str, Any], what: str) -> None:
    extra = ", ".join(sorted(str(k) for k in set(obj) - {"type", "coordinates", "crs"}))
    if extra:
        raise GeometryError(f"okända nycklar i {what}: {extra}", f"unknown keys in {what}: {extra}")


def area_geometry(geometry: Any, default_crs: Crs = "EPSG:4326") -> dict[str, Any]:
    """An area's geometry as WGS 84 GeoJSON (``{"type", "coordinates"}``), or GeometryError."""
    if not isinstance(geometry, dict):
        raise GeometryError("geometry är ett GeoJSON-objekt (Polygon eller MultiPolygon)",
                            "geometry is a GeoJSON object (Polygon or MultiPolygon)")
    _known_keys(geometry, "geometry")
    crs = crs_of(geometry.get("crs"), default_crs)
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if _count(coords) > MAX_POSITIONS:
        raise GeometryError(f"för många positioner (högst {MAX_POSITIONS})",
                            f"too many positions (at most {MAX_POSITIONS})")
    if kind == "Polygon":
        return {"type": "Polygon", "coordinates": _polygon(coords, crs)}
    if kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise GeometryError("en MultiPolygon är en lista av polygoner", "a MultiPolygon is a list of polygons")
        return {"type": "MultiPolygon", "coordinates": [_polygon(p, crs) for p in coords]}
    raise GeometryError(f"ett områdes geometry är Polygon eller MultiPolygon, inte {str(kind)[:40]!r}",
                        f"an area's geometry is a Polygon or a MultiPolygon, not {str(kind)[:40]!r}")


def place_location(location: Any, default_crs: Crs = "EPSG:4326") -> list[float]:
    """A place's location (a GeoJSON Point) as WGS 84 [longitude, latitude], or GeometryError."""
    if not isinstance(location, dict) or location.get("type") != "Point":
        raise GeometryError("location är en GeoJSON Point ({type: Point, coordinates: [x, y]})",
                            "location is a GeoJSON Point ({type: Point, coordinates: [x, y]})")
    _known_keys(location, "location")
    return _rounded(_position(location.get("coordinates"), crs_of(location.get("crs"), default_crs)))

