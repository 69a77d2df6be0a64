"""HTTP routes of the aggregator: read pictures, series and municipality pictures; publish a picture.

Thin: a use case's domain error (``est_shared.errors``) leaves through the runtime's one problem+json
handler, which names its status and withholds a detail or field message that looks like personal data.

No ``from __future__ import annotations`` here: FastAPI must see the route-local ``Who`` dependency type.
"""


from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from est_shared.errors import Forbidden
from est_shared.events import PictureData
from est_shared.http import EXPORT_RESPONSES, Problem, export_response, require_area, require_role
from est_shared.org import OrgSnapshot, Principal
from est_shared.periods import Period
from est_shared.printing import NoPrinter, Printer, PrintFailed, PrintingOff
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.document import render_picture
from est_aggregator.pictures.domain.errors import MunicipalityNotFound
from est_aggregator.pictures.domain.notes import NOTE_READERS, reads_missing_reporters, reads_notes
from est_aggregator.pictures.publish import publish_picture
from est_aggregator.pictures.reads import (
    kronoberg_weeks,
    read_alerts,
    read_kronoberg,
    read_municipality,
    read_picture,
    read_reports,
    read_series,
)
from est_aggregator.pictures.tables import (
    alerts_table,
    completeness_rows,
    completeness_table,
    kronoberg_table,
    kronoberg_view_of,
    municipality_table,
    reports_table,
    series_table,
)


class PictureView(PictureData):
    """A picture as the API shows it: the event shape plus level means, the deadline and publication facts."""

    means: dict[str, float] = Field(default_factory=dict, description="level items: mean of the answered levels")
    deadline: datetime | None = Field(default=None, description="when the picture publishes by itself")
    published_at: datetime | None = None
    revision: bool | None = Field(default=None, description="whether the latest version was a revision")
    changes: list[str] = Field(default_factory=list, description="what the latest version changed",
                               examples=[["klotter: 1 → 2"]])
    continues: dict[str, list[str]] = Field(
        default_factory=dict, description="item -> the earlier checklist codes its series continues (a rename "
                                          "or split): their answers count as the item's",
        examples=[{"klotter_tagg": ["klotter"]}])
    continued: dict[str, list[str]] = Field(
        default_factory=dict, description="item -> the earlier codes whose answers this period's value holds")


class PublishRequest(BaseModel):
    """Optional body of a publish request."""

    comment: str | None = Field(default=None, max_length=4000,
                                description="the key function's own analysis, shown with the picture",
                                examples=["Klottret vid centrum har ökat; fastighetsbolaget sanerar i veckan."])
    confirm_incomplete: bool = Field(
        default=False, description="publish although the deadline has not passed or fewer reports than the "
                                   "completeness threshold are in (without it: 409 naming what is missing)")


class PublishResponse(BaseModel):
    """The version that was published."""

    area_id: str = Field(examples=["araby"])
    period: str = Field(examples=["2026-W48"])
    status: str = Field(default="published")
    version: int = Field(examples=[1])
    revision: bool = Field(description="true for version 2 and later")
    changes: list[str] = Field(default_factory=list)
    event_id: str = Field(examples=["picture:araby:2026-W48:v1"])
    unchanged: bool = Field(default=False, description="nothing new against the latest version: that version "
                                                       "is answered and nothing is sent")
    completeness: dict[str, Any] = Field(
        default_factory=dict, description="the version's completeness and badge",
        examples=[{"expected": 3, "received": 3, "rate": 1.0, "complete": True, "threshold": 0.5,
                   "below_threshold": False}])


class SeriesResponse(BaseModel):
    """Compact pictures for charts."""

    area_id: str
    municipality_id: str
    from_: str = Field(alias="from")
    to: str
    continues: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="item -> its labels and the earlier codes (with their labels) whose "
                                          "values its series carries before a checklist change")
    pictures: list[dict[str, Any]] = Field(description="period, status, version, reports, completeness_rate, "
                                                       "items: {code: {value, trend, flag, continued?}} "
                                                       "(continued: the earlier codes whose answers the value "
                                                       "holds)")
    replaces: list[dict[str, Any]] = Field(default_factory=list, description=(
        "the areas this one replaces (a split or a merge), each {area_id, area_name, pictures}: their compact "
        "pictures of the periods they were held in, shown beside the area's own"))


