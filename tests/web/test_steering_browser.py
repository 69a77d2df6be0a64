"""The steering page in a real browser against the demo system: a styrgrupp member compiles the last
tertial (a busy state while it runs), reads its persistent problems by name with their weeks in words,
decides a measure linked to one of them, re-decides it with a reason, and reads its history and its effect;
a beredningsgrupp member reads the same page without the forms. Everything checked against the API."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from est_shared.periods import Period

from tests.support import System, wait_for
from tests.web.axe import assert_no_axe_violations
from tests.web.conftest import own_demo
from tests.web.test_app_truth import Vocabulary

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DESKTOP = {"width": 1280, "height": 1000}
# screenshots go to the README's folder only when asked (EST_SAVE_SCREENSHOTS=1), else to a temp dir
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MONTHS = ["jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec"]


@pytest.fixture(scope="module")
def demo_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """A demo of the module's own: the steering page lists every measure of the municipality, and one another
    module decided ("Bättre belysning vid torget") holds an item's code word the page must never show."""
    yield from own_demo(tmp_path_factory)


def _get(system: System, service: str, path: str, token: str) -> Any:
    r = httpx.get(f"{system.urls[service]}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    r.raise_for_status()
    return r.json()


def week_words(period: str) -> str:
    """"vecka 20 (11–17 maj 2026)", as the page says a week."""
    year, week = period.split("-W")
    monday = date.fromisocalendar(int(year), int(week), 1)
    sunday = monday + timedelta(days=6)
    if monday.year != sunday.year:
        days = (f"{monday.day} {MONTHS[monday.month - 1]} {monday.year} – "
                f"{sunday.day} {MONTHS[sunday.month - 1]} {sunday.year}")
    elif monday.month == sunday.month:
        days = f"{monday.day}–{sunday.day} {MONTHS[sunday.month - 1]} {sunday.year}"
    else:
        days = f"{monday.day} {MONTHS[monday.month - 1]} – {sunday.day} {MONTHS[sunday.month - 1]} {sunday.year}"
    return f"vecka {int(week)} ({days})"


def swedish_number(v: float) -> str:
    """A mean as the page writes it in Swedish: at most one decimal, a decimal comma."""
    return f"{Decimal(str(v)).quantize(Decimal('0.1'), ROUND_HALF_UP).normalize():f}".replace(".", ",")


def test_the_steering_group_compiles_decides_re_decides_and_follows_up(
        demo_system: System, demo_sign_in: Callable[..., Page], tmp_path: Path) -> None:
    s = demo_system
    shots = SHOTS if os.environ.get("EST_SAVE_SCREENSHOTS") else tmp_path
    tertial = Period.containing("tertial", date.today()).prev()

    # the analysis service reads the demo's months of history as they come: wait until it shows problems
    def ready() -> Any:
        r = httpx.post(f"{s.urls['analysis']}/v1/analyses", json={"municipality_id": "vaxjo", "period": tertial.id},
                       headers={"Authorization": "Bearer demo-styr"}, timeout=60)
        return r.status_code == 201 and len(r.json()["persistent_problems"]) >= 2

    wait_for(ready, timeout=300, interval=5)

    page = demo_sign_in("demo-styr", "#heatmap", viewport=DESKTOP, accept_downloads=True)
    page.click("nav >> text=Styrning")
    page.wait_for_selector("#compile-title")
    chosen = page.eval_on_selector("#compile-period", "s => s.options[s.selectedIndex].text")
    months = f"{MONTHS[tertial.start.month - 1]}–{MONTHS[(tertial.end - timedelta(days=1)).month - 1]}"
    assert chosen == f"Tertial {tertial.id[-1]} {tertial.start.year} ({months})", chosen

    # compiling: the request is held until the page shows that it is busy
    held: list[Route] = []
    page.route("**/api/analysis/v1/analyses",
               lambda route: held.append(route) if route.request.method == "POST" else route.continue_())
    page.click("#compile")
    busy = page.wait_for_selector("#compile-busy")
    assert f"Sammanställer analysen för {chosen}" in busy.inner_text()
    assert page.is_disabled("#compile")
    for _ in range(100):  # route handlers run while Playwright waits, not in time.sleep
        if held:
            break
        page.wait_for_timeout(100)
    held[0].continue_()
    page.wait_for_selector(f"text=Analysen för {chosen} är sammanställd.")
    page.unroute("**/api/analysis/v1/analyses")
    assert page.query_selector("#compile-busy") is None

    newest = _get(s, "analysis", "/v1/analyses?municipality_id=vaxjo", "demo-styr")[0]
    analysis = _get(s, "analysis", f"/v1/analyses/{newest['id']}", "demo-styr")
    assert analysis["trigger"] == "manual" and analysis["period"] == tertial.id
    assert page.inner_text("#analysis-title") == f"Strategisk analys · Växjö kommun · {chosen}"
    assert page.inner_text("#summary") == analysis["summary"]["sv"]
    # the problems per area, by name, since the week they began, in words
    for area in analysis["areas"]:
        box = page.inner_text(f"#problems section[data-area='{area['area_id']}']")
        assert area["area_name"] in box
        for p in area["persistent_problems"]:
            line = page.inner_text(f"#problems section[data-area='{area['area_id']}'] li[data-item='{p['item']}']")
            assert p["label_sv"] in line and f"sedan {week_words(p['held_at'][0])}" in line, line
            assert ("pågår" in line) == p["ongoing"], line
            assert p["item"] not in line.split() and "-W" not in line, line
    # the chart: one bar and its background per area, each told in its accessible name
    label = page.get_attribute("#flag-chart svg", "aria-label") or ""
    assert len(page.query_selector_all("#flag-chart svg rect")) == 2 * len(analysis["areas"])
    assert all(a["area_name"] in label for a in analysis["areas"]), label
    with page.expect_download() as got:
        page.click("#dl-html")
    assert got.value.suggested_filename.endswith("-sv.html")
    assert "Växjö kommun" in open(got.value.path(), encoding="utf-8").read()
    with page.expect_download() as got:
        page.click("#dl-problems-csv")
    assert analysis["persistent_problems"][0]["label_sv"] in open(got.value.path(), encoding="utf-8-sig").read()

    # a measure linked to one of the problems
    problem = analysis["persistent_problems"][0]
    page.select_option("#m-area", problem["area_id"])
    page.check(f"#measure-form input[name=m-problem][value='{problem['item']}']")
    page.fill("#m-title", "Fältvandringar kvällstid")
    page.fill("#m-desc", "Vuxna vandrar i området fredag och lördag kväll.")
    page.select_option("#m-actor", label="Växjöhem AB")
    start = tertial.start + timedelta(days=7 * 8 - tertial.start.weekday())  # a Monday in the middle
    page.fill("#m-start", start.isoformat())
    page.fill("#m-hours", "80")
    page.fill("#m-money", "25000")
    page.click("#m-submit")
    page.wait_for_selector("text=Åtgärden är beslutad.")
    measures = _get(s, "analysis", "/v1/measures?municipality_id=vaxjo", "demo-styr")
    [measure] = [m for m in measures if m["title"] == "Fältvandringar kvällstid"]
    assert measure["area_id"] == problem["area_id"] and measure["items"] == [problem["item"]]
    assert measure["responsible_actor"] == "vaxjohem" and measure["resources"] == {"hours": 80, "money_sek": 25000}
    detail = f"li[data-measure='{measure['id']}']"
    page.wait_for_selector(f"{detail} #history li")
    assert page.inner_text(f"{detail} #measure-items") == problem["label_sv"]
    facts = page.inner_text(f"{detail} .steering-facts")
    assert "Växjöhem AB" in facts and "80 timmar, 25 000 kr" in facts.replace("\u00a0", " "), facts

    # re-decided with a reason: the history tells who, what and why, in words
    page.select_option(f"{detail} #redecide-status", label="pågår")
    page.fill(f"{detail} #redecide-end", f"{date.today().year}-12-31")
    page.fill(f"{detail} #redecide-reason", "Förlängd efter uppföljning i styrgruppen")
    page.click(f"{detail} #redecide-submit")
    page.wait_for_selector("text=Omprövningen är sparad.")
    page.wait_for_selector(f"{detail} #history > li >> nth=1")
    history = page.eval_on_selector_all(f"{detail} #history > li", "els => els.map((e) => e.innerText)")
    assert len(history) == 2, history
    assert history[0].startswith("Beslutad") and "Styrgruppens ordförande" in history[0]
    assert history[1].startswith("Omprövad") and "Styrgruppens ordförande" in history[1]
    assert "Status: planerad → pågår" in history[1] and f"Slutdatum: inget → 31 dec {date.today().year}" in history[1]
    assert "Skäl: Förlängd efter uppföljning i styrgruppen" in history[1]
    assert _get(s, "analysis", f"/v1/measures/{measure['id']}", "demo-styr")["status"] == "active"

    # its effect: the problem's values before and after the start, as the service computes them
    effect = _get(s, "analysis", f"/v1/measures/{measure['id']}/effect", "demo-styr")["items"][0]
    assert effect["direction"] != "insufficient_data", effect
    caption = page.inner_text(f"{detail} #effect figure[data-item='{problem['item']}'] figcaption")
    word = {"fell": "minskade", "rose": "ökade", "unchanged": "oförändrat"}[effect["direction"]]
    assert caption == (f"{problem['label_sv']}: Medel före {swedish_number(effect['before_mean'])}, "
                       f"medel efter {swedish_number(effect['after_mean'])} ({word})"), caption
    points = page.get_attribute(f"{detail} #effect figure[data-item='{problem['item']}'] polyline", "points") or ""
    assert len(points.split()) == len(effect["points"])
    assert_no_axe_violations(page)
    # the Word report takes a while to make: the buttons wait meanwhile, then it is saved
    with page.expect_download(timeout=180_000) as got:
        page.click("#dl-docx")
        assert "Hämtar: Rapporten (Word)" in page.inner_text("#dl-busy")
        assert page.is_disabled("#dl-pdf")
    assert got.value.suggested_filename.endswith("-sv.docx")
    assert open(got.value.path(), "rb").read(2) == b"PK"  # a zip: the DOCX
    page.wait_for_selector("#dl-busy", state="detached")
    # names, never codes or ids, in the reader's language
    written = ["Fältvandringar kvällstid", "Vuxna vandrar i området fredag och lördag kväll.",
               "Förlängd efter uppföljning i styrgruppen"]
    words = Vocabulary(_get(s, "intake", "/v1/checklists/current", "demo-styr"), written)
    assert not words.raw_codes(page.inner_text("#main"), "sv")
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "steering.png"), full_page=True)

    # English, chosen by the reader
    page.click("header button[lang=en]")
    page.wait_for_selector("#analysis-title:has-text('Strategic analysis')")
    assert f"Tertial {tertial.id[-1]} {tertial.start.year}" in page.inner_text("#analysis-title")
    assert "Decisions" in page.inner_text(detail)
    english = page.inner_text("#main")
    assert not words.raw_codes(english, "en")
    assert not [w for w in ("Åtgärder", "Beslutad", "sedan", "pågår", "Bestående") if w in english], english
    page.click("header button[lang=sv]")

    # the beredningsgrupp reads the same, without deciding
    reader = demo_sign_in("demo-lena", "#heatmap", viewport={"width": 420, "height": 900})
    reader.click("nav >> text=Styrning")
    reader.wait_for_selector("#read-only")
    assert reader.query_selector("#measure-form") is None
    row = f"li[data-measure='{measure['id']}']"
    reader.click(f"{row} button.steering-toggle")
    reader.wait_for_selector(f"{row} #history > li >> nth=1")
    assert reader.query_selector(f"{row} #redecide-form") is None
    assert "Förlängd efter uppföljning i styrgruppen" in reader.inner_text(f"{row} #history")
    assert reader.inner_text(f"{row} #measure-items") == problem["label_sv"]


