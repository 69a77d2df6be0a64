"""The web front end's gateway: the app shell is served, the caller's token is passed through, only the
services' APIs are forwarded, bodies are streamed under the same limits as the services', the gateway
states the correlation id and the forwarding facts itself, every answer carries the security headers,
and a service that does not answer or does not exist gets a clear problem+json, never a 5xx without detail."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from est_shared.adapters.serving import ServerLimits
from est_shared.testing import free_port, serve
from est_web.app import create_app
from est_web.headers import API_CSP, APP_CSP, REPORT_CSP
from est_web.settings import WebSettings
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.support import open_raw, raw_exchange, read_to_close


@dataclass
class Upstream:
    """A service stand-in on a real port: records every request that reaches it, in full."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    started: list[str] = field(default_factory=list)  # paths whose body began to arrive

    def app(self) -> Starlette:
        async def echo(request: Request) -> Response:
            self.started.append(request.url.path)
            size = 0
            try:
                async for chunk in request.stream():
                    size += len(chunk)
            except ClientDisconnect:
                return Response(status_code=499)
            record = {"path": request.url.path, "raw_path": request.scope["raw_path"].decode(),
                      "query": request.scope["query_string"].decode(), "size": size,
                      "headers": dict(request.headers)}
            self.seen.append(record)
            if request.url.path.endswith("report.html"):
                return HTMLResponse("<html><body><script>alert(1)</script>Rapport</body></html>",
                                    headers={"Content-Disposition": 'inline; filename="analys.html"'})
            return JSONResponse({k: v for k, v in record.items() if k != "headers"}, status_code=201)

        return Starlette(routes=[Route("/{rest:path}", echo, methods=["GET", "POST", "PUT"])])


@asynccontextmanager
async def gateway(limits: ServerLimits | None = None, **settings: Any
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, int, Upstream]]:
    """The web app in front of an upstream stand-in for the intake: a client on it, its port, the upstream."""
    upstream = Upstream()
    async with serve(upstream.app()) as intake_url:
        with tempfile.TemporaryDirectory() as data_dir:  # the sign-in sessions' database
            web = create_app(WebSettings(intake_url=intake_url, log_level="WARNING", data_dir=data_dir, **settings))
            async with serve(web, limits=limits) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
                yield http, int(base.rsplit(":", 1)[1]), upstream


async def test_the_gateway_forwards_with_the_callers_token_and_explains_failures() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with gateway(aggregator_url=dead) as (http, _, upstream):
        shell = await http.get("/app/")
        assert shell.status_code == 200 and "EST Lägesbild" in shell.text
        assert (await http.get("/app/app.js")).status_code == 200

        r = await http.post("/api/intake/v1/reports?x=1", json={"a": 1}, headers={"Authorization": "Bearer tok"})
        assert r.status_code == 201
        assert r.json() == {"path": "/v1/reports", "raw_path": "/v1/reports", "query": "x=1", "size": 7}
        assert upstream.seen[-1]["headers"]["authorization"] == "Bearer tok"

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


async def test_only_the_services_api_is_forwarded_never_their_ops_endpoints() -> None:
    async with gateway() as (http, port, upstream):
        for path in ("metrics", "healthz", "readyz", "docs", "openapi.json", "asyncapi.json", "v1", "",
                     "v2/reports", "v1/../metrics", "v1/%2e%2e/metrics", "v1/%2E%2E/%2E%2E/metrics",
                     "v1/./../healthz", "v1%2F..%2Fmetrics"):
            status, headers, body = await raw_exchange(port, (
                f"GET /api/intake/{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").encode())
            assert status == 404, (path, status, body[:200])
            assert headers["content-type"].startswith("application/problem+json"), path
        assert upstream.seen == [], "nothing reached the service"

        # the API is, with its path exactly as it came (an encoded slash stays encoded)
        r = await http.get("/api/intake/v1/areas/a%2Fb/pictures?x=%C3%A5")
        assert r.status_code == 201
        assert upstream.seen[-1]["raw_path"] == "/v1/areas/a%2Fb/pictures"
        assert upstream.seen[-1]["query"] == "x=%C3%A5"


