"""Tables of the analysis service and small repository functions taking an AsyncSession."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from est_shared.adapters.schema import lock_schema
from est_shared.bus import encode
from est_shared.clock import utcnow
from est_shared.db import outbox_table, processed_events_table
from est_shared.events import CloudEvent
from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

metadata = MetaData()
processed = processed_events_table(metadata)
outbox = outbox_table(metadata)

pictures = Table(
    "pictures", metadata,
    Column("area_id", String(100), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("municipality_id", String(100), nullable=False, index=True),
    Column("area_name", String(200), nullable=False, default=""),
    Column("kind", String(10), nullable=False),
    Column("period_start", Date, nullable=False),
    Column("version", Integer, nullable=False),
    Column("items", JSON, nullable=False),
    Column("completeness", JSON, nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

problem_states = Table(
    "problem_states", metadata,
    Column("area_id", String(100), primary_key=True),
    Column("item", String(60), primary_key=True),
    Column("municipality_id", String(100), nullable=False, index=True),
    Column("status", String(10), nullable=False),  # open | resolved
    Column("alert_id", String(300), nullable=False),
    Column("opened_period", String(20), nullable=False),
    Column("resolved_period", String(20)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

analyses = Table(
    "analyses", metadata,
    Column("id", String(200), primary_key=True),
    Column("municipality_id", String(100), nullable=False, index=True),
    Column("period", String(20), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("trigger", String(10), nullable=False),  # manual | auto
    Column("compiled_by", String(100)),
    Column("compiled_at", DateTime(timezone=True), nullable=False),
    Column("body", JSON, nullable=False),
    UniqueConstraint("municipality_id", "period", "revision", name="uq_analysis_revision"),
)

auto_compilations = Table(
    "auto_compilations", metadata,
    Column("municipality_id", String(100), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("analysis_id", String(200), nullable=False),
    Column("compiled_at", DateTime(timezone=True), nullable=False),
)

measures = Table(
    "measures", metadata,
    Column("id", String(64), primary_key=True),
    Column("municipality_id", String(100), nullable=False, index=True),
    Column("area_id", String(100), nullable=False, index=True),
    Column("title", String(300), nullable=False),
    Column("description", String(4000), nullable=False, default=""),
    Column("items", JSON, nullable=False),
    Column("responsible_actor", String(100), nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("start", Date, nullable=False),
    Column("end", Date),
    Column("hours", Float),
    Column("money_sek", Float),
    Column("status", String(20), nullable=False),
    Column("history", JSON, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("revision", Integer, nullable=False, default=1),
)


async def create_tables(engine: AsyncEngine) -> None:
    """Create the tables that do not exist yet (one process at a time: the schema lock)."""
    async with engine.begin() as conn:
        await lock_schema(conn)
        await conn.run_sync(metadata.create_all)


# --- outbox ----------------------------------------------------------------------------------

async def queue_event(session: AsyncSession, subject: str, event: CloudEvent[Any]) -> bool:
    """Queue an event in the outbox unless one with the same id is already there (ids are deterministic)."""
    if await session.scalar(select(outbox.c.seq).where(outbox.c.event_id == event.id)):
        return False
    await session.execute(insert(outbox).values(event_id=event.id, subject=subject, payload=encode(event),
                                                created_at=utcnow(), published=False))
    return True


# --- pictures --------------------------------------------------------------------------------

async def picture_version(session: AsyncSession, area_id: str, period: str) -> int | None:
    """The stored version of an area's picture for a period, or None."""
    v = await session.scalar(select(pictures.c.version).where(pictures.c.area_id == area_id,
                                                              pictures.c.period == period))
    return None if v is None else int(v)


async def put_picture(session: AsyncSession, row: dict[str, Any], *, exists: bool) -> None:
    """Insert or replace an area's picture for a period."""
    if exists:
        await session.execute(update(pictures).where(pictures.c.area_id == row["area_id"],
                                                     pictures.c.period == row["period"]).values(**row))
    else:
        await session.execute(insert(pictures).values(**row))


async def area_pictures(session: AsyncSession, area_id: str, *, kind: str | None = None,
                        until: date | None = None, since: date | None = None) -> list[dict[str, Any]]:
    """An area's stored pictures, oldest first (optionally of one period kind, starting in [since, until))."""
    q = select(pictures).where(pictures.c.area_id == area_id)
    if kind:
        q = q.where(pictures.c.kind == kind)
    if until:
        q = q.where(pictures.c.period_start < until)
    if since:
        q = q.where(pictures.c.period_start >= since)
    rows = (await session.execute(q.order_by(pictures.c.period_start))).mappings().all()
    return [dict(r) for r in rows]


async def last_area_name(session: AsyncSession, area_id: str) -> str | None:
    """The name an area's newest stored picture gives it (an area the organisation no longer holds), or None."""
    return await session.scalar(select(pictures.c.area_name).where(pictures.c.area_id == area_id,
                                                                   pictures.c.area_name != "")
                                .order_by(pictures.c.period_start.desc()).limit(1))


async def last_picture_period(session: AsyncSession, area_id: str, *, kind: str) -> str | None:
    """The latest period id of an area's stored pictures of one kind, or None."""
    return await session.scalar(select(pictures.c.period).where(pictures.c.area_id == area_id,
                                                                pictures.c.kind == kind)
                                .order_by(pictures.c.period_start.desc()).limit(1))


