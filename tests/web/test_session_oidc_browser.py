"""Signing in to the web app in Chromium through a real OpenID provider (tests/oidc: node oidc-provider) and its
own login page, against the whole system started with ``est up`` and ``EST_OIDC_*``: a key function and a
reporter each see only their own areas, no token is readable by the page's scripts, and signing out ends the
session at the gateway and at the provider."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from est_shared.periods import current_period
from est_shared.testing import free_port
from playwright.sync_api import Browser, Page

from tests.oidc.support import AUDIENCE, OidcProvider, SigningKey
from tests.support import SERVICES, System, e2e_org, start_system, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def oidc_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, OidcProvider]]:
    root = tmp_path_factory.mktemp("oidc-web")
    ports = {s: free_port() for s in SERVICES}
    web = f"http://127.0.0.1:{ports['web']}"
    provider = OidcProvider(root / "provider", keys=[SigningKey.rsa()],
                            redirect_uris=[f"{web}/session/oidc/callback"],
                            post_logout_redirect_uris=[f"{web}/app/"], web_client_secret="web-secret").start()
    org = root / "org.yaml"
    org.write_text(yaml.safe_dump(e2e_org(), allow_unicode=True), encoding="utf-8")
    try:
        system = start_system(root / "var", org, ports=ports, extra_env={
            **provider.env(), "EST_OIDC_CLIENT_ID": "est-web", "EST_OIDC_CLIENT_SECRET": "web-secret",
            "EST_OIDC_SCOPES": "openid email offline_access api", "EST_OIDC_RESOURCE": AUDIENCE})
        try:
            # the organisation is known to every service before anyone signs in
            wait_for(lambda: httpx.get(f"{system.urls['intake']}/v1/me", headers={"Authorization": "Bearer t-lena"},
                                       timeout=5).status_code == 200, timeout=60)
            yield system, provider
        finally:
            system.stop()
    finally:
        provider.stop()


def _sign_in_at_provider(browser: Browser, system: System, provider: OidcProvider, account: str,
                         ready: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
    page.goto(f"{system.urls['web']}/app/")
    page.click("#oidc-sign-in")  # "Logga in med organisationens konto"
    page.wait_for_url(f"{provider.issuer}/interaction/**")  # the provider's own login page
    page.fill("#login", account)
    page.click("button[type=submit]")
    page.wait_for_url(f"{system.urls['web']}/app/**")
    page.wait_for_selector(ready)
    return page


def _no_token_for_scripts(page: Page) -> None:
    assert page.evaluate("document.cookie") == "", "the session cookie is HttpOnly"
    stored = page.evaluate("JSON.stringify([Object.assign({}, localStorage), Object.assign({}, sessionStorage)])")
    assert "eyJ" not in stored and "token" not in stored.lower(), stored  # no JWT, no token of any kind
    names = {c["name"]: c for c in page.context.cookies()}
    assert names["est_session"]["httpOnly"] and names["est_session"]["sameSite"] == "Strict"
    for cookie in page.context.cookies():
        assert not cookie["value"].startswith("eyJ"), f"a JWT in cookie {cookie['name']}"


def test_a_key_function_signs_in_at_the_provider_sees_her_areas_and_signs_out(
        browser: Browser, oidc_system: tuple[System, OidcProvider]) -> None:
    system, provider = oidc_system
    page = _sign_in_at_provider(browser, system, provider, "lena", "#heatmap")
    page.wait_for_selector("#heatmap >> text=Araby")
    page.wait_for_selector("#heatmap >> text=Dalbo")
    _no_token_for_scripts(page)
    who = page.request.get(f"{system.urls['web']}/session").json()
    assert (who["kind"], who["me"]["name"]) == ("oidc", "Lena Lind")
    areas = page.request.get(f"{system.urls['web']}/api/intake/v1/me").json()
    assert areas["name"] == "Lena Lind"

    old = next(c["value"] for c in page.context.cookies() if c["name"] == "est_session")
    page.get_by_role("button", name="Logga ut").click()
    # the provider's end-session page asks to confirm signing out there too (its own page), then sends the
    # browser back to the app's sign-in
    page.wait_for_url(f"{provider.issuer}/**")
    page.locator("button[type=submit], input[type=submit]").first.click()
    page.wait_for_url(f"{system.urls['web']}/app/**")
    page.wait_for_selector("#oidc-sign-in")
    assert page.request.get(f"{system.urls['web']}/session",
                            headers={"Cookie": f"est_session={old}"}).status == 401
    assert page.request.get(f"{system.urls['web']}/api/intake/v1/me",
                            headers={"Cookie": f"est_session={old}"}).status == 401
    # the provider's session is gone too: signing in again shows its login page, not an automatic return
    page.click("#oidc-sign-in")
    page.wait_for_url(f"{provider.issuer}/interaction/**")
    page.wait_for_selector("#login")
    page.context.close()


def test_a_reporter_signs_in_at_the_provider_and_sees_only_her_own_area(
        browser: Browser, oidc_system: tuple[System, OidcProvider]) -> None:
    system, provider = oidc_system
    page = _sign_in_at_provider(browser, system, provider, "anna", "#form-title")
    _no_token_for_scripts(page)
    me = page.request.get(f"{system.urls['web']}/api/intake/v1/me").json()
    assert me["name"] == "Anna Andersson"
    assert [a["id"] for a in me["areas"]] == ["araby"]
    body = page.inner_text("main")
    assert "Araby" in body and "Dalbo" not in body, body
    # the dashboard of another area is not hers: the API refuses it through her session
    week = current_period("weekly", datetime.now(UTC), "Europe/Stockholm").id
    assert page.request.get(f"{system.urls['web']}/api/aggregator/v1/areas/dalbo/pictures/{week}").status == 403
    page.context.close()


def test_an_account_of_nobody_in_the_organisation_is_told_so_on_the_apps_sign_in_page(
        browser: Browser, oidc_system: tuple[System, OidcProvider]) -> None:
    system, provider = oidc_system
    page = _sign_in_at_provider(browser, system, provider, "olof", "#oidc-sign-in")
    page.wait_for_selector("text=Kontot du loggade in med hör inte till någon i organisationen.")
    assert page.url == f"{system.urls['web']}/app/", "the reason is taken off the address once shown"
    assert [c["name"] for c in page.context.cookies() if c["name"] == "est_session"] == []
    assert page.request.get(f"{system.urls['web']}/session").status == 401
    page.context.close()
