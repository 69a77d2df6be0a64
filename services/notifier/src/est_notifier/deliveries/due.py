"""Notifications due to social services, as their page lists them: what the intake announced, never the person.

Every ``se.est.forfeiture.notification_due`` is kept once per protocol with its clear, non-personal facts (area,
place, time, age band, why); the sealed person stays in the delivery ledger and is opened only to deliver it.
A social-services person lists those of their own municipalities and reads a protocol through the intake, with a
stated purpose (logged there).
"""

from __future__ import annotations

from typing import Any

from est_shared.clock import utcnow
from est_shared.db import transaction
from est_shared.errors import Forbidden
from est_shared.events import CloudEvent
from est_shared.org import OrgSnapshot
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from est_notifier.subscriptions.domain import Caller
from est_notifier.tables import Sessions, Tables, aware

NOTIFICATION_EVENT = "se.est.forfeiture.notification_due"
READER_ROLE = "social_services"


async def record_due(event: CloudEvent[Any], *, sessions: Sessions, tables: Tables) -> bool:
    """Keep a notification's clear facts (once per protocol; a redelivery changes nothing). True if new."""
    if event.type != NOTIFICATION_EVENT:
        return False
    d = event.data
    row = {"protocol_id": d.protocol_id, "event_id": event.id, "municipality_id": d.municipality_id,
           "area_id": d.area_id, "place": d.place, "occurred_at": d.occurred_at, "age_band": d.age_band,
           "reason": d.reason, "received_at": utcnow()}
    try:
        async with transaction(sessions) as s:
            await s.execute(insert(tables.forfeiture_notices).values(**row))
    except IntegrityError:
        return False
    return True


async def list_due(*, sessions: Sessions, tables: Tables, caller: Caller, snapshot: OrgSnapshot,
                   limit: int = 200) -> list[dict[str, Any]]:
    """The notifications of the caller's municipalities, newest first, with names (social services only)."""
    if READER_ROLE not in caller.roles:
        raise Forbidden("Bara socialtjänsten läser underrättelserna om förverkanden.",
                        "Only social services read the forfeiture notifications.")
    if not caller.municipalities:
        return []
    t = tables.forfeiture_notices
    async with sessions() as s:
        rows = (await s.execute(select(t).where(t.c.municipality_id.in_(caller.municipalities))
                                .order_by(t.c.received_at.desc(), t.c.protocol_id).limit(limit))).mappings().all()
    out = []
    for r in rows:
        muni = snapshot.municipalities.get(r["municipality_id"])
        area = snapshot.areas.get(r["area_id"]) if r["area_id"] else None
        out.append({"protocol_id": r["protocol_id"], "municipality_id": r["municipality_id"],
                    "municipality_name": muni.name if muni else r["municipality_id"],
                    "area_id": r["area_id"], "area_name": area.name if area else r["area_id"], "place": r["place"],
                    "occurred_at": aware(r["occurred_at"]), "age_band": r["age_band"], "reason": r["reason"],
                    "received_at": aware(r["received_at"])})
    return out
