"""Organisation routes: the caller and the checklist for the field apps, the organisation for admins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from est_shared.bus import BusUnavailable
from est_shared.checklists import LEVELS, Checklist
from est_shared.http import Problem, require_role
from est_shared.org import OrgSnapshot, Principal
from est_shared.periods import current_period
from est_shared.runtime import ServiceRuntime
from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_intake.http import Caller, JsonBodyRoute
from est_intake.metrics import IntakeMetrics
from est_intake.org import db
from est_intake.org.domain import OrgInvalid, OrgSyntaxError, org_document, parse_org_json, parse_org_text
from est_intake.org.handlers import (
    RETRY_AFTER,
    OrgApplied,
    OrgChangedMeanwhile,
    StoreSnapshot,
    apply_org,
    preview_org,
)

ORG_PATH = "/v1/admin/org"

OnOrgPut = Callable[[bytes, OrgApplied, async_sessionmaker[AsyncSession]], Awaitable[None]]
"""Called after ``PUT /v1/admin/org`` with the body as sent and what it applied."""


@dataclass
class OrgContext:
    """What the organisation routes need: the runtime, the database, metrics, the snapshot store and the
    outbox wake-up."""

    runtime: ServiceRuntime
    sessions: async_sessionmaker[AsyncSession]
    metrics: IntakeMetrics
    wake: Callable[[], None]
    store_snapshot: StoreSnapshot
    on_org_put: OnOrgPut | None = None

    @property
    def snapshot(self) -> OrgSnapshot:
        return self.runtime.directory.snapshot


def _area_view(snapshot: OrgSnapshot, area_id: str) -> dict[str, Any] | None:
    area = snapshot.areas.get(area_id)
    if area is None:
        return None
    muni = snapshot.municipalities.get(area.municipality_id)
    tz = muni.timezone if muni else "Europe/Stockholm"
    return {"id": area.id, "name": area.name, "municipality_id": area.municipality_id, "cadence": area.cadence,
            "places": list(area.places), "current_period": current_period(area.cadence, datetime.now(UTC), tz).id,
            "checklist": snapshot.checklist_ref_for(area.municipality_id),
            # where the organisation file says (WGS 84): the dashboard's map
            **({"geometry": area.geometry} if area.geometry else {}),
            **({"place_locations": area.place_locations} if area.place_locations else {})}


def _caller_areas(snapshot: OrgSnapshot, principal: Principal) -> list[dict[str, Any]]:
    ids = principal.areas if "admin" not in principal.roles or principal.areas else list(snapshot.areas)
    return [v for v in (_area_view(snapshot, a) for a in ids) if v]


def _caller_checklist_ref(snapshot: OrgSnapshot, principal: Principal) -> str:
    """The checklist a caller fills in: their first area's municipality's (the area the form opens on; each
    area in ``areas`` names its own), else their first municipality's, else the organisation's current one."""
    for area_id in principal.areas:
        area = snapshot.areas.get(area_id)
        if area is not None:
            return snapshot.checklist_ref_for(area.municipality_id)
    for m in principal.municipalities:
        if m in snapshot.municipalities:
            return snapshot.checklist_ref_for(m)
    return snapshot.current_checklist


def _checklist_view(checklist: Checklist, snapshot: OrgSnapshot, principal: Principal) -> dict[str, Any]:
    """A checklist version as the Checklist model dumps it (an organisation file may declare it back as it is),
    with what ``CHECKLIST_VIEW_KEYS`` names added: the ref, the answer types, the default level scale, the
    note's rules and the caller's areas."""
    return {
        "ref": checklist.ref,
        **checklist.model_dump(mode="json", exclude_none=True),  # max_count: count items only
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


def not_stored(sv: str, en: str) -> Problem:
    """503 when the bus does not take a new organisation version: ``sv``/``en`` name what was not stored."""
    return Problem(503, "Service Unavailable", f"Meddelandebussen svarar inte; {sv} sparades inte, försök igen. / "
                   f"The message bus is unavailable; {en} was not stored, please retry.",
                   headers={"Retry-After": RETRY_AFTER})


def build_router(ctx: OrgContext) -> APIRouter:
    """The caller, the checklists and the organisation routes."""
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
                "checklist": _caller_checklist_ref(snap, principal)}

    @router.get("/v1/checklists/current", tags=["field app"],
                summary="The caller's municipality's checklist with labels, answer types, level scale and the "
                        "caller's areas (each names the checklist of its municipality)")
    async def checklist_current(principal: Caller) -> dict[str, Any]:
        snap = ctx.snapshot
        checklist = snap.checklist(_caller_checklist_ref(snap, principal))
        assert checklist is not None  # validate_org admits only known references
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

    @router.put(ORG_PATH, tags=["admin"],
                summary="Apply an organisation file (YAML or JSON; declarative, idempotent)",
                openapi_extra={"requestBody": {"required": True, "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object"}}}}})
    async def put_org(request: Request, principal: Caller, dry_run: bool = False) -> dict[str, Any]:
        """With ``dry_run=true`` the answer is what applying would do (the version it would make, the
        changes); nothing is stored or announced. With ``If-Match: "<version>"`` (the ``ETag`` of
        ``GET /v1/admin/org/document``) the file applies only on top of that version: 412 when the
        organisation was changed meanwhile, so that one administrator's edit never silently undoes another's."""
        require_role(principal, "admin")
        expected = _if_match(request)
        raw = await request.body()
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            # reading a large organisation takes seconds: in a thread, so reports keep being accepted meanwhile
            if ctype == "application/json" or ctype.endswith("+json"):
                doc = await asyncio.to_thread(parse_org_json, raw)
            else:
                doc = await asyncio.to_thread(parse_org_text, raw.decode("utf-8", errors="replace"))
            if dry_run:
                preview = await preview_org(doc, sessions=ctx.sessions, expected_version=expected)
                return {"dry_run": True, "version": preview.snapshot.version, "changed": preview.changed,
                        "changes": preview.changes}
            applied = await apply_org(doc, sessions=ctx.sessions, applied_by=principal.person_id,
                                      on_applied=ctx.runtime.apply_org, wake=ctx.wake, store=ctx.store_snapshot,
                                      metrics=ctx.metrics, expected_version=expected)
        except OrgChangedMeanwhile as exc:
            raise Problem(412, "Organisation changed meanwhile",
                          f"Organisationen har ändrats sedan du öppnade den (nu version {exc.current}); din ändring "
                          "är inte gjord. Läs in den igen och gör ändringen på nytt. / The organisation was changed "
                          f"since you opened it (now version {exc.current}); your change was not made. Load it "
                          "again and make the change anew.", headers={"ETag": f'"{exc.current}"'}) from exc
        except OrgSyntaxError as exc:
            raise Problem(400, "Malformed organisation file", f"Filen kan inte läsas. / The file cannot be read: "
                          f"{exc}", errors=exc.errors) from exc
        except OrgInvalid as exc:
            ctx.metrics.org_applies.labels("invalid").inc()
            raise Problem(422, "Invalid organisation", "Organisationen är ogiltig; se errors. / "
                          "The organisation is invalid; see errors.", errors=exc.errors) from exc
        except BusUnavailable as exc:
            raise not_stored("organisationen", "the organisation") from exc
        if ctx.on_org_put is not None:
            await ctx.on_org_put(raw, applied, ctx.sessions)
        return {"version": applied.snapshot.version, "changed": applied.changed, "changes": applied.changes}

    @router.get("/v1/admin/org", tags=["admin"], summary="The current organisation snapshot (tokens hashed)")
    async def get_org(principal: Caller) -> dict[str, Any]:
        require_role(principal, "admin")
        return ctx.snapshot.model_dump(mode="json")

    @router.get("/v1/admin/org/document", tags=["admin"],
                summary="The current organisation as an organisation file (JSON): PUT back as it is, it makes "
                        "no new version")
    async def get_org_document(principal: Caller, response: Response) -> dict[str, Any]:
        require_role(principal, "admin")
        snap = ctx.snapshot
        response.headers["ETag"] = f'"{snap.version}"'  # send it back as If-Match with the changed file
        return org_document(snap)

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

    return router


def _if_match(request: Request) -> int | None:
    """The organisation version an ``If-Match`` names (``"7"``, ``W/"7"`` or ``7``); None without one or for ``*``."""
    value = request.headers.get("if-match", "").strip()
    if value in ("", "*"):
        return None
    tag = value.removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 12:
        raise Problem(400, "Bad If-Match", "If-Match ska vara organisationens version, t.ex. \"7\". / "
                      "If-Match must be the organisation's version, e.g. \"7\".")
    return int(tag)
