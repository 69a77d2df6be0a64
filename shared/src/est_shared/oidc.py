"""Sign-in through an OpenID provider: JWT access tokens (RFC 9068) verified against the provider's keys.

The provider is named by ``EST_OIDC_ISSUER``; its discovery document (``/.well-known/openid-configuration``)
gives the ``jwks_uri``, whose keys are cached and fetched again when a token names a key id (``kid``) the cache
does not hold, at most once a minute (``OidcConfig.min_refetch``). A token is accepted when it is signed by one
of those keys with an algorithm of the allow-list (asymmetric only: never ``none``, never ``HS*``), its ``iss``
is the issuer, its ``aud`` holds ``EST_OIDC_AUDIENCE`` and ``exp``/``nbf`` hold (30 s leeway).

Who the caller is comes from the organisation, never from the token: the person whose ``email`` equals the
token's ``EST_OIDC_PERSON_CLAIM`` (case-insensitive), with that person's roles and areas. The wire (fetching
the documents over HTTP) is ``est_shared.adapters.oidc_http``; ``est_shared.http.bearer_principal`` is where a
bearer token that is a JWT comes here and an opaque one goes to the organisation's ``Directory``.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt

from est_shared.org import OrgSnapshot, Person, Principal

log = logging.getLogger("est.oidc")

DEFAULT_ALGORITHMS = ("RS256", "ES256")
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
"""The algorithms ``EST_OIDC_ALGORITHMS`` may name: signatures by a key pair, so that the public key the
provider publishes cannot sign (``none`` and the ``HS*`` family are refused whatever the setting says)."""
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
LEEWAY = 30.0
MIN_REFETCH = 60.0
RETRY_UNREACHABLE = 5.0
"""Seconds before the keys are asked for again while none could be fetched yet (the provider was away)."""
DISCOVERY = "/.well-known/openid-configuration"

Fetch = Callable[[str], Awaitable[Mapping[str, Any]]]
"""Fetch a JSON document (the discovery document, the JWKS) by URL; raises ``ProviderUnavailable``."""


class OidcSettingsError(ValueError):
    """The ``EST_OIDC_*`` settings cannot work (refused at start-up)."""


class InvalidToken(Exception):
    """The token is not a valid access token of the configured provider (401). The message is for logs:
    it names what failed, never a claim's value."""


class ProviderUnavailable(Exception):
    """The provider's discovery document or keys could not be fetched, and no key is cached (503)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> None:
    """An https URL, or http on loopback (a provider on the same machine, as in the tests)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    raise OidcSettingsError(f"{what} must be an https:// URL (http:// only on loopback): {url!r}")


@dataclass(frozen=True)
class OidcConfig:
    """What a service needs to know of its OpenID provider (``EST_OIDC_*``)."""

    issuer: str
    audience: str
    person_claim: str = "email"
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway: float = LEEWAY
    min_refetch: float = MIN_REFETCH

    def __post_init__(self) -> None:
        check_url(self.issuer, "EST_OIDC_ISSUER")
        if not self.audience.strip():
            raise OidcSettingsError("EST_OIDC_AUDIENCE is needed with EST_OIDC_ISSUER (the API's resource id)")
        if not self.person_claim.strip():
            raise OidcSettingsError("EST_OIDC_PERSON_CLAIM must name a claim (default: email)")
        if not self.algorithms:
            raise OidcSettingsError("EST_OIDC_ALGORITHMS must name at least one algorithm")
        refused = [a for a in self.algorithms if a not in ASYMMETRIC]
        if refused:
            raise OidcSettingsError(f"EST_OIDC_ALGORITHMS may name only {', '.join(sorted(ASYMMETRIC))} "
                                    f"(never none or HS*), not {', '.join(refused)}")

    @classmethod
    def from_settings(cls, settings: Any) -> OidcConfig | None:
        """The configuration in a service's settings, or None when no issuer is set (sign-in by opaque tokens
        only)."""
        if not settings.oidc_issuer:
            return None
        return cls(issuer=settings.oidc_issuer.strip(), audience=settings.oidc_audience,
                   person_claim=settings.oidc_person_claim, algorithms=parse_algorithms(settings.oidc_algorithms),
                   leeway=settings.oidc_leeway)

    @property
    def discovery_url(self) -> str:
        """OpenID Connect Discovery 1.0 §4: the issuer (exactly as tokens name it) with the well-known path."""
        return self.issuer.rstrip("/") + DISCOVERY


