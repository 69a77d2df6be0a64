"""HTTP routes of the analysis service: strategic analyses, their readable reports, and measures.

The routes check roles and municipalities and shape requests; the handlers decide. A refusal is a domain
error (``est_shared.errors``), answered as problem+json by the runtime's one handler.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any, Literal

from est_shared.errors import Forbidden, Invalid
from est_shared.http import EXPORT_RESPONSES, Problem, export_response, require_area, require_role
from est_shared.org import OrgSnapshot, Principal
from est_shared.printing import PrintingOff
from est_shared.runtime import ServiceRuntime
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from est_analysis.documents.docx import render_docx
from est_analysis.documents.report import render_report
from est_analysis.documents.tables import measures_table, problems_table
from est_analysis.strategic import handlers
from est_analysis.strategic.domain import ITEM_CODE, InvalidMeasure
from est_analysis.strategic.handlers import Context

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ANALYSIS_ROLES = ("key_function", "beredningsgrupp", "styrgrupp", "admin")
MEASURE_WRITE_ROLES = ("styrgrupp", "admin")
_ITEM_CODE = re.compile(ITEM_CODE)


class AnalysisRequest(BaseModel):
    """Compile a strategic analysis now."""

    model_config = ConfigDict(extra="forbid")

    municipality_id: str = Field(min_length=1, max_length=100, description="municipality id", examples=["vaxjo"])
    period: str = Field(pattern=r"^\d{4}(-[QT]\d)?$",
                        description="quarter (2026-Q4), tertial (2026-T3) or year (2026: the yearly lägesbild and "
                                    "åtgärdsplan of lag 2023:196)",
                        examples=["2026-T3"])


class Resources(BaseModel):
    """Resources given to a measure."""

    model_config = ConfigDict(extra="forbid")

    hours: float | None = Field(default=None, ge=0, le=1e7, allow_inf_nan=False, description="working hours",
                                examples=[120])
    money_sek: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False, description="money in SEK",
                                    examples=[45000])


Status = Literal["planned", "active", "completed", "cancelled"]
NULLABLE = ("end", "hours", "money_sek")


class MeasureIn(BaseModel):
    """A measure decided by the styrgrupp."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300, examples=["Bättre belysning vid centrum"])
    description: str = Field(default="", max_length=4000, examples=["Byta armaturer längs gångvägen"])
    area_id: str = Field(min_length=1, max_length=100, examples=["araby"])
    items: list[str] = Field(min_length=1, max_length=30, description="targeted checklist item codes",
                             examples=[["belysning", "otrygg_plats"]])
    responsible_actor: str = Field(min_length=1, max_length=100, description="actor id", examples=["vaxjohem"])
    decided_by: str = Field(min_length=1, max_length=200, description="body or meeting that decided",
                            examples=["Styrgruppen 2026-09-15"])
    start: date = Field(examples=["2026-09-21"])
    end: date | None = Field(default=None, examples=["2026-12-31"])
    resources: Resources = Field(default_factory=Resources)
    status: Status = Field(default="planned")
    reason: str = Field(default="", max_length=2000, description="why it was decided")


