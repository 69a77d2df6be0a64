"""The web app against the real answers of the demo system, in a real browser: it shows the analyses'
persistent problems (names, since which period, ongoing or not), every text a person reads is in their
language with names instead of codes and ids, weeks come with their dates, and a refused report keeps
the reporter's answers with the refused fields marked and explained in the reporter's language."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from est_cli.demo import demo_org
from est_shared.checklists import BUILTIN_CHECKLISTS
from est_shared.periods import Period

from tests.support import System, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

# the demo starts with months of history, which the analysis service reads before it shows persistent problems
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PHONE = {"width": 420, "height": 900}
DESKTOP = {"width": 1280, "height": 1000}
MONTHS = {"sv": ["jan", "feb", "mar", "apr", "maj", "jun", "jul", "aug", "sep", "okt", "nov", "dec"],
          "en": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]}

# the codes of the API answers that must never reach a reader as they are
FLAGS = ["high", "rising", "new"]
CODES = [*FLAGS, *(f"flag:{f}" for f in FLAGS), "up", "down", "flat", "warning", "info", "planned", "active",
         "completed", "cancelled", "open", "published", "resolved", "manual", "auto", "count", "level", "boolean"]
# in English these codes are also the words a translation uses ("High level", "rising"), so there the page
# text is held to the rest and every badge to all of them
ENGLISH_WORDS = {"high", "rising", "new", "up", "down", "flat", "warning", "planned", "active", "completed",
                 "cancelled", "open", "published", "resolved", "manual", "auto", "count", "level"}


def _get(system: System, service: str, path: str, token: str, **kw: Any) -> Any:
    r = httpx.get(f"{system.urls[service]}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)
    r.raise_for_status()
    return r.json()


def _post(system: System, service: str, path: str, token: str, body: dict[str, Any]) -> Any:
    r = httpx.post(f"{system.urls[service]}{path}", json=body, headers={"Authorization": f"Bearer {token}"},
                   timeout=60)
    assert r.status_code < 300, r.text
    return r.json()


def week_dates(period: str, lang: str) -> str:
    """"30 nov – 6 dec" for 2026-W49, as the reader's calendar says it."""
    year, week = period.split("-W")
    monday = date.fromisocalendar(int(year), int(week), 1)
    sunday = monday + timedelta(days=6)
    m = MONTHS[lang]
    if monday.year != sunday.year:
        return f"{monday.day} {m[monday.month - 1]} {monday.year} – {sunday.day} {m[sunday.month - 1]} {sunday.year}"
    if monday.month == sunday.month:
        return f"{monday.day}–{sunday.day} {m[sunday.month - 1]}"
    return f"{monday.day} {m[monday.month - 1]} – {sunday.day} {m[sunday.month - 1]}"


class Vocabulary:
    """The demo organisation's ids and the checklist's codes, with the names that may show instead
    (and what people wrote, which is theirs: "Bättre belysning" may name the item ``belysning``)."""

    def __init__(self, checklist: dict[str, Any], written: list[str]) -> None:
        org = demo_org()
        self.ids = [m["id"] for m in org["municipalities"]]
        self.ids += [a["id"] for m in org["municipalities"] for a in m["areas"]]
        self.ids += [i["code"] for i in checklist["items"]]
        self.names = sorted({n for m in org["municipalities"] for n in [m["name"], *(a["name"] for a in m["areas"])]}
                            | {a["name"] for a in org["actors"]} | {p["name"] for p in org["people"]}
                            | {i[k] for i in checklist["items"] for k in ("label_sv", "label_en")}
                            | set(written), key=len,
                            reverse=True)

    def raw_codes(self, text: str, lang: str) -> list[str]:
        """Codes and ids in a page's text, as whole words, once the names that may hold one are taken out
        ("Anlagd brand (bil, …)" holds the item code ``brand``)."""
        for name in self.names:
            text = text.replace(name, " ")
        codes = [c for c in CODES if lang == "sv" or c not in ENGLISH_WORDS] + self.ids
        found = []
        for code in codes:
            for m in re.finditer(rf"(?<![\w-]){re.escape(code)}(?![\w-])", text):
                found.append(f"{code!r} in …{text[max(0, m.start() - 40):m.end() + 40]!r}…")
        return found


def _switch_to_english(page: Page, ready: str) -> None:
    page.click("header nav button:text('English')")
    page.wait_for_selector(ready)
    assert page.evaluate("document.documentElement.lang") == "en"