def parse_algorithms(raw: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(a.strip() for a in items if a.strip())


def looks_like_jwt(token: str) -> bool:
    """Whether a bearer token is a JWS in compact form (three parts, a JSON header naming ``alg``), not an
    opaque token of the organisation."""
    if token.count(".") != 2 or not token.startswith("eyJ"):
        return False
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and "alg" in header


@dataclass(frozen=True)
class _Key:
    kid: str | None
    alg: str | None
    kty: str
    crv: str | None
    key: Any  # the public key object (cryptography)

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        if KEY_TYPES.get(alg[:2]) != self.kty:
            return False
        return alg not in CURVES or self.crv == CURVES[alg]


def parse_jwks(doc: Mapping[str, Any]) -> list[_Key]:
    """The signing keys of a JWKS (keys for encryption, private parts and keys PyJWT cannot read are left out)."""
    keys = []
    for raw in doc.get("keys") or ():
        if not isinstance(raw, dict) or raw.get("use", "sig") != "sig" or "d" in raw:
            continue
        try:
            parsed = jwt.PyJWK(raw)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            log.warning("a key of the provider's JWKS cannot be read; left out", extra={"kid": raw.get("kid")})
            continue
        keys.append(_Key(kid=raw.get("kid"), alg=raw.get("alg"), kty=str(raw.get("kty")), crv=raw.get("crv"),
                         key=parsed.key))
    return keys


class OidcVerifier:
    """Verifies access tokens of one provider; keeps its keys (see the module docstring)."""

    def __init__(self, config: OidcConfig, fetch: Fetch, *, monotonic: Callable[[], float] = time.monotonic,
                 on_fetch: Callable[[str], None] | None = None) -> None:
        self.config, self.fetch, self.monotonic, self.on_fetch = config, fetch, monotonic, on_fetch
        self.keys: list[_Key] = []
        self.jwks_uri: str | None = None
        self.fetched_at: float | None = None  # when the keys were last asked for (monotonic), success or not
        self._lock = asyncio.Lock()
        self._by_email: tuple[OrgSnapshot | None, dict[str, Person | None]] = (None, {})

    # --- keys ------------------------------------------------------------------------------------
    async def _refresh(self) -> None:
        """Fetch the discovery document (when its jwks_uri is not known yet) and the JWKS; tell ``on_fetch``."""
        self.fetched_at = self.monotonic()
        try:
            await self._fetch_keys()
        except ProviderUnavailable:
            if self.on_fetch:
                self.on_fetch("failed")
            raise
        if self.on_fetch:
            self.on_fetch("ok")

    async def _fetch_keys(self) -> None:
        if self.jwks_uri is None:
            doc = await self.fetch(self.config.discovery_url)
            if doc.get("issuer") != self.config.issuer:
                log.error("the provider's discovery document names another issuer; no keys taken",
                          extra={"issuer": self.config.issuer, "discovered": str(doc.get("issuer"))[:200]})
                raise ProviderUnavailable("discovery document of another issuer")
            uri = doc.get("jwks_uri")
            if not isinstance(uri, str):
                raise ProviderUnavailable("discovery document without jwks_uri")
            try:
                check_url(uri, "jwks_uri")
            except OidcSettingsError as exc:
                raise ProviderUnavailable(str(exc)) from None
            self.jwks_uri = uri
        try:
            keys = parse_jwks(await self.fetch(self.jwks_uri))
        except ProviderUnavailable:
            self.jwks_uri = None  # ask the discovery document again next time: the keys may have moved
            raise
        self.keys = keys
        log.info("provider keys fetched", extra={"kids": [k.kid for k in keys]})

    def _may_fetch(self) -> bool:
        if self.fetched_at is None:
            return True
        wait = self.config.min_refetch if self.keys else min(RETRY_UNREACHABLE, self.config.min_refetch)
        return self.monotonic() - self.fetched_at >= wait

    def _find(self, kid: str | None, alg: str) -> _Key | None:
        fitting = [k for k in self.keys if k.fits(alg)]
        if kid is None:
            return fitting[0] if len(fitting) == 1 else None
        return next((k for k in fitting if k.kid == kid), None)

    async def key_for(self, kid: str | None, alg: str) -> _Key:
        """The provider's key for a token's header; fetches the keys when the kid is unknown (and a minute has
        passed since they were last fetched)."""
        found = self._find(kid, alg)
        if found is not None:
            return found
        async with self._lock:  # one fetch for the many requests that name the same new kid at once
            found = self._find(kid, alg)
            # a token without kid is tried on the keys at hand: it makes them be fetched only while there are none
            if found is None and (kid is not None or not self.keys) and self._may_fetch():
                try:
                    await self._refresh()
                except ProviderUnavailable:
                    if not self.keys:
                        raise
                    log.warning("the provider's keys could not be fetched again; the cached ones stay")
                found = self._find(kid, alg)
        if found is None:
            if not self.keys and self.fetched_at is not None and not self._may_fetch():
                raise ProviderUnavailable("no keys yet")
            raise InvalidToken("no key of the provider has this kid for this algorithm")
        return found

    # --- tokens ----------------------------------------------------------------------------------
    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; ``InvalidToken`` otherwise, ``ProviderUnavailable`` when the
        keys cannot be had."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a readable JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.config.algorithms:
            raise InvalidToken("algorithm not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("kid is not a string")
        key = await self.key_for(kid, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.config.audience, issuer=self.config.issuer,
                leeway=self.config.leeway, options={"require": ["exp", "iss", "aud"], "verify_iat": False})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not yet valid") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("wrong issuer") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        return claims

    # --- the person ------------------------------------------------------------------------------
    def person_of(self, snapshot: OrgSnapshot, claims: Mapping[str, Any]) -> Person | None:
        """The organisation's person the claims name (``person_claim`` equals their e-mail, any case), or None
        (nobody, or more than one person with that address)."""
        value = claims.get(self.config.person_claim)
        if not isinstance(value, str) or not value.strip():
            return None
        of, index = self._by_email
        if of is not snapshot:
            index = {}
            for person in snapshot.people.values():
                if person.email:
                    key = person.email.strip().casefold()
                    index[key] = None if key in index else person  # two people, one address: neither
            self._by_email = (snapshot, index)
        return index.get(value.strip().casefold())

    def principal(self, snapshot: OrgSnapshot, claims: Mapping[str, Any]) -> Principal | None:
        """The caller the claims name, with the roles and areas the organisation gives them, or None."""
        person = self.person_of(snapshot, claims)
        return None if person is None else principal_of(snapshot, person)


def principal_of(snapshot: OrgSnapshot, person: Person) -> Principal:
    """A person of the organisation as the caller."""
    actor = snapshot.actors.get(person.actor)
    return Principal(person_id=person.id, name=person.name, actor_id=person.actor,
                     actor_kind=actor.kind if actor else "other", roles=list(person.roles),
                     areas=list(person.areas), municipalities=list(person.municipalities))
