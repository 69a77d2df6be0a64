"""Repository functions of the delivery ledger and the personal-data log, each taking an AsyncSession."""

from __future__ import annotations

from typing import Any

from est_shared.clock import utcnow
from sqlalchemy import Table, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from est_notifier.tables import Tables, aware


async def delivery_exists(s: AsyncSession, t: Tables, *, subscription_id: str, channel_target: str,
                          event_id: str) -> bool:
    """Whether this event already went (or goes) to this subscription or this channel target."""
    c = t.deliveries.c
    found = await s.scalar(select(c.id).where(c.event_id == event_id, or_(
        c.subscription_id == subscription_id, c.channel_target == channel_target)).limit(1))
    if found:
        return True
    d = t.digest_items.c
    found = await s.scalar(select(d.id).where(d.event_id == event_id, or_(
        d.subscription_id == subscription_id, d.channel_target == channel_target)).limit(1))
    return bool(found)


async def already_sent(s: AsyncSession, t: Tables, event_id: str) -> tuple[set[str], set[str]]:
    """Subscription ids and channel targets this event already went (or goes) to, in two queries."""
    c, d = t.deliveries.c, t.digest_items.c
    subs: set[str] = set()
    targets: set[str] = set()
    for sub_id, target in (await s.execute(select(c.subscription_id, c.channel_target)
                                           .where(c.event_id == event_id))).all():
        subs.add(sub_id)
        targets.add(target)
    for sub_id, target in (await s.execute(select(d.subscription_id, d.channel_target)
                                           .where(d.event_id == event_id))).all():
        subs.add(sub_id)
        targets.add(target)
    return subs, targets


async def insert_delivery(s: AsyncSession, t: Tables, row: dict[str, Any]) -> None:
    await s.execute(insert(t.deliveries).values(status="pending", attempts=0, created_at=utcnow(), **row))


async def due_delivery_ids(s: AsyncSession, t: Tables, *, now: float, limit: int) -> list[str]:
    """Deliveries ready for an attempt, including ones whose claim expired (a crashed replica)."""
    c = t.deliveries.c
    q = select(c.id).where(or_(
        (c.status == "pending") & (c.next_attempt_at <= now),
        (c.status == "delivering") & (c.claimed_until < now),
    )).order_by(c.next_attempt_at).limit(limit)
    return list((await s.scalars(q)).all())


async def claim(s: AsyncSession, t: Tables, delivery_id: str, *, now: float, lease: float,
                worker: str) -> bool:
    """Take a delivery for one attempt; True only for the one replica whose UPDATE changed the row."""
    c = t.deliveries.c
    result = await s.execute(update(t.deliveries).where(c.id == delivery_id, or_(
        (c.status == "pending") & (c.next_attempt_at <= now),
        (c.status == "delivering") & (c.claimed_until < now),
    )).values(status="delivering", claimed_until=now + lease, claimed_by=worker))
    return int(getattr(result, "rowcount", 0) or 0) == 1


async def get_delivery(s: AsyncSession, t: Tables, delivery_id: str) -> dict[str, Any] | None:
    row = (await s.execute(select(t.deliveries).where(t.deliveries.c.id == delivery_id))).mappings().first()
    return dict(row) if row else None


async def backlog(s: AsyncSession, t: Tables) -> tuple[dict[str, int], float | None]:
    """Undelivered deliveries (pending, retrying, in flight) per channel, and when the oldest was created."""
    c = t.deliveries.c
    undelivered = c.status.in_(("pending", "delivering"))
    counts = {str(ch): int(n) for ch, n in (await s.execute(
        select(c.channel, func.count()).where(undelivered).group_by(c.channel))).all()}
    oldest = aware(await s.scalar(select(c.created_at).where(undelivered).order_by(c.created_at).limit(1)))
    return counts, (oldest.timestamp() if oldest is not None else None)


async def list_deliveries(s: AsyncSession, t: Tables, *, subscription_ids: list[str] | None,
                          event_id: str | None, limit: int,
                          reminded: tuple[str | None, str | None] | None = None) -> list[dict[str, Any]]:
    """Deliveries, newest first, each with its attempts; ``reminded``: only reminders to a person (and/or
    of a period)."""
    c = t.deliveries.c
    q = select(*[col for col in t.deliveries.c if col.name != "payload"])
    if subscription_ids is not None:
        q = q.where(c.subscription_id.in_(subscription_ids))
    if event_id:
        q = q.where(c.event_id == event_id)
    if reminded is not None:
        rc, (person_id, period) = t.reminders.c, reminded
        which = select(rc.delivery_id).where(rc.delivery_id.is_not(None))
        if person_id:
            which = which.where(rc.person_id == person_id)
        if period:
            which = which.where(rc.period == period)
        q = q.where(c.id.in_(which))
    rows = [dict(r) for r in (await s.execute(q.order_by(c.created_at.desc()).limit(limit))).mappings()]
    if not rows:
        return rows
    a = t.attempts.c
    attempts = (await s.execute(select(t.attempts).where(a.delivery_id.in_([r["id"] for r in rows]))
                                .order_by(a.delivery_id, a.attempt))).mappings()
    by_id: dict[str, list[dict[str, Any]]] = {}
    for att in attempts:
        by_id.setdefault(att["delivery_id"], []).append(dict(att))
    for r in rows:
        r["attempt_log"] = by_id.get(r["id"], [])
    return rows


# --- personal data -------------------------------------------------------------------------

async def add_personal_read(s: AsyncSession, t: Tables, **values: Any) -> None:
    """Append one row to the log of openings of sealed personal data (there is no update or delete)."""
    await s.execute(insert(t.personal_data_log).values(at=utcnow(), **values))


async def personal_reads(s: AsyncSession, t: Tables, *, protocol_id: str | None, subscription_id: str | None,
                         limit: int) -> list[dict[str, Any]]:
    """Openings of sealed personal data, newest first."""
    c = t.personal_data_log.c
    q = select(t.personal_data_log)
    if protocol_id:
        q = q.where(c.protocol_id == protocol_id)
    if subscription_id:
        q = q.where(c.subscription_id == subscription_id)
    rows = [dict(r) for r in (await s.execute(q.order_by(c.id.desc()).limit(limit))).mappings()]
    for r in rows:
        r["at"] = aware(r["at"])
    return rows


# --- rows about deliveries: reminders, hand-overs -------------------------------------------

async def by_delivery(s: AsyncSession, table: Table, delivery_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The rows of a table about some ledger rows (``reminders``, ``handovers``: a ``delivery_id`` column), by
    delivery id."""
    if not delivery_ids:
        return {}
    rows = (await s.execute(select(table).where(table.c.delivery_id.in_(delivery_ids)))).mappings()
    return {r["delivery_id"]: dict(r) for r in rows}