async def pictures_around(session: AsyncSession, area_id: str, *, kind: str, start: date, as_of: date,
                          limit: int) -> list[dict[str, Any]]:
    """For a measure's effect: the ``limit`` latest pictures ending by ``start`` and the ``limit`` first ones
    ending after it (and starting before ``as_of``), oldest first."""
    days = timedelta(days=14 if kind == "biweek" else 7)
    base = select(pictures).where(pictures.c.area_id == area_id, pictures.c.kind == kind)
    before = (await session.execute(base.where(pictures.c.period_start <= start - days)
                                    .order_by(pictures.c.period_start.desc()).limit(limit))).mappings().all()
    after = (await session.execute(base.where(pictures.c.period_start > start - days,
                                              pictures.c.period_start < as_of)
                                   .order_by(pictures.c.period_start).limit(limit))).mappings().all()
    return [dict(r) for r in reversed(before)] + [dict(r) for r in after]


# --- problem states --------------------------------------------------------------------------

async def area_problem_states(session: AsyncSession, area_id: str) -> dict[str, dict[str, Any]]:
    """The persistent-problem state per item of an area."""
    rows = (await session.execute(select(problem_states).where(problem_states.c.area_id == area_id))).mappings()
    return {r["item"]: dict(r) for r in rows}


async def put_problem_state(session: AsyncSession, row: dict[str, Any], *, exists: bool) -> None:
    """Insert or update one problem state."""
    row = {**row, "updated_at": utcnow()}
    if exists:
        await session.execute(update(problem_states).where(problem_states.c.area_id == row["area_id"],
                                                           problem_states.c.item == row["item"]).values(**row))
    else:
        await session.execute(insert(problem_states).values(**row))


async def move_problem_state(session: AsyncSession, area_id: str, old_item: str, row: dict[str, Any], *,
                             replace: bool) -> None:
    """An earlier item's problem state taken over by the item that continues it (``replace``: over the
    item's own, resolved, state)."""
    await session.execute(delete(problem_states).where(problem_states.c.area_id == area_id,
                                                       problem_states.c.item == old_item))
    await put_problem_state(session, row, exists=replace)


async def open_problem_count(session: AsyncSession) -> int:
    """How many persistent problems are open."""
    return int(await session.scalar(select(func.count()).select_from(problem_states)
                                    .where(problem_states.c.status == "open")) or 0)


# --- analyses --------------------------------------------------------------------------------

async def next_revision(session: AsyncSession, municipality_id: str, period: str) -> int:
    """The next revision number of a municipality's analysis of a period."""
    top = await session.scalar(select(func.max(analyses.c.revision)).where(
        analyses.c.municipality_id == municipality_id, analyses.c.period == period))
    return int(top or 0) + 1


async def get_analysis(session: AsyncSession, analysis_id: str) -> dict[str, Any] | None:
    """An analysis by id; ``{municipality}:{period}`` gives its latest revision."""
    row = (await session.execute(select(analyses).where(analyses.c.id == analysis_id))).mappings().first()
    if row is None and analysis_id.count(":") == 1:
        m, p = analysis_id.split(":")
        row = (await session.execute(select(analyses).where(analyses.c.municipality_id == m, analyses.c.period == p)
                                     .order_by(analyses.c.revision.desc()).limit(1))).mappings().first()
    return dict(row) if row else None


async def list_analyses(session: AsyncSession, municipality_id: str) -> list[dict[str, Any]]:
    """A municipality's analyses, newest first (without bodies' bulk)."""
    rows = (await session.execute(
        select(analyses.c.id, analyses.c.municipality_id, analyses.c.period, analyses.c.revision,
               analyses.c.trigger, analyses.c.compiled_at, analyses.c.compiled_by, analyses.c.body)
        .where(analyses.c.municipality_id == municipality_id)
        .order_by(analyses.c.compiled_at.desc(), analyses.c.revision.desc()))).mappings().all()
    return [dict(r) for r in rows]


async def was_auto_compiled(session: AsyncSession, municipality_id: str, period: str) -> bool:
    """Whether the background loop already compiled this municipality's period."""
    return bool(await session.scalar(select(auto_compilations.c.analysis_id).where(
        auto_compilations.c.municipality_id == municipality_id, auto_compilations.c.period == period)))


# --- measures --------------------------------------------------------------------------------

async def get_measure(session: AsyncSession, measure_id: str) -> dict[str, Any] | None:
    """A measure by id."""
    row = (await session.execute(select(measures).where(measures.c.id == measure_id))).mappings().first()
    return dict(row) if row else None


async def list_measures(session: AsyncSession, *, area_id: str | None = None,
                        municipality_id: str | None = None, area_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Measures filtered by area, municipality or a set of areas, oldest start first."""
    q = select(measures)
    if area_id:
        q = q.where(measures.c.area_id == area_id)
    if municipality_id:
        q = q.where(measures.c.municipality_id == municipality_id)
    if area_ids is not None:
        q = q.where(measures.c.area_id.in_(area_ids))
    rows = (await session.execute(q.order_by(measures.c.start, measures.c.id))).mappings().all()
    return [dict(r) for r in rows]
