"""Sign-in at the gateway: server-side sessions behind an opaque HttpOnly cookie.

- ``POST /session`` ``{token}``: the personal-token form posts the token once; the intake's ``/v1/me``
  says whether it is valid. Failures are counted per client: after ``EST_WEB_SIGN_IN_MAX_FAILURES``
  within ``EST_WEB_SIGN_IN_WINDOW_SECONDS`` the client gets 429 with ``Retry-After``.
- ``GET /session``: who is signed in (``/v1/me``, asked again with the session's credential) and the
  session's CSRF token; 401 without a live session.
- ``POST /session/sign-out``: the server-side session is deleted and the cookie cleared.
- ``GET``/``POST /session/demo`` (only with ``EST_WEB_DEMO_SIGN_IN``, which ``est up --demo`` sets): the
  demo organisation's people, and signing in as one of them.

The cookie holds only a random id: ``HttpOnly; SameSite=Strict; Path=/`` and ``Secure`` over HTTPS. A
state-changing request that rides on the cookie (no Authorization header of its own) must send the
session's CSRF token as ``X-CSRF-Token`` and, when it has an Origin, come from the app's own origin.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from est_shared.http import Problem
from est_shared.oidc import InvalidToken, ProviderUnavailable
from est_shared.sealed import PiiDecryptError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from est_web.adapters.gateway import Gateway
from est_web.adapters.oidc_client import OidcClient
from est_web.adapters.session_store import SessionStore, WebSession

log = logging.getLogger("est.web")

COOKIE = "est_session"
PENDING = "est_oidc"  # the pending OpenID Connect sign-in (state, nonce, PKCE verifier), sealed
PENDING_SECONDS = 600
REFRESH_BEFORE = 60  # seconds before the access token's expiry that it is refreshed
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenSignIn(BaseModel):
    token: str = Field(min_length=1, max_length=4096, description="the person's own access token")


class DemoSignIn(BaseModel):
    person_id: str = Field(min_length=1, max_length=200, description="a person of the demo organisation")


@dataclass
class Throttle:
    """Failed sign-ins per client address within a sliding window, counted in the session database, so that
    every replica of the web front end counts the same tries."""

    max_failures: int
    window: float
    store: SessionStore

    async def check(self, client: str) -> None:
        now = self.store.clock.now()
        seen = await self.store.failures_since(client, now - timedelta(seconds=self.window))
        if len(seen) >= self.max_failures:
            # allowed again when the failure that keeps the count at the limit leaves the window
            freed = seen[len(seen) - self.max_failures] + timedelta(seconds=self.window)
            wait = max(1, int((freed - now).total_seconds()) + 1)
            raise Problem(429, "Too many sign-in attempts", "För många misslyckade inloggningar; försök igen om en "
                          "stund. / Too many failed sign-ins; try again later.", headers={"Retry-After": str(wait)})

    async def failed(self, client: str) -> None:
        await self.store.add_failure(client, forget_before=self.store.clock.now() - timedelta(seconds=self.window))


@dataclass
class SessionConfig:
    """What the sign-in routes need from the settings."""

    idle_seconds: int
    absolute_seconds: int
    cookie_secure: bool
    public_origins: list[str]
    demo_sign_in: bool
    demo_org_file: Path | None
    oidc_redirect_uri: str = ""


def _unauthorized(detail: str = "Du är inte inloggad. / You are not signed in.") -> Problem:
    return Problem(401, "Unauthorized", detail)


class Sessions:
    """The sign-in routes' logic and the session lookup the gateway's route uses."""

    def __init__(self, store: SessionStore, gateway: Gateway, config: SessionConfig, throttle: Throttle,
                 oidc: OidcClient | None = None) -> None:
        self.store, self.gateway, self.config, self.throttle = store, gateway, config, throttle
        self.oidc = oidc

    def origin(self, request: Request) -> str:
        return self.config.public_origins[0] if self.config.public_origins else \
            f"{request.url.scheme}://{request.headers.get('host', '')}"

    def redirect_uri(self, request: Request) -> str:
        return self.config.oidc_redirect_uri or f"{self.origin(request)}/session/oidc/callback"

    async def fresh(self, session: WebSession) -> WebSession:
        """The session with its provider's access token refreshed when it is about to expire."""
        extra = session.extra or {}
        if self.oidc is None or session.kind != "oidc" or not extra.get("refresh_token"):
            return session
        if float(extra.get("expires_at", 0)) - time.time() > REFRESH_BEFORE:
            return session
        try:
            tokens = await self.oidc.refresh(extra["refresh_token"])
        except Exception:
            log.warning("the provider's access token could not be refreshed")
            return session
        new_extra = {**extra, "refresh_token": tokens.get("refresh_token") or extra["refresh_token"],
                     "expires_at": time.time() + float(tokens.get("expires_in") or 300),
                     "id_token": tokens.get("id_token") or extra.get("id_token")}
        await self.store.renew(session.key, tokens["access_token"], new_extra)
        return WebSession(session.key, session.csrf, tokens["access_token"], session.me, session.kind,
                          session.created_at, new_extra)

    # --- the cookie -----------------------------------------------------------------------
    def secure(self, request: Request) -> bool:
        return self.config.cookie_secure or request.url.scheme == "https"

    def set_cookie(self, response: Response, request: Request, session_id: str) -> None:
        response.set_cookie(COOKIE, session_id, max_age=self.config.absolute_seconds, path="/", httponly=True,
                            samesite="strict", secure=self.secure(request))

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=self.secure(request))

    async def session_of(self, request: Request) -> WebSession | None:
        session_id = request.cookies.get(COOKIE, "")
        session = await self.store.get(session_id) if session_id else None
        return await self.fresh(session) if session is not None else None

    # --- CSRF ------------------------------------------------------------------------------
    def check_origin(self, request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is None:
            return
        allowed = self.config.public_origins or [f"{request.url.scheme}://{request.headers.get('host', '')}"]
        if origin.rstrip("/") not in allowed:
            raise Problem(403, "Forbidden", "Begäran kommer inte från appens egen adress. / "
                          "The request does not come from the app's own origin.")

    def check_csrf(self, request: Request, session: WebSession) -> None:
        self.check_origin(request)
        sent = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise Problem(403, "Forbidden", "CSRF-token saknas eller stämmer inte (X-CSRF-Token). / "
                          "The CSRF token is missing or wrong (X-CSRF-Token).")

    async def bearer_for(self, request: Request) -> str | None:
        """The credential to add when forwarding ``request``: None when it brings its own Authorization or
        has no live session; 403 for a state-changing request on the cookie without the CSRF token."""
        if "authorization" in request.headers:
            return None
        session = await self.session_of(request)
        if session is None:
            return None
        if request.method not in SAFE_METHODS:
            self.check_csrf(request, session)
        return session.credential

    # --- signing in ------------------------------------------------------------------------
    async def sign_in(self, request: Request, credential: str, *, kind: str, extra: dict[str, Any] | None = None,
                      response: Response | None = None) -> Response:
        me = await self.gateway.me(credential)
        if me is None:
            raise _unauthorized("Nyckeln gäller inte. / The token is not valid." if kind != "oidc" else
                                "Kontot hör inte till någon i organisationen. / "
                                "The account belongs to nobody in the organisation.")
        session_id, session = await self.store.create(credential, me, kind=kind, extra=extra)
        log.info("signed in", extra={"kind": kind, "person": me.get("person_id") or me.get("id")})
        response = response or JSONResponse({"me": me, "csrf_token": session.csrf, "kind": kind})
        self.set_cookie(response, request, session_id)
        return response

    def demo_people(self) -> list[dict[str, Any]]:
        if not self.config.demo_sign_in or self.config.demo_org_file is None:
            raise Problem(404, "Not found", "Demoinloggning är inte påslagen. / Demo sign-in is not enabled.")
        try:
            org = yaml.safe_load(self.config.demo_org_file.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise Problem(503, "Demo organisation unavailable", "Demoorganisationen kan inte läsas. / "
                          "The demo organisation cannot be read.", headers={"Retry-After": "5"}) from exc
        actors = {a.get("id"): a.get("name", "") for a in org.get("actors", []) if isinstance(a, dict)}
        return [{"person_id": p["id"], "name": p.get("name", p["id"]), "roles": list(p.get("roles", [])),
                 "actor_name": actors.get(p.get("actor"), ""), "token": p["token"]}
                for p in org.get("people", []) if isinstance(p, dict) and p.get("id") and p.get("token")]


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def build_session_router(sessions: Sessions) -> APIRouter:
    router = APIRouter(tags=["session"])

    @router.get("/session", summary="Who is signed in, and the session's CSRF token",
                responses={401: {"description": "no live session"}})
    async def current(request: Request) -> JSONResponse:
        session = await sessions.session_of(request)
        if session is None:
            raise _unauthorized()
        me = await sessions.gateway.me(session.credential, offline=session.me)
        if me is None:  # the credential stopped being valid (a token withdrawn, a person removed)
            await sessions.store.delete(request.cookies.get(COOKIE, ""))
            response = JSONResponse({"title": "Unauthorized", "status": 401, "detail":
                                     "Inloggningen gäller inte längre. / The sign-in is no longer valid."},
                                    status_code=401, media_type="application/problem+json")
            sessions.clear_cookie(response, request)
            return response
        return JSONResponse({"me": me, "csrf_token": session.csrf, "kind": session.kind},
                            headers={"Cache-Control": "no-store"})

    @router.get("/session/methods", summary="The ways to sign in this web front end offers")
    async def methods() -> dict[str, bool]:
        return {"token": True, "demo": sessions.config.demo_sign_in, "oidc": sessions.oidc is not None}

    @router.post("/session", summary="Sign in with a personal access token (posted once, kept server-side)",
                 responses={401: {"description": "the token is not valid"}, 429: {"description": "throttled"}})
    async def sign_in(body: TokenSignIn, request: Request) -> Response:
        sessions.check_origin(request)
        client = client_of(request)
        await sessions.throttle.check(client)
        try:
            return await sessions.sign_in(request, body.token.strip(), kind="token")
        except Problem as problem:
            if problem.status == 401:
                await sessions.throttle.failed(client)
            raise

    @router.post("/session/sign-out", summary="Sign out: the server-side session is deleted, the cookie cleared",
                 status_code=204, responses={403: {"description": "CSRF token missing or wrong"}})
    async def sign_out(request: Request) -> Response:
        session = await sessions.session_of(request)
        response = Response(status_code=204)
        if session is not None:
            sessions.check_csrf(request, session)
            await sessions.store.delete(request.cookies.get(COOKIE, ""))
            log.info("signed out", extra={"kind": session.kind})
            id_token = (session.extra or {}).get("id_token")
            if sessions.oidc is not None and session.kind == "oidc" and id_token:
                end = await sessions.oidc.end_session_url(
                    id_token=id_token, post_logout_redirect_uri=f"{sessions.origin(request)}/app/")
                if end:  # the app goes there so that the provider's session ends too
                    response = JSONResponse({"end_session_url": end})
        sessions.clear_cookie(response, request)
        return response

    @router.get("/session/demo", summary="The demo organisation's people (only when demo sign-in is on)",
                responses={404: {"description": "demo sign-in is off"}})
    async def demo_people() -> dict[str, Any]:
        people = sessions.demo_people()
        return {"people": [{k: v for k, v in p.items() if k != "token"} for p in people]}

    @router.post("/session/demo", summary="Sign in as one of the demo people (only when demo sign-in is on)",
                 responses={404: {"description": "demo sign-in is off, or no such person"}})
    async def demo_sign_in(body: DemoSignIn, request: Request) -> Response:
        sessions.check_origin(request)
        person = next((p for p in sessions.demo_people() if p["person_id"] == body.person_id), None)
        if person is None:
            raise Problem(404, "Not found", "Ingen sådan person i demoorganisationen. / "
                          "No such person in the demo organisation.")
        return await sessions.sign_in(request, person["token"], kind="demo")

    @router.get("/session/oidc", summary="Sign in with the organisation's OpenID provider (a redirect to it)",
                status_code=303, responses={404: {"description": "no OpenID provider configured"}})
    async def oidc_start(request: Request) -> Response:
        oidc = _oidc(sessions)
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        try:
            url = await oidc.authorization_url(state=state, nonce=nonce, verifier=verifier,
                                               redirect_uri=sessions.redirect_uri(request))
        except ProviderUnavailable as exc:
            raise _provider_down() from exc
        pending = sessions.store.cipher.encrypt(json.dumps({"state": state, "nonce": nonce, "verifier": verifier,
                                                            "exp": time.time() + PENDING_SECONDS}),
                                                context="web-oidc-pending")
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(PENDING, pending or "", max_age=PENDING_SECONDS, path="/session/oidc", httponly=True,
                            samesite="lax", secure=sessions.secure(request))
        return response

    @router.get("/session/oidc/callback", summary="Where the OpenID provider sends the browser back with a code",
                status_code=303, responses={400: {"description": "no pending sign-in, or the provider refused"}})
    async def oidc_callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
        try:
            return await _oidc_callback(request, code, state, error)
        except Problem as problem:
            if "text/html" not in request.headers.get("accept", ""):
                raise
            # a browser comes back from the provider: the app's sign-in page says what went wrong, in words
            reason = {401: "unknown-person", 403: "unknown-person", 503: "unavailable"}.get(problem.status, "failed")
            response = RedirectResponse(f"/app/#sign-in-failed/{reason}", status_code=303)
            response.delete_cookie(PENDING, path="/session/oidc", httponly=True, samesite="lax",
                                   secure=sessions.secure(request))
            return response

    async def _oidc_callback(request: Request, code: str, state: str, error: str) -> Response:
        oidc = _oidc(sessions)
        try:
            pending = json.loads(sessions.store.cipher.decrypt(request.cookies.get(PENDING, ""),
                                                               context="web-oidc-pending") or "{}")
        except (PiiDecryptError, ValueError):
            pending = {}
        if error or not code or not pending or float(pending.get("exp", 0)) < time.time() or \
                not hmac.compare_digest(str(pending.get("state", "")).encode(), state.encode()):
            raise Problem(400, "Sign-in failed", "Inloggningen kunde inte slutföras; börja om från inloggningssidan. "
                          "/ The sign-in could not be completed; start again from the sign-in page.")
        try:
            tokens = await oidc.exchange(code=code, verifier=pending["verifier"], nonce=pending["nonce"],
                                         redirect_uri=sessions.redirect_uri(request))
        except ProviderUnavailable as exc:
            raise _provider_down() from exc
        except InvalidToken as exc:
            log.warning("OpenID sign-in refused", extra={"reason": str(exc)})
            raise Problem(400, "Sign-in failed", "Leverantören gav ingen giltig inloggning. / "
                          "The provider gave no valid sign-in.") from exc
        extra = {"refresh_token": tokens.get("refresh_token"), "id_token": tokens.get("id_token"),
                 "expires_at": time.time() + float(tokens.get("expires_in") or 300)}
        response = RedirectResponse("/app/", status_code=303)
        response.delete_cookie(PENDING, path="/session/oidc", httponly=True, samesite="lax",
                               secure=sessions.secure(request))
        return await sessions.sign_in(request, tokens["access_token"], kind="oidc", extra=extra, response=response)

    return router


def _oidc(sessions: Sessions) -> OidcClient:
    if sessions.oidc is None:
        raise Problem(404, "Not found", "Ingen OpenID-leverantör är inställd. / No OpenID provider is configured.")
    return sessions.oidc


def _provider_down() -> Problem:
    return Problem(503, "Provider unavailable", "Organisationens inloggningstjänst svarar inte; försök igen om en "
                   "stund. / The organisation's sign-in service does not answer; try again shortly.",
                   headers={"Retry-After": "5"})
