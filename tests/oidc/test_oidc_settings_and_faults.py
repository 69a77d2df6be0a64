"""The ``EST_OIDC_*`` settings every service reads refuse what cannot be safe at start-up, and the edges of the
verifier: a provider that is away (503 until it answers), a discovery document of another issuer, a JWT when no
provider is configured (the organisation's tokens only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from est_aggregator.settings import AggregatorSettings
from est_analysis.settings import AnalysisSettings
from est_intake.settings import IntakeSettings
from est_notifier.settings import NotifierSettings
from est_shared.adapters.oidc_http import fetch_json
from est_shared.http import bearer_principal, install_problem_handlers
from est_shared.oidc import OidcConfig, OidcVerifier, looks_like_jwt
from est_shared.org import Actor, Directory, OrgSnapshot, Person, Principal, hash_token
from est_shared.settings import ServiceSettings
from est_shared.testing import free_port, serve
from est_web.settings import WebSettings
from fastapi import Depends, FastAPI
from pydantic import ValidationError

from tests.oidc.support import AUDIENCE, OidcProvider, SigningKey, oidc_provider
from tests.support import eventually

__all__ = ["oidc_provider"]

SETTINGS: list[type[ServiceSettings]] = [IntakeSettings, AggregatorSettings, NotifierSettings, AnalysisSettings,
                                         WebSettings]


@pytest.mark.parametrize("env", [
    {"EST_OIDC_ISSUER": "http://idp.example.org", "EST_OIDC_AUDIENCE": AUDIENCE},  # http off loopback
    {"EST_OIDC_ISSUER": "ftp://127.0.0.1", "EST_OIDC_AUDIENCE": AUDIENCE},
    {"EST_OIDC_ISSUER": "https://idp.example.org"},  # no audience
    {"EST_OIDC_ISSUER": "https://idp.example.org", "EST_OIDC_AUDIENCE": AUDIENCE, "EST_OIDC_ALGORITHMS": "HS256"},
    {"EST_OIDC_ISSUER": "https://idp.example.org", "EST_OIDC_AUDIENCE": AUDIENCE,
     "EST_OIDC_ALGORITHMS": "RS256,none"},
    {"EST_OIDC_ISSUER": "https://idp.example.org", "EST_OIDC_AUDIENCE": AUDIENCE, "EST_OIDC_ALGORITHMS": " , "},
    {"EST_OIDC_ISSUER": "https://idp.example.org", "EST_OIDC_AUDIENCE": AUDIENCE, "EST_OIDC_PERSON_CLAIM": ""},
])
def test_every_service_refuses_unsafe_oidc_settings_at_start(env: dict[str, str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for settings in SETTINGS:
        with pytest.raises(ValidationError, match="EST_OIDC_"):
            settings()


@pytest.mark.parametrize("issuer", ["https://idp.example.org/realms/est", "https://tenant.example.org/",
                                    "http://127.0.0.1:8443", "http://localhost:9000", "http://[::1]:9000"])
def test_https_and_loopback_issuers_are_taken(issuer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issuer is kept exactly as written (a trailing slash too: tokens must name it so)."""
    monkeypatch.setenv("EST_OIDC_ISSUER", issuer)
    monkeypatch.setenv("EST_OIDC_AUDIENCE", AUDIENCE)
    for settings in SETTINGS:
        config = OidcConfig.from_settings(settings())
        assert config is not None
        assert (config.issuer, config.audience, config.person_claim, config.algorithms, config.leeway) == (
            issuer, AUDIENCE, "email", ("RS256", "ES256"), 30.0)
        assert config.discovery_url == issuer.rstrip("/") + "/.well-known/openid-configuration"
    monkeypatch.delenv("EST_OIDC_ISSUER")
    assert OidcConfig.from_settings(IntakeSettings()) is None  # no issuer: the organisation's tokens only


def test_only_jws_in_compact_form_go_to_the_verifier() -> None:
    assert looks_like_jwt(OidcProvider(Path("."), keys=[SigningKey.rsa()]).forge())
    for opaque in ("tok-anna", "t-admin", "a.b.c", "eyJ.eyJ.x", "eyJub3QganNvbg.e30.x", "eyJ0eXAiOiJKV1QifQ.e30.x"):
        assert not looks_like_jwt(opaque), opaque


def _directory() -> Directory:
    anna = Person(id="anna", name="Anna Andersson", actor="hem", email="anna@example.org", roles=["reporter"],
                  token_sha256=hash_token("tok-anna"))
    return Directory(OrgSnapshot(version=1, actors={"hem": Actor(id="hem", name="Hem AB", kind="property_company")},
                                 people={"anna": anna}))


@asynccontextmanager
async def edge(verifier: OidcVerifier | None) -> AsyncIterator[httpx.AsyncClient]:
    """A small app whose one route needs a caller, resolved by ``bearer_principal`` as every service does."""
    app = FastAPI()
    install_problem_handlers(app)
    directory = _directory()
    caller = bearer_principal(lambda: directory, verifier)

    @app.get("/me")
    async def me(principal: Principal = Depends(caller)) -> dict[str, str]:  # noqa: B008 - FastAPI's way
        return {"id": principal.person_id}

    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield http


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_provider_that_is_away_is_503_until_it_answers(tmp_path: Path) -> None:
    port = free_port()
    provider = OidcProvider(tmp_path / "idp", keys=[SigningKey.rsa()], port=port)
    verifier = OidcVerifier(OidcConfig(issuer=provider.issuer, audience=AUDIENCE), fetch_json)
    async with edge(verifier) as http:
        r = await http.get("/me", headers=_bearer(provider.forge()))
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "5"
        assert "OpenID" in r.json()["detail"]
        assert (await http.get("/me", headers=_bearer("tok-anna"))).status_code == 200  # opaque tokens still work
        provider.start()
        try:
            token = provider.user_token("anna")

            async def accepted() -> bool:
                return (await http.get("/me", headers=_bearer(token))).status_code == 200

            await eventually(accepted, timeout=15, interval=0.5)  # asked again 5 s after the failed fetch
        finally:
            provider.stop()
        # the provider gone again: the cached keys still verify its tokens
        assert (await http.get("/me", headers=_bearer(token))).json() == {"id": "anna"}


async def test_a_discovery_document_of_another_issuer_gives_no_keys(oidc_provider: OidcProvider) -> None:
    alias = f"http://localhost:{oidc_provider.port}"  # the same server under another name than its issuer
    verifier = OidcVerifier(OidcConfig(issuer=alias, audience=AUDIENCE), fetch_json)
    async with edge(verifier) as http:
        r = await http.get("/me", headers=_bearer(oidc_provider.forge(iss=alias)))
        assert r.status_code == 503, r.text
    assert verifier.keys == []


async def test_without_a_provider_a_jwt_is_just_an_unknown_token(oidc_provider: OidcProvider) -> None:
    async with edge(None) as http:
        r = await http.get("/me", headers=_bearer(oidc_provider.user_token("anna")))
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert (await http.get("/me", headers=_bearer("tok-anna"))).json() == {"id": "anna"}
