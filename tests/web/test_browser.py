"""The web front end in a real browser (headless Chromium from Debian, driven by Playwright):
a reporter files a report offline and it arrives once when back online; a key function sees it
in the dashboard and publishes."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support import System, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

# screenshots go to the README's folder only when asked (EST_SAVE_SCREENSHOTS=1), else to a temp dir
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

pytestmark = pytest.mark.e2e


def _picture(system: System, token: str, area: str, period: str) -> dict:  # type: ignore[type-arg]
    r = httpx.get(f"{system.urls['aggregator']}/v1/areas/{area}/pictures/{period}",
                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return r.json()  # type: ignore[no-any-return]


def test_offline_report_arrives_once_and_key_function_publishes_it(system: System, sign_in: Callable[..., Page],
                                                                    tmp_path: Path) -> None:
    shots = SHOTS if os.environ.get("EST_SAVE_SCREENSHOTS") else tmp_path

    me = httpx.get(f"{system.urls['intake']}/v1/me", headers={"Authorization": "Bearer t-anna"}).json()
    period = next(a["current_period"] for a in me["areas"] if a["id"] == "araby")
    # service workers are blocked here: Chromium's offline emulation does not cover requests that
    # pass a service worker, so the test would not be offline (the real device is)
    page = sign_in("t-anna", "#form-title", viewport={"width": 420, "height": 900}, service_workers="block")
    ctx = page.context
    assert "Araby" in page.inner_text("#form-title")

    # the network goes away; the reporter fills in the checklist and sends
    ctx.set_offline(True)
    page.check("input[name=i-klotter][value='2']")
    page.click("fieldset.item:has(legend:text('Skadegörelse')) button[aria-label='+1']")
    page.click("fieldset.item:has(legend:text('Skadegörelse')) button[aria-label='+1']")
    page.check("fieldset.item:has(legend:text('Klotter')) .chips input >> nth=0")
    page.click("#submit")
    queued = page.wait_for_selector("#outbox li[data-state=queued]")
    report_id = queued.get_attribute("data-report")
    assert report_id
    assert _picture(system, "t-lena", "araby", period)["reports"] == 0  # nothing reached the server
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "reporter-form.png"), full_page=False)

    # the network comes back: the report is sent once, with the id made with the draft
    ctx.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    try:
        page.wait_for_selector(f"#outbox li[data-report='{report_id}'][data-state=accepted]", timeout=20000)
    except Exception:
        raise AssertionError(page.evaluate("localStorage.getItem('est.outbox')")) from None
    page.reload()
    page.wait_for_selector("#form-title")
    page.evaluate("window.dispatchEvent(new Event('online'))")
    pic = wait_for(lambda: (lambda p: p if p["reports"] >= 1 else None)(
        _picture(system, "t-lena", "araby", period)))
    assert pic["reports"] == 1
    assert pic["items"]["klotter"]["value"] == 2
    assert pic["items"]["skadegorelse"]["value"] == 2
    page.wait_for_timeout(1000)
    assert _picture(system, "t-lena", "araby", period)["reports"] == 1  # still once

    # a key function sees it in the dashboard and publishes with a comment
    kf = sign_in("t-lena", "#heatmap", viewport={"width": 1280, "height": 1000})
    kf.click("text=Nästa →")
    kf.wait_for_selector(f"#dash-title:has-text('{period}')")
    kf.wait_for_selector("tr[data-area=araby] td.cell.lvl-2")
    kf.click("tr[data-area=araby] th button")
    kf.wait_for_selector("#first-analysis")
    kf.fill("#comment", "Klottret vid centrum följs upp med fastighetsägaren.")
    kf.click("#publish")
    kf.click("#confirm-publish")  # the week is still before its deadline: the dialog asks first
    kf.wait_for_selector("text=Lägesbilden är publicerad.")
    published = wait_for(lambda: (lambda p: p if p["status"] == "published" else None)(
        _picture(system, "t-lena", "araby", period)))
    assert published["version"] == 1
    kf.wait_for_timeout(500)
    kf.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    assert (shots / "dashboard.png").stat().st_size > 20_000  # a real page, not a blank one


def test_the_strategic_report_is_saved_as_a_file_never_opened_with_the_apps_origin(
        system: System, sign_in: Callable[..., Page]) -> None:
    r = httpx.post(f"{system.urls['analysis']}/v1/analyses", json={"municipality_id": "vaxjo", "period": "2026-T3"},
                   headers={"Authorization": "Bearer t-lena"}, timeout=30)
    assert r.status_code == 201, r.text
    analysis_id = r.json()["id"]

    page = sign_in("t-lena", "#report-html", viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    with page.expect_download() as download:
        page.click("#report-html")
    saved = Path(download.value.path()).read_text(encoding="utf-8")
    assert "<html" in saved and "Växjö" in saved, "the file is the report"
    assert download.value.suggested_filename == f"analys-{analysis_id.replace(':', '-')}-sv.html"
    assert page.context.pages == [page], "no page was opened for it"
    assert page.evaluate("location.pathname") == "/app/"

    # even opened by address with a token (say, by a proxy that adds one), the report is only a download
    tab = page.context.browser.new_context(  # type: ignore[union-attr]
        accept_downloads=True, extra_http_headers={"Authorization": "Bearer t-lena"}).new_page()
    url = f"{system.urls['web']}/api/analysis/v1/analyses/{analysis_id}/report.html"
    with tab.expect_download() as direct:
        try:
            tab.goto(url)
        except Exception as exc:  # Chromium aborts the navigation and downloads instead
            assert "ERR_ABORTED" in str(exc) or "Download is starting" in str(exc), exc
    assert "<html" in Path(direct.value.path()).read_text(encoding="utf-8")
    assert tab.url in ("about:blank", ""), "the report was never shown as a page"
