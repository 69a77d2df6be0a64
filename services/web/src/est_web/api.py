"""Routes of the web front end: the app shell, its service worker, and ``/api/<service>/…`` to the gateway."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from est_web.adapters.gateway import Gateway
from est_web.sessions import Sessions

STATIC = Path(__file__).parent / "static"


def build_router(*, gateway: Gateway, sessions: Sessions) -> APIRouter:
    """The routes; the static files under ``/app`` are mounted after them (``/app/`` itself is the shell)."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/app/")

    @router.get("/app/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @router.get("/sw.js", include_in_schema=False)
    async def service_worker() -> FileResponse:
        # served from the root so it may control /app/ and cache the API reads it needs
        return FileResponse(STATIC / "sw.js", media_type="text/javascript",
                            headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})

    @router.api_route("/api/{service}/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                      include_in_schema=False)
    async def forward(service: str, path: str, request: Request) -> Response:
        return await gateway.forward(service, request, bearer=await sessions.bearer_for(request))

    return router
