"""Report routes: parse, authorise, call the handlers and turn outcomes into answers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from est_shared.http import (
    PROBLEM,
    Problem,
    require_role,
)
from est_shared.oidc import looks_like_jwt
from est_shared.org import OrgSnapshot, Principal
from est_shared.runtime import ServiceRuntime
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from est_intake.errors import ReportRejected
from est_intake.http import (
    Caller,
    JsonBodyRoute,
    error_message,
    field_name,
    inline_schema,
    parse_json_body,
)
from est_intake.metrics import IntakeMetrics
from est_intake.org.domain import principal_for
from est_intake.reports.domain import (
    ACCEPTED_KEYS,
    ImportReportIn,
    ReportIn,
    check_import_time,
    content_hash,
)
from est_intake.reports.handlers import (
    FetchOriginal,
    Ledger,
    Outcome,
    OwnReports,
    PublishMany,
    Sessions,
    Submission,
    correction_states,
    own_reports,
    problem,
    rejected,
    submit_reports,
    withdrawal_of,
)

MAX_BATCH = 500


@dataclass
class ReportsContext:
    """What the report routes and the fast path need: the runtime (organisation, callers), metrics, the
    idempotency ledger and the pipelined publisher (both built by the composition root)."""

    runtime: ServiceRuntime
    metrics: IntakeMetrics
    ledger: Ledger
    publish: PublishMany
    original: FetchOriginal | None = None
    max_batch: int = MAX_BATCH
    sessions: Sessions | None = None  # the intake's database: each sender's own reports (``GET /v1/me/reports``)

    async def submit(self, subs: list[Submission], via: str) -> list[Outcome]:
        """Accept reports through the idempotency ledger and pipelined JetStream publishing."""
        out = await submit_reports(subs, ledger=self.ledger, snapshot=self.snapshot, publish=self.publish,
                                   metrics=self.metrics, via=via, original=self.original,
                                   states=correction_states(self.sessions))
        if self._own is not None:
            await self._own.record(out)
        return out

    def __post_init__(self) -> None:
        self._own = OwnReports(self.sessions) if self.sessions is not None else None

    @property
    def snapshot(self) -> OrgSnapshot:
        return self.runtime.directory.snapshot

    _own: OwnReports | None = field(default=None, init=False, repr=False)
    _principals: dict[str, Principal] = field(default_factory=dict, repr=False)
    _principals_of: OrgSnapshot | None = field(default=None, repr=False)

    async def principal(self, authorization: str) -> Principal:
        """The caller of an ``Authorization`` header (runtime.principal's answer, kept per organisation version)."""
        snap = self.runtime.directory.snapshot
        if snap is not self._principals_of:
            self._principals, self._principals_of = {}, snap
        found = self._principals.get(authorization)
        if found is None:
            found = await self.runtime.principal(_headers_only(authorization))
            if looks_like_jwt(authorization.partition(" ")[2].strip()):
                return found  # an access token of the OpenID provider expires: checked on every request
            if len(self._principals) >= 10_000:
                self._principals.clear()
            self._principals[authorization] = found
        return found


def _headers_only(authorization: str) -> Request:
    """A request holding only what ``runtime.principal`` reads of one: its Authorization header."""
    return Request({"type": "http", "headers": [(b"authorization", authorization.encode("latin-1"))]})


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


VALID_BATCH = TypeAdapter(_ValidBatch)


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


def _invalid_item(exc: ValidationError) -> Outcome:
    errors = [{"field": field_name(e.get("loc")), "message": error_message(e), "type": str(e.get("type", ""))}
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


def batch_out(items: list[dict[str, Any]], outcomes: list[Outcome]) -> Response:
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


def build_router(ctx: ReportsContext) -> APIRouter:
    """The report routes: one report, a batch, an import."""
    # field apps and curl often omit Content-Type: every body here is JSON, so read it as JSON anyway;
    # a body declared as something else (a form, text) is 415
    router = APIRouter(strict_content_type=False, route_class=JsonBodyRoute)

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
        return batch_out(batch.reports, [o for o in outcomes if o is not None])

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
            req = ReportIn.model_validate(item.model_dump(exclude={"reporter_id", "submitted_at"}, exclude_unset=True))
            digest_caller = f"{item.reporter_id}@{item.submitted_at.isoformat()}"
            sub = Submission(req=req, caller=reporter, received_at=item.submitted_at.astimezone(UTC))
            sub.digest = content_hash(req, digest_caller)
            sub.exact_time = True
            subs.append((i, sub))
        done = await ctx.submit([s for _, s in subs], "import")
        for (i, _), o in zip(subs, done, strict=True):
            outcomes[i] = o
        return batch_out(batch.reports, [o for o in outcomes if o is not None])

    @router.get("/v1/me/reports", tags=["field app"], response_model=OwnReportsOut,
                summary="The caller's own reports, newest first (with what corrected or withdrew each)",
                responses={401: {}, 422: {}, 503: {}})
    async def get_own_reports(principal: Caller,
                              area_id: str | None = Query(default=None, max_length=100),
                              period_from: str | None = Query(default=None, alias="from", max_length=20,
                                                              description="first period, e.g. 2026-W10"),
                              period_to: str | None = Query(default=None, alias="to", max_length=20,
                                                            description="last period, e.g. 2026-W12"),
                              limit: int = Query(default=50, ge=1, le=MAX_OWN),
                              offset: int = Query(default=0, ge=0, le=1_000_000)) -> dict[str, Any]:
        sessions = _own_sessions(ctx)
        rows = await own_reports(sessions, principal, ctx.snapshot, area_id=area_id, period_from=period_from,
                                 period_to=period_to, limit=limit + 1, offset=offset)
        more = len(rows) > limit
        return {"reports": rows[:limit], "next_offset": offset + limit if more else None}

    @router.post("/v1/reports/{report_id}/withdraw", tags=["field app"], status_code=202,
                 response_model=AcceptedOut,
                 summary="Withdraw one of your own reports: a report superseding it with withdrawn: true",
                 responses={401: {}, 403: {}, 404: {"description": "no such report of yours"},
                            409: {"description": "withdrawn already, or corrected"}, 422: {},
                            503: {"description": "bus unavailable; retry"}})
    async def post_withdraw(principal: Caller,
                            report_id: str = Path(max_length=128)) -> JSONResponse:
        require_role(principal, "reporter", "key_function")
        sub = await withdrawal_of(_own_sessions(ctx), principal, report_id)
        [outcome] = await ctx.submit([sub], "withdraw")
        return _outcome_response(outcome)

    return router


MAX_OWN = 200


class OwnReport(BaseModel):
    """One of the caller's reports as the intake accepted it."""

    report_id: str
    area_id: str
    area_name: str
    period: str
    received_at: str
    late: bool
    checklist: str
    answers: dict[str, Any]
    nothing_to_report: bool
    note: str
    supersedes: str | None = Field(description="the report this one corrected")
    superseded_by: str | None = Field(description="the correction that replaced this report")
    withdrawn: bool
    withdrawn_by: str | None = Field(description="the withdrawal that took this report back")


class OwnReportsOut(BaseModel):
    reports: list[OwnReport]
    next_offset: int | None = Field(description="offset of the next page; null on the last")


def _own_sessions(ctx: ReportsContext) -> Sessions:
    if ctx.sessions is None:
        raise Problem(503, "Service Unavailable", "Rapportlistan är inte tillgänglig. / The report list is "
                      "not available.", headers={"Retry-After": "5"})
    return ctx.sessions


REPORTS_PATH = "/v1/reports"
BATCH_PATH = "/v1/reports:batch"


async def accept_report(ctx: ReportsContext, authorization: str, raw: bytes) -> Outcome:
    """POST /v1/reports: authenticate, authorise, validate the body and accept the report (raises Problem)."""
    principal = await ctx.principal(authorization)
    require_role(principal, "reporter", "key_function")
    report = parse_json_body(ReportIn, raw)
    [outcome] = await ctx.submit([Submission(req=report, caller=principal, received_at=datetime.now(UTC))], "api")
    return outcome
