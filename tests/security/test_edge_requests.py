"""Requests no route should see are refused at the edge with 4xx problem+json, never 5xx: paths and query
strings with NUL or other control characters, broken percent-encoding or invalid UTF-8, absurdly long
paths, header values with control characters. Sent as raw bytes (a client library would tidy them up)
to a service (the intake, on real NATS) and to the web gateway in front of it, with either HTTP parser."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from est_intake.app import create_app as create_intake
from est_shared.natsserver import NatsServer
from est_shared.testing import serve
from est_web.app import create_app as create_web
from est_web.settings import WebSettings

from tests.intake.support import TOKENS, make_org, settings_for
from tests.support import raw_exchange

TARGETS = [
    ("/v1/me%00", 400, "path", "control_character"),
    ("/v1/me%0d%0aX-Injected:%20yes", 400, "path", "control_character"),
    ("/v1/areas/%ZZ/pictures/2026-W48", 400, "path", "percent_encoding"),
    ("/v1/me%C3%28", 400, "path", "utf8"),
    ("/v1/me?x=%00", 400, "query", "control_character"),
    ("/v1/me?x=a%0Ab", 400, "query", "control_character"),
    ("/v1/me?x=%zz", 400, "query", "percent_encoding"),
    ("/v1/me?x=%FF%FE", 400, "query", "utf8"),
    ("/v1/" + "a" * 3000, 414, "path", "too_long"),
    ("/v1/me?" + "q=1&" * 1500, 414, "query", "too_long"),
]


def _request(target: str, *headers: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {TOKENS['anna']}",
             "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_hostile_paths_queries_and_headers_get_4xx_at_a_service_and_at_the_gateway(
        tmp_path: Path, fresh_nats: NatsServer, http: str) -> None:
    intake = create_intake(settings_for(tmp_path, fresh_nats.url, make_org()))
    async with serve(intake, http=http) as intake_url:
        web = create_web(WebSettings(intake_url=intake_url, log_level="WARNING"))
        async with serve(web, http=http) as web_url:
            for port, prefix in ((_port(intake_url), ""), (_port(web_url), "/api/intake")):
                for target, status, part, reason in TARGETS:
                    got, headers, body = await raw_exchange(port, _request(prefix + target))
                    where = f"{prefix + target[:60]!r} ({http})"
                    assert got == status, f"{where}: {got} {body[:200]!r}"
                    assert headers["content-type"].startswith("application/problem+json"), where
                    problem = json.loads(body)
                    assert {"field": part, "reason": reason} in [
                        {"field": e["field"], "reason": e["reason"]} for e in problem["errors"]], (where, problem)
                    assert " / " in problem["detail"]
                    assert b"X-Injected" not in body and b"aaaaaaaaaa" not in body, "the request is not quoted"

                # a header value with a control character: the parser (httptools) or the guard (h11) refuses it
                got, headers, body = await raw_exchange(port, _request(prefix + "/v1/me", "X-Note: a\x01b"))
                assert got == 400 and headers["content-type"].startswith("application/problem+json"), (http, body)

                # and the same request without the hostile part is answered as usual
                got, _, body = await raw_exchange(port, _request(prefix + "/v1/me"))
                assert got == 200 and json.loads(body)["id"] == "anna", body[:200]

            async with httpx.AsyncClient() as client:
                metrics = (await client.get(f"{web_url}/metrics")).text
            forwarded = [line for line in metrics.splitlines() if line.startswith("est_web_forwarded_requests_total")]
            assert forwarded == ['est_web_forwarded_requests_total{service="intake",status_class="2xx"} 1.0'], \
                "the gateway forwarded only the clean request"


async def test_the_intakes_report_fast_path_is_guarded_like_every_route(tmp_path: Path, fresh_nats: NatsServer) -> None:
    """``POST /v1/reports`` and its batch are answered ahead of FastAPI routing; the guard still comes first."""
    intake = create_intake(settings_for(tmp_path, fresh_nats.url, make_org()))
    async with serve(intake) as intake_url:
        for path in ("/v1/reports?x=%00", "/v1/reports:batch?x=a%0Ab", "/v1/reports?x=%zz"):
            body = b'{"reports": []}' if "batch" in path else b"{}"
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKENS['anna']}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
            got, headers, answer = await raw_exchange(_port(intake_url), head.encode() + body)
            assert got == 400, (path, answer[:200])
            assert headers["content-type"].startswith("application/problem+json")
            assert json.loads(answer)["errors"][0]["field"] == "query"
