"""The municipality's picture on a map, in a real browser against the demo system: each area drawn from its
outline in the organisation file and coloured by the level the aggregator's picture gives it, with its name;
an area's places with their counts; keyboard use; no WCAG 2.1 AA violation; and no request to any origin but
the app's own (no tile server)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import System
from tests.web.axe import assert_no_axe_violations
from tests.web.conftest import screenshot_dir

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DESKTOP = {"width": 1280, "height": 1000}
LEVELS = ["inget", "enstaka", "återkommande", "omfattande"]


def _get(system: System, service: str, path: str, token: str) -> Any:
    r = httpx.get(f"{system.urls[service]}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def _previous_week(period: str) -> str:
    year, week = period.split("-W")
    y, w, _ = (date.fromisocalendar(int(year), int(week), 1) - timedelta(days=7)).isocalendar()
    return f"{y}-W{w:02d}"


def _item_level(it: dict[str, Any]) -> int:
    """The heatmap's cell level of an item of a picture."""
    if it["answer"] == "level":
        return math.floor(it["value"] + 0.5)
    if it.get("flag") == "high":
        return 3
    if it.get("flag") in ("rising", "new"):
        return 2
    return 1 if it["value"] > 0 else 0


def _area_level(pic: dict[str, Any]) -> int | None:
    if not pic.get("reports"):
        return None
    return max(0, min(3, max((_item_level(it) for it in pic["items"].values()), default=0)))


def _words(level: int | None) -> str:
    return "inga rapporter" if level is None else f"nivå {level} – {LEVELS[level]}"


def test_the_dashboard_map_shows_levels_names_and_places_from_nowhere_else(
        demo_system: System, demo_sign_in: Callable[..., Page], tmp_path: Path) -> None:
    me = _get(demo_system, "intake", "/v1/me", "demo-lena")
    areas = {a["id"]: a for a in me["areas"]}
    assert all(a.get("geometry") for a in areas.values())
    period = _previous_week(me["areas"][0]["current_period"])  # the dashboard opens on the week just closed
    picture = _get(demo_system, "aggregator", f"/v1/municipalities/vaxjo/pictures/{period}", "demo-lena")
    pics = {p["area_id"]: p for p in picture["areas"]}
    expected = {a: _area_level(pics[a]) for a in areas}
    assert any(level is not None and level > 0 for level in expected.values())

    page = demo_sign_in("demo-lena", "#heatmap", viewport=DESKTOP)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.click("#view-map")
    page.wait_for_selector("#map path.area")
    page.reload()  # the whole app loads again with the map chosen: every request it makes is recorded
    reported = next(a for a, level in expected.items() if level is not None)
    page.wait_for_selector(f"#map path.area[data-area={reported}][data-level='{expected[reported]}']")  # loaded

    shown = page.eval_on_selector_all("#map path.area", "ps => ps.map(p => [p.dataset.area, p.dataset.level, "
                                      "p.getAttribute('aria-label'), getComputedStyle(p).fill])")
    assert {a for a, *_ in shown} == set(areas)
    fills = {}
    for area_id, level, name, fill in shown:
        assert level == ("" if expected[area_id] is None else str(expected[area_id]))
        assert name == f"{areas[area_id]['name']}: {_words(expected[area_id])}"
        fills.setdefault(level, set()).add(fill)
    assert all(len(f) == 1 for f in fills.values()) and len({next(iter(f)) for f in fills.values()}) == len(fills)
    labels = page.eval_on_selector_all("#map svg text.area-name", "ts => ts.map(t => t.textContent)")
    assert sorted(labels) == sorted(a["name"] for a in areas.values())
    legend = page.inner_text("#map .map-legend")
    assert all(f"{n} {word}" in legend for n, word in enumerate(LEVELS))
    assert page.query_selector("#map-missing") is None  # every demo area has an outline

    # the area with the most named places, chosen with the keyboard
    def counts(area_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for it in pics[area_id]["items"].values():
            for place, n in (it.get("places") or {}).items():
                out[place] = out.get(place, 0) + n
        return out

    busiest = max(areas, key=lambda a: sum(counts(a).values()))
    assert sum(counts(busiest).values()) > 0
    page.focus(f"#map path.area[data-area={busiest}]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#area-map g.place")
    assert page.inner_text("#area-map-title") == f"Platser i {areas[busiest]['name']}"
    assert page.get_attribute(f"#map path.area[data-area={busiest}]", "aria-pressed") == "true"
    places = page.eval_on_selector_all("#area-map g.place", "gs => gs.map(g => [g.dataset.place, "
                                       "g.querySelector('text').textContent, g.getAttribute('aria-label'), "
                                       "+g.querySelector('circle').getAttribute('r')])")
    assert [p for p, *_ in places] == areas[busiest]["places"]
    want = counts(busiest)
    for place, text, label, _r in places:
        n = want.get(place, 0)
        assert text == f"{place} ({n})"
        assert label == f"{place}: {n} {'omnämnande' if n == 1 else 'omnämnanden'}"
    radius = {p: r for p, _t, _l, r in places}
    most = max(want, key=lambda p: want[p])
    assert all(radius[most] >= r for r in radius.values())
    # the area's picture opens below as from the table
    page.wait_for_selector("#first-analysis")
    assert_no_axe_violations(page)
    page.locator("section.card", has=page.locator("#map")).screenshot(path=str(screenshot_dir(tmp_path) / "map.png"))

    page.click("#view-table")
    page.wait_for_selector("#heatmap")
    assert page.query_selector("#map") is None

    web = urlsplit(demo_system.urls["web"])
    elsewhere = [u for u in requests if urlsplit(u).netloc != web.netloc and not u.startswith(("data:", "blob:"))]
    assert requests and not elsewhere, elsewhere
