"""HTTP routes of the notifier: subscriptions and the delivery ledger."""


from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from est_shared.http import Problem
from est_shared.org import Principal
from fastapi import APIRouter, Depends, FastAPI, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_notifier import handlers
from est_notifier.db import Tables
from est_notifier.domain import Caller, Forbidden, Invalid, NotFound, NotifierError, valid_webhook_url

EventName = Literal["picture.published", "alert.raised", "alert.resolved", "analysis.published"]
ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScopeIn(_In):
    municipality_id: str = Field(pattern=ID, description="Municipality id", examples=["vaxjo"])
    area_ids: list[Annotated[str, Field(pattern=ID)]] | None = Field(
        default=None, max_length=500, description="Areas; left out = every area of the municipality you may see",
        examples=[["araby"]])


class WebhookChannel(_In):
    type: Literal["webhook"]
    url: str = Field(max_length=2000, description="http(s) URL that receives the CloudEvent POSTs",
                     examples=["https://example.org/est"])
    secret: str = Field(min_length=1, max_length=500, description="HMAC-SHA256 key for X-EST-Signature",
                        examples=["s3cret"])

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not valid_webhook_url(v):
            raise ValueError("must be an http(s) URL with a host / måste vara en http(s)-URL med värd")
        return v


class WebhookChannelPatch(WebhookChannel):
    secret: str | None = Field(default=None, min_length=1, max_length=500,  # type: ignore[assignment]
                               description="New secret; left out keeps the old one")


class EmailChannel(_In):
    type: Literal["email"]
    to: str = Field(max_length=320, pattern=r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$", description="Recipient address",
                    examples=["a@example.org"])


Channel = Annotated[WebhookChannel | EmailChannel, Field(discriminator="type")]
ChannelPatch = Annotated[WebhookChannelPatch | EmailChannel, Field(discriminator="type")]


class SubscriptionIn(_In):
    name: str = Field(min_length=1, max_length=200, examples=["Växjöhem driftcentral"])
    scope: ScopeIn
    events: list[EventName] = Field(min_length=1, examples=[["picture.published", "alert.raised"]])
    channel: Channel
    digest: Literal["immediate", "period"] = Field(
        default="immediate", description="immediate: one message per event; period: one per period close")
    language: Literal["sv", "en"] = "sv"
    min_severity: Literal["info", "warning", "critical"] | None = Field(
        default=None, description="Alerts below this severity are not sent")


class SubscriptionPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    scope: ScopeIn | None = None
    events: list[EventName] | None = Field(default=None, min_length=1)
    channel: ChannelPatch | None = None
    digest: Literal["immediate", "period"] | None = None
    language: Literal["sv", "en"] | None = None
    min_severity: Literal["info", "warning", "critical"] | None = None
    paused: bool | None = Field(default=None, description="true pauses, false resumes", examples=[True])


class ScopeOut(BaseModel):
    municipality_id: str
    area_ids: list[str] = Field(description="Empty = every area of the municipality")


class SubscriptionOut(BaseModel):
    id: str
    name: str
    owner_id: str
    scope: ScopeOut
    events: list[str]
    channel: dict[str, Any] = Field(description="The channel; a webhook secret is never shown (secret_set)")
    digest: str
    language: str
    min_severity: str | None
    paused: bool
    paused_reason: str | None
    source: str = Field(description="api, or org when declared in the organisation")
    created_at: datetime
    updated_at: datetime


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status: str = Field(description="delivered | retry | failed | dead")
    response_code: int | None
    error: str | None
    duration_ms: int | None
    delivery_id: str
    subscription_id: str
    event_id: str
    event_type: str
    channel: str


class DeliveryOut(BaseModel):
    delivery_id: str = Field(description="Stable id; also X-EST-Delivery and Idempotency-Key")
    subscription_id: str
    event_id: str
    event_type: str
    channel: str
    target: str
    status: str = Field(description="pending | delivering | delivered | failed | dead")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[AttemptOut] = Field(description="One row per attempt")


