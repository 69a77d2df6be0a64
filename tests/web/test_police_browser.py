"""The police officer's and social services' pages against the whole system (``est up``) in Chromium: a police
officer records a protocol on a phone, sees the municipality's Kronoberg figure change once the picture updates,
downloads the figures (CSV and XLSX, opened as a spreadsheet opens them); social services see the notification
(no personal data in the list) and open it with a purpose; the admin's access log shows both reads; no personal
data is left in the browser's storage, the logs or the e-mails."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openpyxl
import pytest
import yaml
from playwright.sync_api import Browser

from tests.security.support import born_years_ago, pnr
from tests.support import System, e2e_org, start_system
from tests.web.axe import assert_no_axe_violations
from tests.web.conftest import _no_csp_violations, _signer, screenshot_dir

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}
NAME = "Tova Protokollsdotter"


@pytest.fixture
def kronoberg_system(tmp_path: Path) -> Iterator[System]:
    org = e2e_org()
    org["actors"] += [{"id": "polisen", "name": "Polisen Kronoberg", "kind": "police"},
                      {"id": "soc", "name": "Socialtjänsten Växjö", "kind": "social_services"}]
    org["people"] += [
        {"id": "petra", "name": "Petra Polis", "actor": "polisen", "roles": ["police"], "areas": ["vaxjo"],
         "token": "t-petra"},
        {"id": "sara", "name": "Sara Social", "actor": "soc", "roles": ["social_services"], "areas": ["vaxjo"],
         "token": "t-sara"}]
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(org, allow_unicode=True), encoding="utf-8")
    s = start_system(tmp_path / "var", path)
    yield s
    s.stop()


@pytest.fixture
def open_as(browser: Browser, kronoberg_system: System) -> Iterator[Callable[..., Page]]:
    sign, pages = _signer(browser, kronoberg_system)
    yield sign
    _no_csp_violations(pages)


def _figures(system: System, path: str) -> Any:
    r = httpx.get(f"{system.urls['aggregator']}/v1/municipalities/vaxjo/{path}",
                  headers={"Authorization": "Bearer t-petra"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _storage(page: Page) -> str:
    return str(page.evaluate("() => JSON.stringify(Object.assign({}, localStorage))"))


def test_police_record_see_figures_download_and_social_services_open_with_a_purpose(
        kronoberg_system: System, open_as: Callable[..., Page], tmp_path: Path) -> None:
    system = kronoberg_system
    number = pnr(born_years_ago(15), serial="447")
    page = open_as("t-petra", "nav a[href='#police']", viewport=PHONE, accept_downloads=True)
    page.goto(f"{system.urls['web']}/app/#police")
    page.wait_for_selector("#protocol-title")
    page.wait_for_selector("#fig-total")
    before = page.inner_text("#fig-total")
    assert "Inga protokoll" in before

    # a wrong personal identity number: the intake's refusal is shown at the field, nothing typed is lost
    page.fill("#p-name", NAME)
    page.fill("#p-pnr", number[:-1] + str((int(number[-1]) + 1) % 10))
    page.fill("#v-0", "1,5")
    page.fill("#c-0", "3")
    page.fill("#p-place", "centrum")
    page.check("#p-guardian_contacted")
    page.check("#p-guardian_came")
    page.click("#p-send")
    page.wait_for_selector("#p-refusal")
    assert "kontrollsiffra" in page.inner_text("#protocol-form")
    assert page.input_value("#p-name") == NAME and page.input_value("#v-0") == "1,5"
    assert page.get_attribute("#p-pnr", "aria-invalid") == "true"
    assert NAME in _storage(page)  # the draft is kept on the device until it is accepted

    page.fill("#p-pnr", number)
    page.click("#p-send")
    page.wait_for_selector("#p-recorded")
    protocol_id = page.get_attribute("#p-recorded", "data-protocol")
    assert protocol_id
    stored = _storage(page)
    assert NAME not in stored and number not in stored and number.replace("-", "") not in stored

    # the municipality's exact figure changes once the picture updates
    page.wait_for_function("() => (document.querySelector('#fig-total [data-figure=interventions]') || {})"
                           ".textContent === '1'", timeout=30000)
    assert page.inner_text("#fig-total [data-figure=guardian_came]") == "1"
    assert page.inner_text(".fig-area[data-area=araby] [data-figure=interventions]") == "1"
    assert_no_axe_violations(page)

    with page.expect_download() as d:
        page.click("#fig-csv")
    rows = list(csv.DictReader(io.StringIO(Path(d.value.path()).read_bytes().decode("utf-8-sig"), newline=""),
                               delimiter=";"))
    assert rows[0]["Område"] == "Hela Växjö kommun" and rows[0]["Ingripanden"] == "1"
    assert rows[0]["Vårdnadshavare kom"] == "1"
    assert {r["Område"] for r in rows[1:]} >= {"Araby"}
    with page.expect_download() as d:
        page.click("#fig-xlsx")
    assert d.value.suggested_filename.endswith(".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(Path(d.value.path()).read_bytes())).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[1][values[0].index("Ingripanden")] == 1

    # the same figures over several weeks and over the tertial, as the API gives them
    week = page.eval_on_selector("#fig-period", "e => e.textContent.slice(0, 8)")
    page.select_option("#fig-kind", "weeks")
    page.wait_for_selector("#fig-from")
    assert_no_axe_violations(page)
    first = page.input_value("#fig-from")
    page.fill("#fig-from", week)  # the week inputs speak ISO weeks, as the API does
    page.wait_for_function("(w) => (document.querySelector('#fig-period') || {}).textContent?.startsWith(w)",
                           arg=week)
    page.fill("#fig-from", first)
    api = _figures(system, f"kronoberg?from={first}&to={week}")
    assert api["weeks"][0] == first and api["weeks"][-1] == week and len(api["weeks"]) == 4
    page.wait_for_function("(n) => document.querySelector('#fig-covers')?.textContent.endsWith(n)",
                           arg="4 veckor")
    assert page.inner_text("#fig-total [data-figure=interventions]") == str(api["totals"]["interventions"]) == "1"
    with page.expect_download() as d:
        page.click("#fig-xlsx")
    assert d.value.suggested_filename == f"kronoberg-vaxjo-{first}-{week}.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(Path(d.value.path()).read_bytes())).active
    assert sheet is not None
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[1][values[0].index("Ingripanden")] == 1 and values[1][values[0].index("Från")] == api["start"]
    page.select_option("#fig-kind", "tertial")
    tertial = page.input_value("#fig-tertial")
    api = _figures(system, f"kronoberg/{tertial}")
    page.wait_for_function("(t) => (document.querySelector('#fig-period') || {}).textContent?.startsWith(t)",
                           arg=tertial)
    assert page.inner_text("#fig-total [data-figure=interventions]") == str(api["totals"]["interventions"]) == "1"
    assert f"{len(api['weeks'])} veckor" in page.inner_text("#fig-covers")
    assert_no_axe_violations(page)
    page.locator("#kronoberg").screenshot(path=str(screenshot_dir(tmp_path) / "police.png"))
    with page.expect_download() as d:
        page.click("#fig-csv")
    rows = list(csv.DictReader(io.StringIO(Path(d.value.path()).read_bytes().decode("utf-8-sig"), newline=""),
                               delimiter=";"))
    assert (rows[0]["Period"], rows[0]["Ingripanden"], rows[0]["Från"]) == (tertial, "1", api["start"])
    page.select_option("#fig-kind", "week")

    # the police read the protocol with a purpose
    page.fill("#r-id", protocol_id)
    page.click("#r-read")
    assert "Ange varför" in page.inner_text("#read-protocol")
    assert "loggas" in page.inner_text("#read-protocol")
    page.fill("#r-purpose", "komplettering av anmälan")
    page.click("#r-read")
    page.wait_for_selector("#r-protocol")
    assert NAME in page.inner_text("#r-protocol")

    # social services: the notification in the list without the person, opened with a purpose
    soc = open_as("t-sara", "nav a[href='#social']", viewport=PHONE)
    soc.goto(f"{system.urls['web']}/app/#social")
    soc.wait_for_selector(f"#soc-list li[data-protocol='{protocol_id}']", timeout=30000)
    listed = soc.inner_text("#soc-list")
    assert "Araby" in listed and "centrum" in listed and "15–17 år" in listed
    assert NAME not in listed and number not in listed
    assert_no_axe_violations(soc)
    soc.screenshot(path=str(screenshot_dir(tmp_path) / "social-services.png"))
    soc.click(f"#soc-list li[data-protocol='{protocol_id}'] button")
    soc.fill("#r-purpose", "uppföljningssamtal")
    soc.click("#r-read")
    soc.wait_for_selector("#r-protocol")
    assert NAME in soc.inner_text("#r-protocol") and number in soc.inner_text("#r-protocol")
    assert NAME not in _storage(soc) and number not in _storage(soc)
    # the link in social services' e-mail opens their page with that protocol's read form
    soc.goto(f"{system.urls['web']}/app/#forfeitures/{protocol_id}")
    soc.reload()
    soc.wait_for_selector("#r-id")
    assert soc.input_value("#r-id") == protocol_id
    assert soc.get_attribute("nav a[href='#social']", "aria-current") == "page"

    log = httpx.get(f"{system.urls['intake']}/v1/admin/forfeiture-access-log", params={"protocol_id": protocol_id},
                    headers={"Authorization": "Bearer t-admin"}, timeout=10).json()["entries"]
    granted = {(e["person_id"], e["purpose"]) for e in log if e["outcome"] == "granted"}
    assert granted == {("petra", "komplettering av anmälan"), ("sara", "uppföljningssamtal")}

    secrets = [NAME, number, number.replace("-", ""), number[2:]]
    for f in [*system.data_dir.rglob("*.log"), *system.data_dir.rglob("*.jsonl"), *system.data_dir.rglob("*.eml"),
              system.data_dir / "est-up.out"]:
        if f.is_file():
            text = f.read_text(encoding="utf-8", errors="replace")
            assert not [s for s in secrets if s in text], f
