"""HTTP edge plumbing shared by the services: problem+json errors, ops routes, bearer auth, request guard,
correlation ids, body limit."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal
from urllib.parse import unquote, unquote_to_bytes

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from est_shared import exports
from est_shared.errors import DomainError, Forbidden, Kind
from est_shared.freetext import find_personal_data
from est_shared.observability import correlation_id
from est_shared.oidc import InvalidToken, OidcVerifier, ProviderUnavailable, looks_like_jwt
from est_shared.org import ROLE_NAMES, Directory, Principal

log = logging.getLogger("est.http")

PROBLEM = "application/problem+json"


class Problem(Exception):
    """An error answer (RFC 9457); raise it from routes or translate domain errors into it."""

    def __init__(self, status: int, title: str, detail: str = "", *, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers, self.extra = errors, headers, extra


MAX_INSTANCE = 256
WITHHELD_DETAIL = ("Begäran kunde inte utföras. Felbeskrivningen visas inte eftersom den skulle upprepa något som "
                   "ser ut som en personuppgift. / The request could not be carried out. The description is not shown "
                   "because it would repeat something that looks like personal data.")
WITHHELD_MESSAGE = "värdet visas inte (det ser ut som en personuppgift) / value not shown (it looks like personal data)"


def _withheld(text: str, instead: str) -> str:
    """``text``, unless it would echo something that looks like personal data (an id a caller typed)."""
    return instead if find_personal_data(text) else text


def _safe_error(error: dict[str, Any]) -> dict[str, Any]:
    """A field error whose message and field name echo nothing that looks like personal data."""
    out = dict(error)
    for key in ("message", "field"):
        value = out.get(key)
        if isinstance(value, str) and find_personal_data(value):
            out[key] = WITHHELD_MESSAGE if key == "message" else "(withheld)"
    return out


def safe_instance(path: str) -> bool:
    """Whether a request path may be echoed as a problem's ``instance``: short, and nothing in it that looks
    like personal data (a path can carry what a caller typed, e.g. a name and personal identity number)."""
    return len(path) <= MAX_INSTANCE and not find_personal_data(unquote(path))


def problem_response(status: int, title: str, detail: str = "", *, errors: list[dict[str, Any]] | None = None,
                     headers: dict[str, str] | None = None, instance: str | None = None,
                     **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                            "detail": _withheld(detail or title, WITHHELD_DETAIL)}
    if instance and safe_instance(instance):
        body["instance"] = instance
    if errors:
        body["errors"] = [_safe_error(e) for e in errors]
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ())]
        out.append({"field": ".".join(loc), "message": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


STATUS: dict[Kind, int] = {"malformed": 400, "unauthorized": 401, "forbidden": 403, "not_found": 404,
                           "conflict": 409, "too_large": 413, "invalid": 422, "unavailable": 503}
"""The one map from a domain error's kind to an HTTP status."""


def domain_problem(exc: DomainError, *, instance: str | None = None) -> JSONResponse:
    """The problem+json answer of a domain error (also for edges that answer ahead of routing)."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    if exc.kind == "unauthorized":
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return problem_response(STATUS[exc.kind], exc.title, exc.detail, errors=exc.errors, headers=headers,
                            instance=instance, **exc.extra)


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves as application/problem+json (domain errors by their kind, see ``STATUS``);
    unexpected ones as 500 without internals."""

    async def _domain(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return domain_problem(exc, instance=request.url.path)

    app.add_exception_handler(DomainError, _domain)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.title, exc.detail, errors=exc.errors, headers=exc.headers,
                                instance=request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(400, "Malformed JSON", "Begärans innehåll är inte giltig JSON. / "
                                    "The request body is not valid JSON.", errors=errors,
                                    instance=request.url.path)
        return problem_response(422, "Invalid request", "Några fält är ogiltiga; se errors. / "
                                "Some fields are invalid; see errors.", errors=errors, instance=request.url.path)

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
                   ready: Callable[[], Awaitable[Mapping[str, bool | str]]]) -> None:
    """``/healthz`` (alive), ``/readyz`` (dependencies ok) and ``/metrics`` (Prometheus), no token needed.

    A check is True (ok), False (unavailable: 503) or a text saying how it is degraded: the service still
    serves (200, ``"status": "degraded"``, the check ``"degraded"`` and the text under ``degraded``).
    """

    @app.get("/healthz", tags=["ops"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], summary="Readiness: connected to NATS and the database (or degraded)")
    async def readyz() -> JSONResponse:
        checks = await ready()
        degraded = {k: v for k, v in checks.items() if isinstance(v, str)}
        down = any(v is False for v in checks.values())
        body: dict[str, Any] = {"status": "unavailable" if down else "degraded" if degraded else "ok",
                                "checks": {k: "degraded" if k in degraded else v for k, v in checks.items()}}
        if degraded:
            body["degraded"] = degraded
        return JSONResponse(body, status_code=503 if down else 200)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


