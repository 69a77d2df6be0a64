"""The test provider itself (tests/oidc/provider.mjs) works as the sign-in tests rely on: a sign-in form for
browsers, a confidential est-web client, PKCE required, JWT access tokens for the one audience only."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt

from tests.oidc.support import AUDIENCE, OidcProvider, SigningKey, claims_of, oidc_provider

__all__ = ["oidc_provider"]


def test_the_sign_in_form_and_the_token_it_gives(oidc_provider: OidcProvider) -> None:
    token = oidc_provider.user_token("lena", by_form=True)
    key = oidc_provider.keys[0]
    claims = jwt.decode(token, key.private.public_key(), algorithms=["RS256"], audience=AUDIENCE,
                        issuer=oidc_provider.issuer)
    assert (claims["sub"], claims["email"], claims["client_id"]) == ("lena", "lena@example.org", "est-web")
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}


def test_pkce_is_required_and_other_audiences_are_refused(oidc_provider: OidcProvider) -> None:
    params = oidc_provider.authorization_request("s", "c" * 43, "anna")
    del params["code_challenge"], params["code_challenge_method"]
    r = httpx.get(f"{oidc_provider.issuer}/auth", params=params, timeout=10)
    assert "error=invalid_request" in r.headers.get("location", "") or r.status_code == 400, r.text
    r = httpx.post(f"{oidc_provider.issuer}/token", auth=("est-service", "est-service-secret"), timeout=10,
                   data={"grant_type": "client_credentials", "scope": "api", "resource": "https://other.example"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_target", r.text


def test_a_confidential_web_client(tmp_path: Path) -> None:
    provider = OidcProvider(tmp_path, keys=[SigningKey.ec()], alg="ES256", web_client_secret="gateway-secret",
                            redirect_uris=["http://127.0.0.1:8080/auth/callback"]).start()
    try:
        claims = claims_of(provider.user_token("anna"))
        assert (claims["email"], claims["aud"]) == ("Anna@Example.org", AUDIENCE)
        provider.web_client_secret = "wrong"
        try:
            provider.user_token("anna")
        except AssertionError as exc:
            assert "invalid_client" in str(exc)
        else:
            raise AssertionError("a wrong client secret was taken")
    finally:
        provider.stop()
