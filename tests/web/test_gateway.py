"""The web front end's gateway: the app shell is served, the caller's token is passed through, and a
service that does not answer or does not exist gets a clear problem+json, never a 5xx without detail."""

from __future__ import annotations

import httpx
from est_shared.testing import free_port, serve
from est_web.app import create_app
from est_web.settings import WebSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "query": str(request.url.query),
                         "auth": request.headers.get("authorization"), "body": (await request.body()).decode()},
                        status_code=201)


async def test_the_gateway_forwards_with_the_callers_token_and_explains_failures() -> None:
    upstream = Starlette(routes=[Route("/v1/{rest:path}", _echo, methods=["GET", "POST"])])
    dead = f"http://127.0.0.1:{free_port()}"
    async with serve(upstream) as intake_url:
        web = create_app(WebSettings(intake_url=intake_url, aggregator_url=dead))
        async with serve(web) as base, httpx.AsyncClient(base_url=base) as http:
            shell = await http.get("/app/")
            assert shell.status_code == 200 and "EST Lägesbild" in shell.text
            assert (await http.get("/app/app.js")).status_code == 200

            r = await http.post("/api/intake/v1/reports?x=1", json={"a": 1},
                                headers={"Authorization": "Bearer tok"})
            assert r.status_code == 201
            assert r.json() == {"path": "/v1/reports", "query": "x=1", "auth": "Bearer tok", "body": '{"a":1}'}

            down = await http.get("/api/aggregator/v1/areas/a/pictures/2026-W48")
            assert down.status_code == 502
            assert down.headers["content-type"].startswith("application/problem+json")
            assert down.headers["retry-after"] == "5"
            assert "aggregator" in down.json()["detail"]

            unknown = await http.get("/api/nothing/v1/x")
            assert unknown.status_code == 404
            assert unknown.headers["content-type"].startswith("application/problem+json")

            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["aggregator"] is False
