"""The web front end as an OpenID Connect client (authorization code flow with PKCE S256) over httpx.

The provider's endpoints come from its discovery document; the ID token is verified with
``est_shared.oidc.OidcVerifier`` (the provider's JWKS, issuer, the client id as audience, expiry), and
its nonce must be the one of the pending sign-in.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
from est_shared.adapters.oidc_http import fetch_json
from est_shared.oidc import InvalidToken, OidcConfig, OidcVerifier, ProviderUnavailable, check_url


def challenge_of(verifier: str) -> str:
    """PKCE S256: base64url(sha256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class OidcClient:
    issuer: str
    client_id: str
    client_secret: str
    scopes: str
    resource: str
    algorithms: tuple[str, ...]
    http: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        check_url(self.issuer, "EST_OIDC_ISSUER")
        self.verifier = OidcVerifier(OidcConfig(issuer=self.issuer, audience=self.client_id,
                                                algorithms=self.algorithms), fetch_json)
        self._doc: dict[str, Any] | None = None

    async def discovery(self) -> dict[str, Any]:
        if self._doc is None:
            doc = dict(await fetch_json(OidcConfig(issuer=self.issuer, audience=self.client_id).discovery_url))
            if doc.get("issuer") != self.issuer:
                raise ProviderUnavailable("discovery document of another issuer")
            for name in ("authorization_endpoint", "token_endpoint"):
                if not isinstance(doc.get(name), str):
                    raise ProviderUnavailable(f"discovery document without {name}")
                check_url(doc[name], name)
            self._doc = doc
        return self._doc

    async def authorization_url(self, *, state: str, nonce: str, verifier: str, redirect_uri: str) -> str:
        doc = await self.discovery()
        params = {"client_id": self.client_id, "response_type": "code", "redirect_uri": redirect_uri,
                  "scope": self.scopes, "state": state, "nonce": nonce, "code_challenge": challenge_of(verifier),
                  "code_challenge_method": "S256"}
        if self.resource:
            params["resource"] = self.resource
        return f"{doc['authorization_endpoint']}?{urlencode(params)}"

    async def _token(self, form: dict[str, str]) -> dict[str, Any]:
        assert self.http is not None
        doc = await self.discovery()
        headers = {}
        if self.client_secret:  # client_secret_basic: the id and secret form-encoded (RFC 6749 §2.3.1)
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            form = {**form, "client_id": self.client_id}
        if self.resource:
            form = {**form, "resource": self.resource}
        try:
            r = await self.http.post(doc["token_endpoint"], data=form, headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(type(exc).__name__) from None
        if r.status_code != 200:
            raise InvalidToken(f"token endpoint answered {r.status_code}")
        tokens: dict[str, Any] = r.json()
        if not isinstance(tokens.get("access_token"), str):
            raise InvalidToken("no access token")
        return tokens

    async def exchange(self, *, code: str, verifier: str, redirect_uri: str, nonce: str) -> dict[str, Any]:
        """The tokens for an authorization code, the ID token verified (nonce included)."""
        tokens = await self._token({"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                                    "code_verifier": verifier})
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise InvalidToken("no ID token")
        claims = await self.verifier.verify(id_token)
        if claims.get("nonce") != nonce:
            raise InvalidToken("wrong nonce")
        return tokens

    async def refresh(self, refresh_token: str) -> dict[str, Any]:
        return await self._token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def end_session_url(self, *, id_token: str, post_logout_redirect_uri: str) -> str | None:
        try:
            doc = await self.discovery()
        except ProviderUnavailable:
            return None
        end = doc.get("end_session_endpoint")
        if not isinstance(end, str):
            return None
        query = urlencode({"id_token_hint": id_token, "post_logout_redirect_uri": post_logout_redirect_uri,
                           "client_id": self.client_id})
        return f"{end}?{query}"
