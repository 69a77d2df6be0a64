"""Composition root of the web front end (the only place that reads settings and builds the gateway):
static app shell plus a same-origin gateway.

The browser talks to one origin: ``/app/`` is the single-page app (Preact + htm, no build step,
a service worker for offline use), ``/api/<service>/v1/<path>`` is forwarded to that service with
the caller's own bearer token, or the credential of the caller's sign-in session (``/session``, see
``est_web.sessions``; ``est_web.adapters.gateway`` for what is forwarded and how). Server-sent events
from the notifier's ``/v1/stream`` are streamed through unbuffered. Every answer carries the headers of
``est_web.headers``. In production an ingress can do the same routing and serve ``static/``
directly, with the same rules and headers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from est_shared.clock import SystemClock
from est_shared.http import CorrelationId, RequestGuard, add_ops_routes, install_problem_handlers
from est_shared.observability import setup_logging
from est_shared.oidc import parse_algorithms
from est_shared.sealed import load_cipher
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter

from est_web.adapters.gateway import Gateway
from est_web.adapters.oidc_client import OidcClient
from est_web.adapters.session_store import SessionStore
from est_web.api import STATIC, build_router
from est_web.headers import SecurityHeaders
from est_web.sessions import SessionConfig, Sessions, Throttle, build_session_router
from est_web.settings import WebSettings

Settings = WebSettings
log = logging.getLogger("est.web")


def create_app(settings: WebSettings | None = None) -> FastAPI:
    """Build the web front end."""
    settings = settings or WebSettings()
    setup_logging("web", settings.log_level)
    registry = CollectorRegistry()
    forwarded = Counter("est_web_forwarded_requests_total", "Requests forwarded to services",
                        ["service", "status_class"], registry=registry)
    upstreams = settings.upstreams()
    gateway = Gateway(upstreams, max_body_bytes=settings.max_body_bytes, body_limits=settings.body_limits,
                      forwarded=forwarded)

    oidc = None
    if settings.oidc_issuer and settings.oidc_client_id:
        oidc = OidcClient(issuer=settings.oidc_issuer.strip(), client_id=settings.oidc_client_id,
                          client_secret=settings.oidc_client_secret.get_secret_value()
                          if settings.oidc_client_secret else "", scopes=settings.oidc_scopes,
                          resource=settings.oidc_resource, algorithms=parse_algorithms(settings.oidc_algorithms))
    key = settings.session_key.get_secret_value() if settings.session_key else None
    store = SessionStore(settings.session_database_url or settings.sqlite_url("web-sessions"),
                         cipher=load_cipher(key, data_dir=settings.data_dir / "web-session", log=log),
                         clock=SystemClock(), idle_seconds=settings.session_idle_seconds,
                         absolute_seconds=settings.session_absolute_seconds)
    sessions = Sessions(store, gateway, SessionConfig(
        idle_seconds=settings.session_idle_seconds, absolute_seconds=settings.session_absolute_seconds,
        cookie_secure=settings.cookie_secure or settings.https, public_origins=settings.origins(),
        demo_sign_in=settings.demo_sign_in, demo_org_file=settings.demo_org_file,
        oidc_redirect_uri=settings.oidc_redirect_uri),
        Throttle(settings.sign_in_max_failures, settings.sign_in_window_seconds, store), oidc=oidc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        gateway.client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), follow_redirects=False)
        if oidc is not None:
            oidc.http = gateway.client
        await store.start()
        try:
            yield
        finally:
            await store.close()
            await gateway.client.aclose()

    # no /docs: its page loads scripts from a CDN, which the app's policy forbids; /openapi.json lists
    # the ops routes, and the APIs behind the gateway are documented on the services' own ports
    app = FastAPI(title="EST Lägesbild – webb (web)", description="Reporter form and dashboard; gateway to the APIs.",
                  version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(CorrelationId)
    app.add_middleware(RequestGuard)
    app.add_middleware(SecurityHeaders, https=settings.https, hsts_max_age=settings.hsts_max_age)
    install_problem_handlers(app)

    async def ready() -> dict[str, bool]:
        out = {}
        assert gateway.client is not None
        for name, base in upstreams.items():
            try:
                r = await gateway.client.get(f"{base}/healthz", timeout=2)
                out[name] = r.status_code == 200
            except httpx.HTTPError:
                out[name] = False
        return out

    add_ops_routes(app, registry=registry, ready=ready)
    app.include_router(build_session_router(sessions))
    app.include_router(build_router(gateway=gateway, sessions=sessions))
    app.mount("/app", StaticFiles(directory=STATIC), name="static")
    return app