RECHECK = "est.recheck"
"""Scope key where ``bearer_principal`` leaves how to find the caller again in a newer organisation (a
function Directory -> Principal | None), for the live streams that are ended when it changes."""

NOT_IN_ORGANISATION = ("Inloggningen är giltig, men ingen i organisationen har den e-postadress som inloggningen "
                       "anger. Be en administratör lägga till dig med den adressen. / The sign-in is valid, but "
                       "nobody in the organisation has the e-mail address it names. Ask an administrator to add "
                       "you with that address.")


def bearer_principal(directory: Callable[[], Directory], oidc: OidcVerifier | None = None,
                     on_access_token: Callable[[str], None] | None = None
                     ) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency resolving ``Authorization: Bearer <token>`` to a Principal, else 401: the one place
    callers are resolved. With ``oidc``, a token that is a JWT is an access token of the OpenID provider
    (``est_shared.oidc``; 403 when it is valid but names nobody of the organisation, 503 while the provider's
    keys cannot be had; ``on_access_token`` is told the outcome); any other token is looked up in the
    organisation (``Directory.authenticate``)."""

    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(401, "Unauthorized", "Inloggning krävs (Authorization: Bearer <token>). / "
                          "A bearer token is required.",
                          headers={"WWW-Authenticate": "Bearer"})
        if oidc is not None and looks_like_jwt(token):
            return await _oidc_principal(oidc, directory, token, request, on_access_token or _ignore)
        principal = directory().authenticate(token)
        if principal is None:
            raise _invalid_token()
        return principal

    return dependency


def _invalid_token() -> Problem:
    return Problem(401, "Unauthorized", "Token är ogiltig. / The token is not valid.",
                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _ignore(_outcome: str) -> None:
    pass


async def _oidc_principal(oidc: OidcVerifier, directory: Callable[[], Directory], token: str,
                          request: Request, outcome: Callable[[str], None]) -> Principal:
    try:
        claims = await oidc.verify(token)
    except InvalidToken as exc:
        outcome("invalid")
        log.info("access token refused", extra={"reason": str(exc)})
        raise _invalid_token() from None
    except ProviderUnavailable as exc:
        outcome("unavailable")
        log.warning("access token not checked: the OpenID provider's keys cannot be had",
                    extra={"error": str(exc)[:300]})
        raise Problem(503, "Service Unavailable", "Inloggningstjänsten (OpenID-leverantören) svarar inte just nu; "
                      "försök igen om en stund. / The sign-in provider (OpenID provider) does not answer just "
                      "now; try again shortly.", headers={"Retry-After": "5"}) from None
    principal = oidc.principal(directory().snapshot, claims)
    if principal is None:
        outcome("not_in_organisation")
        log.info("access token valid but names nobody of the organisation")
        raise Problem(403, "Forbidden", NOT_IN_ORGANISATION, reason="not_in_organisation")
    outcome("accepted")
    request.scope[RECHECK] = lambda d: oidc.principal(d.snapshot, claims)
    return principal


def role_list(roles: tuple[str, ...] | list[str], lang: str) -> str:
    """Roles as people say them: "nyckelfunktion eller styrgrupp" / "key function or steering group"."""
    names = [ROLE_NAMES.get(r, {}).get(lang, r) for r in roles]
    word = " eller " if lang == "sv" else " or "
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + word + names[-1]


def require_role(principal: Principal, *roles: str) -> None:
    """403 unless the caller has one of the roles (admins have all)."""
    if not principal.has_role(*roles):
        raise Forbidden(f"Detta kräver rollen {role_list(roles, 'sv')}.",
                        f"This needs the role {role_list(roles, 'en')}.", reason="role")


def require_area(principal: Principal, area_id: str) -> None:
    """403 unless the caller works in the area."""
    if not principal.may_see_area(area_id):
        raise Forbidden(f"Du är inte tilldelad området {area_id}.", f"You are not assigned to area {area_id}.",
                        reason="area")


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


# hex digits written as the letters a-p: a fresh id never looks like a number (a phone number, a
# personal identity number), so the next service takes it as it is (accepted_correlation_id)
_AS_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
_ID_PREFIX = os.urandom(8).hex().translate(_AS_LETTERS)
_ID_COUNTER = itertools.count(1)


def _new_prefix() -> None:
    global _ID_PREFIX
    _ID_PREFIX = os.urandom(8).hex().translate(_AS_LETTERS)


os.register_at_fork(after_in_child=_new_prefix)


def new_correlation_id() -> str:
    """A fresh correlation id: 32 letters a-p (hex digits as letters), a random per-process prefix and a counter.

    Unique, not secret: ``uuid4`` reads the kernel's random source on every call, which costs more
    than the rest of a request's bookkeeping.
    """
    return _ID_PREFIX + f"{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}".translate(_AS_LETTERS)


_CORRELATION_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
_DIGIT = re.compile(r"\d")


def accepted_correlation_id(raw: str) -> str | None:
    """A client's correlation id if it is safe to log and echo: 8-64 of ``A-Za-z0-9._-``, nothing personal."""
    if _CORRELATION_ID.fullmatch(raw) is None:
        return None
    # without "@" no e-mail address fits the alphabet, and identity and phone numbers have 8 digits or more
    if len(_DIGIT.findall(raw)) >= 8 and find_personal_data(raw):
        return None
    return raw


