"""The route of the live stream: ``GET /v1/stream`` (server-sent events), with its replay window and per-person cap."""

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from est_shared.http import Problem
from est_shared.org import Principal
from fastapi import APIRouter, Depends, FastAPI, Header, Query
from fastapi.responses import StreamingResponse

from est_notifier.stream.handlers import StreamHub
from est_notifier.subscriptions.domain import caller_for


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


def add_routes(app: FastAPI, *, principal: Callable[..., Awaitable[Principal]], snapshot: Callable[[], Any],
               hub: StreamHub, on_stream: Callable[[int], None] | None = None,
               on_stream_refused: Callable[[str], None] | None = None) -> None:
    """Mount /v1/stream."""
    router = APIRouter(prefix="/v1", tags=["notifier"])
    Auth = Annotated[Principal, Depends(principal)]

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
                                              current=lambda: caller_for(snapshot(), who.person_id)):
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
