"""The raw ASGI fast path of the field apps' report posts, answering like the routes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from est_shared.errors import DomainError
from est_shared.http import (
    PROBLEM,
    BodySizeLimit,
    CorrelationId,
    HttpMetrics,
    Problem,
    RequestGuard,
    domain_problem,
    problem_response,
    require_role,
)
from est_shared.org import Principal
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import Request as StarletteRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from est_intake.http import JSON_TYPES, unsupported_media_type
from est_intake.reports.api import BATCH_PATH, REPORTS_PATH, VALID_BATCH, ReportsContext, accept_report, batch_out
from est_intake.reports.domain import ReportIn
from est_intake.reports.handlers import Submission


def _json_bytes(body: Any) -> bytes:
    """JSON exactly as Starlette's JSONResponse renders it."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


class ReportsFastPath:
    """ASGI middleware answering ``POST /v1/reports`` itself, ahead of FastAPI routing (the field apps' hot path),
    and ``POST /v1/reports:batch`` when every report in it is valid (see ``batch``).

    The answers are those of the declared FastAPI route (415 for a non-JSON body, then 401, 403, 400/422,
    the outcome; problem+json with ``instance``); the shared edge middlewares (request metrics by route,
    correlation id, body limit) wrap it as they wrap the app. Everything else goes on to the app.
    """

    def __init__(self, app: ASGIApp, *, ctx: ReportsContext, route: APIRoute, batch_route: APIRoute,
                 max_body: int) -> None:
        self.app, self.ctx, self.route, self.batch_route = app, ctx, route, batch_route
        runtime = ctx.runtime
        self.max_body = max_body
        # the same stack ServiceRuntime puts around the app, in the same order
        self.fast: ASGIApp = RequestGuard(HttpMetrics(CorrelationId(BodySizeLimit(self.endpoint, max_bytes=max_body)),
                                                      histogram=runtime.metrics.http_duration))
        self.fast_batch: ASGIApp = RequestGuard(HttpMetrics(
            CorrelationId(BodySizeLimit(self.batch_endpoint, max_bytes=max_body)),
            histogram=runtime.metrics.http_duration))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            if scope["path"] == REPORTS_PATH:
                await self.fast(scope, receive, send)
                return
            if scope["path"] == BATCH_PATH:
                await self.batch(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def batch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v1/reports:batch`` when every report in it is valid and a reporter sends it.

        The body is read once, from the bytes into the report models (the route reads it as JSON,
        then as a list of dicts, then as reports: a fifth of a batch report's cost). Anything else
        (another media type, no Content-Length or too large a body, a caller the route would refuse,
        an invalid report, too many reports) goes to the route itself with the body as it came, so
        every error answer is the route's own.
        """
        ctype: bytes | None = None
        authorization = b""
        length = -1
        for key, value in scope["headers"]:
            if key == b"content-type":
                ctype = value
            elif key == b"authorization":
                authorization = value
            elif key == b"content-length" and value.isdigit():
                length = int(value)
        media = ctype.decode("latin-1").split(";", 1)[0].strip().lower() if ctype is not None else "application/json"
        if not 0 <= length <= self.max_body or not (media in JSON_TYPES or media.endswith("+json")):
            await self.app(scope, receive, send)
            return
        raw = await _read_body(receive)
        if raw is None:
            return  # the client went away
        replay = _replay(raw, receive)
        plan = await self._batch_plan(authorization.decode("latin-1"), raw)
        if plan is None:
            await self.app(scope, replay, send)
            return
        scope["est.batch"] = plan
        await self.fast_batch(scope, replay, send)

    async def _batch_plan(self, authorization: str, raw: bytes) -> tuple[Principal, list[ReportIn]] | None:
        try:
            principal = await self.ctx.principal(authorization)
            require_role(principal, "reporter", "key_function")
            reports = VALID_BATCH.validate_json(raw).reports
        except (Problem, DomainError, ValidationError):
            return None
        return (principal, reports) if len(reports) <= self.ctx.max_batch else None

    async def batch_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The batch route's answer for a planned batch (see ``batch``)."""
        scope["route"] = self.batch_route
        principal, reports = scope.pop("est.batch")
        now = datetime.now(UTC)
        done = await self.ctx.submit([Submission(req=r, caller=principal, received_at=now) for r in reports], "batch")
        await batch_out([{"report_id": r.report_id} for r in reports], done)(scope, receive, send)

    async def endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The route itself."""
        scope["route"] = self.route
        ctype: bytes | None = None
        authorization = b""
        for key, value in scope["headers"]:
            if key == b"content-type":
                ctype = value
            elif key == b"authorization":
                authorization = value
        try:
            if ctype is not None:
                media = ctype.decode("latin-1").split(";", 1)[0].strip().lower()
                if media not in JSON_TYPES and not media.endswith("+json"):
                    raise unsupported_media_type(media)
            raw = await _read_body(receive)
            if raw is None:
                return  # the client went away
            outcome = await accept_report(self.ctx, authorization.decode("latin-1"), raw)
        except Problem as exc:
            response = problem_response(exc.status, exc.title, exc.detail, errors=exc.errors, headers=exc.headers,
                                        instance=StarletteRequest(scope).url.path, **exc.extra)
            await response(scope, receive, send)
            return
        except DomainError as exc:
            await domain_problem(exc, instance=StarletteRequest(scope).url.path)(scope, receive, send)
            return
        body = _json_bytes(outcome.body)
        headers = [(b"content-length", str(len(body)).encode()),
                   (b"content-type", b"application/json" if outcome.ok else PROBLEM.encode())]
        for k, v in outcome.headers.items():
            headers.append((k.lower().encode("latin-1"), v.encode("latin-1")))
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for an app after the body was read: the body once, then the connection's own messages."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected."""
    msg: Message = await receive()
    if msg["type"] != "http.request":
        return None
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body", False):
        return body
    chunks = [body]
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return None
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(chunks)

