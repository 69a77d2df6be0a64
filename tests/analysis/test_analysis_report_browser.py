"""The readable report rendered by a real browser (headless Chromium): DOM, screenshot and PDF.

Chromium cannot send a bearer token from the command line, so the test fetches ``report.html`` over HTTP
with the token and lets the browser render that very document from a file (it is self-contained: inline
SVG and CSS, no scripts, no external assets). Set ``EST_SAVE_SCREENSHOTS=1`` to refresh
``docs/screenshots/analysis-report.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from est_analysis.strategic import db
from est_shared.bus import publish_event
from est_shared.subjects import picture_published

from tests.analysis.browser import colour_stats, dump_dom, require_chromium, screenshot
from tests.analysis.support import (
    auth,
    compile_after_t3,
    org,
    picture_event,
    realistic_history,
    realistic_measures,
    realistic_org,
    unique,
)
from tests.support import eventually

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


async def _realistic_analysis(c: httpx.AsyncClient, app: Any, js: Any, m: str) -> dict[str, Any]:
    """Feed the realistic municipality's tertial through NATS, decide its measures, compile 2026-T3."""
    await app.state.runtime.apply_org(realistic_org(m))
    compile_after_t3(app)
    for measure in realistic_measures(m):
        r = await c.post("/v1/measures", json=measure, headers=auth("styr", m))
        assert r.status_code == 201, r.text
    events = realistic_history(m)
    for ev in events:
        await publish_event(js, picture_published(m, ev.data.picture.area_id), ev)

    async def consumed() -> bool:
        async with app.state.analysis.sessions() as s:
            n = 0
            for area in realistic_org(m).areas:
                n += len(await db.area_pictures(s, area))
            return n == len(events)

    await eventually(consumed, timeout=30)
    r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-T3"}, headers=auth("styr", m))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_report_renders_in_headless_chromium_with_charts(service: Any, nats_url: str, tmp_path: Path) -> None:
    require_chromium()
    m = unique("vaxjo")
    nc = await nats.connect(nats_url)
    try:
        async with service(m) as (base, app), httpx.AsyncClient(base_url=base, timeout=30) as c:
            body = await _realistic_analysis(c, app, nc.jetstream(), m)
            r = await c.get(f"/v1/analyses/{body['id']}/report.html", headers=auth("styr", m))
            assert r.status_code == 200
            page = tmp_path / "report.html"
            page.write_text(r.text, encoding="utf-8")

            dom = dump_dom(page.as_uri())
            assert "<h1>Växjö kommun — 2026-T3</h1>" in dom
            # one ranking chart + per area: trend lines, heat map, completeness columns
            assert len(re.findall(r"<svg\b", dom)) >= 1 + 3 * len(body["areas"])
            assert dom.count("<polyline") >= 3 and dom.count("<rect") > 300
            for name in ("Araby", "Dalbo", "Teleborg", "Öster", "Centrum", "Sigfridslund"):
                assert f"<h2>{name}</h2>" in dom
            assert "Klottersanering inom 24 timmar" in dom and "Städinsats och fler papperskorgar" in dom
            assert "minskade" in dom and "torsdag" in dom

            png = screenshot(page.as_uri(), tmp_path / "report.png")
            stats = colour_stats(png)
            assert (stats["width"], stats["height"]) == (1280, 2400)
            assert stats["colours"] > 300, stats  # text antialiasing, charts, flag colours: not a blank page
            assert stats["painted"] > 0.2, stats  # much of the page differs from the background
            assert stats["chroma"] > 0.02, stats  # the header band and the chart colours are there
            if os.environ.get("EST_SAVE_SCREENSHOTS"):
                DOCS.mkdir(parents=True, exist_ok=True)
                shutil.copy(tmp_path / "report.png", DOCS / "analysis-report.png")

            pdf = await c.get(f"/v1/analyses/{body['id']}/report.pdf", headers=auth("styr", m))
            assert pdf.status_code == 200, pdf.text
            assert pdf.headers["content-type"] == "application/pdf"
            assert pdf.content.startswith(b"%PDF") and len(pdf.content) > 20_000
            assert len(re.findall(rb"/Type\s*/Page[^s]", pdf.content)) >= 3  # several A4 pages
            assert f'analys-{m}-2026-T3-r1.pdf' in pdf.headers["content-disposition"]
            assert (await c.get(f"/v1/analyses/{body['id']}/report.pdf")).status_code == 401
            assert (await c.get(f"/v1/analyses/{body['id']}/report.pdf",
                                headers=auth("rep", m))).status_code == 403
            if os.environ.get("EST_SAVE_SCREENSHOTS"):
                (DOCS / "analysis-report.pdf").write_bytes(pdf.content)
    finally:
        await nc.close()


