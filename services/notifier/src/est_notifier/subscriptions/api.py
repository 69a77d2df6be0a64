"""HTTP routes of the notifier: subscriptions and the delivery ledger."""


from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from est_shared.http import Problem
from est_shared.org import Principal
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_notifier.adapters.webhook import NO_ALLOW, AllowList
from est_notifier.deliveries.db import Tables
from est_notifier.stream.handlers import StreamHub, caller_of
from est_notifier.subscriptions import handlers
from est_notifier.subscriptions.domain import Conflict, Forbidden, Invalid, NotFound, NotifierError
from est_notifier.subscriptions.schemas import (
    DeliveryOut,
    PersonalReadOut,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)


def _problem(exc: NotifierError) -> Problem:
    if isinstance(exc, NotFound):
        return Problem(404, "Not found", exc.detail)
    if isinstance(exc, Forbidden):
        return Problem(403, "Forbidden", exc.detail)
    if isinstance(exc, Conflict):
        return Problem(409, "Conflict", exc.detail)
    if isinstance(exc, Invalid):
        return Problem(422, "Invalid request", exc.detail,
                       errors=[{"field": exc.field, "message": exc.en, "type": "value_error"}])
    return Problem(400, "Bad request", exc.detail)


class LeasedStream(StreamingResponse):
    """A streaming response that gives back its stream slot when it ends, however it ends (also when the
    client is gone before the first byte, when the body never starts)."""

    def __init__(self, content: AsyncIterator[bytes], *, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release: Callable[[], None] | None = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


def add_routes(app: FastAPI, *, principal: Callable[..., Awaitable[Principal]],
               sessions: async_sessionmaker[AsyncSession], tables: Tables, snapshot: Callable[[], Any],
               hub: StreamHub | None = None, on_stream: Callable[[int], None] | None = None,
               on_stream_refused: Callable[[str], None] | None = None, check_target: handlers.CheckTarget | None = None,
               webhook_allow: AllowList = NO_ALLOW) -> None:
    """Mount the /v1 routes (``check_target``: the egress policy of webhook URLs; ``webhook_allow``: the
    operator's allowed internal targets, which personal data may reach over plain http)."""
    router = APIRouter(prefix="/v1", tags=["notifier"])
    Auth = Annotated[Principal, Depends(principal)]

    @router.post("/subscriptions", status_code=201, response_model=SubscriptionOut,
                 summary="Subscribe to pictures, alerts and analyses by webhook or e-mail")
    async def create(body: SubscriptionIn, who: Auth, response: Response) -> dict[str, Any]:
        try:
            out = await handlers.create_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                                     snapshot=snapshot(), spec=body.model_dump(),
                                                     check_target=check_target, webhook_allow=webhook_allow)
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
                                                      snapshot=snapshot(), sub_id=sub_id, changes=changes,
                                                      check_target=check_target, webhook_allow=webhook_allow)
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

    @router.get("/admin/personal-data-deliveries", response_model=list[PersonalReadOut],
                summary="Every opening of sealed personal data (notifications to social services): which "
                        "protocol, for which subscription and owner, when, with what outcome (admins)")
    async def personal_reads(who: Auth, protocol_id: str | None = Query(default=None, max_length=100),
                             subscription_id: str | None = Query(default=None, max_length=100),
                             limit: int = Query(default=200, ge=1, le=1000)) -> list[dict[str, Any]]:
        try:
            return await handlers.personal_data_log(sessions=sessions, tables=tables, caller=caller_of(who),
                                                    protocol_id=protocol_id, subscription_id=subscription_id,
                                                    limit=limit)
        except NotifierError as exc:
            raise _problem(exc) from exc

    if hub is not None:
        @router.get(
            "/stream", response_class=StreamingResponse, summary="Live stream of pictures, alerts and analyses (SSE)",
            description=STREAM_DOC,
            responses={200: {"content": {"text/event-stream": {"example": STREAM_EXAMPLE}},
                             "description": "server-sent events until the client disconnects"}})
        async def stream(who: Auth, last_event_id: Annotated[str | None, Header(max_length=300)] = None,
                         since: Annotated[datetime | None, Query(description="start at this time (ISO 8601) "
                                                                 "instead of with new events")] = None,
                         ) -> StreamingResponse:
            if since is not None and since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            if since is not None and since < (oldest := hub.oldest_start()):
                if on_stream_refused:
                    on_stream_refused("replay_window")
                hours, earliest = f"{hub.max_replay / 3600:g}", oldest.isoformat(timespec="seconds")
                raise Problem(422, "Replay window exceeded",
                              f"since får gå högst {hours} timmar tillbaka (tidigast {earliest}); hämta äldre "
                              f"händelser ur läsgränssnitten. / since may reach back at most {hours} hours (earliest "
                              f"{earliest}); read older events from the read APIs.",
                              errors=[{"field": "query.since", "type": "value_error",
                                       "message": f"at most {hours} hours back"}])
            if not hub.acquire(who.person_id):
                if on_stream_refused:
                    on_stream_refused("too_many_streams")
                raise Problem(429, "Too many streams",
                              f"Du har redan {hub.max_per_person} öppna strömmar; stäng en först. / You already have "
                              f"{hub.max_per_person} open streams; close one first.", headers={"Retry-After": "30"})

            def municipality_of(area_id: str) -> str | None:
                area = snapshot().areas.get(area_id)
                return area.municipality_id if area else None

            async def body() -> AsyncIterator[bytes]:
                if on_stream:
                    on_stream(1)
                try:
                    async for chunk in hub.events(who, municipality_of=municipality_of, last_event_id=last_event_id,
                                                  since=since,
                                                  current=lambda: handlers.caller_for(snapshot(), who.person_id)):
                        yield chunk
                finally:
                    if on_stream:
                        on_stream(-1)

            return LeasedStream(body(), release=lambda: hub.release(who.person_id), media_type="text/event-stream",
                                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.include_router(router)


STREAM_DOC = """Server-sent events (`text/event-stream`) for dashboards: every picture (`se.est.picture.updated`,
`se.est.picture.published`), alert (`se.est.alert.raised`, `se.est.alert.resolved`) and analysis
(`se.est.analysis.published`) event in the caller's areas, rendered as the caller may see it. Each message has
`id:` = the event id, `event:` = the event type and `data:` = the CloudEvent JSON. A `: heartbeat` comment
comes after 15 s without events. Reconnect with `Last-Event-ID` (EventSource does this itself) to get what
came after that event; a few events around the resume point may repeat, so de-duplicate by id. An unknown
id, or one older than the replay window, gives an `event: stream.reset` and then new events. `?since=` starts at
a time instead, at most `EST_NOTIFIER_STREAM_MAX_REPLAY` seconds back (422 otherwise). One person may hold
`EST_NOTIFIER_STREAM_MAX_PER_PERSON` streams at once (429 for one more). Every event passes the same rule as
webhooks and e-mail (the README's "Who receives what": e.g. analyses only for key functions, beredningsgrupp,
styrgrupp and admins); a person who leaves the organisation gets `event: stream.closed`."""

STREAM_EXAMPLE = """retry: 3000
: connected

id: picture:araby:2026-W48:v1
event: se.est.picture.published
data: {"specversion":"1.0","id":"picture:araby:2026-W48:v1","type":"se.est.picture.published",...}

: heartbeat 2026-11-30T09:00:15+00:00
"""
