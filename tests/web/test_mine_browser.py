"""A reporter's own reports come from the server (not the device), and a correction and a withdrawal made in
the app reach the key function's area view: the whole system, a real Chromium."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import System, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SKADA = "fieldset.item:has(legend:text('Skadegörelse')) button[aria-label='+1']"


def _picture(system: System, area: str, period: str) -> dict[str, Any]:
    r = httpx.get(f"{system.urls['aggregator']}/v1/areas/{area}/pictures/{period}",
                  headers={"Authorization": "Bearer t-lena"}, timeout=10)
    out: dict[str, Any] = r.json()
    return out


def _send(page: Page, clicks: int) -> str:
    for _ in range(clicks):
        page.click(SKADA)
    before = {e.get_attribute("data-report") for e in page.query_selector_all("#outbox li")}
    page.click("#submit")

    def sent() -> str | None:
        after = {e.get_attribute("data-report") for e in page.query_selector_all("#outbox li[data-state=accepted]")}
        new = [r for r in after - before if r]
        return new[0] if len(new) == 1 else None

    found = wait_for(sent)
    assert isinstance(found, str)
    return found


def test_own_reports_from_the_server_corrected_and_withdrawn(system: System, sign_in: Callable[..., Page]) -> None:
    me = httpx.get(f"{system.urls['intake']}/v1/me", headers={"Authorization": "Bearer t-anna"}).json()
    period = next(a["current_period"] for a in me["areas"] if a["id"] == "araby")
    page = sign_in("t-anna", "#form-title", viewport={"width": 420, "height": 900}, service_workers="block")
    page.on("dialog", lambda d: d.accept())
    first = _send(page, 3)
    second = _send(page, 1)
    wait_for(lambda: _picture(system, "araby", period)["reports"] == 2 or None)

    # the device forgets what it sent: the list comes from the intake
    page.evaluate("localStorage.removeItem('est.outbox')")
    page.reload()
    row = page.wait_for_selector(f"#outbox li[data-source=server][data-report='{first}']")
    assert "Araby" in row.inner_text() and "Mottagen" in row.inner_text()
    assert page.query_selector(f"#outbox li[data-source=server][data-report='{second}'][data-state=accepted]")

    # "Rätta" opens the form with the answers: one more, and it replaces the first
    page.click(f"#outbox li[data-report='{first}'] button.correct")
    page.click(SKADA)
    page.click("#submit")
    page.wait_for_selector(f"#outbox li[data-report='{first}'][data-state=corrected]")
    assert "Rättad" in page.inner_text(f"#outbox li[data-report='{first}']")

    # "Ta tillbaka" (after the confirmation) takes the second out
    page.click(f"#outbox li[data-report='{second}'] button.withdraw")
    page.wait_for_selector(f"#outbox li[data-report='{second}'][data-state=withdrawn]")
    assert "Tillbakatagen" in page.inner_text(f"#outbox li[data-report='{second}']")
    assert not page.query_selector(f"#outbox li[data-report='{second}'] button.withdraw")

    pic = wait_for(lambda: (lambda p: p if p["reports"] == 1 and p["items"]["skadegorelse"]["value"] == 4
                            else None)(_picture(system, "araby", period)))
    assert pic["reports"] == 1

    # the key function's area view shows what is left: one report, its four acts of vandalism
    kf = sign_in("t-lena", "#heatmap", viewport={"width": 1280, "height": 1000})
    kf.click("text=Nästa →")
    kf.wait_for_selector(f"#dash-title:has-text('{period}')")
    kf.click("tr[data-area=araby] th button")
    kf.wait_for_selector("#area-counts:has-text('1 rapport')")
    assert "1 rapport" in kf.inner_text("#area-counts")
