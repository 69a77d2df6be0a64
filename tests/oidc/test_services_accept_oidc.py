"""JWT access tokens of a real OpenID provider (tests/oidc/provider.mjs, the npm package oidc-provider) are
accepted by every service and through the web gateway; forged, expired and otherwise wrong tokens are 401; a valid
token for nobody of the organisation is 403; the services follow a key rotation (the JWKS is fetched again for an
unknown key id, at most once a minute).

The four services and the web gateway run in-process on a NATS server of this module's own; the intake applies
the organisation file at start and the others follow it over the bus. The provider's users: Anna (in the
organisation as a reporter, her e-mail in another case), Lena (styrgrupp) and Olof (in no organisation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from est_aggregator.app import Settings as AggregatorSettings
from est_aggregator.app import create_app as aggregator_app
from est_analysis.app import Settings as AnalysisSettings
from est_analysis.app import create_app as analysis_app
from est_intake.app import create_app as intake_app
from est_intake.settings import IntakeSettings
from est_notifier.app import Settings as NotifierSettings
from est_notifier.app import create_app as notifier_app
from est_shared.natsserver import NatsServer
from est_shared.testing import serve
from est_web.app import create_app as web_app
from est_web.settings import WebSettings
from fastapi import FastAPI

from tests.intake.support import TOKENS, make_org, report
from tests.oidc.support import (
    AUDIENCE,
    OidcProvider,
    SigningKey,
    claims_of,
    hs256_with_public_key,
    oidc_provider,
    unsigned,
)
from tests.support import eventually

__all__ = ["oidc_provider"]

READS = {  # one read per service that Anna (reporter in araby) may make
    "intake": "/v1/me",
    "aggregator": "/v1/areas/araby/alerts",
    "notifier": "/v1/subscriptions",
    "analysis": "/v1/measures?area_id=araby",
    "web": "/api/intake/v1/me",
    "web→aggregator": "/api/aggregator/v1/areas/araby/alerts",
}


def org() -> dict[str, Any]:
    doc = make_org()
    for person in doc["people"]:
        if person["id"] == "lena":
            person["email"] = "lena@example.org"
    return doc


@dataclass
class World:
    provider: OidcProvider
    apps: dict[str, FastAPI]
    clients: dict[str, httpx.AsyncClient]
    org_file: Path

    async def statuses(self, token: str) -> dict[str, int]:
        answers = await asyncio.gather(*(self.get(name, token) for name in READS))
        return {name: r.status_code for name, r in zip(READS, answers, strict=True)}

    async def get(self, name: str, token: str) -> httpx.Response:
        client = self.clients["web" if name.startswith("web") else name]
        return await client.get(READS[name], headers={"Authorization": f"Bearer {token}"})

    async def put_org(self, doc: dict[str, Any]) -> None:
        r = await self.clients["intake"].put("/v1/admin/org", content=yaml.safe_dump(doc, allow_unicode=True),
                                             headers={"Authorization": f"Bearer {TOKENS['admin']}",
                                                      "Content-Type": "application/yaml"})
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def module_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats-oidc"), log_file=None).start()
    yield server
    server.kill()


@pytest_asyncio.fixture(scope="module")
async def world(module_nats: NatsServer, oidc_provider: OidcProvider,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    data = tmp_path_factory.mktemp("oidc-services")
    org_file = data / "org.yaml"
    org_file.write_text(yaml.safe_dump(org(), allow_unicode=True), encoding="utf-8")
    common: dict[str, Any] = {"nats_url": module_nats.url, "log_level": "WARNING",
                              "oidc_issuer": oidc_provider.issuer, "oidc_audience": AUDIENCE}
    apps: dict[str, FastAPI] = {
        "intake": intake_app(IntakeSettings(**common, data_dir=data / "intake", org_file=org_file,
                                            publish_timeout=2.0)),
        "aggregator": aggregator_app(AggregatorSettings(**common, data_dir=data / "aggregator",
                                                         auto_publish_interval=0, outbox_interval=0.1)),
        "notifier": notifier_app(NotifierSettings(**common, data_dir=data / "notifier", reminders_enabled=False)),
        "analysis": analysis_app(AnalysisSettings(**common, data_dir=data / "analysis", auto_compile=False,
                                                  browser="none", outbox_interval_seconds=0.1)),
    }
    async with AsyncExitStack() as stack:
        clients: dict[str, httpx.AsyncClient] = {}
        urls: dict[str, str] = {}
        for name, app in apps.items():
            urls[name] = await stack.enter_async_context(serve(app))
            clients[name] = await stack.enter_async_context(httpx.AsyncClient(base_url=urls[name], timeout=20))
        web = web_app(WebSettings(log_level="WARNING", data_dir=data / "web", intake_url=urls["intake"],
                                  aggregator_url=urls["aggregator"],
                                  notifier_url=urls["notifier"], analysis_url=urls["analysis"]))
        clients["web"] = await stack.enter_async_context(
            httpx.AsyncClient(base_url=await stack.enter_async_context(serve(web)), timeout=20))
        w = World(provider=oidc_provider, apps=apps, clients=clients, org_file=org_file)
        # every service follows the organisation the intake applied (Anna's opaque token works everywhere)
        await eventually(lambda: _all(w, TOKENS["anna"], 200), timeout=30, interval=0.2)
        yield w


async def _all(w: World, token: str, status: int) -> bool:
    return set((await w.statuses(token)).values()) == {status}


def _bearer_invalid(r: httpx.Response) -> bool:
    return r.status_code == 401 and r.headers.get("www-authenticate") == 'Bearer error="invalid_token"'


async def test_a_provider_token_of_a_person_is_accepted_by_every_service_and_the_gateway(world: World) -> None:
    token = world.provider.user_token("anna")  # authorization code + PKCE
    assert await world.statuses(token) == dict.fromkeys(READS, 200)
    me = (await world.get("intake", token)).json()
    assert (me["id"], me["roles"]) == ("anna", ["reporter"])  # "Anna@Example.org" is anna@example.org
    via_web = (await world.get("web", token)).json()
    assert via_web["id"] == "anna"
    # a report through the intake's fast path, with the same token
    r = await world.clients["intake"].post("/v1/reports", json=report(), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 202, r.text


async def test_roles_and_areas_come_from_the_organisation_never_from_the_token(world: World) -> None:
    lena = (await world.get("intake", world.provider.user_token("lena"))).json()
    assert (lena["id"], lena["roles"]) == ("lena", ["styrgrupp"])
    # a token the provider's key signed, claiming to be an admin of every area: still Anna the reporter
    forged = world.provider.forge(roles=["admin"], areas=["braas"], groups=["admin"])
    me = await world.get("intake", forged)
    assert (me.json()["id"], me.json()["roles"]) == ("anna", ["reporter"])
    assert (await world.clients["aggregator"].get(
        "/v1/areas/braas/alerts", headers={"Authorization": f"Bearer {forged}"})).status_code == 403


def _refused_tokens(p: OidcProvider) -> dict[str, str]:
    now = int(time.time())
    key = p.keys[0]
    like_provider = claims_of(p.user_token("anna"))
    return {
        "expired": p.forge(exp=now - 60, iat=now - 700, nbf=now - 700),
        "not yet valid": p.forge(nbf=now + 120),
        "wrong issuer": p.forge(iss="http://127.0.0.1:1"),
        "issuer with a trailing slash": p.forge(iss=p.issuer + "/"),
        "wrong audience": p.forge(aud="https://other.example.org/api"),
        "no audience": p.forge(aud=None),
        "no expiry": p.forge(exp=None),
        "another key with the same kid": p.forge(signing_key=SigningKey.rsa(kid=key.kid).private),
        "the provider's token with a changed e-mail": p.forge(
            like_provider, signing_key=SigningKey.rsa().private, kid=key.kid, email="lena@example.org"),
        "alg none": unsigned(claims_of(p.forge()), key.kid),
        "HS256 with the public key as secret": hs256_with_public_key(claims_of(p.forge()), key),
        "not a JWT at all": "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
    }


async def test_bad_tokens_are_401_everywhere(world: World) -> None:
    fetches = world.provider.jwks_fetches()
    refused = _refused_tokens(world.provider)
    for case, token in refused.items():
        answers = await asyncio.gather(*(world.get(name, token) for name in READS))
        wrong = {name: (r.status_code, r.headers.get("www-authenticate")) for name, r in zip(READS, answers,
                                                                                                strict=True)
                 if not _bearer_invalid(r)}
        assert not wrong, f"{case}: {wrong}"
    assert world.provider.jwks_fetches() == fetches  # no key id was unknown: nothing fetched again


async def test_leeway_and_audience_lists_are_honoured(world: World) -> None:
    now = int(time.time())
    p = world.provider
    accepted = {
        "expired 10 s ago (within the 30 s leeway)": p.forge(exp=now - 10, iat=now - 600, nbf=now - 600),
        "valid from in 10 s (within the leeway)": p.forge(nbf=now + 10),
        "an audience list holding ours": p.forge(aud=["https://other.example.org", AUDIENCE]),
        "signed by the EC key of the key set (ES256)": p.forge(key=p.keys[1]),
    }
    for case, token in accepted.items():
        assert await world.statuses(token) == dict.fromkeys(READS, 200), case


async def test_an_expired_token_is_refused_even_after_it_was_accepted(world: World) -> None:
    """The intake keeps opaque callers per organisation version; an access token is checked every time."""
    token = world.provider.forge(exp=int(time.time()) - 28)  # 2 s left of the leeway
    headers = {"Authorization": f"Bearer {token}"}
    assert (await world.clients["intake"].post("/v1/reports", json=report(), headers=headers)).status_code == 202
    await asyncio.sleep(3)
    r = await world.clients["intake"].post("/v1/reports", json=report(), headers=headers)
    assert _bearer_invalid(r), (r.status_code, r.text)
    assert _bearer_invalid(await world.get("intake", token))


async def test_a_valid_token_for_nobody_of_the_organisation_is_403(world: World) -> None:
    for token in (world.provider.user_token("olof"),  # a user of the provider, in no organisation
                  world.provider.service_token()):  # client_credentials: the client itself, no e-mail
        answers = await asyncio.gather(*(world.get(name, token) for name in READS))
        for name, r in zip(READS, answers, strict=True):
            assert r.status_code == 403, (name, r.status_code, r.text)
            body = r.json()
            assert body["reason"] == "not_in_organisation", (name, body)
            assert "ingen i organisationen" in body["detail"] and "nobody in the organisation" in body["detail"]


async def test_a_person_removed_from_the_organisation_is_403_and_their_stream_ends(world: World) -> None:
    token = world.provider.user_token("anna")
    assert await world.statuses(token) == dict.fromkeys(READS, 200)
    lines: list[str] = []
    connected = asyncio.Event()

    async def read_stream() -> None:
        async with world.clients["notifier"].stream("GET", "/v1/stream", headers={"Authorization": f"Bearer {token}"},
                                                    timeout=httpx.Timeout(10, read=60)) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                lines.append(line)
                if line == ": connected":
                    connected.set()

    reader = asyncio.create_task(read_stream())
    try:
        await asyncio.wait_for(connected.wait(), 15)
        without = org()
        without["people"] = [p for p in without["people"] if p["id"] != "anna"]
        await world.put_org(without)
        await eventually(lambda: _all(world, token, 403), timeout=15, interval=0.1)
        await asyncio.wait_for(reader, 15)
        assert "event: stream.closed" in lines, lines
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await world.put_org(org())
    await eventually(lambda: _all(world, token, 200), timeout=15, interval=0.1)


async def test_es256_tokens_of_the_provider_are_accepted(world: World) -> None:
    p = world.provider
    p.restart(alg="ES256")  # the same key set: the EC key signs now
    try:
        token = p.user_token("anna")
        assert claims_of(token)["iss"] == p.issuer
        assert await world.statuses(token) == dict.fromkeys(READS, 200)
    finally:
        p.restart(alg="RS256")


def shift_clocks(world: World, seconds: float) -> None:
    """Move the clock the services' key caches read (monotonic seconds) on by ``seconds`` from now."""
    for app in world.apps.values():
        app.state.runtime.oidc.monotonic = lambda: time.monotonic() + seconds