def _problem(exc: NotifierError) -> Problem:
    if isinstance(exc, NotFound):
        return Problem(404, "Not found", exc.detail)
    if isinstance(exc, Forbidden):
        return Problem(403, "Forbidden", exc.detail)
    if isinstance(exc, Invalid):
        return Problem(422, "Invalid request", exc.detail,
                       errors=[{"field": exc.field, "message": exc.en, "type": "value_error"}])
    return Problem(400, "Bad request", exc.detail)


def caller_of(p: Principal) -> Caller:
    return Caller(person_id=p.person_id, roles=tuple(p.roles), areas=tuple(p.areas),
                  municipalities=tuple(p.municipalities))


def add_routes(app: FastAPI, *, principal: Callable[..., Awaitable[Principal]],
               sessions: async_sessionmaker[AsyncSession], tables: Tables, snapshot: Callable[[], Any]) -> None:
    """Mount the /v1 routes."""
    router = APIRouter(prefix="/v1", tags=["notifier"])
    Auth = Annotated[Principal, Depends(principal)]

    @router.post("/subscriptions", status_code=201, response_model=SubscriptionOut,
                 summary="Subscribe to pictures, alerts and analyses by webhook or e-mail")
    async def create(body: SubscriptionIn, who: Auth, response: Response) -> dict[str, Any]:
        try:
            out = await handlers.create_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                                     snapshot=snapshot(), spec=body.model_dump())
        except NotifierError as exc:
            raise _problem(exc) from exc
        response.headers["Location"] = f"/v1/subscriptions/{out['id']}"
        return out

    @router.get("/subscriptions", response_model=list[SubscriptionOut],
                summary="Your subscriptions (admins: all)")
    async def list_(who: Auth) -> list[dict[str, Any]]:
        return await handlers.list_subscriptions(sessions=sessions, tables=tables, caller=caller_of(who))

    @router.get("/subscriptions/{sub_id}", response_model=SubscriptionOut, summary="One subscription")
    async def get(sub_id: str, who: Auth) -> dict[str, Any]:
        try:
            return await handlers.get_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                                   sub_id=sub_id)
        except NotifierError as exc:
            raise _problem(exc) from exc

    @router.patch("/subscriptions/{sub_id}", response_model=SubscriptionOut,
                  summary="Change a subscription; {\"paused\": true|false} pauses or resumes it")
    async def patch(sub_id: str, body: SubscriptionPatch, who: Auth) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        for key in ("name", "scope", "events", "channel", "digest", "language", "paused"):
            if key in changes and changes[key] is None:
                raise Problem(422, "Invalid request", f"{key} may not be null. / {key} får inte vara null.",
                              errors=[{"field": key, "message": "may not be null", "type": "value_error"}])
        try:
            return await handlers.update_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                                      snapshot=snapshot(), sub_id=sub_id, changes=changes)
        except NotifierError as exc:
            raise _problem(exc) from exc

    @router.delete("/subscriptions/{sub_id}", status_code=204, summary="Delete a subscription")
    async def delete(sub_id: str, who: Auth) -> Response:
        try:
            await handlers.delete_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                               sub_id=sub_id)
        except NotifierError as exc:
            raise _problem(exc) from exc
        return Response(status_code=204)

    @router.get("/deliveries", response_model=list[DeliveryOut],
                summary="The delivery ledger: deliveries with one row per attempt")
    async def deliveries(who: Auth, subscription_id: str | None = Query(default=None, max_length=100),
                         event_id: str | None = Query(default=None, max_length=200),
                         limit: int = Query(default=200, ge=1, le=1000)) -> list[dict[str, Any]]:
        try:
            return await handlers.ledger(sessions=sessions, tables=tables, caller=caller_of(who),
                                         subscription_id=subscription_id, event_id=event_id, limit=limit)
        except NotifierError as exc:
            raise _problem(exc) from exc

    app.include_router(router)
