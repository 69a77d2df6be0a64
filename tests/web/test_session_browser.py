"""Signing in and out in Chromium: the personal-token form posts the token once, the app then keeps no
credential anywhere a script can read (localStorage, document.cookie), shows the person's own page from the
real API, and signing out leaves the session dead at the gateway."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page

from tests.support import System


def test_the_app_keeps_no_credential_and_sign_out_ends_the_session(
        system: System, sign_in: Callable[..., Page]) -> None:
    page = sign_in("t-lena", "#heatmap", viewport={"width": 1280, "height": 1000})
    page.wait_for_selector("#heatmap >> text=Araby")  # the dashboard shows the real API's areas
    stored = page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
    assert "t-lena" not in stored and "est.token" not in stored, stored
    assert page.evaluate("document.cookie") == "", "the session cookie is HttpOnly"
    assert "Lena Lind" in page.evaluate("localStorage.getItem('est.me')"), "the display copy of who is signed in"
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (
        "est_session", True, "Strict", "/")
    assert page.request.get(f"{system.urls['web']}/api/intake/v1/me").json()["name"] == "Lena Lind"

    # a reload keeps the session (the cookie), not a token of the page's
    page.reload()
    page.wait_for_selector("#heatmap")

    page.get_by_role("button", name="Logga ut").click()
    page.wait_for_selector("#token")
    assert page.evaluate("localStorage.getItem('est.me')") is None
    assert page.context.cookies() == []
    old = cookie["value"]
    dead = page.request.get(f"{system.urls['web']}/session", headers={"Cookie": f"est_session={old}"})
    assert dead.status == 401
    assert page.request.get(f"{system.urls['web']}/api/intake/v1/me",
                            headers={"Cookie": f"est_session={old}"}).status == 401

    # a wrong token is refused on the form, in Swedish
    page.fill("#token", "fel-nyckel")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Nyckeln gäller inte.")
    assert page.evaluate("Object.keys(localStorage).filter((k) => k.includes('token'))") == []

    # and the reporter signs in through the same form and sees her own form
    page.fill("#token", "t-anna")
    page.click("button[type=submit]")
    page.wait_for_selector("#form-title")
    assert "t-anna" not in page.evaluate("JSON.stringify(Object.assign({}, localStorage))")
