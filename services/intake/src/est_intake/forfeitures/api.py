"""Forfeiture routes: protocols for police and social services, their administration for admins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from est_shared.http import PROBLEM, Problem, problem_response, require_role
from est_shared.org import Principal
from est_shared.runtime import ServiceRuntime
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from est_intake.forfeitures import db as fdb
from est_intake.forfeitures.domain import ForfeitureIn, may_record, protocol_id_of
from est_intake.forfeitures.handlers import (
    ForfeitureDeps,
    ReadRefused,
    Result,
    access_log_view,
    log_unauthenticated,
    read_protocol,
    record_protocol,
    reencrypt_protocols,
)


class ForfeitureAcceptedOut(BaseModel):
    """The answer once a protocol is stored and its (anonymous) event acknowledged by JetStream."""

    protocol_id: str
    status: str = Field(examples=["accepted"])
    age_band: str = Field(examples=["15_17"], description="under_15, 15_17 or 18_19")
    warnings: list[dict[str, str]] = Field(default_factory=list,
                                           description="reminders (guardians, social services) with code and texts")


class PersonOut(BaseModel):
    """The young person (null once retention has deleted the personal data)."""

    name: str | None
    personal_number: str | None = Field(description="12 digits with a hyphen")
    age: int | None = Field(description="age on the day of the forfeiture")


class ForfeitureOut(BaseModel):
    """A forfeiture protocol with its personal data (police and social services; the read is logged)."""

    protocol_id: str
    municipality_id: str
    area_id: str | None
    place: str | None
    occurred_at: str
    received_at: str
    recorded_by: str = Field(description="person id of the officer who recorded it")
    unit: str | None
    officer: str | None
    person: PersonOut | None
    age_band: str
    items: list[dict[str, Any]]
    direct_forfeiture: bool
    guardian_contacted: bool
    guardian_came: bool
    source: str
    source_label: dict[str, str]
    source_details: str | None
    social_services_notified: bool
    personal_data_deleted_at: str | None
    personal_data_deleted_after: str = Field(description="when retention deletes the personal data")


class CredentialChangeOut(BaseModel):
    """A new token or read role of a police or social-services person, with the organisation version."""

    org_version: int
    person_id: str
    at: str = Field(description="when the organisation version was applied")
    applied_by: str = Field(description="who applied it: an administrator's person id, or file:<name>")
    kind: str = Field(examples=["token_changed"],
                      description="person_added, token_changed, token_issued or read_role_granted")
    roles: list[str]


class AccessEntryOut(BaseModel):
    """One access-log entry."""

    seq: int
    at: str
    person_id: str = Field(description="who ('-' without a valid token)")
    actor_id: str | None
    roles: list[str]
    protocol_id: str = Field(description="the protocol (a UUID), or '[malformed id]'")
    purpose: str | None = Field(description="the stated purpose, or a marker such as '[refused: personal data]'")
    outcome: str = Field(examples=["granted", "forbidden_role", "purpose_missing", "not_found", "other_municipality",
                                   "malformed_id", "unauthenticated"])
    correlation_id: str | None
    credential_change: CredentialChangeOut | None = Field(
        description="the latest change of this person's token or read role before the read: a read with a token "
                    "an administrator has just set is shown as such")


class AccessLogOut(BaseModel):
    """Access-log entries and credential changes, newest first."""

    entries: list[AccessEntryOut]
    credential_changes: list[CredentialChangeOut] = Field(
        description="new tokens and read roles of police and social-services people (same filters)")


def _answer(result: Result) -> JSONResponse:
    if result.status < 300:
        return JSONResponse(result.body, status_code=result.status)
    return JSONResponse(result.body, status_code=result.status, media_type=PROBLEM, headers=result.headers)


def build_forfeiture_router(deps: ForfeitureDeps, runtime: ServiceRuntime) -> APIRouter:
    """Routes for protocols (police, social services) and their administration (admin)."""
    router = APIRouter(strict_content_type=False)

    async def police(request: Request) -> Principal:
        principal = await runtime.principal(request)
        if not may_record(principal):
            deps.metrics.recorded.labels("forbidden").inc()
            raise Problem(403, "Forbidden", "Förverkandeprotokoll registreras av polisen (rollen police). / "
                          "Forfeiture protocols are recorded by the police (role police).")
        return principal

    async def caller(request: Request) -> Principal:
        return await runtime.principal(request)

    police_dep, caller_dep = Depends(police), Depends(caller)

    @router.post("/v1/forfeitures", tags=["police"], status_code=202, response_model=ForfeitureAcceptedOut,
                 summary="Record a Kronoberg forfeiture protocol (answered once JetStream has stored its event)",
                 responses={401: {}, 403: {}, 409: {}, 422: {}, 503: {"description": "bus unavailable; retry"}})
    async def post_forfeiture(req: ForfeitureIn, principal: Principal = police_dep) -> JSONResponse:
        return _answer(await record_protocol(req, caller=principal, snapshot=runtime.directory.snapshot, deps=deps))

    @router.get("/v1/forfeitures/{protocol_id}", tags=["police", "social services"], response_model=ForfeitureOut,
                summary="Read a protocol with its personal data (police and social services; every read is logged)",
                responses={401: {}, 403: {}, 404: {"description": "no such protocol in your municipalities"},
                           422: {"description": "the id is not a UUID, or the purpose is missing or invalid"}})
    async def get_forfeiture(protocol_id: str, request: Request,
                             purpose: Annotated[str | None, Query(
                                 description="why you read it, e.g. 'uppföljningssamtal' (logged; required)")] = None,
                             ) -> dict[str, Any] | JSONResponse:
        pid = protocol_id_of(protocol_id)
        instance = f"/v1/forfeitures/{pid}" if pid else None  # an id that is not a UUID is never echoed
        try:
            principal = await runtime.principal(request)
        except Problem as exc:
            await log_unauthenticated(protocol_id, client=request.client.host if request.client else "-", deps=deps)
            return problem_response(exc.status, exc.title, exc.detail, headers=exc.headers, instance=instance)
        try:
            return await read_protocol(protocol_id, reader=principal, purpose=purpose,
                                       snapshot=runtime.directory.snapshot, deps=deps)
        except ReadRefused as exc:
            return problem_response(exc.status, exc.title, exc.detail, errors=exc.errors, instance=instance)

    @router.get("/v1/admin/forfeiture-access-log", tags=["admin"], response_model=AccessLogOut,
                summary="Who read which forfeiture protocol, when, why, and with what outcome")
    async def get_access_log(principal: Principal = caller_dep, protocol_id: str | None = None,
                             person_id: str | None = None, since: datetime | None = None,
                             limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        require_role(principal, "admin")
        if since is not None:
            since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        return await access_log_view(protocol_id=protocol_id, person_id=person_id, since=since, limit=limit,
                                     deps=deps)

    @router.get("/v1/admin/forfeitures/encryption", tags=["admin"],
                summary="Key ids in use: the primary key, the configured keys and protocols per key")
    async def get_encryption(principal: Principal = caller_dep) -> dict[str, Any]:
        require_role(principal, "admin")
        cipher = deps.sealer()
        async with deps.sessions() as s:
            usage = await fdb.key_usage(s)
        return {"primary_key_id": cipher.primary_id, "key_ids": cipher.key_ids, "rows_by_key": usage,
                "retention_days": deps.retention.days}

    @router.post("/v1/admin/forfeitures/reencrypt", tags=["admin"],
                 summary="Re-encrypt personal data still sealed with an older key under the first key of EST_PII_KEY")
    async def post_reencrypt(principal: Principal = caller_dep) -> dict[str, Any]:
        require_role(principal, "admin")
        return await reencrypt_protocols(sessions=deps.sessions, cipher=deps.sealer(), metrics=deps.metrics)

    return router