def test_the_steering_group_re_decides_a_measures_title_items_actor_and_resources(
        demo_system: System, demo_sign_in: Callable[..., Page]) -> None:
    """Every field the API lets a re-decision change is in the form: a new title, one more problem addressed,
    another responsible actor and more resources, saved with a reason and told in words in the history."""
    s = demo_system
    tertial = Period.containing("tertial", date.today()).prev()

    def compiled() -> Any:
        r = httpx.post(f"{s.urls['analysis']}/v1/analyses", json={"municipality_id": "vaxjo", "period": tertial.id},
                       headers={"Authorization": "Bearer demo-styr"}, timeout=60)
        areas = [a for a in r.json().get("areas", []) if len(a["persistent_problems"]) >= 2]
        return areas[0] if r.status_code == 201 and areas else None

    area = wait_for(compiled, timeout=300, interval=5)
    first, second = area["persistent_problems"][:2]
    made = httpx.post(f"{s.urls['analysis']}/v1/measures", headers={"Authorization": "Bearer demo-styr"}, timeout=30,
                      json={"title": "Trygghetsvandring", "area_id": area["area_id"], "items": [first["item"]],
                            "responsible_actor": "vaxjo-kommun", "decided_by": "Styrgruppen",
                            "start": tertial.start.isoformat(), "resources": {"hours": 40}})
    assert made.status_code == 201, made.text
    measure = made.json()

    page = demo_sign_in("demo-styr", "#heatmap", viewport=DESKTOP)
    page.click("nav >> text=Styrning")
    detail = f"li[data-measure='{measure['id']}']"
    page.click(f"{detail} button.steering-toggle")
    page.wait_for_selector(f"{detail} #redecide-form")
    form = f"{detail} #redecide-form"
    assert page.input_value(f"{form} #redecide-title-input") == "Trygghetsvandring"
    assert page.is_checked(f"{form} input[name=redecide-item][value='{first['item']}']")
    assert page.input_value(f"{form} #redecide-hours") == "40"
    assert_no_axe_violations(page)
    # nothing changed but the reason: refused in words, nothing sent
    page.fill(f"{form} #redecide-reason", "Ingen ändring")
    page.click(f"{form} #redecide-submit")
    page.wait_for_selector(f"{form} >> text=Ändra minst ett fält.")

    page.fill(f"{form} #redecide-title-input", "Trygghetsvandring med föreningar")
    page.check(f"{form} input[name=redecide-item][value='{second['item']}']")
    page.select_option(f"{form} #redecide-actor", label="Växjöhem AB")
    page.fill(f"{form} #redecide-hours", "120")
    page.fill(f"{form} #redecide-money", "15000")
    page.fill(f"{form} #redecide-reason", "Utökad efter beredningsgruppens förslag")
    page.click(f"{form} #redecide-submit")
    page.wait_for_selector("text=Omprövningen är sparad.")
    page.wait_for_selector(f"{detail} #history > li >> nth=1")

    saved = _get(s, "analysis", f"/v1/measures/{measure['id']}", "demo-styr")
    assert saved["title"] == "Trygghetsvandring med föreningar"
    assert sorted(saved["items"]) == sorted([first["item"], second["item"]])
    assert saved["responsible_actor"] == "vaxjohem" and saved["resources"] == {"hours": 120, "money_sek": 15000}
    assert saved["status"] == measure["status"] and saved["end"] == measure["end"]  # untouched fields stay
    [entry] = [h for h in saved["history"] if h["action"] == "re-decided"]
    assert set(entry["changes"]) == {"title", "items", "responsible_actor", "hours", "money_sek"}
    history = page.eval_on_selector_all(f"{detail} #history > li", "els => els.map((e) => e.innerText)")[1]
    assert "Rubrik: Trygghetsvandring → Trygghetsvandring med föreningar" in history, history
    assert "Ansvarig: Växjö kommun → Växjöhem AB" in history, history
    assert f"Problem: {first['label_sv']} → " in history and second["label_sv"] in history, history
    assert "Timmar: 40 → 120" in history and "Kronor: inget → 15000" in history, history
    assert "Skäl: Utökad efter beredningsgruppens förslag" in history
    facts = page.inner_text(f"{detail} .steering-facts").replace("\u00a0", " ")
    assert "Växjöhem AB" in facts and "120 timmar, 15 000 kr" in facts, facts
    assert page.inner_text(f"{detail} #measure-items") == f"{first['label_sv']}, {second['label_sv']}"
