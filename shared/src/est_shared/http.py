"""HTTP edge plumbing shared by the services: problem+json errors, ops routes, bearer auth, body limit."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from est_shared.observability import correlation_id
from est_shared.org import Directory, Principal

log = logging.getLogger("est.http")

PROBLEM = "application/problem+json"


class Problem(Exception):
    """An error answer (RFC 9457); raise it from routes or translate domain errors into it."""

    def __init__(self, status: int, title: str, detail: str = "", *, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers, self.extra = errors, headers, extra


def problem_response(status: int, title: str, detail: str = "", *, errors: list[dict[str, Any]] | None = None,
                     headers: dict[str, str] | None = None, instance: str | None = None,
                     **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail or title}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ())]
        out.append({"field": ".".join(loc), "message": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves as application/problem+json; unexpected ones as 500 without internals."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, errors=exc.errors, headers=exc.headers,
                                instance=request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(400, "Malformed JSON", "The request body is not valid JSON. / "
                                    "Begärans innehåll är inte giltig JSON.", errors=errors,
                                    instance=request.url.path)
        return problem_response(422, "Invalid request", "Some fields are invalid; see errors. / "
                                "Några fält är ogiltiga; se errors.", errors=errors, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail), str(exc.detail),
                                headers=getattr(exc, "headers", None), instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(500, "Internal error", "An unexpected error occurred; it has been logged.",
                                instance=request.url.path)


def add_ops_routes(app: FastAPI, *, registry: CollectorRegistry,
                   ready: Callable[[], Awaitable[dict[str, bool]]]) -> None:
    """``/healthz`` (alive), ``/readyz`` (dependencies ok) and ``/metrics`` (Prometheus), no token needed."""

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: connected to NATS and the database")
    async def readyz() -> JSONResponse:
        checks = await ready()
        ok = all(checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def bearer_principal(directory: Callable[[], Directory]) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency resolving ``Authorization: Bearer <token>`` to a Principal, else 401."""

    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Problem(401, "Unauthorized", "A bearer token is required. / En bearer-token krävs.",
                          headers={"WWW-Authenticate": "Bearer"})
        principal = directory().authenticate(token.strip())
        if principal is None:
            raise Problem(401, "Unauthorized", "The token is not valid. / Token är ogiltig.",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return principal

    return dependency


def require_role(principal: Principal, *roles: str) -> None:
    """403 unless the caller has one of the roles (admins have all)."""
    if not principal.has_role(*roles):
        raise Problem(403, "Forbidden", f"This needs one of the roles {', '.join(roles)}. / "
                      f"Detta kräver någon av rollerna {', '.join(roles)}.")


def require_area(principal: Principal, area_id: str) -> None:
    """403 unless the caller works in the area."""
    if not principal.may_see_area(area_id):
        raise Problem(403, "Forbidden", f"You are not assigned to area {area_id!r}. / "
                      f"Du är inte tilldelad området {area_id!r}.")


def _header(scope: Scope, name: bytes) -> bytes:
    """The last value of a (lower-case) request header, b"" if absent (as ``dict(headers).get``)."""
    found = b""
    for key, value in scope.get("headers") or ():
        if key == name:
            found = value
    return found


class HttpMetrics:
    """ASGI middleware: request durations by method, route template and status class (bounded labels)."""

    def __init__(self, app: ASGIApp, histogram: Any) -> None:
        self.app, self.histogram = app, histogram
        self._children: dict[tuple[str, str, str], Any] = {}  # labels() resolved once per label set

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            key = (scope["method"], route, f"{status // 100}xx")
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.histogram.labels(*key)
            child.observe(time.perf_counter() - start)


_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def _new_prefix() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_prefix)


def new_correlation_id() -> str:
    """A fresh correlation id: 32 hex digits, a random per-process prefix and a counter.

    Unique, not secret: ``uuid4`` reads the kernel's random source on every call, which costs more
    than the rest of a request's bookkeeping.
    """
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


class CorrelationId:
    """ASGI middleware: take ``X-Correlation-ID`` from the request (or make one), log with it, echo it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"x-correlation-id").decode("latin-1")
        cid = raw if 0 < len(raw) <= 100 and raw.replace("-", "").isalnum() else new_correlation_id()
        token = correlation_id.set(cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-correlation-id", cid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


class BodySizeLimit:
    """ASGI middleware: 413 problem+json for request bodies over a limit, before parsing them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp = problem_response(413, "Request body too large",
                                f"The body exceeds {self.max_bytes} bytes. / Innehållet är större än "
                                f"{self.max_bytes} byte.")
        await resp(scope, receive, send)


class _TooLarge(Exception):
    pass
