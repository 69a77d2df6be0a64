"""Composition root of the web front end: static app shell plus a same-origin gateway.

The browser talks to one origin: ``/app/`` is the single-page app (Preact + htm, no build step,
a service worker for offline use), ``/api/<service>/<path>`` is forwarded to that service with the
caller's own bearer token (the gateway holds no credentials and adds none). Server-sent events
from the notifier's ``/v1/stream`` are streamed through unbuffered. In production an ingress can do
the same routing and serve ``static/`` directly.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from est_shared.http import CorrelationId, Problem, add_ops_routes, install_problem_handlers
from est_shared.observability import setup_logging
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter
from starlette.background import BackgroundTask

from est_web.settings import WebSettings

Settings = WebSettings
STATIC = Path(__file__).parent / "static"
_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length",
        "proxy-authorization", "proxy-authenticate"}
log = logging.getLogger("est.web")


def create_app(settings: WebSettings | None = None) -> FastAPI:
    """Build the web front end."""
    settings = settings or WebSettings()
    setup_logging("web", settings.log_level)
    registry = CollectorRegistry()
    forwarded = Counter("est_web_forwarded_requests_total", "Requests forwarded to services",
                        ["service", "status_class"], registry=registry)
    upstreams = settings.upstreams()
    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state["client"] = httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None), follow_redirects=False)
        try:
            yield
        finally:
            await state["client"].aclose()

    app = FastAPI(title="EST Lägesbild web", description="Reporter form and dashboard; gateway to the APIs.",
                  version="0.1.0", lifespan=lifespan)
    app.add_middleware(CorrelationId)
    install_problem_handlers(app)

    async def ready() -> dict[str, bool]:
        out = {}
        for name, base in upstreams.items():
            try:
                r = await state["client"].get(f"{base}/healthz", timeout=2)
                out[name] = r.status_code == 200
            except httpx.HTTPError:
                out[name] = False
        return out

    add_ops_routes(app, registry=registry, ready=ready)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/app/")

    @app.get("/app/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/sw.js", include_in_schema=False)
    async def service_worker() -> FileResponse:
        # served from the root so it may control /app/ and cache the API reads it needs
        return FileResponse(STATIC / "sw.js", media_type="text/javascript",
                            headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})

    app.mount("/app", StaticFiles(directory=STATIC), name="static")

    @app.api_route("/api/{service}/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    async def forward(service: str, path: str, request: Request) -> Response:
        base = upstreams.get(service)
        if base is None:
            raise Problem(404, "Not found", f"No service {service!r}. / Ingen tjänst {service!r}.")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        client = state["client"]
        upstream = client.build_request(request.method, f"{base}/{path}", params=request.query_params,
                                        headers=headers, content=await request.body())
        try:
            resp = await client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            forwarded.labels(service, "error").inc()
            log.warning("upstream unreachable", extra={"service": service, "error": exc.__class__.__name__})
            raise Problem(502, "Service unreachable", f"The {service} service does not answer. / "
                          f"Tjänsten {service} svarar inte.", headers={"Retry-After": "5"}) from exc
        forwarded.labels(service, f"{resp.status_code // 100}xx").inc()
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
        return StreamingResponse(resp.aiter_raw(), status_code=resp.status_code, headers=out_headers,
                                 background=BackgroundTask(resp.aclose))

    return app