async def test_the_gateway_states_the_correlation_id_and_forwarding_facts_itself() -> None:
    claims = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9", "X-Real-IP": "203.0.113.9",
              "X-Forwarded-Proto": "https"}
    async with gateway(ServerLimits(trusted_proxies=())) as (http, _, upstream):  # the caller is no proxy
        r = await http.get("/api/intake/v1/me", headers={"X-Correlation-ID": "20100515-2382", **claims})
        assert r.status_code == 201
        sent = upstream.seen[-1]["headers"]
        assert sent["x-correlation-id"] == r.headers["x-correlation-id"] != "20100515-2382"
        assert r.headers.get_list("x-correlation-id") == [sent["x-correlation-id"]], "one id, the gateway's"
        assert sent["x-forwarded-for"] == "127.0.0.1" and sent["x-forwarded-proto"] == "http"
        assert "forwarded" not in sent and "x-real-ip" not in sent

        kept = await http.get("/api/intake/v1/me", headers={"X-Correlation-ID": "field-app-0001"})
        assert upstream.seen[-1]["headers"]["x-correlation-id"] == "field-app-0001" == kept.headers["x-correlation-id"]
    async with gateway() as (http, _, upstream):  # behind a trusted proxy (loopback): what it says is passed on
        assert (await http.get("/api/intake/v1/me", headers=claims)).status_code == 201
        sent = upstream.seen[-1]["headers"]
        assert sent["x-forwarded-for"] == "203.0.113.9" and sent["x-forwarded-proto"] == "https"
        assert "forwarded" not in sent and "x-real-ip" not in sent


async def test_every_answer_carries_the_security_headers_and_a_services_html_is_a_sandboxed_download() -> None:
    async with gateway() as (http, _, _upstream):
        for path in ("/app/", "/app/app.js", "/sw.js"):
            r = await http.get(path)
            assert r.headers["content-security-policy"] == APP_CSP, path
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "no-referrer"
            assert "strict-transport-security" not in r.headers, "plain HTTP: no HSTS"
        assert "frame-ancestors 'none'" in APP_CSP and "'unsafe-inline'" not in APP_CSP and "eval" not in APP_CSP

        api = await http.get("/api/intake/v1/me")
        assert api.headers["content-security-policy"] == API_CSP
        assert api.headers["cache-control"] == "no-store" and api.headers["x-content-type-options"] == "nosniff"
        problem = await http.get("/api/intake/metrics")
        assert problem.headers["content-security-policy"] == API_CSP and problem.headers["cache-control"] == "no-store"

        report = await http.get("/api/intake/v1/analyses/x/report.html")
        assert report.headers["content-security-policy"] == REPORT_CSP
        assert "sandbox" in REPORT_CSP and "script-src" not in REPORT_CSP
        assert report.headers["content-disposition"] == 'attachment; filename="analys.html"'

        # HTTPS as a trusted proxy in front says (loopback is trusted by default), or as the setting says
        proxied = await http.get("/app/", headers={"X-Forwarded-Proto": "https"})
        assert proxied.headers["strict-transport-security"] == "max-age=31536000"
    async with gateway(https=True) as (http, _, _upstream):
        assert (await http.get("/api/intake/v1/me")).headers["strict-transport-security"] == "max-age=31536000"


async def test_a_declared_body_over_the_limit_is_refused_at_once_and_never_forwarded() -> None:
    async with gateway() as (_, port, upstream):
        reader, writer = await open_raw(port)
        writer.write(b"POST /api/intake/v1/reports HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200000000\r\n\r\n" + b"{" * 65536)
        raw = await read_to_close(reader, timeout=5)  # answered and closed with 200 MB still to come
        writer.close()
        assert raw.startswith(b"HTTP/1.1 413"), raw[:100]
        assert b"application/problem+json" in raw and b"2000000" in raw
        assert upstream.started == []


async def test_a_chunked_body_over_the_limit_is_refused_while_it_streams() -> None:
    async with gateway(max_body_bytes=1_000_000) as (_, port, upstream):
        reader, writer = await open_raw(port)
        writer.write(b"POST /api/intake/v1/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        answer = asyncio.create_task(read_to_close(reader, timeout=20))
        chunk = b"10000\r\n" + b"a" * 0x10000 + b"\r\n"  # 64 KiB
        sent = 0
        try:
            while not answer.done() and sent < 200_000_000:
                writer.write(chunk)
                await writer.drain()
                sent += 0x10000
        except ConnectionError:
            pass
        raw = await answer
        writer.close()
        assert raw.startswith(b"HTTP/1.1 413"), raw[:100]
        assert sent < 10_000_000, f"{sent} bytes were taken before the refusal"
        assert upstream.started == ["/v1/reports"] and upstream.seen == [], "the upstream request was abandoned"


async def test_each_path_has_its_limit_and_a_body_within_it_is_streamed_through() -> None:
    big = b"x" * 3_000_000
    async with gateway(body_limits={"intake/v1/admin/org": 5_000_000}) as (http, _, upstream):
        r = await http.put("/api/intake/v1/admin/org", content=big, headers={"Content-Type": "application/yaml"})
        assert r.status_code == 201 and r.json()["size"] == len(big)

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 100_000):
                yield big[i:i + 100_000]

        r = await http.put("/api/intake/v1/admin/org", content=chunks())
        assert r.status_code == 201 and r.json()["size"] == len(big), "a chunked body arrives whole"
        refused = await http.post("/api/intake/v1/reports", content=big)
        assert refused.status_code == 413 and "2000000" in refused.json()["detail"]
        assert [s["path"] for s in upstream.seen] == ["/v1/admin/org", "/v1/admin/org"]