def _check_language(page: Page, words: Vocabulary, lang: str, where: str) -> str:
    text = page.inner_text("body")
    assert not words.raw_codes(text, lang), f"{where} ({lang}) shows codes:\n" + "\n".join(words.raw_codes(text, lang))
    badges = page.eval_on_selector_all(".badge", "els => els.map((e) => e.innerText.trim())")
    assert not [b for b in badges if b in CODES], f"{where} ({lang}): badges with codes: {badges}"
    other = {"sv": ["Alerts", "Measures", "since", "ongoing", "Persistent problems", "Send report"],
             "en": ["Larm", "Åtgärder", "sedan", "pågår", "Kvarstående problem", "Skicka rapport", "ökar",
                    "Hoppa till innehållet"]}[lang]
    assert not [w for w in other if re.search(rf"(?<!\w){w}(?!\w)", text)], f"{where} ({lang}) mixes languages"
    return text


@pytest.fixture(scope="module")
def demo_state(demo_system: System) -> dict[str, Any]:
    """The demo with what a reader sees on every page: a compiled analysis of the last tertial with
    persistent problems, a published picture for the reporter's feedback, and a measure."""
    s = demo_system
    tertial = Period.containing("tertial", date.today()).prev().id

    def compiled() -> Any:  # the analysis service reads the demo's pictures as they come
        body = _post(s, "analysis", "/v1/analyses", "demo-lena", {"municipality_id": "vaxjo", "period": tertial})
        problems = body["persistent_problems"]
        return body if len(problems) >= 3 and any(p["ongoing"] for p in problems) else None

    analysis = wait_for(compiled, timeout=300, interval=5)
    measure, comment = "Bättre belysning vid torget", "Buskörningen följs upp med polisen."
    anna = _get(s, "intake", "/v1/me", "demo-anna")
    current = next(a["current_period"] for a in anna["areas"] if a["id"] == "araby")
    last_week = Period.parse(current).prev().id
    wait_for(lambda: _get(s, "aggregator", f"/v1/areas/araby/pictures/{last_week}", "demo-lena")["reports"] > 0)
    _post(s, "aggregator", f"/v1/areas/araby/pictures/{last_week}/publish", "demo-lena",
          {"comment": comment, "confirm_incomplete": True})
    _post(s, "analysis", "/v1/measures", "demo-styr", {
        "title": measure, "area_id": "dalbo", "items": ["belysning", "otrygg_plats"],
        "responsible_actor": "vaxjohem", "decided_by": "Styrgruppen", "start": str(date.today() - timedelta(days=30)),
        "status": "active"})
    checklist = _get(s, "intake", "/v1/checklists/current", "demo-anna")
    return {"analysis": analysis, "current": current, "last_week": last_week,
            "words": Vocabulary(checklist, [measure, comment])}


def test_the_dashboard_shows_the_analysis_persistent_problems_by_name(
        demo_state: dict[str, Any], demo_sign_in: Callable[..., Page]) -> None:
    analysis = demo_state["analysis"]
    page = demo_sign_in("demo-lena", "#heatmap", viewport=DESKTOP)
    page.wait_for_selector("#persistent li")
    expected = sorted(analysis["persistent_problems"], key=lambda p: not p["ongoing"])[:12]
    shown = page.eval_on_selector_all("#persistent li", "els => els.map((e) => e.innerText)")
    assert len(shown) == len(expected), shown
    for text, p in zip(shown, expected, strict=True):
        assert p["area_name"] in text and p["label_sv"] in text, (text, p)
        first = p["held_at"][0]
        assert f"sedan {first} ({week_dates(first, 'sv')})" in text, text
        assert ("pågår" in text) == p["ongoing"], text
        assert p["area_id"] not in text.split() and p["item"] not in text.split(), text
    assert "Inga kvarstående problem" not in page.inner_text("#main")
    period = Period.parse(demo_state["current"]).prev().id
    assert page.inner_text("#dash-title") == f"Lägesbild · Växjö kommun · {period} ({week_dates(period, 'sv')})"

    _switch_to_english(page, "#strat-title:has-text('Strategic analysis')")
    first_en = page.inner_text("#persistent li >> nth=0")
    assert expected[0]["label_en"] in first_en and "since" in first_en, first_en
    assert ("ongoing" in first_en) == expected[0]["ongoing"]


