"""Repository functions of subscriptions, each taking an AsyncSession."""

from __future__ import annotations

import time
from typing import Any

from est_shared.clock import utcnow
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from est_notifier.tables import Tables


async def insert_subscription(s: AsyncSession, t: Tables, row: dict[str, Any]) -> None:
    now = utcnow()
    await s.execute(insert(t.subscriptions).values(
        created_at=now, updated_at=now, created_seq=time.time(), paused=False, consecutive_dead=0, **row))


async def get_subscription(s: AsyncSession, t: Tables, sub_id: str, *,
                           include_deleted: bool = False) -> dict[str, Any] | None:
    q = select(t.subscriptions).where(t.subscriptions.c.id == sub_id)
    if not include_deleted:
        q = q.where(t.subscriptions.c.deleted_at.is_(None))
    row = (await s.execute(q)).mappings().first()
    return dict(row) if row else None


async def list_subscriptions(s: AsyncSession, t: Tables, *, owner_id: str | None) -> list[dict[str, Any]]:
    q = select(t.subscriptions).where(t.subscriptions.c.deleted_at.is_(None))
    if owner_id is not None:
        q = q.where(t.subscriptions.c.owner_id == owner_id)
    return [dict(r) for r in (await s.execute(q.order_by(t.subscriptions.c.created_seq))).mappings()]


async def update_subscription(s: AsyncSession, t: Tables, sub_id: str, values: dict[str, Any]) -> None:
    await s.execute(update(t.subscriptions).where(t.subscriptions.c.id == sub_id)
                    .values(updated_at=utcnow(), **values))


async def candidate_subscriptions(s: AsyncSession, t: Tables, municipality_id: str) -> list[dict[str, Any]]:
    """Live, unpaused subscriptions of a municipality (matching is finished in the domain)."""
    c = t.subscriptions.c
    q = select(t.subscriptions).where(c.municipality_id == municipality_id, c.deleted_at.is_(None),
                                      c.paused.is_(False), c.ended_at.is_(None))
    return [dict(r) for r in (await s.execute(q)).mappings()]