class CorrelationId:
    """ASGI middleware: take ``X-Correlation-ID`` from the request (or make one), log with it, echo it.

    The client's value is written to every log line, to events and to the access log, so only a
    plain token is taken (``accepted_correlation_id``); anything else (line breaks, kilobytes, what
    looks like a personal identity number) is replaced by a fresh id, which is the one echoed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = _header(scope, b"x-correlation-id")
        cid = (raw and accepted_correlation_id(raw.decode("latin-1"))) or new_correlation_id()
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


MAX_PATH_BYTES = 2048
MAX_QUERY_BYTES = 4096
_ESCAPE_BROKEN = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_HEADER_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed inside a header value
_REASONS = {
    "too_long": "är för lång / is too long",
    "percent_encoding": "har en ogiltig %-kodning / has an invalid percent-encoding",
    "utf8": "är inte giltig UTF-8 / is not valid UTF-8",
    "control_character": "innehåller ett kontrolltecken (t.ex. NUL) / contains a control character (such as NUL)",
}


def _url_part_fault(raw: bytes, *, query: bool) -> str | None:
    """Why a raw path or query string cannot be handled, or None."""
    if _ESCAPE_BROKEN.search(raw):
        return "percent_encoding"
    decoded = unquote_to_bytes(raw.replace(b"+", b" ") if query else raw) if b"%" in raw else raw
    if _CONTROL.search(decoded):
        return "control_character"
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return "utf8"
    return None


_PLAIN_URL = re.compile(rb"[\x21-\x24\x26-\x7e]*")  # printable ASCII without "%": nothing to decode or refuse


def request_faults(scope: Scope) -> list[dict[str, str]]:
    """What in a request's path, query string or header values no route should ever see (empty: nothing)."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    query: bytes = scope.get("query_string") or b""
    headers = scope.get("headers") or ()
    plain_url = (len(raw_path) <= MAX_PATH_BYTES and len(query) <= MAX_QUERY_BYTES
                 and _PLAIN_URL.fullmatch(raw_path) is not None and _PLAIN_URL.fullmatch(query) is not None)
    if plain_url and not _HEADER_CONTROL.search(b"\t".join([value for _, value in headers])):
        return []  # the usual request: two scans and one over the header values
    faults = []
    if len(raw_path) > MAX_PATH_BYTES:
        faults.append({"field": "path", "reason": "too_long"})
    elif reason := _url_part_fault(raw_path, query=False):
        faults.append({"field": "path", "reason": reason})
    if len(query) > MAX_QUERY_BYTES:
        faults.append({"field": "query", "reason": "too_long"})
    elif query and (reason := _url_part_fault(query, query=True)):
        faults.append({"field": "query", "reason": reason})
    for name, value in headers:
        if _HEADER_CONTROL.search(value):
            faults.append({"field": f"header:{name.decode('latin-1')}", "reason": "control_character"})
    return faults