class MeasurePatch(BaseModel):
    """A re-decision: the fields that change and why."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=4000)
    items: list[str] | None = Field(default=None, min_length=1, max_length=30)
    responsible_actor: str | None = Field(default=None, min_length=1, max_length=100)
    decided_by: str | None = Field(default=None, min_length=1, max_length=200)
    start: date | None = None
    end: date | None = None
    resources: Resources | None = None
    status: Status | None = None
    reason: str = Field(min_length=1, max_length=2000, description="why it was re-decided",
                        examples=["Förlängd efter uppföljning i styrgruppen"])


def _belongs(principal: Principal, municipality_id: str, snap: OrgSnapshot) -> bool:
    if "admin" in principal.roles or municipality_id in principal.municipalities:
        return True
    return any((a := snap.areas.get(area)) is not None and a.municipality_id == municipality_id
               for area in principal.areas)


def _require_municipality(principal: Principal, municipality_id: str, snap: OrgSnapshot) -> None:
    if not _belongs(principal, municipality_id, snap):
        raise Forbidden(f"Du arbetar inte i kommunen {municipality_id!r}.",
                        f"You do not work in municipality {municipality_id!r}.", reason="municipality")


def _check_items(items: list[str] | None) -> None:
    bad = [i for i in items or [] if not _ITEM_CODE.match(i)]
    if bad:
        raise Invalid("Punktkoder är identifierare med gemener.", "Item codes are lower-case identifiers.",
                      errors=[{"field": "body.items", "message": f"invalid codes: {bad}"}], reason="items")


def build_router(*, runtime: ServiceRuntime, ctx: Context) -> APIRouter:
    """The service's routes, bound to the runtime's auth and the use-case context."""
    router = APIRouter()
    principal_dep = Depends(runtime.principal)

    async def _load_analysis(analysis_id: str, principal: Principal) -> dict[str, Any]:
        require_role(principal, *ANALYSIS_ROLES)
        body = await handlers.get_analysis(ctx=ctx, analysis_id=analysis_id)
        _require_municipality(principal, body["municipality_id"], ctx.snapshot())
        return body

    @router.post("/v1/analyses", status_code=201, tags=["analyses"],
                 summary="Compile a strategic analysis of a quarter, tertial or year now")
    async def post_analysis(req: AnalysisRequest, principal: Principal = principal_dep) -> dict[str, Any]:
        """Persistent problems per area (k of n), areas ranked by need, trends, completeness and measures."""
        require_role(principal, *ANALYSIS_ROLES)
        snap = ctx.snapshot()
        _require_municipality(principal, req.municipality_id, snap)
        return await handlers.compile_analysis(ctx=ctx, municipality_id=req.municipality_id, period=req.period,
                                               trigger="manual", compiled_by=principal.person_id)

    @router.get("/v1/analyses", tags=["analyses"], summary="A municipality's analyses, newest first")
    async def list_analyses(municipality_id: str = Query(description="municipality id", examples=["vaxjo"]),
                            principal: Principal = principal_dep) -> list[dict[str, Any]]:
        """Id, period, revision, trigger, summary and report path of each analysis."""
        require_role(principal, *ANALYSIS_ROLES)
        _require_municipality(principal, municipality_id, ctx.snapshot())
        return await handlers.list_analyses(ctx=ctx, municipality_id=municipality_id)

    @router.get("/v1/analyses/{analysis_id}", tags=["analyses"], summary="One analysis",
                response_model=None, responses=EXPORT_RESPONSES)
    async def get_analysis(analysis_id: str, request: Request,
                           principal: Principal = principal_dep) -> dict[str, Any] | Response:
        """By id (``vaxjo:2026-T3:r1``); ``vaxjo:2026-T3`` gives the latest revision. With ``?format=csv|xlsx``
        (or ``Accept: text/csv`` / the XLSX type): its persistent problems as a table."""
        analysis = await _load_analysis(analysis_id, principal)
        download = export_response(request, lambda: problems_table(analysis),
                                   f"bestaende-problem-{analysis.get('id', analysis_id)}")
        return download or analysis

    @router.get("/v1/analyses/{analysis_id}/report.html", tags=["analyses"], response_class=HTMLResponse,
                summary="The analysis as a readable, self-contained HTML report")
    async def get_report(analysis_id: str, lang: Literal["sv", "en"] = Query("sv", description="sv or en"),
                         principal: Principal = principal_dep) -> HTMLResponse:
        """Charts are inline SVG; no JavaScript, no external assets; print-friendly."""
        body = await _load_analysis(analysis_id, principal)
        return HTMLResponse(render_report(body, lang=lang))

    @router.get("/v1/analyses/{analysis_id}/report.pdf", tags=["analyses"], response_class=Response,
                summary="The readable report as PDF (A4), printed by headless Chromium",
                responses={200: {"content": {"application/pdf": {}}, "description": "the report as PDF"},
                           501: {"description": "no browser configured (EST_ANALYSIS_BROWSER)"},
                           503: {"description": "the browser failed or timed out; retry later"}})
    async def get_report_pdf(analysis_id: str, lang: Literal["sv", "en"] = Query("sv", description="sv or en"),
                             principal: Principal = principal_dep) -> Response:
        """The same report as ``report.html``, printed to PDF by the browser in ``EST_ANALYSIS_BROWSER``."""
        body = await _load_analysis(analysis_id, principal)
        try:
            pdf = await handlers.report_pdf(body, ctx=ctx, lang=lang, analysis_id=analysis_id)
        except PrintingOff:
            # a switched-off feature, not a refusal: no domain error kind answers 501
            raise Problem(501, "PDF not available",
                          "Ingen webbläsare är inställd för PDF-rapporter: installera Chromium eller ange "
                          "sökvägen i EST_ANALYSIS_BROWSER; report.html har samma innehåll. / No browser is "
                          "configured for PDF reports: install Chromium or set EST_ANALYSIS_BROWSER to its path; "
                          "report.html has the same content.") from None
        name = f"analys-{body['municipality_id']}-{body['period']}-r{body['revision']}.pdf"
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{name}"'})

    @router.get("/v1/analyses/{analysis_id}/report.docx", tags=["analyses"], response_class=Response,
                summary="The readable report as a Word document (DOCX), with the same content and charts",
                responses={200: {"content": {DOCX_TYPE: {}}, "description": "the report as DOCX"}})
    async def get_report_docx(analysis_id: str, lang: Literal["sv", "en"] = Query("sv", description="sv or en"),
                              principal: Principal = principal_dep) -> Response:
        """The report for steering groups that edit in Word; charts as images."""
        body = await _load_analysis(analysis_id, principal)
        data = await asyncio.to_thread(render_docx, body, lang=lang)  # charts take CPU: off the event loop
        name = f"analys-{body['municipality_id']}-{body['period']}-r{body['revision']}.docx"
        return Response(data, media_type=DOCX_TYPE, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @router.post("/v1/measures", status_code=201, tags=["measures"], summary="Record a measure (styrgrupp)")
    async def post_measure(req: MeasureIn, principal: Principal = principal_dep) -> dict[str, Any]:
        """Title, area, targeted items, responsible actor, period, resources and status."""
        require_role(principal, *MEASURE_WRITE_ROLES)
        _check_items(req.items)
        snap = ctx.snapshot()
        area = snap.areas.get(req.area_id)
        if area is None:
            raise InvalidMeasure(f"Unknown area {req.area_id!r}.", f"Okänt område {req.area_id!r}.", "area_id",
                                 message="unknown area")
        _require_municipality(principal, area.municipality_id, snap)
        values = req.model_dump(exclude={"resources"})
        values.update(hours=req.resources.hours, money_sek=req.resources.money_sek)
        made = await handlers.create_measure(ctx=ctx, principal=principal, values=values)
        return handlers.measure_names(ctx.snapshot(), made)

    @router.patch("/v1/measures/{measure_id}", tags=["measures"], summary="Re-decide a measure (styrgrupp)")
    async def patch_measure(measure_id: str, req: MeasurePatch, principal: Principal = principal_dep) -> dict[str, Any]:
        """Changes the given fields and records who, when, what and why in the measure's history."""
        require_role(principal, *MEASURE_WRITE_ROLES)
        _check_items(req.items)
        current = await handlers.get_measure(ctx=ctx, measure_id=measure_id)
        _require_municipality(principal, current["municipality_id"], ctx.snapshot())
        changes = req.model_dump(exclude_unset=True, exclude={"reason", "resources"})
        if req.resources is not None:
            changes.update(req.resources.model_dump(exclude_unset=True))
        changes = {k: v for k, v in changes.items() if v is not None or k in NULLABLE}
        changed = await handlers.update_measure(ctx=ctx, principal=principal, measure_id=measure_id,
                                                changes=changes, reason=req.reason)
        return handlers.measure_names(ctx.snapshot(), changed)

    @router.get("/v1/measures", tags=["measures"], summary="Measures of an area or municipality",
                response_model=None, responses=EXPORT_RESPONSES)
    async def list_measures(request: Request, area_id: str | None = Query(None, examples=["araby"]),
                            municipality_id: str | None = Query(None, examples=["vaxjo"]),
                            principal: Principal = principal_dep) -> list[dict[str, Any]] | Response:
        """Without filters: the measures of the caller's municipalities. With ``?format=csv|xlsx`` (or the
        Accept header) as a table with names, in the reader's language (``?lang=`` or Accept-Language).
        Each measure also names its area, its responsible actor, its items and its deciders."""
        found = await _measures_of(area_id, municipality_id, principal)
        snap = ctx.snapshot()
        download = export_response(request, lambda: measures_table(found, snap),
                                   f"atgarder-{area_id or municipality_id or 'alla'}")
        return download or [handlers.measure_names(snap, m) for m in found]

    async def _measures_of(area_id: str | None, municipality_id: str | None,
                           principal: Principal) -> list[dict[str, Any]]:
        snap = ctx.snapshot()
        if area_id:
            area = snap.areas.get(area_id)
            if area is None:
                if "admin" not in principal.roles:
                    raise Forbidden(f"Okänt område {area_id!r}.", f"Unknown area {area_id!r}.", reason="area")
            else:
                _require_municipality(principal, area.municipality_id, snap)
                require_area(principal, area_id)
            return await handlers.list_measures(ctx=ctx, area_id=area_id)
        if municipality_id:
            _require_municipality(principal, municipality_id, snap)
            found = await handlers.list_measures(ctx=ctx, municipality_id=municipality_id)
            return [m for m in found if principal.may_see_area(m["area_id"])]
        if "admin" in principal.roles:
            return await handlers.list_measures(ctx=ctx)
        munis = {m for m in snap.municipalities if _belongs(principal, m, snap)}
        return [m for m in await handlers.list_measures(ctx=ctx)
                if m["municipality_id"] in munis and principal.may_see_area(m["area_id"])]

    async def _readable_measure(measure_id: str, principal: Principal) -> dict[str, Any]:
        m = await handlers.get_measure(ctx=ctx, measure_id=measure_id)
        _require_municipality(principal, m["municipality_id"], ctx.snapshot())
        require_area(principal, m["area_id"])
        return m

    @router.get("/v1/measures/{measure_id}", tags=["measures"], summary="One measure with its history")
    async def get_measure(measure_id: str, principal: Principal = principal_dep) -> dict[str, Any]:
        """The measure, its re-decisions (each decider by name) and resources, with its area's, responsible
        actor's and items' names."""
        return handlers.measure_names(ctx.snapshot(), await _readable_measure(measure_id, principal))

    @router.get("/v1/measures/{measure_id}/effect", tags=["measures"],
                summary="A measure's effect so far: its items' values before and after its start")
    async def get_measure_effect(measure_id: str, principal: Principal = principal_dep) -> dict[str, Any]:
        """Per targeted item: the periods before the start and from it on (at most
        ``EST_ANALYSIS_EFFECT_MAX_PERIODS`` each side, begun by today) with their values, the means compared
        over as many periods on each side, the change and its direction (``insufficient_data`` without both)."""
        await _readable_measure(measure_id, principal)
        return await handlers.measure_effect_now(ctx=ctx, measure_id=measure_id)

    @router.get("/v1/actors", tags=["measures"], summary="The actors a measure of a municipality may name")
    async def list_actors(municipality_id: str = Query(description="municipality id", examples=["vaxjo"]),
                          principal: Principal = principal_dep) -> list[dict[str, str]]:
        """Id, name and kind of each actor with people working in the municipality, by name: the choices for
        a measure's responsible actor."""
        require_role(principal, *ANALYSIS_ROLES)
        snap = ctx.snapshot()
        _require_municipality(principal, municipality_id, snap)
        return handlers.municipality_actors(snap, municipality_id)

    return router
