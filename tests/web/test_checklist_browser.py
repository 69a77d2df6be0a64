"""A municipality's own checklist in the reporter form (headless Chromium, the whole system started with
``est up``): its groups are the form's headings, each item shows its help text and its level scale's own
step names, an item without places has no place picker, the texts follow the language switch, and the
report is sent against the municipality's checklist and counted; a reporter in two municipalities gets
each area's own checklist. The form passes axe (WCAG 2.1 AA)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import yaml

from tests.support import TRYGG_1, System, e2e_org, start_system, wait_for
from tests.web.axe import assert_no_axe_violations

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """The e2e organisation with Växjö on its own checklist (``sign_in`` signs in to this system)."""
    org = e2e_org()
    org["checklists"] = [TRYGG_1]
    org["municipalities"][0]["checklist"] = "vaxjo-trygg@1"
    org["municipalities"].append({"id": "alvesta", "name": "Alvesta kommun", "areas": [
        {"id": "alv-centrum", "name": "Alvesta centrum", "places": ["stationen"]}]})  # the standard checklist
    org["people"].append({"id": "kim", "name": "Kim Kvist", "actor": "kommunen", "roles": ["reporter"],
                          "areas": ["araby", "alv-centrum"], "token": "t-kim"})
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(org, allow_unicode=True), encoding="utf-8")
    s = start_system(tmp_path / "var", path)
    yield s
    s.stop()


def test_the_form_is_the_municipalitys_own_checklist_with_groups_help_and_scale(
        system: System, sign_in: Callable[..., Page]) -> None:
    me = httpx.get(f"{system.urls['intake']}/v1/me", headers={"Authorization": "Bearer t-anna"}, timeout=10).json()
    period = next(a["current_period"] for a in me["areas"] if a["id"] == "araby")
    page = sign_in("t-anna", "#form-title", viewport={"width": 420, "height": 900})

    # the groups in their order, each heading its own items; the item of no group comes first
    assert page.locator("section.group h3").all_inner_texts() == ["Fysisk miljö", "Människor"]
    assert page.locator("section.group[data-group=miljo] fieldset.item legend").all_inner_texts() == [
        "Klotter och taggar", "Trasiga lampor"]
    assert page.locator("section.group[data-group=manniskor] fieldset.item legend").all_inner_texts() == [
        "Oro på nätet"]
    legends = page.locator("#report-form fieldset.item legend").all_inner_texts()
    assert legends == ["Annat som oroar", "Klotter och taggar", "Trasiga lampor", "Oro på nätet"]
    assert "Skadegörelse" not in page.inner_text("#report-form")  # not the standard checklist

    tag = "fieldset.item:has(legend:text('Klotter och taggar'))"
    assert page.inner_text(f"{tag} p.help") == "Räkna inte lagliga väggar."
    assert page.get_attribute(f"{tag} [role=radiogroup]", "aria-describedby") == "i-klotter_tag-help"
    assert page.locator(f"{tag} .levels label").all_inner_texts() == ["0 rent", "1 lite", "2 mycket", "3 överallt"]
    other = "fieldset.item:has(legend:text('Annat som oroar'))"
    assert page.locator(f"{other} .levels label").all_inner_texts() == [
        "0 inget", "1 enstaka", "2 återkommande", "3 omfattande"]  # no scale of its own: the default
    assert page.locator(f"{other} p.help").count() == 0

    # answered, an item with places offers the area's places; one with places: false does not
    page.check(f"{tag} input[value='2']")
    page.check(f"{tag} .chips input >> nth=0")  # centrum
    oro = "fieldset.item:has(legend:text('Oro på nätet'))"
    page.check(f"{oro} input[type=radio] >> nth=0")  # ja
    page.wait_for_selector(f"{oro}.answered")
    assert page.locator(f"{oro} .chips").count() == 0
    assert page.locator(f"{tag} .chips input").count() == 3

    # English: headings, labels, help texts and step names follow the switch
    page.click("header.top button:text('English')")
    page.wait_for_selector("section.group h3:text('Physical environment')")
    assert page.locator("section.group h3").all_inner_texts() == ["Physical environment", "People"]
    tag_en = "fieldset.item:has(legend:text('Graffiti and tags'))"
    assert page.inner_text(f"{tag_en} p.help") == "Do not count legal walls."
    assert page.locator(f"{tag_en} .levels label").all_inner_texts() == ["0 clean", "1 a little", "2 a lot",
                                                                         "3 everywhere"]
    assert page.inner_text("fieldset.item:has(legend:text('Unrest online')) p.help") == "Rumours on social media."
    assert page.is_checked(f"{tag_en} input[value='2']")  # the answers stay
    assert_no_axe_violations(page)  # headings, help texts and answered items, WCAG 2.1 AA

    with page.expect_request(lambda r: r.url.endswith("/api/intake/v1/reports") and r.method == "POST") as sent:
        page.click("#submit")
    body = json.loads(sent.value.post_data or "{}")
    assert body["checklist"] == "vaxjo-trygg@1"
    assert body["answers"] == {"klotter_tag": {"value": 2, "places": ["centrum"]}, "oro_natet": {"value": True}}
    page.wait_for_selector("#outbox li[data-state=accepted]")
    page.wait_for_selector("text=The report was received.")

    url = f"{system.urls['aggregator']}/v1/areas/araby/pictures/{period}"
    counted = wait_for(lambda: (lambda p: p if p.get("reports", 0) >= 1 else None)(
        httpx.get(url, headers={"Authorization": "Bearer t-lena"}, timeout=10).json()))
    assert counted["items"]["klotter_tag"]["value"] == 2  # the aggregator counts it by its own checklist


    # a reporter in two municipalities fills in each area's own checklist
    kim = sign_in("t-kim", "#form-title", viewport={"width": 420, "height": 900})
    assert kim.locator("section.group h3").all_inner_texts() == ["Fysisk miljö", "Människor"]  # Araby first
    kim.select_option("#area", "alv-centrum")
    kim.wait_for_selector("fieldset.item legend:text('Skadegörelse')")
    assert kim.locator("section.group").count() == 0 and "Klotter och taggar" not in kim.inner_text("#report-form")
    kim.check("input[name=i-klotter][value='1']")
    with kim.expect_request(lambda r: r.url.endswith("/api/intake/v1/reports") and r.method == "POST") as sent:
        kim.click("#submit")
    assert json.loads(sent.value.post_data or "{}")["checklist"] == "est-standard@1"
    kim.wait_for_selector("#outbox li[data-state=accepted]")
    kim.select_option("#area", "araby")
    kim.wait_for_selector("section.group h3:text('Fysisk miljö')")
