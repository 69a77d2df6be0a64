"""The administrator's checklist editor and the hand-over of a running subscription, in a real browser against
the whole system (one system for the module): a new version of the checklist is made in the admin page
(a question and its help reworded), saved through the reviewed change list, chosen for the municipality,
and the reporter's form then asks it, in Swedish and English, and a report sent on it counts; a running
subscription of the key function is handed over to another person, who owns it from then on. axe-core
finds no WCAG 2.1 AA violation on either page part."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from tests.support import System, e2e_org, start_system, wait_for
from tests.web.axe import assert_no_axe_violations
from tests.web.conftest import _no_csp_violations, _signer, screenshot_dir

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DESKTOP = {"width": 1280, "height": 1000}
PHONE = {"width": 420, "height": 900}
QUESTION_SV = "Klotter, taggar eller annan skadegörelse på fasader"
QUESTION_EN = "Graffiti, tags or other damage on facades"
HELP_SV = "Räkna inte samma klotter två gånger."


@pytest.fixture(scope="module")
def admin_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    base = tmp_path_factory.mktemp("admin-checklist")
    org = base / "org.yaml"
    org.write_text(yaml.safe_dump(e2e_org(), allow_unicode=True), encoding="utf-8")
    s = start_system(base / "var", org)
    yield s
    s.stop()


@pytest.fixture
def open_as(browser: Browser, admin_system: System) -> Iterator[Callable[..., Page]]:
    sign, pages = _signer(browser, admin_system)
    yield sign
    _no_csp_violations(pages)


def _get(system: System, service: str, path: str, token: str) -> Any:
    r = httpx.get(f"{system.urls[service]}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _apply(page: Page) -> int:
    """Apply the reviewed change; the organisation version it made."""
    page.wait_for_selector("#review")
    text = page.inner_text("#review")
    version = int(text.split("Blir version ")[1].split(" ")[0])
    page.click("#apply")
    page.wait_for_selector(f"text=Version {version} är sparad.")
    return version


def _admin(open_as: Callable[..., Page]) -> Page:
    page = open_as("t-admin", "a[href='#admin']", viewport=DESKTOP)
    page.click("a[href='#admin']")
    page.wait_for_selector("#np-araby")
    return page


def test_a_new_checklist_version_made_in_the_admin_page_is_what_the_reporter_form_asks(
        admin_system: System, open_as: Callable[..., Page], tmp_path: Path) -> None:
    s = admin_system
    current = _get(s, "intake", "/v1/checklists/current", "t-anna")
    old_label = next(i["label_sv"] for i in current["items"] if i["code"] == "klotter")
    page = _admin(open_as)
    page.screenshot(path=str(screenshot_dir(tmp_path) / "admin.png"))
    page.click(f"button:has-text('Ny version: {current['name_sv']} (version {current['version']})')")
    editor = page.locator("form.card", has=page.locator("input[id$='-label_sv']"))
    editor.wait_for()
    assert f"(version {current['version'] + 1})" in editor.locator("h4").inner_text()
    assert_no_axe_violations(page)
    j = next(k for k, i in enumerate(current["items"]) if i["code"] == "klotter")
    assert page.input_value(f"#cl-{j}-label_sv") == old_label
    page.fill(f"#cl-{j}-label_sv", QUESTION_SV)
    page.fill(f"#cl-{j}-label_en", QUESTION_EN)
    page.fill(f"#cl-{j}-help_sv", HELP_SV)
    editor.locator("button[type=submit]").click()
    assert "Ny checklista" in page.inner_text("#review")
    _apply(page)
    ref = f"{current['id']}@{current['version'] + 1}"
    snap = _get(s, "intake", "/v1/admin/org", "t-admin")
    made = snap["checklists"][ref]
    assert next(i for i in made["items"] if i["code"] == "klotter")["label_sv"] == QUESTION_SV
    # the other items are copied as they were
    assert [i["code"] for i in made["items"]] == [i["code"] for i in current["items"]]

    # chosen for Växjö: the reporters fill it in from now on
    page.select_option("#cl-vaxjo", ref)
    page.wait_for_selector("#review")
    assert "Växjö kommun" in page.inner_text("#changes")
    _apply(page)
    assert _get(s, "intake", "/v1/checklists/current", "t-anna")["version"] == current["version"] + 1

    form = open_as("t-anna", "#form-title", viewport=PHONE)
    item = f"fieldset.item:has(legend:text('{QUESTION_SV}'))"
    form.wait_for_selector(item)
    assert form.inner_text(f"{item} p.help") == HELP_SV
    assert not form.locator(f"fieldset.item legend:text-is('{old_label}')").count()
    assert_no_axe_violations(form)
    form.locator(f"{item} .levels label").nth(2).click()
    form.click("#submit")
    form.wait_for_selector("#outbox li[data-state=accepted]")
    period = next(a["current_period"] for a in _get(s, "intake", "/v1/me", "t-anna")["areas"] if a["id"] == "araby")

    def counted() -> Any:
        picture = _get(s, "aggregator", f"/v1/areas/araby/pictures/{period}", "t-lena")
        return picture if picture["reports"] == 1 else None

    picture = wait_for(counted, timeout=30)
    assert picture["items"]["klotter"]["value"] == 2 and picture["items"]["klotter"]["label_sv"] == QUESTION_SV
    form.click("header button[lang=en]")
    form.wait_for_selector(f"fieldset.item:has(legend:text('{QUESTION_EN}'))")


def test_a_running_subscription_is_handed_over_in_the_admin_page(
        admin_system: System, open_as: Callable[..., Page]) -> None:
    s = admin_system
    made = httpx.post(f"{s.urls['notifier']}/v1/subscriptions", headers={"Authorization": "Bearer t-lena"},
                      json={"name": "Lenas veckobild", "scope": {"municipality_id": "vaxjo"},
                            "events": ["picture.published"], "channel": {"type": "email", "to": "lena@example.org"}},
                      timeout=10)
    assert made.status_code == 201, made.text
    sub = made.json()
    page = _admin(open_as)
    page.click("#tab-running")
    row = page.locator(f"li[data-sub='{sub['id']}']")
    row.wait_for()
    assert "Lena Lind" in row.inner_text() and "aktiv" in row.inner_text() and "e-post" in row.inner_text()
    assert_no_axe_violations(page)
    # without a chosen person nothing is sent
    row.locator("button", has_text="Lämna över").click()
    page.wait_for_selector("text=Välj ny ägare", state="attached")
    assert _get(s, "notifier", f"/v1/subscriptions/{sub['id']}", "t-admin")["owner_id"] == "lena"
    # Lena's own name is not offered: she holds it already
    offered = row.locator("select option").all_inner_texts()
    assert "Lena Lind" not in offered and "Anna Andersson" in offered
    row.locator("select").select_option(label="Admin")
    row.locator("button", has_text="Lämna över").click()
    page.wait_for_selector("text=Lenas veckobild ägs nu av Admin.")
    got = _get(s, "notifier", f"/v1/subscriptions/{sub['id']}", "t-admin")
    assert (got["owner_id"], got["status"]) == ("admin", "active")
    assert "Admin" in page.locator(f"li[data-sub='{sub['id']}']").inner_text()
    # Lena no longer has it among her own
    assert sub["id"] not in {x["id"] for x in _get(s, "notifier", "/v1/subscriptions", "t-lena")}
    # the new owner is no longer offered it: Lena is
    offered = page.locator(f"li[data-sub='{sub['id']}'] select option").all_inner_texts()
    assert "Admin" not in offered and "Lena Lind" in offered
    page.click("header button[lang=en]")
    assert page.locator("#tab-running").inner_text() == "Running subscriptions"