@pytest.mark.parametrize("browser", ["none", "/nonexistent/chromium"])
async def test_report_pdf_without_a_browser_is_501_problem(service: Any, nats_url: str, browser: str) -> None:
    m, a = unique("m"), unique("a")
    nc = await nats.connect(nats_url)
    try:
        async with service(m, browser=browser) as (base, app), httpx.AsyncClient(base_url=base, timeout=10) as c:
            await app.state.runtime.apply_org(org(m, [a]))
            await publish_event(nc.jetstream(), picture_published(m, a),
                                picture_event(m, a, "2026-W40", {"klotter": (2, "high")}))
            r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026-Q4"}, headers=auth("kf", m))
            r = await c.get(f"/v1/analyses/{r.json()['id']}/report.pdf", headers=auth("kf", m))
            assert r.status_code == 501
            assert r.headers["content-type"] == "application/problem+json"
            assert "EST_ANALYSIS_BROWSER" in r.json()["detail"] and "webbläsare" in r.json()["detail"]
            assert (await c.get(f"/v1/analyses/{m}:2026-Q4:r9/report.pdf", headers=auth("kf", m))).status_code == 404
    finally:
        await nc.close()


async def test_the_yearly_picture_and_action_plan_renders_with_the_plan_of_the_measures(
        service: Any, nats_url: str, tmp_path: Path) -> None:
    """The yearly lägesbild and åtgärdsplan (period ``2026``) of the realistic municipality, rendered by
    Chromium: its title, and the action plan with a row per measure decided. ``EST_SAVE_SCREENSHOTS=1`` keeps
    the plan's page as ``docs/screenshots/yearly-plan.png``."""
    from playwright.async_api import async_playwright

    chromium = require_chromium()
    m = unique("vaxjo")
    nc = await nats.connect(nats_url)
    try:
        async with service(m) as (base, app), httpx.AsyncClient(base_url=base, timeout=60) as c:
            await _realistic_analysis(c, app, nc.jetstream(), m)
            r = await c.post("/v1/analyses", json={"municipality_id": m, "period": "2026"}, headers=auth("styr", m))
            assert r.status_code == 201, r.text
            body = r.json()
            html = await c.get(f"/v1/analyses/{body['id']}/report.html", headers=auth("styr", m))
            assert html.status_code == 200
            page_file = tmp_path / "yearly.html"
            page_file.write_text(html.text, encoding="utf-8")
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = await browser.new_page(viewport={"width": 1280, "height": 1100})
            await page.goto(page_file.as_uri())
            assert await page.inner_text("h1") == f"{realistic_org(m).municipalities[m].name} — 2026"
            assert "LÄGESBILD OCH ÅTGÄRDSPLAN" in await page.inner_text("body")  # the header band, in capitals
            plan = page.locator("section.plan")
            assert await plan.locator("h2").inner_text() == "Åtgärdsplan"
            rows = await plan.locator("tbody tr").all_inner_texts()
            titles = [measure["title"] for measure in realistic_measures(m)]
            assert len(rows) == len(titles) and all(any(t in row for row in rows) for t in titles), rows
            # a date in the "När" column stays on one line (it broke at its hyphens in a narrow column)
            heights = await plan.locator("tbody td .nobr").evaluate_all(
                "spans => spans.map(s => s.getClientRects().length)")
            assert heights and all(h == 1 for h in heights), heights
            overflow = await plan.evaluate("s => s.querySelector('table').getBoundingClientRect().right"
                                           " - s.getBoundingClientRect().right")
            assert overflow <= 0, f"the plan's table sticks out of its section by {overflow} px"
            await plan.scroll_into_view_if_needed()
            await page.evaluate("document.querySelector('section.plan').scrollIntoView({block: 'start'})")
            shot = tmp_path / "yearly-plan.png"
            await page.screenshot(path=str(shot))
            await browser.close()
        stats = colour_stats(shot.read_bytes())
        assert stats["colours"] > 100 and stats["painted"] > 0.05, stats
        if os.environ.get("EST_SAVE_SCREENSHOTS"):
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, DOCS / "yearly-plan.png")
    finally:
        await nc.close()
