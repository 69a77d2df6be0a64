"""The OpenID Connect code flow with PKCE at the web front end, against the real test provider (tests/oidc): the
gateway redirects to the provider with state, nonce and an S256 challenge, exchanges the code (a confidential
client), verifies the ID token, keeps the provider's access token server-side and forwards with it; a callback
with another state or a code used twice is refused; sign-out ends the session and names the provider's
end-session page. The intake is a stand-in on a real port that answers /v1/me for the token's e-mail."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from est_shared.testing import free_port, serve
from est_web.app import create_app
from est_web.settings import WebSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.oidc.support import AUDIENCE, OidcProvider, SigningKey, claims_of

NAMES = {"lena@example.org": "Lena Lind"}


def _intake(seen: list[str]) -> Starlette:
    async def me(request: Request) -> JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        seen.append(token)
        email = str(claims_of(token).get("email", "")).lower() if token.count(".") == 2 else ""
        if email in NAMES:
            return JSONResponse({"person_id": email.split("@")[0], "name": NAMES[email], "roles": ["key_function"]})
        return JSONResponse({"title": "Unauthorized", "status": 401}, status_code=401)

    return Starlette(routes=[Route("/v1/me", me)])


def _at_provider(provider: OidcProvider, url: str, account: str) -> str:
    """The provider's part as a browser walks it (its sign-in form filled in): the redirect back to the web."""
    with httpx.Client(timeout=10) as http:
        r = http.get(url)
        for _ in range(10):
            if r.status_code == 200 and 'name="login"' in r.text:
                r = http.post(str(r.url), data={"login": account})
                continue
            assert r.is_redirect, f"{r.status_code}: {r.text[:300]}"
            location = urljoin(str(r.url), r.headers["location"])
            if "/session/oidc/callback" in location:
                return location
            r = http.get(location)
    raise AssertionError("the provider never sent the browser back")


async def test_the_code_flow_signs_in_with_the_providers_token_kept_server_side(tmp_path: Path) -> None:
    port = free_port()
    web_url = f"http://127.0.0.1:{port}"
    provider = OidcProvider(tmp_path / "provider", keys=[SigningKey.rsa()],
                            redirect_uris=[f"{web_url}/session/oidc/callback"],
                            post_logout_redirect_uris=[f"{web_url}/app/"], web_client_secret="web-secret")
    await asyncio.to_thread(provider.start)
    seen: list[str] = []
    try:
        async with serve(_intake(seen)) as intake_url:
            web = create_app(WebSettings(
                intake_url=intake_url, log_level="WARNING", data_dir=tmp_path / "web", oidc_issuer=provider.issuer,
                oidc_client_id="est-web", oidc_client_secret="web-secret", oidc_audience=AUDIENCE,
                oidc_scopes="openid email offline_access api", oidc_resource=AUDIENCE))
            async with serve(web, port=port), httpx.AsyncClient(base_url=web_url, timeout=30) as browser:
                assert (await browser.get("/session/methods")).json() == {"token": True, "demo": False, "oidc": True}
                start = await browser.get("/session/oidc")
                assert start.status_code == 303
                auth = urlsplit(start.headers["location"])
                query = parse_qs(auth.query)
                assert f"{auth.scheme}://{auth.netloc}" == provider.issuer
                assert query["code_challenge_method"] == ["S256"] and query["client_id"] == ["est-web"]
                assert query["redirect_uri"] == [f"{web_url}/session/oidc/callback"]
                assert query["state"] and query["nonce"] and len(query["code_challenge"][0]) == 43
                pending = start.headers["set-cookie"]
                assert "est_oidc=" in pending and "SameSite=lax" in pending and "HttpOnly" in pending
                assert query["state"][0] not in pending, "the pending record is sealed"

                back = await asyncio.to_thread(_at_provider, provider, start.headers["location"], "lena")
                # another state than the pending sign-in's is refused
                forged = back.replace("state=", "state=x")
                assert (await browser.get(forged)).status_code == 400
                done = await browser.get(back)
                assert done.status_code == 303 and done.headers["location"] == "/app/", done.text
                assert "est_session" in browser.cookies
                who = await browser.get("/session")
                assert who.status_code == 200 and who.json()["me"]["name"] == "Lena Lind"
                assert who.json()["kind"] == "oidc"
                assert (await browser.get("/api/intake/v1/me")).json()["name"] == "Lena Lind"
                assert claims_of(seen[-1])["aud"] in (AUDIENCE, [AUDIENCE]), "forwarded with the provider's token"
                assert seen[-1] not in done.headers.get("set-cookie", ""), "the token stays in the gateway"
                # the same code again: refused (the pending record is gone, and the provider would refuse it)
                again = httpx.AsyncClient(base_url=web_url)
                assert (await again.get(back)).status_code == 400
                await again.aclose()

                old = browser.cookies["est_session"]
                csrf = who.json()["csrf_token"]
                out = await browser.post("/session/sign-out", headers={"X-CSRF-Token": csrf})
                assert out.status_code == 200, out.text
                end = out.json()["end_session_url"]
                assert end.startswith(provider.issuer) and "id_token_hint=" in end
                async with httpx.AsyncClient(base_url=web_url, cookies={"est_session": old}) as stale:
                    assert (await stale.get("/session")).status_code == 401
                    assert (await stale.get("/api/intake/v1/me")).status_code == 401
    finally:
        provider.stop()
