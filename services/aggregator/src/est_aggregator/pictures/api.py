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
from est_shared.http import require_area, require_role
from est_shared.org import OrgSnapshot, Principal
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.domain.errors import MunicipalityNotFound
from est_aggregator.pictures.domain.notes import reads_missing_reporters, reads_notes
from est_aggregator.pictures.publish import publish_picture
from est_aggregator.pictures.reads import read_alerts, read_municipality, read_picture, read_series


class PictureView(PictureData):
    """A picture as the API shows it: the event shape plus level means, the deadline and publication facts."""

    means: dict[str, float] = Field(default_factory=dict, description="level items: mean of the answered levels")
    deadline: datetime | None = Field(default=None, description="when the picture publishes by itself")
    published_at: datetime | None = None
    revision: bool | None = Field(default=None, description="whether the latest version was a revision")
    changes: list[str] = Field(default_factory=list, description="what the latest version changed",
                               examples=[["klotter: 1 → 2"]])


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
    pictures: list[dict[str, Any]] = Field(description="period, status, version, reports, completeness_rate, "
                                                       "items: {code: {value, trend, flag}}")
    replaces: list[dict[str, Any]] = Field(default_factory=list, description=(
        "the areas this one replaces (a split or a merge), each {area_id, area_name, pictures}: their compact "
        "pictures of the periods they were held in, shown beside the area's own"))


def build_router(*, deps: Deps, org: Callable[[], OrgSnapshot], principal: Any,
                 clock: Callable[[], datetime], max_series_periods: int) -> APIRouter:
    """The aggregator's routes, bound to its collaborators."""
    router = APIRouter(prefix="/v1", tags=["pictures"])
    Who = Annotated[Principal, Depends(principal)]

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

    @router.get("/areas/{area_id}/pictures", response_model=None, responses={200: {"model": SeriesResponse}},
                summary="A series of compact pictures, for charts")
    async def get_series(area_id: str,
                         from_: Annotated[str, Query(alias="from", description="first period",
                                                     examples=["2026-W01"])],
                         to: Annotated[str, Query(description="last period (inclusive)", examples=["2026-W48"])],
                         who: Who) -> JSONResponse:
        require_area(who, area_id)
        body = await read_series(deps=deps, org=org(), area_id=area_id, first=from_, last=to,
                                 max_periods=max_series_periods)
        return JSONResponse(body)

    @router.get("/municipalities/{municipality_id}/pictures/{period}",
                summary="The common picture of the municipality's areas the caller may see, with totals")
    async def get_municipality(municipality_id: str, period: str,
                               who: Who) -> JSONResponse:
        snapshot = org()
        if municipality_id not in snapshot.municipalities:
            raise MunicipalityNotFound(municipality_id)
        areas = sorted(a.id for a in snapshot.areas.values()
                       if a.municipality_id == municipality_id and who.may_see_area(a.id))
        if not areas:
            raise Forbidden(f"Du ser inget område i {municipality_id}.", f"You see no area of {municipality_id}.")
        body = await read_municipality(deps=deps, org=snapshot, municipality_id=municipality_id,
                                       period_text=period, area_ids=areas, personal=who.sees_personal_data,
                                       reads_notes=reads_notes(who.roles),
                                       reads_missing=reads_missing_reporters(who.roles))
        return JSONResponse(body)

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

    @router.get("/areas/{area_id}/alerts", tags=["alerts"], summary="Alerts of an area, open and resolved")
    async def get_alerts(area_id: str, who: Who) -> list[dict[str, Any]]:
        require_area(who, area_id)
        return await read_alerts(deps=deps, area_id=area_id)

    return router
