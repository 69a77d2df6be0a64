"""HTTP routes of subscriptions: create, read, change, pause and delete (domain errors leave as problem+json
through the runtime's one handler)."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from est_shared.http import Problem
from est_shared.org import Principal
from fastapi import APIRouter, Depends, FastAPI, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_notifier.subscriptions import handlers
from est_notifier.subscriptions.domain import caller_of
from est_notifier.subscriptions.egress import NO_ALLOW, AllowList
from est_notifier.subscriptions.schemas import (
    HandoverIn,
    RestoreIn,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionPatch,
)
from est_notifier.tables import Tables


def add_routes(app: FastAPI, *, principal: Callable[..., Awaitable[Principal]],
               sessions: async_sessionmaker[AsyncSession], tables: Tables, snapshot: Callable[[], Any],
               check_target: handlers.CheckTarget | None = None, webhook_allow: AllowList = NO_ALLOW,
               on_handover: Callable[[str], None] | None = None) -> None:
    """Mount the /v1/subscriptions routes and the admins' hand-over and restore (``check_target``: the egress policy
    of webhook URLs; ``webhook_allow``: the operator's allowed internal targets, which personal data may reach over
    plain http; ``on_handover(via)``: counts each one, via admin or restored)."""
    router = APIRouter(prefix="/v1", tags=["notifier"])
    Auth = Annotated[Principal, Depends(principal)]

    @router.post("/subscriptions", status_code=201, response_model=SubscriptionOut,
                 summary="Subscribe to pictures, alerts and analyses by webhook or e-mail")
    async def create(body: SubscriptionIn, who: Auth, response: Response) -> dict[str, Any]:
        out = await handlers.create_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                                 snapshot=snapshot(), spec=body.model_dump(),
                                                 check_target=check_target, webhook_allow=webhook_allow)
        response.headers["Location"] = f"/v1/subscriptions/{out['id']}"
        return out

    @router.get("/subscriptions", response_model=list[SubscriptionOut],
                summary="Your subscriptions (admins: all)")
    async def list_(who: Auth) -> list[dict[str, Any]]:
        return await handlers.list_subscriptions(sessions=sessions, tables=tables, caller=caller_of(who))

    @router.get("/subscriptions/{sub_id}", response_model=SubscriptionOut, summary="One subscription")
    async def get(sub_id: str, who: Auth) -> dict[str, Any]:
        return await handlers.get_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                               sub_id=sub_id)

    @router.patch("/subscriptions/{sub_id}", response_model=SubscriptionOut,
                  summary="Change a subscription; {\"paused\": true|false} pauses or resumes it")
    async def patch(sub_id: str, body: SubscriptionPatch, who: Auth) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        for key in ("name", "scope", "events", "channel", "digest", "language", "paused"):
            if key in changes and changes[key] is None:
                raise Problem(422, "Invalid request", f"{key} may not be null. / {key} får inte vara null.",
                              errors=[{"field": key, "message": "may not be null", "type": "value_error"}])
        return await handlers.update_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                                  snapshot=snapshot(), sub_id=sub_id, changes=changes,
                                                  check_target=check_target, webhook_allow=webhook_allow)

    @router.delete("/subscriptions/{sub_id}", status_code=204, summary="Delete a subscription")
    async def delete(sub_id: str, who: Auth) -> Response:
        await handlers.delete_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                           sub_id=sub_id)
        return Response(status_code=204)

    @router.post("/admin/subscriptions/{sub_id}/handover", response_model=SubscriptionOut,
                 summary="Give a subscription to another person who may hold it (admins); an e-mail channel to the "
                         "old owner's address follows, the ledger records it")
    async def handover(sub_id: str, body: HandoverIn, who: Auth) -> dict[str, Any]:
        out = await handlers.handover_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                                   by_name=who.name, snapshot=snapshot(), sub_id=sub_id, to=body.to)
        if on_handover is not None:
            on_handover("admin")
        return out

    @router.post("/admin/subscriptions/{sub_id}/restore", response_model=SubscriptionOut,
                 summary="Bring an ended subscription back (admins), owned by `to`, else by the owner's successor, "
                         "else by the owner if still there (409 if gone)")
    async def restore(sub_id: str, who: Auth, body: RestoreIn | None = None) -> dict[str, Any]:
        out = await handlers.restore_subscription(sessions=sessions, tables=tables, caller=caller_of(who),
                                                  by_name=who.name, snapshot=snapshot(), sub_id=sub_id,
                                                  to=body.to if body is not None else None)
        if on_handover is not None:
            on_handover("restored")
        return out

    app.include_router(router)
