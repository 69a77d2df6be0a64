"""The same-origin gateway: ``/api/<service>/v1/...`` forwarded to that service, bodies streamed both ways.

Rules:

- Only a service's API is forwarded: the path after ``/api/<service>`` must start with ``/v1/`` and
  hold no ``.`` or ``..`` segment (plain or percent-encoded), else 404. A service's ``/metrics``,
  ``/healthz``, ``/readyz``, ``/docs``, ``/openapi.json`` and ``/asyncapi.json`` are for operators on
  its own port, never for the browser.
- The path and query go on exactly as they came (percent-encoding kept), with the caller's own
  headers and token minus hop-by-hop headers, cookies and the CSRF header; a request without an
  Authorization header of its own that comes with a live sign-in session (``est_web.sessions``) gets
  the session's credential added. The gateway sets
  ``X-Correlation-ID`` (its own, checked id) and ``X-Forwarded-For``/``-Proto`` (what it saw) instead
  of passing on what the client claimed.
- A request body is streamed to the service, never held whole. It may be at most the limit of its
  path (``EST_WEB_MAX_BODY_BYTES``, or the longest matching prefix in ``EST_WEB_BODY_LIMITS``, the
  same limits the services apply): a larger ``Content-Length`` gets 413 before anything is read or
  forwarded; a chunked body gets 413 as soon as it passes the limit, and the upstream request is
  abandoned. Either way the connection closes, so the rest is never read.
- Answers stream back unbuffered (the notifier's live stream too); a service's HTML answer becomes a
  sandboxed download (``est_web.headers.upstream_html``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import unquote

import httpx
from est_shared.http import Problem, body_too_large
from est_shared.observability import correlation_id
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import Counter
from starlette.background import BackgroundTask
from starlette.datastructures import MutableHeaders
from starlette.requests import ClientDisconnect

from est_web.headers import upstream_html

log = logging.getLogger("est.web")

API_PREFIX = b"v1/"
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]{1,4096}")
# not forwarded as they came: hop-by-hop headers, and what the gateway itself states
_REQUEST_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host",
                           "proxy-authorization", "proxy-authenticate", "expect", "content-length",
                           "x-correlation-id", "forwarded", "x-forwarded-for", "x-forwarded-proto",
                           "x-forwarded-host", "x-real-ip", "cookie", "x-csrf-token"})
_RESPONSE_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                            "content-length", "proxy-authenticate", "x-correlation-id"})


class BodyTooLarge(Exception):
    """A streamed request body passed its limit."""


class Gateway:
    """Forwards API requests to the services (see the module docstring)."""

    def __init__(self, upstreams: Mapping[str, str], *, max_body_bytes: int, body_limits: Mapping[str, int],
                 forwarded: Counter) -> None:
        self.upstreams = dict(upstreams)
        self.max_body_bytes = max_body_bytes
        # longest prefix first, so the most specific limit wins
        self.body_limits = sorted(((k.strip("/"), v) for k, v in body_limits.items()), key=lambda kv: -len(kv[0]))
        self.forwarded = forwarded
        self.client: httpx.AsyncClient | None = None

    def body_limit(self, service: str, path: str) -> int:
        """The largest body accepted for ``service``'s ``path`` (``v1/…``)."""
        target = f"{service}/{path}"
        for prefix, limit in self.body_limits:
            if target == prefix or target.startswith(prefix + "/"):
                return limit
        return self.max_body_bytes

    def api_path(self, service: str, scope_raw_path: bytes) -> bytes:
        """The raw path to forward (``v1/…``), or 404 when it is not the service's API."""
        prefix = b"/api/" + service.encode() + b"/"
        rest = scope_raw_path[len(prefix):] if scope_raw_path.startswith(prefix) else b""
        segments = unquote(rest.decode("latin-1")).split("/")
        if not rest.startswith(API_PREFIX) or any(s in (".", "..") for s in segments):
            raise Problem(404, "Not found", "Gatewayn vidarebefordrar bara tjänsternas API (/api/<tjänst>/v1/…). / "
                          "The gateway forwards only the services' APIs (/api/<service>/v1/…).")
        return rest

    async def me(self, token: str, *, offline: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The intake's ``/v1/me`` for ``token``: None when the token is not valid (401/403); ``offline`` when
        the intake does not answer and one is given (a display copy), else 502."""
        assert self.client is not None, "the gateway's client is made in the app's lifespan"
        if not _VISIBLE_ASCII.fullmatch(token):  # no token of the organisation or a provider looks otherwise
            return None
        try:
            r = await self.client.get(f"{self.upstreams['intake'].rstrip('/')}/v1/me",
                                      headers={"authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            if offline is not None:
                return offline
            raise Problem(502, "Service unreachable", "Tjänsten intake svarar inte. / "
                          "The intake service does not answer.", headers={"Retry-After": "5"}) from exc
        if r.status_code in (401, 403):
            return None
        if r.status_code != 200:
            if offline is not None:
                return offline
            raise Problem(502, "Service unreachable", "Tjänsten intake svarar inte som väntat. / "
                          "The intake service does not answer as expected.", headers={"Retry-After": "5"})
        me: dict[str, Any] = r.json()
        return me

    async def forward(self, service: str, request: Request, *, bearer: str | None = None) -> Response:
        """Forward one request and stream the answer back; ``bearer``: the session's credential to add."""
        base = self.upstreams.get(service)
        if base is None:
            raise Problem(404, "Not found", f"Ingen tjänst {service!r}. / No service {service!r}.")
        assert self.client is not None, "the gateway's client is made in the app's lifespan"
        raw_path = self.api_path(service, request.scope.get("raw_path") or request.url.path.encode())
        limit = self.body_limit(service, raw_path.decode("latin-1"))
        headers = self._request_headers(request)
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"
        length = request.headers.get("content-length")
        content: AsyncIterator[bytes] | None = None
        if length is not None:
            if not length.isdigit():
                raise Problem(400, "Invalid Content-Length", "Content-Length är inte ett tal. / "
                              "Content-Length is not a number.", errors=[{"field": "header:content-length",
                                                                          "reason": "not_a_number"}])
            if int(length) > limit:
                return body_too_large(limit)
            headers["content-length"] = length  # httpx then streams it as it is, not chunked
            content = _capped(request.stream(), limit)
        elif "transfer-encoding" in request.headers:
            content = _capped(request.stream(), limit)
        url = f"{base.rstrip('/')}/{raw_path.decode('latin-1')}"
        query = request.scope.get("query_string") or b""
        if query:
            url += "?" + query.decode("latin-1")
        upstream = self.client.build_request(request.method, url, headers=headers, content=content)
        try:
            resp = await self.client.send(upstream, stream=True)
        except BodyTooLarge:
            return body_too_large(limit)
        except ClientDisconnect:
            return Response(status_code=400)  # the caller is gone; nobody reads this
        except httpx.HTTPError as exc:
            self.forwarded.labels(service, "error").inc()
            log.warning("upstream unreachable", extra={"service": service, "error": exc.__class__.__name__})
            raise Problem(502, "Service unreachable", f"Tjänsten {service} svarar inte. / "
                          f"The {service} service does not answer.", headers={"Retry-After": "5"}) from exc
        self.forwarded.labels(service, f"{resp.status_code // 100}xx").inc()
        out = StreamingResponse(resp.aiter_raw(), status_code=resp.status_code,
                                background=BackgroundTask(resp.aclose))
        out_headers = MutableHeaders(raw=[(k.lower(), v) for k, v in resp.headers.raw
                                          if k.lower().decode("latin-1") not in _RESPONSE_DROP])
        if resp.headers.get("content-type", "").lower().startswith("text/html"):
            upstream_html(out_headers)
        out.raw_headers = out_headers.raw
        return out

    @staticmethod
    def _request_headers(request: Request) -> dict[str, str]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _REQUEST_DROP}
        cid = correlation_id.get()
        if cid:
            headers["x-correlation-id"] = cid
        if request.client is not None:
            headers["x-forwarded-for"] = request.client.host
        headers["x-forwarded-proto"] = request.url.scheme
        return headers


async def _capped(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The request body's chunks as they arrive; ``BodyTooLarge`` once they pass ``limit`` bytes."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge
        if chunk:
            yield chunk
