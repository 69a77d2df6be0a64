"""HTTP routes of the delivery ledger and of the log of personal data opened for social services."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from est_shared.org import OrgSnapshot, Principal
from fastapi import APIRouter, Depends, FastAPI, Query
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_notifier.deliveries import due, handlers
from est_notifier.deliveries.schemas import DeliveryOut, DueNotificationOut, PersonalReadOut
from est_notifier.subscriptions.domain import caller_of
from est_notifier.tables import Tables


def add_routes(app: FastAPI, *, principal: Callable[..., Awaitable[Principal]],
               sessions: async_sessionmaker[AsyncSession], tables: Tables,
               snapshot: Callable[[], OrgSnapshot]) -> None:
    """Mount /v1/deliveries, /v1/admin/personal-data-deliveries and /v1/social-services/notifications."""
    router = APIRouter(prefix="/v1", tags=["notifier"])
    Auth = Annotated[Principal, Depends(principal)]

    @router.get("/deliveries", response_model=list[DeliveryOut],
                summary="The delivery ledger: deliveries with one row per attempt")
    async def deliveries(who: Auth, subscription_id: str | None = Query(default=None, max_length=100),
                         event_id: str | None = Query(default=None, max_length=200),
                         person_id: str | None = Query(default=None, max_length=100,
                                                       description="only reminders to this person"),
                         period: str | None = Query(default=None, max_length=20,
                                                    description="only reminders of this period"),
                         limit: int = Query(default=200, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await handlers.ledger(sessions=sessions, tables=tables, caller=caller_of(who),
                                     subscription_id=subscription_id, event_id=event_id, limit=limit,
                                     reminded=(person_id, period) if person_id or period else None)

    @router.get("/admin/personal-data-deliveries", response_model=list[PersonalReadOut],
                summary="Every opening of sealed personal data (notifications to social services): which "
                        "protocol, for which subscription and owner, when, with what outcome (admins)")
    async def personal_reads(who: Auth, protocol_id: str | None = Query(default=None, max_length=100),
                             subscription_id: str | None = Query(default=None, max_length=100),
                             limit: int = Query(default=200, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await handlers.personal_data_log(sessions=sessions, tables=tables, caller=caller_of(who),
                                                protocol_id=protocol_id, subscription_id=subscription_id,
                                                limit=limit)

    @router.get("/social-services/notifications", response_model=list[DueNotificationOut],
                summary="Forfeiture notifications due to social services of the caller's municipalities, newest "
                        "first, without personal data (social services; read the protocol through the intake)")
    async def due_notifications(who: Auth, limit: int = Query(default=200, ge=1, le=1000)) -> list[dict[str, Any]]:
        return await due.list_due(sessions=sessions, tables=tables, caller=caller_of(who), snapshot=snapshot(),
                                  limit=limit)

    app.include_router(router)