def period_kind(text: str) -> str | None:
    """The kind of a period id, or None when it is none (the read that follows says why)."""
    try:
        return Period.parse(text).kind
    except ValueError:  # PeriodError, or a year no date has
        return None


def build_router(*, deps: Deps, org: Callable[[], OrgSnapshot], principal: Any,
                 clock: Callable[[], datetime], max_series_periods: int,
                 printer: Printer | None = None) -> APIRouter:
    """The aggregator's routes, bound to its collaborators."""
    router = APIRouter(prefix="/v1", tags=["pictures"])
    Who = Annotated[Principal, Depends(principal)]
    prints: Printer = printer or NoPrinter()
    Lang = Annotated[str, Query(pattern="^(sv|en)$", description="sv or en")]

    async def printable(area_id: str, period: str, who: Principal, lang: str) -> str:
        require_area(who, area_id)
        snapshot = org()
        body = await read_picture(deps=deps, org=snapshot, area_id=area_id, period_text=period,
                                  personal=who.sees_personal_data, reads_notes=reads_notes(who.roles),
                                  reads_missing=reads_missing_reporters(who.roles))
        last = str(body.get("period") or period)
        first = Period.parse(last).shift(-7).id
        series = await read_series(deps=deps, org=snapshot, area_id=area_id, first=first, last=last,
                                   max_periods=max_series_periods)
        return render_picture(body, series["pictures"], snapshot, lang=lang, now=clock())

    @router.get("/areas/{area_id}/pictures/{period}/report.html", response_class=HTMLResponse,
                summary="The picture as a printable page (A4), with the comment, completeness, notes for those "
                        "allowed, the last periods and the Kronoberg figures")
    async def picture_html(area_id: str, period: str, who: Who, lang: Lang = "sv") -> HTMLResponse:
        return HTMLResponse(await printable(area_id, period, who, lang))

    @router.get("/areas/{area_id}/pictures/{period}/report.pdf", response_class=Response,
                responses={200: {"content": {"application/pdf": {}}, "description": "the picture as PDF"},
                           501: {"description": "no browser to print with: report.html has the same content"},
                           503: {"description": "the printer failed or took too long"}},
                summary="The picture as PDF (one to two A4 pages), to attach to the weekly meeting's minutes")
    async def picture_pdf(area_id: str, period: str, who: Who, lang: Lang = "sv") -> Response:
        html = await printable(area_id, period, who, lang)
        try:
            pdf = await prints.pdf(html)
        except PrintingOff:
            raise Problem(501, "Not Implemented", "PDF är avstängt på den här servern; report.html har samma "
                          "innehåll. / PDF is turned off on this server; report.html has the same content.") from None
        except (PrintFailed, OSError):
            raise Problem(503, "Service Unavailable", "PDF:en kunde inte skapas just nu; försök igen. / The PDF "
                          "could not be made right now; please retry.", headers={"Retry-After": "5"}) from None
        return Response(pdf, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="lagesbild-{area_id}-{period}.pdf"'})

    @router.get("/areas/{area_id}/pictures/{period}", response_model=None,
                responses={200: {"model": PictureView}, 403: {}, 404: {}},
                summary="The situational picture of an area and period")
    async def get_picture(area_id: str, period: str, who: Who,
                          version: Annotated[int | None, Query(
                              ge=1, le=2**31 - 1, description="a published version, exactly as it was sent")] = None,
                          ) -> JSONResponse:
        """The picture; checklist counts are exact for everyone (incidents, not persons); Kronoberg figures are
        exact for police and social services and coarsened ("<3") for everyone else; the reporters' notes are
        shown to key functions, admins and police, everyone else sees only how many there are (``note_count``);
        the names of who has not reported are shown to key functions and admins, the counts to everyone."""
        require_area(who, area_id)
        body = await read_picture(deps=deps, org=org(), area_id=area_id, period_text=period,
                                  version=version, personal=who.sees_personal_data,
                                  reads_notes=reads_notes(who.roles),
                                  reads_missing=reads_missing_reporters(who.roles))
        return JSONResponse(body)

    @router.get("/areas/{area_id}/pictures", response_model=None,
                responses={200: {"model": SeriesResponse, **EXPORT_RESPONSES[200]}},
                summary="A series of compact pictures, for charts (or a table: ?format=csv|xlsx)")
    async def get_series(area_id: str, request: Request,
                         from_: Annotated[str, Query(alias="from", description="first period",
                                                     examples=["2026-W01"])],
                         to: Annotated[str, Query(description="last period (inclusive)", examples=["2026-W48"])],
                         who: Who) -> Response:
        require_area(who, area_id)
        body = await read_series(deps=deps, org=org(), area_id=area_id, first=from_, last=to,
                                 max_periods=max_series_periods)
        download = export_response(request, lambda: series_table(body, org()), f"serie-{area_id}-{from_}-{to}")
        return download or JSONResponse(body)

    @router.get("/municipalities/{municipality_id}/pictures/{period}", response_model=None,
                responses=EXPORT_RESPONSES,
                summary="The common picture of the municipality's areas the caller may see, with totals "
                        "(or a table of its areas: ?format=csv|xlsx)")
    async def get_municipality(municipality_id: str, period: str, request: Request,
                               who: Who) -> Response:
        snapshot = org()
        body = await common_picture(snapshot, municipality_id, period, who)
        download = export_response(request, lambda: municipality_table(body, snapshot),
                                   f"lagesbild-{municipality_id}-{period}")
        return download or JSONResponse(body)

    def seen_areas(snapshot: OrgSnapshot, municipality_id: str, who: Principal) -> list[str]:
        """The municipality's areas the caller sees (403 for none; 404 for an unknown municipality)."""
        if municipality_id not in snapshot.municipalities:
            raise MunicipalityNotFound(municipality_id)
        areas = sorted(a.id for a in snapshot.areas.values()
                       if a.municipality_id == municipality_id and who.may_see_area(a.id))
        if not areas:
            raise Forbidden(f"Du ser inget område i {municipality_id}.", f"You see no area of {municipality_id}.")
        return areas

    async def common_picture(snapshot: OrgSnapshot, municipality_id: str, period: str,
                             who: Principal) -> dict[str, Any]:
        areas = seen_areas(snapshot, municipality_id, who)
        return await read_municipality(deps=deps, org=snapshot, municipality_id=municipality_id,
                                       period_text=period, area_ids=areas, personal=who.sees_personal_data,
                                       reads_notes=reads_notes(who.roles),
                                       reads_missing=reads_missing_reporters(who.roles))

    async def kronoberg_over(request: Request, municipality_id: str, who: Principal, period: str | None,
                             first: str | None, last: str | None) -> Response:
        snapshot = org()
        areas = seen_areas(snapshot, municipality_id, who)
        name, weeks = kronoberg_weeks(period, first, last, max_weeks=max_series_periods)
        view = await read_kronoberg(deps=deps, org=snapshot, municipality_id=municipality_id, area_ids=areas,
                                    name=name, weeks=weeks, personal=who.sees_personal_data)
        stem = f"kronoberg-{municipality_id}-{period or f'{weeks[0].id}-{weeks[-1].id}'}"
        return export_response(request, lambda: kronoberg_table(view), stem) or JSONResponse(view)

    @router.get("/municipalities/{municipality_id}/kronoberg/{period}", response_model=None,
                responses=EXPORT_RESPONSES,
                summary="The municipality's Kronoberg figures of a week, or of a quarter, tertial or year "
                        "(2026-T2: its weeks by the Thursday rule), in all and per area (exact for police "
                        "and social services, counts under 3 as \"<3\" for everyone else; or a table: "
                        "?format=csv|xlsx)")
    async def get_kronoberg(municipality_id: str, period: str, request: Request, who: Who) -> Response:
        if period_kind(period) in ("week", "quarter", "tertial", "year"):
            return await kronoberg_over(request, municipality_id, who, period, None, None)
        snapshot = org()
        view = kronoberg_view_of(await common_picture(snapshot, municipality_id, period, who), snapshot)
        download = export_response(request, lambda: kronoberg_table(view), f"kronoberg-{municipality_id}-{period}")
        return download or JSONResponse(view)

    @router.get("/municipalities/{municipality_id}/kronoberg", response_model=None,
                responses=EXPORT_RESPONSES,
                summary="The municipality's Kronoberg figures over a range of weeks (?from=2026-W10&to=2026-W14), "
                        "in all and per area, as for one week (or a table: ?format=csv|xlsx)")
    async def get_kronoberg_range(municipality_id: str, request: Request, who: Who,
                                  from_: Annotated[str, Query(alias="from", description="first week",
                                                              examples=["2026-W10"])],
                                  to: Annotated[str, Query(description="last week (inclusive)",
                                                           examples=["2026-W14"])]) -> Response:
        return await kronoberg_over(request, municipality_id, who, None, from_, to)

    @router.get("/municipalities/{municipality_id}/pictures/{period}/completeness", response_model=None,
                responses=EXPORT_RESPONSES,
                summary="Who reported in the period, per area and actor, with each actor's total over the "
                        "municipality (or a table: ?format=csv|xlsx)")
    async def get_completeness(municipality_id: str, period: str, request: Request, who: Who) -> Response:
        snapshot = org()
        body = await common_picture(snapshot, municipality_id, period, who)
        rows = completeness_rows(body, snapshot)
        download = export_response(request, lambda: completeness_table(municipality_id, body["period"], rows,
                                                                       snapshot),
                                   f"inrapportering-{municipality_id}-{period}")
        return download or JSONResponse({"municipality_id": municipality_id, "period": body["period"], "rows": rows})

    @router.post("/areas/{area_id}/pictures/{period}/publish", response_model=PublishResponse,
                 responses={409: {"description": "needs confirm_incomplete (before the deadline or below the "
                                                 "completeness threshold): the problem names what is missing"},
                            422: {"description": "an invalid period, or one that has not begun"}},
                 summary="Publish the picture now (key function), optionally with a comment")
    async def publish(area_id: str, period: str, who: Who,
                      body: Annotated[PublishRequest | None, Body()] = None) -> PublishResponse:
        require_role(who, "key_function", "admin")
        require_area(who, area_id)
        r = await publish_picture(deps=deps, org=org(), area_id=area_id, period_text=period,
                                  by=who.person_id, actor_id=who.actor_id,
                                  comment=body.comment if body else None, now=clock(),
                                  confirm_incomplete=body.confirm_incomplete if body else False)
        return PublishResponse(area_id=r.area_id, period=r.period, version=r.version, revision=r.revision,
                               changes=r.changes, event_id=r.event_id, unchanged=r.unchanged,
                               completeness=r.completeness)

    @router.get("/areas/{area_id}/reports/{period}", response_model=None,
                responses={**EXPORT_RESPONSES, 403: {}, 404: {}},
                summary="The reports of an area's period, each with what became of it, its answers and notes "
                        "(key functions, admins and police; or a table: ?format=csv|xlsx)")
    async def get_reports(area_id: str, period: str, request: Request, who: Who) -> Response:
        """Those who read the reporters' notes read the reports they come from: key functions, admins and
        police of the area. The reporter's name is shown to those who read who has not reported (key functions
        and admins); police see the actor."""
        require_role(who, *sorted(NOTE_READERS))
        require_area(who, area_id)
        snapshot = org()
        body = await read_reports(deps=deps, org=snapshot, area_id=area_id, period_text=period,
                                  reads_names=reads_missing_reporters(who.roles))
        download = export_response(request, lambda: reports_table(body, snapshot),
                                   f"rapporter-{area_id}-{body['period']}")
        return download or JSONResponse(body)

    @router.get("/areas/{area_id}/alerts", tags=["alerts"], response_model=None, responses=EXPORT_RESPONSES,
                summary="Alerts of an area, open and resolved (or a table: ?format=csv|xlsx)")
    async def get_alerts(area_id: str, request: Request, who: Who) -> list[dict[str, Any]] | Response:
        require_area(who, area_id)
        found = await read_alerts(deps=deps, area_id=area_id)
        return export_response(request, lambda: alerts_table(area_id, found, org()), f"larm-{area_id}") or found

    return router
