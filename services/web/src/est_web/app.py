"""Composition root of the web front end (the only place that reads settings and builds the gateway):
static app shell plus a same-origin gateway.

The browser talks to one origin: ``/app/`` is the single-page app (Preact + htm, no build step,
a service worker for offline use), ``/api/<service>/v1/<path>`` is forwarded to that service with
the caller's own bearer token (the gateway holds no credentials and adds none; see
``est_web.adapters.gateway`` for what is forwarded and how). Server-sent events from the notifier's
``/v1/stream`` are streamed through unbuffered. Every answer carries the headers of
``est_web.headers``. In production an ingress can do the same routing and serve ``static/``
directly, with the same rules and headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from est_shared.http import CorrelationId, RequestGuard, add_ops_routes, install_problem_handlers
from est_shared.observability import setup_logging
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter

from est_web.adapters.gateway import Gateway
from est_web.api import STATIC, build_router
from est_web.headers import SecurityHeaders
from est_web.settings import WebSettings

Settings = WebSettings


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

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        gateway.client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), follow_redirects=False)
        try:
            yield
        finally:
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
    app.include_router(build_router(gateway=gateway))
    app.mount("/app", StaticFiles(directory=STATIC), name="static")
    return app
