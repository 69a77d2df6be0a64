"""The administrator's pages in a real browser against the whole system: the organisation edited through its
file (a place, a person, a person leaving) with the change list previewed before it is applied, the new
versions in the history with their differences, a personal API token issued, used and revoked, and a
subscription of a person who left restored to a new owner."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support import System, wait_for

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 1000}


def _get(system: System, service: str, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{system.urls[service]}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _applied(page: Page, version: int) -> None:
    page.click("#apply")
    page.wait_for_selector(f"text=Version {version} är sparad.")


def open_admin(sign_in: Callable[..., Page]) -> Page:
    page = sign_in("t-admin", "a[href='#admin']", viewport=DESKTOP)
    page.click("a[href='#admin']")
    page.wait_for_selector("#np-araby")
    return page


def test_admin_edits_the_organisation_tokens_and_subscriptions(system: System, sign_in: Callable[..., Page]) -> None:
    sub = httpx.post(f"{system.urls['notifier']}/v1/subscriptions", headers={"Authorization": "Bearer t-lena"},
                     json={"name": "Lenas bevakning", "scope": {"municipality_id": "vaxjo"},
                           "events": ["picture.published"], "channel": {"type": "email", "to": "lena@example.org"}},
                     timeout=10)
    assert sub.status_code == 201, sub.text
    page = open_admin(sign_in)
    assert "Växjö kommun" in page.inner_text("#main") and "Anna Andersson" in page.inner_text("table.people")

    # a place whose name holds a personal identity number: refused, the intake's reason next to the area
    page.fill("#np-araby", "Hos 19121212-1212")
    page.click("[data-area=araby] button[type=submit]")
    page.wait_for_selector("[data-area=araby] .field-error")
    assert not page.locator("#review").count()

    # a place: the dry run's change list in words, then applied as version 2
    page.fill("#np-araby", "Stationen")
    page.click("[data-area=araby] button[type=submit]")
    page.wait_for_selector("#review")
    assert "Blir version 2" in page.inner_text("#review")
    assert page.inner_text("#changes").strip() == "Ändrat område: Araby (platser)"
    _applied(page, 2)
    assert "Stationen" in page.inner_text("[data-area=araby]")
    assert "Stationen" in _get(system, "intake", "/v1/admin/org", "t-admin").json()["areas"]["araby"]["places"]

    # a person, reporter for Dalbo
    page.fill("#np-name", "Nils Nord")
    page.locator("form.add-person label", has_text="Dalbo").locator("input").check()
    page.click("#add-person")
    page.wait_for_selector("#review")
    assert page.inner_text("#changes").strip() == "Ny person: Nils Nord"
    _applied(page, 3)
    assert "Nils Nord" in page.inner_text("table.people")
    nils = _get(system, "intake", "/v1/admin/org", "t-admin").json()["people"]["nils-nord"]
    assert nils["roles"] == ["reporter"] and nils["areas"] == ["dalbo"]

    # Lena leaves without a successor: her subscription ends
    page.click("button[aria-label='Slutar: Lena Lind']")
    page.click("tr:has(#succ-lena) button.primary")
    page.wait_for_selector("#review")
    assert page.inner_text("#changes").strip() == "Borttagen person: Lena Lind"
    _applied(page, 4)

    # the history: who made each version, its changes, and the difference to the one before
    page.click("#tab-history")
    page.wait_for_selector("li[data-version='4']")
    v3 = page.inner_text("li[data-version='3']")
    assert "av Admin" in v3 and "Ny person: Nils Nord" in v3
    page.click("button[aria-label='Visa skillnad mot föregående: Version 2']")
    page.wait_for_selector("li[data-version='2'] .diff")
    assert "Araby: ny plats Stationen" in page.inner_text("li[data-version='2'] .diff")

    # a personal API token: shown once, works against the API, revoked it stops working
    page.click("#tab-tokens")
    page.select_option("#tok-person", "anna")
    page.wait_for_selector("text=Inga utfärdade nycklar.")
    page.fill("#tok-name", "Telefonen i fält")
    page.click("#issue")
    page.wait_for_selector("#new-token")
    assert "visas bara nu och aldrig igen" in page.inner_text(".token-once")
    token = page.input_value("#new-token")
    me = _get(system, "intake", "/v1/me", token)
    assert me.status_code == 200 and me.json()["name"] == "Anna Andersson"
    row = page.locator("tr", has_text="Telefonen i fält")
    assert "aldrig" in row.inner_text() or ":" in row.inner_text()
    page.click("button[aria-label='Återkalla: Telefonen i fält']")
    page.wait_for_selector("text=Nyckeln är återkallad.")
    assert _get(system, "intake", "/v1/me", token).status_code == 401
    assert not page.locator("tr", has_text="Telefonen i fält").count()

    # the ended subscription of the person who left, restored to the administrator
    def ended() -> list[dict[str, Any]]:
        subs = _get(system, "notifier", "/v1/subscriptions", "t-admin").json()
        return [s for s in subs if s["name"] == "Lenas bevakning" and s["status"] == "ended"]
    wait_for(ended)
    page.click("#tab-subs")
    item = page.locator("li", has_text="Lenas bevakning")
    item.wait_for()
    assert "Lena Lind" in item.inner_text()
    item.locator("select").select_option("admin")
    item.locator("button", has_text="Återställ").click()
    page.wait_for_selector("text=Prenumerationen ägs nu av Admin.")
    got = [s for s in _get(system, "notifier", "/v1/subscriptions", "t-admin").json() if s["name"] == "Lenas bevakning"]
    assert [(s["owner_id"], s["status"]) for s in got] == [("admin", "active")]
    assert page.locator("text=Inga avslutade prenumerationer.").count() == 1

    # English on request
    page.click("header button[lang=en]")
    assert page.locator("#tab-subs").inner_text() == "Ended subscriptions"


def test_a_person_leaving_with_a_successor_hands_over(system: System, sign_in: Callable[..., Page]) -> None:
    sub = httpx.post(f"{system.urls['notifier']}/v1/subscriptions", headers={"Authorization": "Bearer t-lena"},
                     json={"name": "Lenas bevakning", "scope": {"municipality_id": "vaxjo"},
                           "events": ["picture.published"], "channel": {"type": "email", "to": "lena@example.org"}},
                     timeout=10)
    assert sub.status_code == 201, sub.text
    page = open_admin(sign_in)
    page.click("button[aria-label='Slutar: Lena Lind']")
    page.select_option("#succ-lena", "admin")
    page.click("tr:has(#succ-lena) button.primary")
    page.wait_for_selector("#review")
    changes = page.inner_text("#changes")
    assert "Lena Lind lämnar över till Admin" in changes and "Därefter tas Lena Lind bort" in changes
    _applied(page, 3)
    assert "Lena Lind" not in page.inner_text("table.people")
    history = [v["changes"] for v in _get(system, "intake", "/v1/admin/org/history", "t-admin").json()["versions"]]
    assert history[:2] == [["person lena removed"],
                           ["person lena changed (successor)", "person lena handed over to admin"]]

    def handed() -> bool:
        subs = _get(system, "notifier", "/v1/subscriptions", "t-admin").json()
        return [(s["owner_id"], s["status"]) for s in subs if s["name"] == "Lenas bevakning"] == [("admin", "active")]
    wait_for(handed)
