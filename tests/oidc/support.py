"""A real OpenID provider for the tests: the npm package ``oidc-provider`` run by ``tests/oidc/provider.mjs``.

``OidcProvider`` starts ``node provider.mjs`` on a free loopback port (``npm ci`` into tests/oidc/node_modules first
when it is missing), with signing keys made here (``SigningKey.rsa`` / ``SigningKey.ec``) so that a test can
rotate them (``restart(keys=...)``: same issuer, new key set) and forge tokens with keys of its own
(``forge``). Tokens come from the provider itself: ``user_token(account)`` walks the authorization code flow
with PKCE (the provider's test interaction signs in ``login_hint`` without a browser), ``service_token()`` uses
client_credentials (a token for no person). Fixtures: ``oidc_provider`` (module scope), ``oidc_env`` (the
``EST_OIDC_*`` settings for it). Import them into a test module or conftest to use them elsewhere (tests/web).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from est_shared.testing import free_port
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

HERE = Path(__file__).resolve().parent
AUDIENCE = "https://est.example.org/api"
REDIRECT_URI = "http://127.0.0.1/est-callback"
USERS = {  # account id -> e-mail as the provider says it (case differs from the organisation's on purpose)
    "anna": "Anna@Example.org",
    "lena": "lena@example.org",
    "olof": "olof.okand@example.org",  # in no organisation
}

_install_lock = threading.Lock()


def ensure_node_modules() -> None:
    """``npm ci`` into tests/oidc/node_modules unless oidc-provider is there already (package-lock.json pins it)."""
    with _install_lock:
        if (HERE / "node_modules" / "oidc-provider" / "package.json").exists():
            return
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            pytest.fail("the OpenID provider tests need Node.js 20 or later and npm (node provider.mjs)")
        version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout
        if int(version.lstrip("v").split(".")[0] or 0) < 20:
            pytest.fail(f"oidc-provider needs Node.js 20 or later, not {version.strip()}")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                              timeout=600, check=False)
        if done.returncode != 0:
            pytest.fail(f"npm ci in {HERE} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


@dataclass(frozen=True)
class SigningKey:
    """A signing key pair with its key id: the private JWK goes to the provider, the key signs forged tokens."""

    kid: str
    alg: str
    private: Any

    @classmethod
    def rsa(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or f"rsa-{secrets.token_hex(4)}", "RS256",
                   rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str | None = None) -> SigningKey:
        return cls(kid or f"ec-{secrets.token_hex(4)}", "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self, *, private: bool = True) -> dict[str, Any]:
        algo = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        key = self.private if private else self.private.public_key()
        out: dict[str, Any] = algo.to_jwk(key, as_dict=True)  # type: ignore[attr-defined]
        out.pop("key_ops", None)  # PyJWT says ["sign"] of a private key: the provider could not verify with it
        return {**out, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo))


@dataclass
class OidcProvider:
    """``node provider.mjs`` on a loopback port; see the module docstring."""

    workdir: Path
    keys: list[SigningKey]
    alg: str = "RS256"
    audience: str = AUDIENCE
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))
    access_token_ttl: int = 600
    port: int = field(default_factory=free_port)
    redirect_uris: list[str] = field(default_factory=lambda: [REDIRECT_URI])
    """Where est-web may be sent back to with a code (add the web gateway's callback for browser tests)."""
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    """Where est-web may send the browser back to after the provider's sign-out (the web app's /app/)."""
    web_client_secret: str | None = None
    """Makes est-web a confidential client (client_secret_basic), as a gateway holding sessions would be."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The services' settings for this provider."""
        return {"EST_OIDC_ISSUER": self.issuer, "EST_OIDC_AUDIENCE": self.audience}

    def start(self) -> OidcProvider:
        ensure_node_modules()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "provider.json"
        config.write_text(json.dumps({
            "port": self.port, "keys": [k.jwk() for k in self.keys], "alg": self.alg, "audience": self.audience,
            "users": {k: {"email": v} for k, v in self.users.items()}, "access_token_ttl": self.access_token_ttl,
            "redirect_uris": self.redirect_uris, "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "web_client_secret": self.web_client_secret}), encoding="utf-8")
        config.chmod(0o600)
        log = open(self.workdir / "provider.log", "ab")
        self.proc = subprocess.Popen(["node", str(HERE / "provider.mjs"), str(config)], cwd=HERE, stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "NODE_ENV": "test"})
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the OpenID provider exited: {self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the OpenID provider did not start in 30 s: {self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, *, keys: list[SigningKey] | None = None, alg: str | None = None) -> OidcProvider:
        """The same issuer (port) with another key set: a key rotation as the services see it."""
        self.stop()
        self.keys = keys if keys is not None else self.keys
        self.alg = alg or self.alg
        return self.start()

    def log(self) -> str:
        path = self.workdir / "provider.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def jwks_fetches(self) -> int:
        """How many times /jwks was fetched since the provider (re)started."""
        return int(httpx.get(f"{self.issuer}/test/stats", timeout=5).json()["jwks"])

    def authorization_request(self, state: str, challenge: str, login_hint: str | None) -> dict[str, str]:
        """The query of an authorization request of est-web (code flow, PKCE S256, for the API's audience)."""
        params = {"client_id": "est-web", "response_type": "code", "redirect_uri": self.redirect_uris[0],
                  "scope": "openid email api", "code_challenge": challenge, "code_challenge_method": "S256",
                  "resource": self.audience, "state": state, "nonce": secrets.token_hex(8)}
        return {**params, "login_hint": login_hint} if login_hint else params

    def user_token(self, account: str, *, by_form: bool = False) -> str:
        """An access token (JWT) for a user: the authorization code flow with PKCE, as a browser would walk it
        (``by_form``: without login_hint, filling in the provider's sign-in form)."""
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(12)
        redirect = self.redirect_uris[0]
        with httpx.Client(base_url=self.issuer, timeout=10) as http:
            r = http.get("/auth", params=self.authorization_request(state, challenge, None if by_form else account))
            for _ in range(10):
                location = r.headers.get("location", "")
                if by_form and r.status_code == 200 and 'name="login"' in r.text:
                    r = http.post(str(r.url), data={"login": account})
                    continue
                assert r.is_redirect, f"expected a redirect, got {r.status_code}: {r.text[:500]}"
                if location.startswith(redirect):
                    break
                r = http.get(urljoin(self.issuer, location))
            query = parse_qs(urlsplit(location).query)
            assert query.get("state") == [state], location
            assert "code" in query, f"no code: {location}"
            secret = ("est-web", self.web_client_secret) if self.web_client_secret else None
            t = http.post("/token", auth=secret, data={
                "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect,
                "client_id": "est-web", "code_verifier": verifier, "resource": self.audience})
            assert t.status_code == 200, t.text
            return str(t.json()["access_token"])

    def service_token(self) -> str:
        """An access token (JWT) for the confidential client itself (client_credentials): no person."""
        r = httpx.post(f"{self.issuer}/token", auth=("est-service", "est-service-secret"), timeout=10,
                       data={"grant_type": "client_credentials", "scope": "api", "resource": self.audience})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def forge(self, claims: dict[str, Any] | None = None, *, key: SigningKey | None = None,
              alg: str | None = None, kid: str | None = None, signing_key: Any = None,
              lifetime: int = 300, **overrides: Any) -> str:
        """A token made here, not by the provider: by default like the provider's (issuer, audience, a user's
        e-mail, signed by its first key), with ``overrides`` replacing claims (None: the claim is left out)."""
        key = key or self.keys[0]
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": "anna", "email": self.users["anna"],
                                "iat": now, "nbf": now, "exp": now + lifetime, "client_id": "est-web",
                                "jti": secrets.token_hex(8), "scope": "api", **(claims or {})}
        for name, value in overrides.items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        headers = {"kid": kid or key.kid, "typ": "at+jwt"}
        return jwt.encode(body, signing_key if signing_key is not None else key.private, algorithm=alg or key.alg,
                          headers=headers)


def _part(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], kid: str) -> str:
    """A token with ``alg: none`` (no signature), as an attacker would send it."""
    return f"{_part({'alg': 'none', 'typ': 'at+jwt', 'kid': kid})}.{_part(claims)}."


def hs256_with_public_key(claims: dict[str, Any], key: SigningKey) -> str:
    """The algorithm-confusion attack: HS256 with the provider's public key (PEM) as the shared secret
    (made by hand: PyJWT itself refuses a PEM key as an HMAC secret)."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'at+jwt', 'kid': key.kid})}.{_part(claims)}"
    mac = hmac.new(key.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(mac)}"


def claims_of(token: str) -> dict[str, Any]:
    """A token's claims, unverified (to forge a token like one the provider issued)."""
    return dict(jwt.decode(token, options={"verify_signature": False}))


@pytest.fixture(scope="module")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """A provider of the module's own, signing with a fresh RSA key (an EC key beside it in the key set)."""
    provider = OidcProvider(tmp_path_factory.mktemp("oidc"), keys=[SigningKey.rsa(), SigningKey.ec()]).start()
    try:
        yield provider
    finally:
        provider.stop()