def test_the_dashboard_prints_as_the_picture_without_the_app_around_it(
        demo_state: dict[str, Any], demo_sign_in: Callable[..., Page]) -> None:
    from pypdf import PdfReader

    page = demo_sign_in("demo-lena", "#heatmap tbody tr", viewport=DESKTOP)
    names = page.eval_on_selector_all("#heatmap tbody th", "els => els.map((e) => e.innerText)")
    page.click("#heatmap tbody tr >> nth=0 >> th button")
    page.wait_for_selector("#first-analysis")
    page.emulate_media(media="print")
    # what the printer gets: the picture and the area, no menu, buttons or publishing form
    assert page.is_visible("#heatmap") and page.is_visible("#area-title") and page.is_visible("#first-analysis")
    assert not page.is_visible("header.top nav") and not page.is_visible("#publish") and not page.is_visible("#comment")
    # the level colours are printed, not dropped as backgrounds
    adjust = page.eval_on_selector("#heatmap td.cell", "e => getComputedStyle(e).printColorAdjust")
    assert adjust == "exact"
    pdf = PdfReader(io.BytesIO(page.pdf(format="A4")))
    text = " ".join(p.extract_text() for p in pdf.pages)
    # every area's row by its name, each item's column whole (the rightmost too); the heatmap, the area's
    # picture with its versions, and the strategic analysis on at most three pages
    assert all(n in text for n in names) and "Lägesbild" in text and "Första analys" in text, text
    right = page.eval_on_selector("#heatmap thead th:last-child", "e => e.getBoundingClientRect().right")
    assert right <= page.evaluate("document.documentElement.clientWidth"), right
    assert len(pdf.pages) <= 3
    assert "Publicera" not in text and "Logga ut" not in text