class RequestGuard:
    """ASGI middleware: 400 (414 for a path or query too long) problem+json at the edge for a request whose
    path, query string or header values hold control characters (NUL, CR, LF…), broken percent-encoding or
    invalid UTF-8, before any route, database or log line sees them. The answer never quotes the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (faults := request_faults(scope)):
            await self.app(scope, receive, send)
            return
        too_long = all(f["reason"] == "too_long" for f in faults)
        errors = [{**f, "message": f"{f['field']} {_REASONS[f['reason']]}"} for f in faults]
        if too_long:
            resp = problem_response(414, "URI too long", "Sökvägen eller frågesträngen är för lång. / "
                                    "The path or query string is too long.", errors=errors)
        else:
            resp = problem_response(400, "Invalid request", "Begäran innehåller tecken som inte kan hanteras; se "
                                    "errors. / The request holds characters that cannot be handled; see errors.",
                                    errors=errors)
        await resp(scope, receive, send)


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
        await body_too_large(self.max_bytes)(scope, receive, send)


class _TooLarge(Exception):
    pass


def body_too_large(max_bytes: int) -> JSONResponse:
    """The 413 answer for a body over ``max_bytes``; it closes the connection, so the rest is never read."""
    return problem_response(413, "Request body too large", f"Innehållet är större än {max_bytes} byte. / "
                            f"The body exceeds {max_bytes} bytes.", headers={"Connection": "close"})


def reader_language(request: Request) -> Literal["sv", "en"]:
    """The reader's language: ``?lang=sv|en``, else the first of Accept-Language that is Swedish or English,
    else Swedish."""
    asked = (request.query_params.get("lang") or "").strip().lower()
    if asked in ("sv", "en"):
        return asked  # type: ignore[return-value]
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in ("sv", "en"):
            return tag  # type: ignore[return-value]
    return "sv"


EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {
    "text/csv": {"schema": {"type": "string"}},
    exports.XLSX_TYPE: {"schema": {"type": "string", "format": "binary"}}}}}
"""OpenAPI ``responses`` of a route that also answers CSV and XLSX (``?format=csv|xlsx`` or Accept)."""


def export_response(request: Request, table: Callable[[], exports.Table], stem: str) -> Response | None:
    """The download a request asks for (``?format=csv|xlsx``, or ``Accept: text/csv`` / the XLSX type), or None
    when it wants JSON. ``table`` is called only for a download; an unknown format is 422."""
    try:
        fmt = exports.wanted_format(request.query_params.get("format"), request.headers.get("accept"))
    except ValueError:
        raise Problem(422, "Unprocessable Content", "Okänt format; välj csv eller xlsx. / Unknown format; "
                      "choose csv or xlsx.", errors=[{"field": "query.format", "message": "csv, xlsx or json"}]
                      ) from None
    if fmt is None:
        return None
    lang = reader_language(request)
    body = exports.render(table(), fmt, lang)
    return Response(body, media_type=exports.MEDIA_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="{exports.file_name(stem, fmt)}"'})
