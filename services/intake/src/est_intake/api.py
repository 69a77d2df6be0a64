"""Intake HTTP routes: parse, authorise, call the handlers and turn outcomes into answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from est_shared.bus import BusUnavailable
from est_shared.checklists import LEVELS, Checklist
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
from est_shared.org import OrgSnapshot, Principal
from est_shared.periods import current_period
from est_shared.runtime import ServiceRuntime
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request as StarletteRequest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from est_intake import db
from est_intake.domain import (
    ACCEPTED_KEYS,
    MAX_SHOWN,
    UUID_HINT,
    UUID_PATTERN,
    ImportReportIn,
    OrgInvalid,
    OrgSyntaxError,
    ReportIn,
    ReportRejected,
    check_import_time,
    content_hash,
    parse_org_json,
    parse_org_text,
    principal_for,
)
from est_intake.handlers import (
    RETRY_AFTER,
    IntakeMetrics,
    JetStreamReports,
    OrgApplied,
    Outcome,
    Publish,
    StoreSnapshot,
    Submission,
    apply_org,
    problem,
    rejected,
    submit_reports,
)

MAX_BATCH = 500
ORG_PATH = "/v1/admin/org"


async def current_principal(request: Request) -> Principal:
    """The authenticated caller (bearer token against the intake's own directory), else 401."""
    runtime: ServiceRuntime = request.app.state.runtime
    return await runtime.principal(request)


Caller = Annotated[Principal, Depends(current_principal)]


@dataclass
class IntakeContext:
    """What the routes need: the runtime, the database, metrics, the publisher and the outbox wake-up."""

    runtime: ServiceRuntime
    sessions: async_sessionmaker[AsyncSession]
    metrics: IntakeMetrics
    publish: Publish
    wake: Callable[[], None]
    concurrency: int = 64
    max_batch: int = MAX_BATCH
    ledger: db.ReportLedger | None = None
    reports_bus: JetStreamReports | None = None
    store_snapshot: StoreSnapshot | None = None
    on_org_put: Callable[[bytes, OrgApplied, async_sessionmaker[AsyncSession]], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = db.ReportLedger(self.sessions.kw["bind"])
        if self.reports_bus is None:
            timeout = float(getattr(self.runtime.settings, "publish_timeout", 5.0))
            self.reports_bus = JetStreamReports(self.runtime, self.metrics, timeout=timeout)

    async def submit(self, subs: list[Submission], via: str) -> list[Outcome]:
        """Accept reports through the idempotency ledger and pipelined JetStream publishing."""
        assert self.ledger is not None and self.reports_bus is not None
        return await submit_reports(subs, ledger=self.ledger, snapshot=self.snapshot,
                                    publish=self.reports_bus.publish_many, metrics=self.metrics, via=via,
                                    original=self.reports_bus.original)

    @property
    def snapshot(self) -> OrgSnapshot:
        return self.runtime.directory.snapshot

    _principals: dict[str, Principal] = field(default_factory=dict, repr=False)
    _principals_of: OrgSnapshot | None = field(default=None, repr=False)

    async def principal(self, authorization: str) -> Principal:
        """The caller of an ``Authorization`` header (runtime.principal's answer, kept per organisation version)."""
        snap = self.runtime.directory.snapshot
        if snap is not self._principals_of:
            self._principals, self._principals_of = {}, snap
        found = self._principals.get(authorization)
        if found is None:
            found = await self.runtime.principal(_HeadersOnly(authorization))  # type: ignore[arg-type]
            if len(self._principals) >= 10_000:
                self._principals.clear()
            self._principals[authorization] = found
        return found


class _HeadersOnly:
    """What ``runtime.principal`` reads of a request: its Authorization header."""

    __slots__ = ("headers",)

    def __init__(self, authorization: str) -> None:
        self.headers = {"authorization": authorization}


class AcceptedOut(BaseModel):
    """The answer once a report is durably stored in JetStream."""

    report_id: str = Field(examples=["8c0e2f8e-6a5b-4f0e-9d52-0b7b1c2f9a11"])
    period: str = Field(examples=["2026-W48"])
    status: str = Field(examples=["accepted"])
    late: bool = Field(description="received after the period's deadline")


class BatchIn(BaseModel):
    """Up to 500 reports from an offline device."""

    reports: list[dict[str, Any]] = Field(description="reports, each as for POST /v1/reports")


class _ValidBatch(BaseModel):
    """A batch body whose every report is valid: what the fast path reads in one pass from the bytes."""

    reports: list[ReportIn]


_VALID_BATCH = TypeAdapter(_ValidBatch)


class ImportIn(BaseModel):
    """Up to 500 historical reports, each with ``reporter_id`` and ``submitted_at``."""

    reports: list[dict[str, Any]] = Field(description="reports with reporter_id and submitted_at",
                                          examples=[[{"report_id": "0b2f7c1e-5d3a-5e8f-9a41-6c2d8e7f1a30",
                                                      "area_id": "araby",
                                                      "period": "2026-W10", "answers": {"klotter": {"value": 1}},
                                                      "reporter_id": "anna",
                                                      "submitted_at": "2026-03-06T10:00:00+01:00"}]])


class BatchResult(BaseModel):
    """One report's result inside a batch: the HTTP status it would have had and its body or problem."""

    index: int
    report_id: str | None = None
    status: int
    replayed: bool = Field(default=False, description="accepted earlier: an identical resend")
    body: dict[str, Any] | None = None
    problem: dict[str, Any] | None = None


class BatchOut(BaseModel):
    """Per-report results (partial success is allowed) and counts."""

    results: list[BatchResult]
    accepted: int = Field(description="reports accepted now or earlier (identical resends)")
    rejected: int


def _outcome_response(o: Outcome) -> JSONResponse:
    if o.ok:
        return JSONResponse(o.body, status_code=202)
    return JSONResponse(o.body, status_code=o.status, media_type=PROBLEM, headers=o.headers)


def _field(loc: Any, *prefix: str) -> str:
    """A validation error's location as a field name; a long part (a dict key someone sent) is cut short."""
    parts = [*prefix, *(str(x) for x in loc or ())]
    return ".".join(p if len(p) <= MAX_SHOWN else p[:MAX_SHOWN] + "…" for p in parts)


def _message(error: Any) -> str:
    """A validation error's message; an id that is not a UUID is told so, not shown the pattern."""
    if error.get("type") == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == UUID_PATTERN:
        return UUID_HINT
    return str(error.get("msg", ""))


def _invalid_item(exc: ValidationError) -> Outcome:
    errors = [{"field": _field(e.get("loc")), "message": _message(e), "type": str(e.get("type", ""))}
              for e in exc.errors()]
    return problem(422, "Invalid report", "Några fält är ogiltiga; se errors. / Some fields are invalid; see errors.",
                   errors, reason="schema")


_render = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
"""``json.dumps`` as Starlette's JSONResponse calls it."""
_json_str = json.encoder.encode_basestring  # how _render writes a string


def _result_json(index: int, report_id: str | None, o: Outcome) -> str:
    """One report's entry of a batch answer, as ``_render`` writes it; an accepted one written out directly."""
    b = o.body
    if o.status == 202 and list(b) == ACCEPTED_KEYS and b["status"] == "accepted" \
            and type(b["report_id"]) is str and type(b["period"]) is str and type(b["late"]) is bool:
        return (f'{{"index":{index},"report_id":{"null" if report_id is None else _json_str(report_id)},'
                f'"status":202,"replayed":{"true" if o.reason == "replayed" else "false"},'
                f'"body":{{"report_id":{_json_str(b["report_id"])},"period":{_json_str(b["period"])},'
                f'"status":"accepted","late":{"true" if b["late"] else "false"}}}}}')
    return _render({"index": index, "report_id": report_id, "status": o.status, "replayed": o.reason == "replayed",
                    **({"body": b} if o.ok else {"problem": b})})


def _batch_out(items: list[dict[str, Any]], outcomes: list[Outcome]) -> Response:
    """The batch answer: a result per report and the counts (what ``JSONResponse(BatchOut-shaped dict)`` renders)."""
    parts = []
    accepted = 0
    unavailable = False
    for i, (item, o) in enumerate(zip(items, outcomes, strict=True)):
        rid = item.get("report_id") if isinstance(item, dict) else None
        # an id is echoed so the device can match its results; not a long string sent in its place
        parts.append(_result_json(i, rid if isinstance(rid, str) and len(rid) <= 128 else None, o))
        if o.status == 202:
            accepted += 1
        elif o.status == 503:
            unavailable = True
    body = f'{{"results":[{",".join(parts)}],"accepted":{accepted},"rejected":{len(outcomes) - accepted}}}'
    return Response(body.encode(), media_type="application/json",
                    headers={"Retry-After": "5"} if unavailable else None)


def _check_batch_size(n: int, limit: int) -> None:
    if n > limit:
        raise Problem(422, "Too many reports", f"Högst {limit} rapporter per anrop (fick {n}). / "
                      f"At most {limit} reports per request (got {n}).",
                      errors=[{"field": "reports", "message": f"at most {limit} items"}])


def _area_view(snapshot: OrgSnapshot, area_id: str) -> dict[str, Any] | None:
    area = snapshot.areas.get(area_id)
    if area is None:
        return None
    muni = snapshot.municipalities.get(area.municipality_id)
    tz = muni.timezone if muni else "Europe/Stockholm"
    return {"id": area.id, "name": area.name, "municipality_id": area.municipality_id, "cadence": area.cadence,
            "places": list(area.places), "current_period": current_period(area.cadence, datetime.now(UTC), tz).id}


def _caller_areas(snapshot: OrgSnapshot, principal: Principal) -> list[dict[str, Any]]:
    ids = principal.areas if "admin" not in principal.roles or principal.areas else list(snapshot.areas)
    return [v for v in (_area_view(snapshot, a) for a in ids) if v]


def _checklist_view(checklist: Checklist, snapshot: OrgSnapshot, principal: Principal) -> dict[str, Any]:
    return {
        "ref": checklist.ref, "id": checklist.id, "version": checklist.version,
        "name_sv": checklist.name_sv, "name_en": checklist.name_en,
        "items": [i.model_dump(exclude_none=True) for i in checklist.items],  # max_count: count items only
        "answer_types": {
            "count": {"sv": "antal (heltal ≥ 0)", "en": "count (integer ≥ 0)"},
            "level": {"sv": "nivå 0-3", "en": "level 0-3"},
            "boolean": {"sv": "ja/nej", "en": "yes/no"},
        },
        "levels": [{"value": k, "sv": v["sv"], "en": v["en"]} for k, v in LEVELS.items()],
        "note_max_length": 500,
        "note_hint": {"sv": "Skriv inte namn eller personnummer.", "en": "Do not write names or ID numbers."},
        "areas": _caller_areas(snapshot, principal),
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` inlined (for a hand-written OpenAPI request body)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]


M = TypeVar("M", bound=BaseModel)


def parse_json_body(model: type[M], raw: bytes) -> M:
    """Validate a JSON body against a model: 400 if it is not JSON, 422 naming the failing fields."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{"field": _field(e.get("loc"), "body"), "message": _message(e), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            raise Problem(400, "Malformed JSON", "Begärans innehåll är inte giltig JSON. / "
                          "The request body is not valid JSON.", errors=errors) from None
        raise Problem(422, "Invalid request", "Några fält är ogiltiga; se errors. / "
                      "Some fields are invalid; see errors.", errors=errors) from None


JSON_TYPES = ("application/json", "application/cloudevents+json")


def unsupported_media_type(ctype: str) -> Problem:
    """415 for a body that is not JSON (a form, text, a file), with the media type named."""
    return Problem(415, "Unsupported Media Type",
                   f"Innehållet måste vara JSON (Content-Type: application/json), inte {ctype!r}. / "
                   f"The body must be JSON (Content-Type: application/json), not {ctype!r}.",
                   errors=[{"field": "Content-Type", "message": f"expected application/json, got {ctype}"}])


class JsonBodyRoute(APIRoute):
    """A route whose body is JSON: any other declared media type is 415 before the body is parsed.

    A missing Content-Type is read as JSON (field apps and curl often omit it).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if "POST" not in self.methods:
            return handler

        async def check(request: Request) -> Response:
            raw = request.headers.get("content-type")
            if raw is not None:
                ctype = raw.split(";", 1)[0].strip().lower()
                if ctype not in JSON_TYPES and not ctype.endswith("+json"):
                    exc = unsupported_media_type(ctype)
                    return problem_response(exc.status, exc.title, exc.detail, errors=exc.errors,
                                            instance=request.url.path)
            return await handler(request)

        return check


def build_router(ctx: IntakeContext) -> APIRouter:
    """All intake routes."""
    # field apps and curl often omit Content-Type: every body here is JSON, so read it as JSON anyway;
    # a body declared as something else (a form, text) is 415
    router = APIRouter(strict_content_type=False, route_class=JsonBodyRoute)

    @router.get("/v1/me", tags=["field app"], summary="The caller, their roles and areas")
    async def me(principal: Caller) -> dict[str, Any]:
        snap = ctx.snapshot
        actor = snap.actors.get(principal.actor_id)
        return {"id": principal.person_id, "name": principal.name,
                "actor": {"id": principal.actor_id, "name": actor.name if actor else principal.actor_id,
                          "kind": principal.actor_kind},
                "roles": list(principal.roles), "municipalities": list(principal.municipalities),
                "areas": _caller_areas(snap, principal), "org_version": snap.version,
                "checklist": snap.current_checklist}

    @router.get("/v1/checklists/current", tags=["field app"],
                summary="The current checklist with labels, answer types, level scale and the caller's areas")
    async def checklist_current(principal: Caller) -> dict[str, Any]:
        snap = ctx.snapshot
        checklist = snap.checklist(snap.current_checklist)
        assert checklist is not None
        return _checklist_view(checklist, snap, principal)

    @router.get("/v1/checklists/{checklist_id}@{version}", tags=["field app"],
                summary="One checklist version, e.g. est-standard@1")
    async def checklist_version(checklist_id: str, version: str, principal: Caller) -> dict[str, Any]:
        snap = ctx.snapshot
        checklist = snap.checklist(f"{checklist_id}@{version}")
        if checklist is None:
            raise Problem(404, "Not Found", f"Okänd checklista {checklist_id}@{version}. / "
                          f"Unknown checklist {checklist_id}@{version}.")
        return _checklist_view(checklist, snap, principal)

    report_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": inline_schema(ReportIn)}}}}

    @router.post("/v1/reports", tags=["field app"], status_code=202, response_model=AcceptedOut,
                 summary="Submit a checklist report (answered once JetStream has stored it)",
                 openapi_extra=report_body,
                 responses={400: {}, 401: {}, 403: {}, 409: {}, 415: {"description": "the body is not JSON"},
                            422: {}, 503: {"description": "bus unavailable; retry"}})
    async def post_report(request: Request) -> JSONResponse:
        # served by ReportsFastPath ahead of routing; declared here for /docs (and used if called directly)
        outcome = await accept_report(ctx, request.headers.get("authorization", ""), await request.body())
        return _outcome_response(outcome)

    # the batch and import bodies are read as the single report's is (parse_json_body): a body that is
    # not JSON, or holds a number beyond what JSON readers take, is a 400 in Swedish and English
    @router.post("/v1/reports:batch", tags=["field app"], response_model=BatchOut,
                 summary="Submit up to 500 reports (offline devices); a result per report",
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": inline_schema(BatchIn)}}}})
    async def post_batch(request: Request, principal: Caller) -> Response:
        require_role(principal, "reporter", "key_function")
        batch = parse_json_body(BatchIn, await request.body())
        _check_batch_size(len(batch.reports), ctx.max_batch)
        now = datetime.now(UTC)
        outcomes: list[Outcome | None] = [None] * len(batch.reports)
        subs: list[tuple[int, Submission]] = []
        # an all-valid batch was answered by ReportsFastPath: here, each report on its own for its errors
        for i, raw in enumerate(batch.reports):
            try:
                subs.append((i, Submission(req=ReportIn.model_validate(raw), caller=principal, received_at=now)))
            except ValidationError as exc:
                outcomes[i] = _invalid_item(exc)
                ctx.metrics.rejected.labels("schema").inc()
        done = await ctx.submit([s for _, s in subs], "batch")
        for (i, _), o in zip(subs, done, strict=True):
            outcomes[i] = o
        return _batch_out(batch.reports, [o for o in outcomes if o is not None])

    @router.post("/v1/admin/import", tags=["admin"], response_model=BatchOut,
                 summary="Import up to 500 historical reports on reporters' behalf, through the same validation",
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": inline_schema(ImportIn)}}}})
    async def post_import(request: Request, principal: Caller) -> Response:
        require_role(principal, "admin")
        batch = parse_json_body(ImportIn, await request.body())
        _check_batch_size(len(batch.reports), ctx.max_batch)
        snap = ctx.snapshot
        now = datetime.now(UTC)
        outcomes: list[Outcome | None] = [None] * len(batch.reports)
        subs: list[tuple[int, Submission]] = []
        for i, raw in enumerate(batch.reports):
            try:
                item = ImportReportIn.model_validate(raw)
            except ValidationError as exc:
                outcomes[i] = _invalid_item(exc)
                ctx.metrics.rejected.labels("schema").inc()
                continue
            reporter = principal_for(snap, item.reporter_id)
            if reporter is None:
                outcomes[i] = problem(422, "Invalid report", f"Okänd rapportör {item.reporter_id!r}. / "
                                      f"Unknown reporter {item.reporter_id!r}.",
                                      [{"field": "reporter_id", "message": "unknown person"}], reason="reporter")
                ctx.metrics.rejected.labels("reporter").inc()
                continue
            try:
                check_import_time(item.submitted_at, now)
            except ReportRejected as exc:
                outcomes[i] = rejected(exc)
                ctx.metrics.rejected.labels(exc.reason).inc()
                continue
            req = ReportIn.model_validate(item.model_dump(exclude={"reporter_id", "submitted_at"}))
            digest_caller = f"{item.reporter_id}@{item.submitted_at.isoformat()}"
            sub = Submission(req=req, caller=reporter, received_at=item.submitted_at.astimezone(UTC))
            sub.digest = content_hash(req, digest_caller)
            sub.exact_time = True
            subs.append((i, sub))
        done = await ctx.submit([s for _, s in subs], "import")
        for (i, _), o in zip(subs, done, strict=True):
            outcomes[i] = o
        return _batch_out(batch.reports, [o for o in outcomes if o is not None])

    @router.put(ORG_PATH, tags=["admin"],
                summary="Apply an organisation file (YAML or JSON; declarative, idempotent)",
                openapi_extra={"requestBody": {"required": True, "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}}}}})
    async def put_org(request: Request, principal: Caller) -> dict[str, Any]:
        require_role(principal, "admin")
        assert ctx.store_snapshot is not None
        raw = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            # reading a large organisation takes seconds: in a thread, so reports keep being accepted meanwhile
            if ctype == "application/json" or ctype.endswith("+json"):
                doc = await asyncio.to_thread(parse_org_json, raw)
            else:
                doc = await asyncio.to_thread(parse_org_text, raw.decode("utf-8", errors="replace"))
            applied = await apply_org(doc, sessions=ctx.sessions, applied_by=principal.person_id,
                                      on_applied=ctx.runtime.apply_org, wake=ctx.wake, store=ctx.store_snapshot,
                                      metrics=ctx.metrics)
        except OrgSyntaxError as exc:
            raise Problem(400, "Malformed organisation file", f"Filen kan inte läsas. / The file cannot be read: "
                          f"{exc}", errors=exc.errors) from exc
        except OrgInvalid as exc:
            ctx.metrics.org_applies.labels("invalid").inc()
            raise Problem(422, "Invalid organisation", "Organisationen är ogiltig; se errors. / "
                          "The organisation is invalid; see errors.", errors=exc.errors) from exc
        except BusUnavailable as exc:
            raise Problem(503, "Service Unavailable", "Meddelandebussen svarar inte; organisationen sparades inte, "
                          "försök igen. / The message bus is unavailable; the organisation was not stored, please "
                          "retry.", headers={"Retry-After": RETRY_AFTER}) from exc
        if ctx.on_org_put is not None:
            await ctx.on_org_put(raw, applied, ctx.sessions)
        return {"version": applied.snapshot.version, "changed": applied.changed, "changes": applied.changes}

    @router.get("/v1/admin/org", tags=["admin"], summary="The current organisation snapshot (tokens hashed)")
    async def get_org(principal: Caller) -> dict[str, Any]:
        require_role(principal, "admin")
        return ctx.snapshot.model_dump(mode="json")

    @router.get("/v1/admin/org/history", tags=["admin"], summary="Every organisation version with its changes")
    async def get_org_history(principal: Caller, limit: int = 100) -> dict[str, Any]:
        require_role(principal, "admin")
        async with ctx.sessions() as s:
            versions = await db.org_history(s, limit=max(1, min(limit, 1000)))
        return {"versions": [{**v, "applied_at": v["applied_at"].isoformat()} for v in versions]}

    @router.get("/v1/admin/org/history/{version}", tags=["admin"], summary="One stored organisation version")
    async def get_org_version(version: int, principal: Caller) -> dict[str, Any]:
        require_role(principal, "admin")
        async with ctx.sessions() as s:
            snap = await db.org_version(s, version)
        if snap is None:
            raise Problem(404, "Not Found", f"Version {version} finns inte. / Version {version} does not exist.")
        return snap.model_dump(mode="json")

    posts = {r.path: r for r in router.routes if isinstance(r, APIRoute) and "POST" in r.methods}
    ctx.runtime.app.add_middleware(ReportsFastPath, ctx=ctx, route=posts[REPORTS_PATH],  # type: ignore[arg-type]
                                   batch_route=posts[BATCH_PATH])
    return router


REPORTS_PATH = "/v1/reports"
BATCH_PATH = "/v1/reports:batch"


async def accept_report(ctx: IntakeContext, authorization: str, raw: bytes) -> Outcome:
    """POST /v1/reports: authenticate, authorise, validate the body and accept the report (raises Problem)."""
    principal = await ctx.principal(authorization)
    require_role(principal, "reporter", "key_function")
    report = parse_json_body(ReportIn, raw)
    [outcome] = await ctx.submit([Submission(req=report, caller=principal, received_at=datetime.now(UTC))], "api")
    return outcome


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

    def __init__(self, app: ASGIApp, *, ctx: IntakeContext, route: APIRoute, batch_route: APIRoute) -> None:
        self.app, self.ctx, self.route, self.batch_route = app, ctx, route, batch_route
        runtime = ctx.runtime
        self.max_body = max_body = int(getattr(runtime.settings, "max_body_bytes", 2_000_000))
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
            reports = _VALID_BATCH.validate_json(raw).reports
        except (Problem, DomainError, ValidationError):
            return None
        return (principal, reports) if len(reports) <= self.ctx.max_batch else None

    async def batch_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The batch route's answer for a planned batch (see ``batch``)."""
        scope["route"] = self.batch_route
        principal, reports = scope.pop("est.batch")
        now = datetime.now(UTC)
        done = await self.ctx.submit([Submission(req=r, caller=principal, received_at=now) for r in reports], "batch")
        await _batch_out([{"report_id": r.report_id} for r in reports], done)(scope, receive, send)

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

