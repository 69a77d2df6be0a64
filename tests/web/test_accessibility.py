"""Accessibility of the web front end (aim: WCAG 2.1 AA), checked with axe-core in headless Chromium:
the reporter's checklist form and the key function's dashboard, each in a state that shows its
conditional parts (answered items with places and notes, messages, badges, the picture grid with
levels, an area's detail), the steering page with its forms and an opened measure; and the reporter form
used with the keyboard alone."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support import System
from tests.web.axe import assert_no_axe_violations, axe_script

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

PHONE = {"width": 420, "height": 900}
DESKTOP = {"width": 1280, "height": 1000}


def test_reporter_form_has_no_wcag_21_aa_violations(system: System, sign_in: Callable[..., Page]) -> None:
    page = sign_in("t-anna", "#form-title", viewport=PHONE)
    # one report sent (a message and a badge in "my reports"), then a new answer that shows places and a note
    page.check("input[name=i-klotter][value='2']")
    page.click("#submit")
    page.wait_for_selector("#outbox li[data-state=accepted]")
    page.check("input[name=i-klotter][value='3']")
    page.wait_for_selector("fieldset.item.answered .chips input")
    assert_no_axe_violations(page)


def test_dashboard_has_no_wcag_21_aa_violations(system: System, sign_in: Callable[..., Page]) -> None:
    me = httpx.get(f"{system.urls['intake']}/v1/me", headers={"Authorization": "Bearer t-anna"}, timeout=10).json()
    period = next(a["current_period"] for a in me["areas"] if a["id"] == "araby")
    report = {"report_id": str(uuid.uuid4()), "area_id": "araby", "period": period,
              "answers": {"klotter": {"value": 2, "places": ["centrum"]}, "skadegorelse": {"value": 3}}}
    r = httpx.post(f"{system.urls['intake']}/v1/reports", json=report,
                   headers={"Authorization": "Bearer t-anna"}, timeout=10)
    assert r.status_code < 300, r.text

    page = sign_in("t-lena", "#heatmap", viewport=DESKTOP)
    page.click("text=Nästa →")  # the current period, where the report is
    page.wait_for_selector("tr[data-area=araby] td.cell.lvl-2")
    page.click("tr[data-area=araby] th button")
    page.wait_for_selector("#first-analysis")
    assert_no_axe_violations(page)


def test_steering_page_has_no_wcag_21_aa_violations(system: System, sign_in: Callable[..., Page]) -> None:
    admin = {"Authorization": "Bearer t-admin"}
    r = httpx.post(f"{system.urls['analysis']}/v1/analyses", json={"municipality_id": "vaxjo", "period": "2026-T3"},
                   headers=admin, timeout=30)
    assert r.status_code == 201, r.text
    measure = {"title": "Bättre belysning vid centrum", "area_id": "araby", "items": ["klotter"],
               "responsible_actor": "vaxjohem", "decided_by": "Styrgruppen", "start": "2026-10-05",
               "resources": {"hours": 40}}
    r = httpx.post(f"{system.urls['analysis']}/v1/measures", json=measure, headers=admin, timeout=10)
    assert r.status_code == 201, r.text
    r = httpx.patch(f"{system.urls['analysis']}/v1/measures/{r.json()['id']}",
                    json={"status": "active", "reason": "Uppföljning"}, headers=admin, timeout=10)
    assert r.status_code == 200, r.text

    page = sign_in("t-admin", "#heatmap", viewport=DESKTOP)
    page.click("nav >> text=Styrning")
    page.wait_for_selector("#analysis-title")
    page.click("#measures button.steering-toggle")
    page.wait_for_selector("#history > li >> nth=1")
    page.wait_for_selector("#effect figure")
    assert page.query_selector("#measure-form") and page.query_selector("#redecide-form")
    assert_no_axe_violations(page)


def test_reporter_form_can_be_sent_with_the_keyboard(system: System, sign_in: Callable[..., Page]) -> None:
    page = sign_in("t-anna", "#form-title", viewport=PHONE)
    page.reload()  # start from the top of a freshly loaded page, nothing focused
    page.wait_for_selector("#form-title")
    page.evaluate(axe_script())  # for axe.commons.text.accessibleText: the accessible name as axe sees it
    path: list[str] = []
    for _ in range(200):
        page.keyboard.press("Tab")
        el = page.evaluate("""() => { const e = document.activeElement; axe.setup();
            try { return { tag: e.tagName.toLowerCase(), id: e.id, type: e.type || "",
                           name: axe.commons.text.accessibleText(e).trim() }; } finally { axe.teardown(); } }""")
        path.append(f"{el['tag']}#{el['id']}[{el['type']}] {el['name']!r}")
        if el["tag"] in {"input", "select", "textarea", "button", "a"}:
            assert el["name"], "a focusable control without an accessible name; Tab path:\n" + "\n".join(path)
        if el["id"] == "submit":
            break
    else:
        pytest.fail("Tab from the top never reached the submit button; Tab path:\n" + "\n".join(path))
    assert path[0].startswith("a#") and "Hoppa till innehållet" in path[0], "the skip link comes first"
    page.keyboard.press("Enter")  # nothing answered: the form says so, as an alert
    assert "Fyll i minst en punkt" in page.locator("#main form [role=alert]").inner_text()


def test_admin_pages_have_no_wcag_21_aa_violations(system: System, sign_in: Callable[..., Page]) -> None:
    page = sign_in("t-admin", "a[href='#admin']", viewport=DESKTOP)
    page.click("a[href='#admin']")
    page.wait_for_selector("#np-araby")
    page.fill("#np-araby", "Stationen")  # a change waiting for confirmation, its change list shown
    page.click("[data-area=araby] button[type=submit]")
    page.wait_for_selector("#review")
    assert_no_axe_violations(page)
    page.click("#apply")
    page.wait_for_selector("text=Version 2 är sparad.")
    page.click("#tab-history")
    page.click("button[aria-label='Visa skillnad mot föregående: Version 2']")
    page.wait_for_selector("li[data-version='2'] .diff")
    assert_no_axe_violations(page)
    page.click("#tab-tokens")
    page.fill("#tok-name", "Telefonen")
    page.click("#issue")
    page.wait_for_selector("#new-token")
    assert_no_axe_violations(page)