def test_the_dashboards_tables_download_as_spreadsheets_with_names(
        demo_state: dict[str, Any], demo_sign_in: Callable[..., Page]) -> None:
    import openpyxl

    page = demo_sign_in("demo-lena", "#heatmap tbody tr", viewport=DESKTOP)
    names = page.eval_on_selector_all("#heatmap tbody th", "els => els.map((e) => e.innerText)")
    assert len(names) == 4
    with page.expect_download() as got:
        page.click("#download-completeness >> text=Excel")
    assert got.value.suggested_filename.startswith("inrapportering-") and got.value.suggested_filename.endswith(".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(Path(got.value.path()).read_bytes())).active
    assert sheet is not None
    rows = [[c.value for c in r] for r in sheet.iter_rows()]
    assert rows[0][:3] == ["Område", "Aktör", "Förväntade rapportörer"]
    assert {r[0] for r in rows[1:]} == {*names, "Hela kommunen"}
    actors = {a["name"] for a in demo_org()["actors"]}
    assert {r[1] for r in rows[1:]} <= actors  # the actors by name, never by id
    with page.expect_download() as got:
        page.click("#download-picture >> text=CSV")
    text = Path(got.value.path()).read_bytes().decode("utf-8-sig")
    assert text.splitlines()[0].startswith("Område;Period;Från;Till") and all(n in text for n in names)


def test_the_area_view_keeps_the_alerts_that_ended(demo_system: System, demo_state: dict[str, Any],
                                                  demo_sign_in: Callable[..., Page]) -> None:
    def ended_alerts() -> list[dict[str, Any]]:
        alerts = httpx.get(f"{demo_system.urls['aggregator']}/v1/areas/araby/alerts",
                           headers={"Authorization": "Bearer demo-lena"}, timeout=10).json()
        return [a for a in alerts if a["status"] == "resolved"]

    # the demo's year of history is published as the system starts, its alerts with it: wait until they settle
    seen: list[int] = []

    def settled() -> list[dict[str, Any]] | None:
        ended = ended_alerts()
        seen.append(len(ended))
        return ended if ended and seen[-3:] == [len(ended)] * 3 else None

    ended = wait_for(settled, timeout=240, interval=3)
    page = demo_sign_in("demo-lena", "#heatmap tbody tr", viewport=DESKTOP)
    page.click("tr[data-area=araby] th button")
    page.click("#alert-history summary")
    shown = page.eval_on_selector_all("#alert-history li", "els => els.map((e) => e.innerText)")
    assert page.inner_text("#alert-history summary") == f"Avslutade larm ({len(ended)})"
    assert len(shown) == len(ended)
    # newest first, each dated in words, with the period it ended in, by the item's name
    periods = [m.group(1) for m in (re.search(r"från (\d{4}-W\d{2}) \(", x) for x in shown) if m]
    assert periods == sorted((a["period"] for a in ended), reverse=True), shown
    assert f"({week_dates(periods[0], 'sv')})" in shown[0], shown[0]
    assert all(" · avslutat " in x for x in shown), shown
    assert all(x.split(" · ")[0].split(maxsplit=2)[-1][:1].isupper() for x in shown), shown  # a name, no code


def test_every_page_reads_in_the_chosen_language_with_names_and_dates(
        demo_state: dict[str, Any], demo_sign_in: Callable[..., Page], tmp_path: Any) -> None:
    words: Vocabulary = demo_state["words"]
    current, last_week = demo_state["current"], demo_state["last_week"]

    # the reporter: the form, a sent report in "my reports", the feedback of the published picture
    reporter = demo_sign_in("demo-anna", "#form-title", viewport=PHONE, service_workers="block")
    reporter.wait_for_selector("section:has(#fb-title) tbody tr")
    reporter.check("input[name=i-klotter][value='1']")
    reporter.click("#submit")
    reporter.wait_for_selector("#outbox li[data-state=accepted]")
    assert f"{current} ({week_dates(current, 'sv')})" in reporter.inner_text("#form-title")
    assert f"{last_week} ({week_dates(last_week, 'sv')})" in reporter.inner_text("section:has(#fb-title)")
    _check_language(reporter, words, "sv", "reporter")
    reporter.screenshot(path=str(tmp_path / "reporter-sv.png"), full_page=True)
    _switch_to_english(reporter, "#form-title:has-text('Report:')")
    assert f"{current} ({week_dates(current, 'en')})" in reporter.inner_text("#form-title")
    _check_language(reporter, words, "en", "reporter")

    # the key function: the picture grid, an area with its chart, alerts and measures, the analysis
    dash = demo_sign_in("demo-lena", "#heatmap", viewport=DESKTOP)
    dash.wait_for_selector("tr[data-area=dalbo]")
    dash.click("tr[data-area=dalbo] th button")
    for ready in ("#first-analysis", "#alerts li", "#measures li", "#persistent li", "ul.chart-legend li"):
        dash.wait_for_selector(ready)
    legend = dash.inner_text("ul.chart-legend")
    assert "samlad_bedomning" not in legend and legend.strip(), legend
    text = _check_language(dash, words, "sv", "dashboard")
    assert "Dalbo · " in text and "pågår" in dash.inner_text("#measures")
    dash.screenshot(path=str(tmp_path / "dashboard-sv.png"), full_page=True)
    _switch_to_english(dash, "#strat-title:has-text('Strategic analysis')")
    _check_language(dash, words, "en", "dashboard")
    assert "in progress" in dash.inner_text("#measures")
    dash.screenshot(path=str(tmp_path / "dashboard-en.png"), full_page=True)


PERSON = "Anna Andersson 19900101-1234"


def test_a_refused_report_keeps_the_form_and_says_what_to_change(
        demo_state: dict[str, Any], demo_sign_in: Callable[..., Page]) -> None:
    page = demo_sign_in("demo-anna", "#form-title", viewport=PHONE, service_workers="block")
    page.select_option("#area", "dalbo")
    page.wait_for_selector("#form-title:has-text('Dalbo')")
    page.check("input[name=i-klotter][value='2']")
    page.click("fieldset.item:has(legend:text('Skadegörelse')) button[aria-label='+1']")
    page.check("input[name=i-samling][value='1']")
    page.fill("#i-samling-note", PERSON)
    page.fill("#overall", "Ring mig på 070-123 45 67")
    report_id = page.evaluate("JSON.parse(localStorage.getItem('est.draft.dalbo')).report_id")

    def answers_kept() -> None:
        assert page.is_checked("input[name=i-klotter][value='2']")
        assert page.input_value("#i-skadegorelse") == "1"
        assert page.is_checked("input[name=i-samling][value='1']")
        assert page.input_value("#i-samling-note") == PERSON

    def refused_in(lang: str) -> None:
        page.wait_for_selector("#refusal")
        answers_kept()
        for field, says in (("#i-samling-note", {"sv": "personnummer", "en": "personal identity number"}),
                            ("#overall", {"sv": "telefonnummer", "en": "phone number"})):
            assert page.get_attribute(field, "aria-invalid") == "true", field
            described_by = page.get_attribute(field, "aria-describedby")
            assert described_by, field
            beside = page.inner_text("#" + described_by)
            assert says[lang] in beside, beside
        message = page.inner_text("#refusal")
        assert {"sv": "Rapporten skickades inte", "en": "The report was not sent"}[lang] in message
        other = {"sv": ["Free text", "the text", "do not"], "en": ["Fritext", "texten", "skriv inte", "Avvisad"]}[lang]
        for technical in ("answers.", " / ", "Avvisad:", "Refused:", *other):
            assert technical not in message, (technical, message)
        assert {"sv": "Samling av personer", "en": "Gatherings causing"}[lang] in message  # the item by its name
        assert not page.query_selector("#outbox li[data-state=rejected]")  # it is in the form, not lost

    page.click("#submit")
    refused_in("sv")
    page.reload()
    page.wait_for_selector("#form-title")
    page.select_option("#area", "dalbo")
    page.wait_for_selector("#form-title:has-text('Dalbo')")  # the area's draft is rendered (slow on a busy machine)
    page.wait_for_selector("input[name=i-klotter][value='2']:checked", timeout=10000)
    answers_kept()  # the draft outlives a reload
    page.click("#submit")
    refused_in("sv")
    _switch_to_english(page, "#form-title:has-text('Report:')")
    refused_in("en")

    # the reporter changes what was marked; the same report goes through
    page.fill("#i-samling-note", "Grupp vid gångtunneln")
    assert page.get_attribute("#i-samling-note", "aria-invalid") is None
    page.fill("#overall", "")
    page.click("#submit")
    page.wait_for_selector(f"#outbox li[data-report='{report_id}'][data-state=accepted]")
    assert not page.query_selector("#refusal")
    assert not page.is_checked("input[name=i-klotter][value='2']")  # a new, empty form

    # refused later (sent from the outbox once online): the entry says why and opens in the form again
    page.context.set_offline(True)
    page.check("input[name=i-nedskrapning][value='1']")
    page.fill("#i-nedskrapning-note", PERSON)
    page.click("#submit")
    page.wait_for_selector("#outbox li[data-state=queued]")
    page.context.set_offline(False)
    page.evaluate("window.dispatchEvent(new Event('online'))")
    page.wait_for_selector("#outbox li[data-state=rejected]", timeout=20000)
    entry = page.inner_text("#outbox li[data-state=rejected]")
    assert "personal identity number" in entry and "answers." not in entry, entry
    page.click("#outbox li[data-state=rejected] button")
    page.wait_for_selector("#i-nedskrapning-note[aria-invalid=true]")
    assert page.input_value("#i-nedskrapning-note") == PERSON


def test_an_areas_reports_download_with_names_and_the_numbers_of_the_api(
        demo_system: System, demo_sign_in: Callable[..., Page]) -> None:
    """The key function takes the reports of an area's week out as Excel and CSV from the area view: the
    reporters and actors by name, the items by their Swedish labels, the same reports and numbers as the API."""
    import openpyxl

    from tests.web.axe import assert_no_axe_violations

    page = demo_sign_in("demo-lena", "#heatmap tbody tr", viewport=DESKTOP, accept_downloads=True)
    page.click("tr[data-area=araby] th button")
    page.wait_for_selector("#download-reports")
    assert_no_axe_violations(page)
    with page.expect_download() as got:
        page.click("#download-reports >> text=Excel")
    name = got.value.suggested_filename
    period = re.fullmatch(r"rapporter-araby-(\d{4}-W\d{2})\.xlsx", name)
    assert period, name
    api = _get(demo_system, "aggregator", f"/v1/areas/araby/reports/{period.group(1)}", "demo-lena")["reports"]
    assert api, "the demo's last week has reports"
    sheet = openpyxl.load_workbook(io.BytesIO(Path(got.value.path()).read_bytes())).active
    assert sheet is not None
    rows = [[c.value for c in r] for r in sheet.iter_rows()]
    head = rows[0]
    assert head[:5] == ["Mottagen", "Period", "Rapportör", "Aktör", "Status"]
    assert len(rows) - 1 == len(api)
    people = {p["id"]: p["name"] for p in demo_org()["people"]}
    assert sorted(r[2] for r in rows[1:]) == sorted(people[x["reporter_id"]] for x in api)
    labels = {i.code: i.label_sv for i in BUILTIN_CHECKLISTS["est-standard@1"].items}
    for code in ("skadegorelse", "klotter"):
        col = head.index(labels[code])
        assert sum(r[col] or 0 for r in rows[1:]) == sum((x["answers"].get(code) or {}).get("value", 0) for x in api)
    with page.expect_download() as got:
        page.click("#download-reports >> text=CSV")
    raw = Path(got.value.path()).read_bytes()
    assert raw.startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=";"))
    assert table[0] == [str(h) for h in head] and len(table) == len(rows)
