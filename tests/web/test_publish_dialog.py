"""The key function's publish flow in a real browser: a picture before its deadline and below the completeness
threshold opens a dialog that shows what is missing; cancelling sends nothing, confirming publishes, and
publishing again with nothing new says so and sends nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import System, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e


def _picture(system: System, period: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{system.urls['aggregator']}/v1/areas/araby/pictures/{period}", params=params,
                  headers={"Authorization": "Bearer t-lena"}, timeout=10)
    return r.json()  # type: ignore[no-any-return]


def test_an_incomplete_picture_is_published_only_after_the_dialog_is_confirmed(
        system: System, sign_in: Callable[..., Page]) -> None:
    me = httpx.get(f"{system.urls['intake']}/v1/me", headers={"Authorization": "Bearer t-anna"}, timeout=10).json()
    period = next(a["current_period"] for a in me["areas"] if a["id"] == "araby")

    kf = sign_in("t-lena", "#heatmap", viewport={"width": 1280, "height": 1000})
    kf.click("text=Nästa →")
    kf.wait_for_selector(f"#dash-title:has-text('{period}')")
    kf.click("tr[data-area=araby] th button")
    kf.wait_for_selector("#first-analysis")
    kf.fill("#comment", "Veckan är inte slut; vi skickar ändå en första bild.")
    kf.click("#publish")

    # the current week, days before its deadline, with none of its one expected report in
    dialog = kf.wait_for_selector("dialog#publish-confirm[open]")
    assert "Lägesbilden är inte komplett" in dialog.inner_text()
    assert kf.inner_text("#confirm-received").startswith(
        "0 av 1 förväntade rapportör har rapporterat (0 %, gränsen är 50 %)")
    assert kf.inner_text("#confirm-left").startswith("Tid kvar till deadline: ")
    assert kf.inner_text("#confirm-missing") == "Anna Andersson (Växjöhem AB)"

    kf.click("#cancel-publish")
    kf.wait_for_selector("dialog#publish-confirm", state="detached")
    kf.wait_for_timeout(500)
    assert _picture(system, period)["status"] == "open"  # cancelled: nothing published

    kf.click("#publish")
    kf.wait_for_selector("dialog#publish-confirm[open]")
    kf.click("#confirm-publish")
    kf.wait_for_selector("text=Lägesbilden är publicerad.")
    pic = wait_for(lambda: (lambda p: p if p["status"] == "published" else None)(_picture(system, period)))
    assert pic["version"] == 1 and pic["completeness"]["complete"] is False
    assert [c["text"] for c in pic["comments"]] == ["Veckan är inte slut; vi skickar ändå en första bild."]

    # again, with nothing new: the same version, nothing sent, and the page says so
    kf.click("#publish")
    kf.wait_for_selector("text=Inget nytt sedan version 1: ingenting skickades.")
    assert kf.query_selector("dialog#publish-confirm") is None  # nothing to send, so nothing to confirm
    assert _picture(system, period)["version"] == 1