async def test_key_rotation_is_followed_at_most_once_a_minute(world: World) -> None:
    """Runs last: after it the services may not fetch the keys again for a minute."""
    p = world.provider
    shift_clocks(world, 61)  # a minute after the services last fetched the keys (at the first test's token)
    old = p.keys[0]
    p.restart(keys=[SigningKey.rsa()])  # a new key set; the services still hold the old one
    assert p.jwks_fetches() == 0
    token = p.user_token("anna")
    at_once = await asyncio.gather(*(world.statuses(token) for _ in range(8)))  # 8 requests per service at once
    assert at_once == [dict.fromkeys(READS, 200)] * 8
    assert p.jwks_fetches() == 4  # each of the four services fetched the keys again, once
    assert _bearer_invalid(await world.get("intake", p.forge(key=old)))  # the old key is gone
    for _ in range(3):  # many requests with the new kid: no more fetches
        assert await world.statuses(token) == dict.fromkeys(READS, 200)
    assert p.jwks_fetches() == 4

    rotated = p.keys[0]
    p.restart(keys=[SigningKey.rsa(), rotated])  # a second new key within the minute
    newest = p.user_token("anna")
    assert _bearer_invalid(await world.get("intake", newest))
    assert set((await world.statuses(newest)).values()) == {401}
    assert p.jwks_fetches() == 0  # an unknown kid within a minute of the last fetch does not fetch
    assert await world.statuses(p.forge(key=rotated)) == dict.fromkeys(READS, 200)  # the cached key still works

    shift_clocks(world, 122)  # a minute later
    assert await world.statuses(newest) == dict.fromkeys(READS, 200)
    assert p.jwks_fetches() == 4


async def test_access_tokens_and_key_fetches_are_counted(world: World) -> None:
    """Runs after the others: every service counted what they sent it."""
    for name in world.apps:
        text = (await world.clients[name].get("/metrics")).text
        counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                  if line.startswith((f"est_{name}_access_tokens_total", f"est_{name}_oidc_key_fetches_total"))}
        for outcome in ("accepted", "invalid", "not_in_organisation"):
            assert counts.get(f'est_{name}_access_tokens_total{{outcome="{outcome}"}}', 0) > 0, (name, counts)
        # the first token, the rotation, and a minute after it
        assert counts.get(f'est_{name}_oidc_key_fetches_total{{outcome="ok"}}') == 3, (name, counts)
