"""Personal API token routes: an admin issues, lists and revokes a person's tokens, and a person their own.

A token is shown once, in the answer that issues it; the organisation keeps only its SHA-256
(``OrgSnapshot.tokens``). Issuing and revoking make a new organisation version through the same path as an
organisation file (``change_org``), so every service accepts or refuses the token within seconds.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from est_shared.bus import BusUnavailable
from est_shared.http import require_role
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from est_intake.http import Caller, JsonBodyRoute, inline_schema, parse_json_body
from est_intake.org.api import OrgContext, not_stored
from est_intake.org.domain import (
    MAX_TOKEN_NAME,
    new_token,
    no_such_person,
    person_tokens,
    with_issued_token,
    without_token,
)
from est_intake.org.handlers import change_org

log = logging.getLogger("est.intake")

ADMIN_TOKENS_PATH = "/v1/admin/people/{person_id}/tokens"
ME_TOKENS_PATH = "/v1/me/tokens"


class TokenIn(BaseModel):
    """A token to issue: a name that says where it is used, and when it stops working (optional)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=MAX_TOKEN_NAME, description="what the token is for",
                      examples=["rapportappen på telefonen"])
    expires_at: AwareDatetime | None = Field(default=None, description="when it stops working (with timezone); "
                                             "left out: until it is revoked", examples=["2027-06-30T00:00:00Z"])


def build_token_router(ctx: OrgContext) -> APIRouter:
    """The token routes of admins (any person's) and of each person (their own)."""
    router = APIRouter(strict_content_type=False, route_class=JsonBodyRoute)
    body_doc = {"requestBody": {"required": True, "content": {"application/json": {"schema": inline_schema(TokenIn)}}}}

    async def issue(person_id: str, request: Request, by: str) -> JSONResponse:
        body = parse_json_body(TokenIn, await request.body())
        new = new_token(person_id, body.name, now=datetime.now(UTC), expires_at=body.expires_at)
        try:
            applied = await change_org(lambda prev, at: with_issued_token(prev, new, at), sessions=ctx.sessions,
                                       applied_by=by, on_applied=ctx.runtime.apply_org, wake=ctx.wake,
                                       store=ctx.store_snapshot)
        except BusUnavailable as exc:
            raise not_stored("token", "the token") from exc
        log.info("personal API token issued", extra={"person_id": person_id, "token_id": new.token.id,
                                                     "applied_by": by, "version": applied.snapshot.version})
        t = new.token
        return JSONResponse(status_code=201, content={
            "id": t.id, "person_id": t.person_id, "name": t.name, "token": new.plaintext,
            "created_at": t.created_at.isoformat(), "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "org_version": applied.snapshot.version,
            "note": {"sv": "Token visas bara nu; spara den säkert.", "en": "The token is shown only now; keep it "
                                                                          "safe."}})

    async def revoke(person_id: str, token_id: str, by: str) -> dict[str, Any]:
        try:
            applied = await change_org(lambda prev, at: without_token(prev, person_id, token_id, at),
                                       sessions=ctx.sessions, applied_by=by, on_applied=ctx.runtime.apply_org,
                                       wake=ctx.wake, store=ctx.store_snapshot)
        except BusUnavailable as exc:
            raise not_stored("återkallelsen", "the revocation") from exc
        log.info("personal API token revoked", extra={"person_id": person_id, "token_id": token_id,
                                                      "applied_by": by, "version": applied.snapshot.version})
        return {"id": token_id, "person_id": person_id, "revoked": True, "org_version": applied.snapshot.version}

    def listed(person_id: str) -> dict[str, Any]:
        snap = ctx.snapshot
        if person_id not in snap.people:
            raise no_such_person(person_id)
        return {"person_id": person_id, "tokens": person_tokens(
            snap, person_id, now=ctx.runtime.directory.clock.now(), last_used=ctx.runtime.directory.last_used)}

    @router.post(ADMIN_TOKENS_PATH, tags=["admin"], status_code=201, openapi_extra=body_doc,
                 summary="Issue a person a personal API token (shown once)")
    async def admin_issue(person_id: str, request: Request, principal: Caller) -> JSONResponse:
        require_role(principal, "admin")
        return await issue(person_id, request, principal.person_id)

    @router.get(ADMIN_TOKENS_PATH, tags=["admin"], summary="A person's issued tokens (never the tokens)")
    async def admin_list(person_id: str, principal: Caller) -> dict[str, Any]:
        require_role(principal, "admin")
        return listed(person_id)

    @router.delete(ADMIN_TOKENS_PATH + "/{token_id}", tags=["admin"], summary="Revoke a person's issued token")
    async def admin_revoke(person_id: str, token_id: str, principal: Caller) -> dict[str, Any]:
        require_role(principal, "admin")
        return await revoke(person_id, token_id, principal.person_id)

    @router.post(ME_TOKENS_PATH, tags=["field app"], status_code=201, openapi_extra=body_doc,
                 summary="Issue yourself a personal API token (shown once)")
    async def me_issue(request: Request, principal: Caller) -> JSONResponse:
        return await issue(principal.person_id, request, principal.person_id)

    @router.get(ME_TOKENS_PATH, tags=["field app"], summary="Your issued tokens (never the tokens)")
    async def me_list(principal: Caller) -> dict[str, Any]:
        return listed(principal.person_id)

    @router.delete(ME_TOKENS_PATH + "/{token_id}", tags=["field app"], summary="Revoke one of your issued tokens")
    async def me_revoke(token_id: str, principal: Caller) -> dict[str, Any]:
        return await revoke(principal.person_id, token_id, principal.person_id)

    return router

