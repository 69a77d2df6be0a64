"""The key function sees every published version of an area's picture with what it changed, in words and
names (never the aggregator's item codes), and the alerts that have ended beside the open ones."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import System, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 1000}


def _post(system: System, service: str, path: str, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{system.urls[service]}{path}", json=body, headers={"Authorization": f"Bearer {token}"},
                      timeout=10)


def test_the_area_view_lists_each_version_with_its_changes_in_words(
        system: System, sign_in: Callable[..., Page]) -> None:
    me = httpx.get(f"{system.urls['intake']}/v1/me", headers={"Authorization": "Bearer t-anna"}, timeout=10).json()
    period = next(a["current_period"] for a in me["areas"] if a["id"] == "araby")
    first = {"report_id": str(uuid.uuid4()), "area_id": "araby", "period": period,
             "answers": {"klotter": {"value": 1}}}
    assert _post(system, "intake", "/v1/reports", "t-anna", first).status_code < 300
    pic_url = f"{system.urls['aggregator']}/v1/areas/araby/pictures/{period}"

    def picture() -> dict[str, Any]:
        return httpx.get(pic_url, headers={"Authorization": "Bearer t-lena"}, timeout=10).json()  # type: ignore[no-any-return]

    wait_for(lambda: picture().get("reports") == 1)
    r = _post(system, "aggregator", f"/v1/areas/araby/pictures/{period}/publish", "t-lena",
              {"comment": "Första bilden.", "confirm_incomplete": True})
    assert r.status_code == 200, r.text
    # a correction after publication: the picture goes out again as version 2, with what changed
    fix = {"report_id": str(uuid.uuid4()), "area_id": "araby", "period": period, "supersedes": first["report_id"],
           "answers": {"klotter": {"value": 3}}}
    assert _post(system, "intake", "/v1/reports", "t-anna", fix).status_code < 300
    v2 = wait_for(lambda: (lambda p: p if p.get("version") == 2 else None)(picture()), timeout=60)
    assert v2["changes"], v2

    page = sign_in("t-lena", "#heatmap", viewport=DESKTOP)
    page.click("text=Nästa →")
    page.click("tr[data-area=araby] th button")
    page.wait_for_selector("#versions li[data-version='2'] ul.changes li")
    page.wait_for_selector("#versions li[data-version='1']:has-text('publicerad')")  # the list renders in parts
    text = page.inner_text("#versions")
    assert "Version 2 · publicerad" in text and "rättelse" in text and "Version 1 · publicerad" in text, text
    assert "Klotter: 1 → 3" in text and "Klotter, flagga: ingen → Högt läge" in text, text
    assert "klotter" not in text and "completeness." not in text and " flag:" not in text, text
    page.click("#versions li[data-version='1'] summary")
    page.wait_for_selector("#versions li[data-version='1'] details[open]")
    assert "Första versionen." in page.inner_text("#versions li[data-version='1']")

    page.click("header.top nav button:has-text('English')")
    page.wait_for_selector("#versions li[data-version='2'] summary:has-text('published')")
    assert "Graffiti: 1 → 3" in page.inner_text("#versions"), page.inner_text("#versions")
