"""Intake HTTP routes: parse, authorise, call the handlers and turn outcomes into answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from est_shared.bus import BusUnavailable
from est_shared.checklists import LEVELS, Checklist
from est_shared.http import (
    PROBLEM,
    Problem,
    require_role,
)
from est_shared.org import OrgSnapshot, Principal
from est_shared.periods import current_period
from est_shared.runtime import ServiceRuntime
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_intake.adapters.jetstream import JetStreamReports
from est_intake.adapters.ledger import ReportLedger
from est_intake.http import (
    Caller,
    JsonBodyRoute,
    _field,
    _message,
    inline_schema,
    parse_json_body,
)
from est_intake.metrics import IntakeMetrics
from est_intake.org import db as org_db
from est_intake.org.domain import OrgInvalid, OrgSyntaxError, parse_org_json, parse_org_text, principal_for
from est_intake.org.handlers import OrgApplied, StoreSnapshot, apply_org
from est_intake.reports.domain import (
    ACCEPTED_KEYS,
    ImportReportIn,
    ReportIn,
    ReportRejected,
    check_import_time,
    content_hash,
)
from est_intake.reports.handlers import RETRY_AFTER, Outcome, Publish, Submission, problem, rejected, submit_reports

MAX_BATCH = 500
ORG_PATH = "/v1/admin/org"



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
    ledger: ReportLedger | None = None
    reports_bus: JetStreamReports | None = None
    store_snapshot: StoreSnapshot | None = None
    on_org_put: Callable[[bytes, OrgApplied, async_sessionmaker[AsyncSession]], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = ReportLedger(self.sessions.kw["bind"])
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
            versions = await org_db.org_history(s, limit=max(1, min(limit, 1000)))
        return {"versions": [{**v, "applied_at": v["applied_at"].isoformat()} for v in versions]}

    @router.get("/v1/admin/org/history/{version}", tags=["admin"], summary="One stored organisation version")
    async def get_org_version(version: int, principal: Caller) -> dict[str, Any]:
        require_role(principal, "admin")
        async with ctx.sessions() as s:
            snap = await org_db.org_version(s, version)
        if snap is None:
            raise Problem(404, "Not Found", f"Version {version} finns inte. / Version {version} does not exist.")
        return snap.model_dump(mode="json")

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
