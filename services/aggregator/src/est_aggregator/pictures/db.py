"""Tables of the aggregator and its SQLAlchemy queries, small functions taking an AsyncSession (SQLite and
PostgreSQL); the raw sqlite3 twins of the report batch's statements are in ``adapters.sqlite_queries``."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from est_shared.clock import utcnow
from est_shared.db import outbox_table, processed_events_table
from est_shared.orghistory import add_org_history
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.pictures.domain.alerts import Earlier
from est_aggregator.pictures.domain.notes import StoredNote, split_notes, stored_notes
from est_aggregator.pictures.domain.reports import ReportRecord

PictureKey = tuple[str, str]  # (area, picture period id)

metadata = MetaData()
processed = processed_events_table(metadata)
outbox = outbox_table(metadata)
# the organisation as it was (est_shared.orghistory): who each past period expected; recorded as versions arrive
org_history = add_org_history(metadata)

reports = Table(
    "reports", metadata,
    Column("report_id", String(100), primary_key=True),
    Column("event_id", String(200), nullable=False),
    Column("municipality_id", String(100), nullable=False),
    Column("area_id", String(100), nullable=False),
    Column("period", String(20), nullable=False),
    Column("checklist", String(100), nullable=False),
    Column("answers", JSON, nullable=False),
    Column("nothing_to_report", Boolean, nullable=False, default=False),
    Column("supersedes", String(100)),  # looked up per area: ix_reports_area_supersedes
    Column("reporter_id", String(100), nullable=False),
    Column("actor_id", String(100), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("late", Boolean, nullable=False, default=False),
    Column("stored_at", DateTime(timezone=True), nullable=False),
    # the reporters' notes, [{item, places, text}] (``domain.notes.split_notes``); NULL when there are none,
    # so a picture reads only the rows that have some
    Column("notes", JSON(none_as_null=True)),
    Index("ix_reports_area_period", "area_id", "period"),
    # the corrections of an area without reading its other reports (every refresher pass asks)
    Index("ix_reports_area_supersedes", "area_id", "supersedes"),
)

# One row per area and period once a report arrived or it was published: the lock row and its state.
pictures = Table(
    "pictures", metadata,
    Column("area_id", String(100), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("municipality_id", String(100), nullable=False),
    Column("status", String(20), nullable=False, default="open", index=True),
    Column("version", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True)),
    Column("report_token", String(40), doc="changes with every batch that stores reports of the picture "
                                           "(what keeps ReportCache honest across replicas)"),
)

# Pictures whose inputs changed since they were last emitted: the coalescing refresher's work list.
# ``token`` changes with every mark, so the refresher clears a row only if nothing arrived meanwhile.
picture_dirty = Table(
    "picture_dirty", metadata,
    Column("area_id", String(100), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("municipality_id", String(100), nullable=False),
    Column("token", String(40), nullable=False),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

# Every published version, frozen as sent; the primary key stops two replicas publishing one version twice.
picture_versions = Table(
    "picture_versions", metadata,
    Column("area_id", String(100), primary_key=True),
    Column("period", String(20), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("municipality_id", String(100), nullable=False),
    Column("picture", Text, nullable=False),
    Column("extras", JSON, nullable=False),
    Column("revision", Boolean, nullable=False, default=False),
    Column("changes", JSON, nullable=False),
    Column("published_by", String(100)),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("event_id", String(200), nullable=False),
)

comments = Table(
    "comments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("area_id", String(100), nullable=False),
    Column("period", String(20), nullable=False),
    Column("person_id", String(100), nullable=False),
    Column("actor_id", String(100), nullable=False),
    Column("text", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_comments_area_period", "area_id", "period"),
)

# Open alerts: at most one per area and item (edge-triggered, never raised twice while ongoing).
alert_state = Table(
    "alert_state", metadata,
    Column("area_id", String(100), primary_key=True),
    Column("item", String(60), primary_key=True),
    Column("municipality_id", String(100), nullable=False),
    Column("alert_id", String(300), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("period", String(20), nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
)

# Alert history (raised and resolved), also what keeps alert ids unique.
alerts = Table(
    "alerts", metadata,
    Column("alert_id", String(300), primary_key=True),
    Column("municipality_id", String(100), nullable=False),
    Column("area_id", String(100), nullable=False, index=True),
    Column("item", String(60), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("period", String(20), nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolved_period", String(20)),
)


# Kronoberg forfeiture protocols as the intake publishes them: no personal data, only what aggregates need.
forfeitures = Table(
    "forfeitures", metadata,
    Column("protocol_id", String(100), primary_key=True),
    Column("municipality_id", String(100), nullable=False),
    Column("area_id", String(100), index=True),
    Column("place", String(100)),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("age_band", String(20), nullable=False),
    Column("items", JSON, nullable=False),
    Column("direct_forfeiture", Boolean, nullable=False, default=False),
    Column("guardian_contacted", Boolean, nullable=False, default=False),
    Column("guardian_came", Boolean, default=False),
    Column("source", String(60)),
    Column("social_services_notified", Boolean, nullable=False, default=False),
)


# added after the first release
ADDED_COLUMNS = {"forfeitures": ("guardian_came", "source"), "pictures": ("report_token",), "reports": ("notes",)}
ADDED_INDEXES = {"reports": ("ix_reports_area_supersedes",)}


def add_missing_columns(conn: Any) -> None:
    """Add nullable columns and indexes that newer code has to tables an older version created (no Alembic yet)."""
    from sqlalchemy import inspect
    from sqlalchemy.schema import CreateColumn

    inspector = inspect(conn)
    for name, columns in ADDED_COLUMNS.items():
        if not inspector.has_table(name):  # create_all makes it whole
            continue
        have = {c["name"] for c in inspector.get_columns(name)}
        for col in columns:
            if col not in have:
                ddl = CreateColumn(metadata.tables[name].c[col]).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {ddl}")
    for name, indexes in ADDED_INDEXES.items():
        if inspector.has_table(name):
            have = {ix["name"] for ix in inspector.get_indexes(name)}
            for ix in metadata.tables[name].indexes:
                if ix.name in indexes and ix.name not in have:
                    ix.create(conn)


def _insert(session: AsyncSession, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def _record(row: Any) -> ReportRecord:
    return ReportRecord(
        report_id=row.report_id, municipality_id=row.municipality_id, area_id=row.area_id, period=row.period,
        checklist=row.checklist, answers=row.answers or {}, reporter_id=row.reporter_id, actor_id=row.actor_id,
        received_at=row.received_at, nothing_to_report=bool(row.nothing_to_report), supersedes=row.supersedes,
        late=bool(row.late))


CHUNK = 500  # ids per IN (...) list: far below every driver's bound-parameter limit


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


async def processed_ids(session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids the consumer has already applied."""
    found: set[str] = set()
    for part in chunks(list(event_ids)):
        found.update(await session.scalars(select(processed.c.event_id).where(
            processed.c.consumer == consumer, processed.c.event_id.in_(part))))
    return found


async def mark_processed_many(session: AsyncSession, consumer: str, event_ids: Sequence[str]) -> None:
    """Record event ids as applied (one executemany; the caller has filtered known ids)."""
    if event_ids:
        now = utcnow()
        await session.execute(insert(processed), [{"consumer": consumer, "event_id": e, "processed_at": now}
                                                  for e in event_ids])


async def existing_report_ids(session: AsyncSession, report_ids: Sequence[str]) -> set[str]:
    """Which of these report ids are stored."""
    found: set[str] = set()
    for part in chunks(list(report_ids)):
        found.update(await session.scalars(select(reports.c.report_id).where(reports.c.report_id.in_(part))))
    return found


async def insert_reports(session: AsyncSession, rows: Sequence[tuple[str, ReportRecord]]) -> None:
    """Store (event id, record) pairs with one executemany."""
    if not rows:
        return
    now = utcnow()
    await session.execute(insert(reports), [_report_row(event_id, r, now) for event_id, r in rows])


def _report_row(event_id: str, r: ReportRecord, stored_at: datetime) -> dict[str, Any]:
    answers, notes = split_notes(r.answers)
    return dict(report_id=r.report_id, event_id=event_id, municipality_id=r.municipality_id, area_id=r.area_id,
                period=r.period, checklist=r.checklist, answers=answers, nothing_to_report=r.nothing_to_report,
                supersedes=r.supersedes, reporter_id=r.reporter_id, actor_id=r.actor_id, received_at=r.received_at,
                late=r.late, stored_at=stored_at, notes=notes or None)


async def report_places(session: AsyncSession, report_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """report id -> (area, period, municipality) of stored reports."""
    out: dict[str, tuple[str, str, str]] = {}
    for part in chunks(list(report_ids)):
        rows = await session.execute(select(reports.c.report_id, reports.c.area_id, reports.c.period,
                                            reports.c.municipality_id).where(reports.c.report_id.in_(part)))
        for rid, area, period, muni in rows:
            out[rid] = (area, period, muni)
    return out


async def ensure_picture_rows(session: AsyncSession, keys: Sequence[tuple[str, str, str]]) -> None:
    """Create missing picture state rows for (area, period, municipality) keys, sorted (stable lock order)."""
    if not keys:
        return
    now = utcnow()
    stmt = _insert(session, pictures).on_conflict_do_nothing(index_elements=["area_id", "period"])
    await session.execute(stmt, [{"area_id": a, "period": p, "municipality_id": m, "status": "open", "version": 0,
                                  "updated_at": now} for a, p, m in sorted(keys)])


async def mark_dirty(session: AsyncSession, keys: Sequence[tuple[str, str, str]], token: str) -> None:
    """Mark pictures changed: new rows keep ``first_at``; existing ones get the new token and ``changed_at``."""
    if not keys:
        return
    now = utcnow()
    stmt = _insert(session, picture_dirty)
    stmt = stmt.on_conflict_do_update(index_elements=["area_id", "period"],
                                      set_={"token": stmt.excluded.token, "changed_at": stmt.excluded.changed_at})
    await session.execute(stmt, [{"area_id": a, "period": p, "municipality_id": m, "token": token, "first_at": now,
                                  "changed_at": now} for a, p, m in sorted(keys)])


async def touch_pictures(session: AsyncSession, keys: Sequence[tuple[str, str, str]], token: str, *,
                         tokens: bool) -> dict[PictureKey, str | None]:
    """A batch's pictures: create missing rows, mark them dirty with ``token`` and, with ``tokens``,
    give them ``report_token`` = ``token``; returns the report tokens they had (empty without ``tokens``)."""
    keys = sorted(keys)  # a stable lock order
    await ensure_picture_rows(session, keys)
    await mark_dirty(session, keys, token=token)
    return await bump_report_tokens(session, keys, token) if tokens else {}


class SqlBatchStore:
    """The statements of a report batch through SQLAlchemy (the ``BatchStore`` port of ``pictures.deps``)."""

    processed_ids = staticmethod(processed_ids)
    mark_processed_many = staticmethod(mark_processed_many)
    existing_report_ids = staticmethod(existing_report_ids)
    insert_reports = staticmethod(insert_reports)
    touch_pictures = staticmethod(touch_pictures)


async def dirty_rows(session: AsyncSession, limit: int = 1000) -> list[Any]:
    """Pictures waiting for the refresher, oldest mark first."""
    return list((await session.execute(select(picture_dirty).order_by(picture_dirty.c.first_at)
                                       .limit(limit))).all())


async def clear_dirty_many(session: AsyncSession, marks: Sequence[tuple[str, str, str]], seen_at: datetime) -> None:
    """``clear_dirty`` of many (area, period, token) marks, two statements in all."""
    if not marks:
        return
    await session.execute(_CLEAR_DIRTY, [{"a": a, "p": p, "t": t} for a, p, t in marks])
    # what is left was marked after the pass read: it waits since then, not since the old first_at
    await session.execute(_RESET_FIRST_AT, [{"a": a, "p": p, "s": seen_at} for a, p, _t in marks])


async def clear_dirty(session: AsyncSession, area_id: str, period: str, token: str) -> None:
    """Clear a mark unless a newer one replaced it meanwhile."""
    await session.execute(delete(picture_dirty).where(picture_dirty.c.area_id == area_id,
                                                      picture_dirty.c.period == period,
                                                      picture_dirty.c.token == token))


async def report_exists(session: AsyncSession, report_id: str) -> bool:
    return bool(await session.scalar(select(reports.c.report_id).where(reports.c.report_id == report_id)))


async def insert_report(session: AsyncSession, *, event_id: str, record: ReportRecord) -> None:
    await session.execute(insert(reports).values(**_report_row(event_id, record, utcnow())))


async def get_report(session: AsyncSession, report_id: str) -> ReportRecord | None:
    row = (await session.execute(select(reports).where(reports.c.report_id == report_id))).first()
    return _record(row) if row else None


async def reports_for(session: AsyncSession, area_id: str, period_ids: Iterable[str]) -> list[ReportRecord]:
    """Stored reports of an area in any of the given period ids."""
    c = reports.c
    rows = (await session.execute(select(c.report_id, c.municipality_id, c.area_id, c.period, c.checklist, c.answers,
                                         c.reporter_id, c.actor_id, c.received_at, c.nothing_to_report,
                                         c.supersedes, c.late)
                                  .where(c.area_id == area_id, c.period.in_(list(period_ids)))
                                  .order_by(c.received_at, c.report_id))).all()
    return [_record(r) for r in rows]


async def reports_of(session: AsyncSession, area_ids: Sequence[str], period_ids: Sequence[str]
                     ) -> dict[str, list[ReportRecord]]:
    """``reports_for`` of many areas in one query per chunk of areas, by area (each in ``reports_for``'s order)."""
    out: dict[str, list[ReportRecord]] = {a: [] for a in area_ids}
    for r in await _rows_of_areas(session, _REPORTS, area_ids, period_ids):
        out.setdefault(r.area_id, []).append(_record(r))
    return out


async def _rows_of_areas(session: AsyncSession, statement: Any, area_ids: Sequence[str],
                         period_ids: Sequence[str]) -> list[Any]:
    """The rows of a statement bound to ``areas`` and ``periods``, one query per chunk of areas."""
    pids = sorted(set(period_ids))
    rows: list[Any] = []
    if pids:
        for part in chunks(sorted(set(area_ids))):
            rows.extend((await session.execute(statement, {"areas": list(part), "periods": pids})).all())
    return rows


async def notes_for(session: AsyncSession, area_id: str, period_ids: Iterable[str]) -> list[StoredNote]:
    """The notes of an area's stored reports in any of the given period ids (superseded ones too)."""
    return (await notes_of(session, [area_id], list(period_ids))).get(area_id, [])


async def superseded_in_area(session: AsyncSession, area_id: str) -> set[str]:
    """Report ids some stored report of the area supersedes."""
    return (await superseded_in_areas(session, [area_id]))[area_id]


async def any_municipality_for_area(session: AsyncSession, area_id: str) -> str | None:
    """The municipality stored reports or pictures give for an area unknown to the organisation."""
    m = await session.scalar(select(pictures.c.municipality_id).where(pictures.c.area_id == area_id).limit(1))
    if m:
        return str(m)
    m = await session.scalar(select(reports.c.municipality_id).where(reports.c.area_id == area_id).limit(1))
    return str(m) if m else None


async def ensure_picture_row(session: AsyncSession, *, area_id: str, period: str, municipality_id: str) -> None:
    """Create the picture's state row if missing (no error when another writer did it first)."""
    stmt = _insert(session, pictures).values(area_id=area_id, period=period, municipality_id=municipality_id,
                                             status="open", version=0, updated_at=utcnow())
    await session.execute(stmt.on_conflict_do_nothing(index_elements=["area_id", "period"]))


async def lock_picture_row(session: AsyncSession, area_id: str, period: str) -> Any:
    """The picture's state row, locked FOR UPDATE on PostgreSQL (SQLite writers are serialised anyway)."""
    return (await session.execute(select(pictures).where(pictures.c.area_id == area_id,
                                                         pictures.c.period == period).with_for_update())).first()


async def picture_row(session: AsyncSession, area_id: str, period: str) -> Any:
    return (await session.execute(select(pictures).where(pictures.c.area_id == area_id,
                                                         pictures.c.period == period))).first()


async def picture_rows_between(session: AsyncSession, area_id: str, first: str, last: str) -> dict[str, Any]:
    rows = (await session.execute(select(pictures).where(pictures.c.area_id == area_id, pictures.c.period >= first,
                                                         pictures.c.period <= last))).all()
    return {r.period: r for r in rows}


async def open_pictures(session: AsyncSession) -> list[Any]:
    return list((await session.execute(select(pictures).where(pictures.c.status == "open")
                                        .order_by(pictures.c.period, pictures.c.area_id))).all())


async def set_published(session: AsyncSession, *, area_id: str, period: str, version: int, at: datetime) -> None:
    await session.execute(update(pictures).where(pictures.c.area_id == area_id, pictures.c.period == period)
                          .values(status="published", version=version, updated_at=at, published_at=at))


async def insert_version(session: AsyncSession, **values: Any) -> None:
    await session.execute(insert(picture_versions).values(**values))


async def get_version(session: AsyncSession, area_id: str, period: str, version: int) -> Any:
    return (await session.execute(select(picture_versions).where(
        picture_versions.c.area_id == area_id, picture_versions.c.period == period,
        picture_versions.c.version == version))).first()


async def later_period_published(session: AsyncSession, area_id: str, period: str) -> bool:
    """Whether a later period of the area has been published (then older revisions raise no alerts)."""
    return bool(await session.scalar(select(picture_versions.c.period).where(
        picture_versions.c.area_id == area_id, picture_versions.c.period > period).limit(1)))


async def earlier_flags(session: AsyncSession, area_id: str, period: str, limit: int) -> list[Earlier]:
    """The item flags of the area's last ``limit`` published periods before ``period``, newest first, each as its
    latest version went out."""
    if limit <= 0:
        return []
    pv = picture_versions
    latest = (select(pv.c.period, func.max(pv.c.version).label("version"))
              .where(pv.c.area_id == area_id, pv.c.period < period)
              .group_by(pv.c.period).order_by(pv.c.period.desc()).limit(limit).subquery())
    rows = (await session.execute(
        select(pv.c.period, pv.c.picture)
        .join(latest, and_(pv.c.period == latest.c.period, pv.c.version == latest.c.version))
        .where(pv.c.area_id == area_id).order_by(pv.c.period.desc()))).all()
    out = []
    for r in rows:
        items = json.loads(r.picture).get("items") or {}
        out.append(Earlier(r.period, {code: it.get("flag") for code, it in items.items() if isinstance(it, dict)}))
    return out


async def add_comment(session: AsyncSession, *, area_id: str, period: str, person_id: str, actor_id: str,
                      text: str, version: int) -> None:
    await session.execute(insert(comments).values(area_id=area_id, period=period, person_id=person_id,
                                                  actor_id=actor_id, text=text, version=version, at=utcnow()))


async def comments_for(session: AsyncSession, area_id: str, period: str) -> list[dict[str, Any]]:
    return (await comments_of(session, [(area_id, period)]))[(area_id, period)]


async def open_alerts(session: AsyncSession, area_id: str) -> dict[str, Any]:
    rows = (await session.execute(select(alert_state).where(alert_state.c.area_id == area_id))).all()
    return {r.item: r for r in rows}


async def alert_id_taken(session: AsyncSession, alert_id: str) -> bool:
    return bool(await session.scalar(select(alerts.c.alert_id).where(alerts.c.alert_id == alert_id)))


async def open_alert(session: AsyncSession, *, alert_id: str, municipality_id: str, area_id: str, item: str,
                     kind: str, period: str, at: datetime) -> None:
    await session.execute(insert(alert_state).values(area_id=area_id, item=item, municipality_id=municipality_id,
                                                     alert_id=alert_id, kind=kind, period=period, raised_at=at))
    await session.execute(insert(alerts).values(alert_id=alert_id, municipality_id=municipality_id, area_id=area_id,
                                                item=item, kind=kind, period=period, raised_at=at))


async def move_alert(session: AsyncSession, *, area_id: str, item: str, to_item: str) -> None:
    """An open alert taken over by the item that continues its item (the alert's history keeps its item)."""
    await session.execute(update(alert_state).where(alert_state.c.area_id == area_id, alert_state.c.item == item)
                          .values(item=to_item))


async def close_alert(session: AsyncSession, *, area_id: str, item: str, alert_id: str, period: str,
                      at: datetime) -> None:
    await session.execute(delete(alert_state).where(alert_state.c.area_id == area_id, alert_state.c.item == item))
    await session.execute(update(alerts).where(alerts.c.alert_id == alert_id)
                          .values(resolved_at=at, resolved_period=period))


async def list_alerts(session: AsyncSession, area_id: str) -> list[dict[str, Any]]:
    rows = (await session.execute(select(alerts).where(alerts.c.area_id == area_id)
                                  .order_by(alerts.c.raised_at))).all()
    return [{"alert_id": r.alert_id, "item": r.item, "kind": r.kind, "period": r.period,
             "raised_at": r.raised_at.isoformat(), "resolved_period": r.resolved_period,
             "status": "resolved" if r.resolved_at else "open"} for r in rows]


async def insert_forfeiture(session: AsyncSession, **values: Any) -> bool:
    """Store a protocol once; False if it was already stored."""
    if await session.scalar(select(forfeitures.c.protocol_id).where(
            forfeitures.c.protocol_id == values["protocol_id"])):
        return False
    await session.execute(insert(forfeitures).values(**values))
    return True


async def forfeitures_for(session: AsyncSession, area_id: str, start: datetime, end: datetime) -> list[Any]:
    """Protocols of an area that occurred in [start, end)."""
    return list((await session.execute(select(forfeitures).where(
        forfeitures.c.area_id == area_id, forfeitures.c.occurred_at >= start,
        forfeitures.c.occurred_at < end))).all())


# --- many pictures at once (the refresher's pass) ------------------------------------------
# Built once: a statement built per call costs more in SQLAlchemy than running it (a pass makes many).

def _in(column: Any, name: str) -> Any:
    return column.in_(bindparam(name, expanding=True))


_SUPERSEDED = select(reports.c.area_id, reports.c.supersedes).where(_in(reports.c.area_id, "areas"),
                                                                   reports.c.supersedes.is_not(None))
_PICTURE_ROWS = select(pictures).where(_in(pictures.c.area_id, "areas"), _in(pictures.c.period, "periods"))
_COMMENTS = select(comments).where(_in(comments.c.area_id, "areas"), _in(comments.c.period, "periods")
                                   ).order_by(comments.c.id)
_REPORTS = select(reports.c.report_id, reports.c.municipality_id, reports.c.area_id, reports.c.period,
                  reports.c.checklist, reports.c.answers, reports.c.reporter_id, reports.c.actor_id,
                  reports.c.received_at, reports.c.nothing_to_report, reports.c.supersedes, reports.c.late).where(
    _in(reports.c.area_id, "areas"), _in(reports.c.period, "periods")).order_by(reports.c.received_at,
                                                                               reports.c.report_id)
_NOTES = select(reports.c.report_id, reports.c.area_id, reports.c.period, reports.c.received_at, reports.c.notes).where(
    _in(reports.c.area_id, "areas"), _in(reports.c.period, "periods"), reports.c.notes.is_not(None))
_FORFEITURES = select(forfeitures).where(_in(forfeitures.c.area_id, "areas"),
                                         forfeitures.c.occurred_at >= bindparam("start"),
                                         forfeitures.c.occurred_at < bindparam("end"))
_DIRTY_KEY = (picture_dirty.c.area_id == bindparam("a"), picture_dirty.c.period == bindparam("p"))
_CLEAR_DIRTY = delete(picture_dirty).where(*_DIRTY_KEY, picture_dirty.c.token == bindparam("t"))
_RESET_FIRST_AT = update(picture_dirty).where(*_DIRTY_KEY, picture_dirty.c.first_at < bindparam("s")).values(
    first_at=bindparam("s"))


async def superseded_in_areas(session: AsyncSession, area_ids: Sequence[str]) -> dict[str, set[str]]:
    """``superseded_in_area`` for many areas in one query."""
    out: dict[str, set[str]] = {a: set() for a in area_ids}
    for part in chunks(sorted(set(area_ids))):
        rows = await session.execute(_SUPERSEDED, {"areas": list(part)})
        for area, sup in rows:
            if sup:
                out.setdefault(area, set()).add(sup)
    return out


async def picture_rows_of(session: AsyncSession, area_ids: Sequence[str], periods: Sequence[str]
                          ) -> dict[tuple[str, str], Any]:
    """Picture rows of the given areas in the given periods, by (area, period)."""
    out: dict[tuple[str, str], Any] = {}
    areas, pids = sorted(set(area_ids)), sorted(set(periods))
    for a_part in chunks(areas, 200):
        for p_part in chunks(pids, 200):
            for r in (await session.execute(_PICTURE_ROWS, {"areas": list(a_part), "periods": list(p_part)})).all():
                out[(r.area_id, r.period)] = r
    return out


async def comments_of(session: AsyncSession, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Any]]:
    """``comments_for`` of many (area, period) keys in one query (in ``comments_for``'s order)."""
    wanted = set(keys)
    out: dict[tuple[str, str], list[dict[str, Any]]] = {k: [] for k in wanted}
    if not wanted:
        return out
    rows = (await session.execute(_COMMENTS, {"areas": sorted({a for a, _ in wanted}),
                                              "periods": sorted({p for _, p in wanted})})).all()
    for r in rows:
        if (r.area_id, r.period) in wanted:
            out[(r.area_id, r.period)].append({"by": r.person_id, "actor_id": r.actor_id, "text": r.text,
                                               "version": r.version, "at": r.at.isoformat()})
    return out


async def notes_of(session: AsyncSession, area_ids: Sequence[str], period_ids: Sequence[str]
                   ) -> dict[str, list[StoredNote]]:
    """The notes of many areas' stored reports in any of the given period ids, by area (superseded ones too;
    each note names its period id, for pictures of different periods read together)."""
    out: dict[str, list[StoredNote]] = {a: [] for a in area_ids}
    for r in await _rows_of_areas(session, _NOTES, area_ids, period_ids):
        out.setdefault(r.area_id, []).extend(stored_notes(r.report_id, r.period, r.received_at, r.notes or ()))
    return out


async def forfeitures_of(session: AsyncSession, area_ids: Sequence[str], start: datetime, end: datetime
                         ) -> dict[str, list[Any]]:
    """Protocols of many areas that occurred in [start, end), by area (filter narrower ranges per picture)."""
    out: dict[str, list[Any]] = {a: [] for a in area_ids}
    for part in chunks(sorted(set(area_ids))):
        for r in (await session.execute(_FORFEITURES, {"areas": list(part), "start": start, "end": end})).all():
            out.setdefault(r.area_id, []).append(r)
    return out


async def forfeitures_outside(session: AsyncSession, municipality_id: str, area_ids: Sequence[str],
                              start: datetime, end: datetime) -> list[Any]:
    """Protocols of a municipality in [start, end) that belong to none of ``area_ids`` (its areas): recorded
    without an area, or of an area it no longer has."""
    f = forfeitures.c
    q = select(forfeitures).where(f.municipality_id == municipality_id, f.occurred_at >= start, f.occurred_at < end)
    outside: Any = or_(f.area_id.is_(None), f.area_id.not_in(list(area_ids))) if area_ids else f.area_id.is_(None)
    return list((await session.execute(q.where(outside))).all())


# --- the report tokens (what keeps a ReportCache honest) -----------------------------------

async def bump_report_tokens(session: AsyncSession, keys: Sequence[tuple[str, str, str]], token: str
                             ) -> dict[PictureKey, str | None]:
    """Give the pictures a new ``report_token``; returns the tokens they had (in the same transaction)."""
    wanted = {(a, p) for a, p, _m in keys}
    old: dict[PictureKey, str | None] = dict.fromkeys(wanted)
    if not keys:
        return old
    rows = await session.execute(select(pictures.c.area_id, pictures.c.period, pictures.c.report_token).where(
        pictures.c.area_id.in_(sorted({a for a, _ in wanted})), pictures.c.period.in_(sorted({p for _, p in wanted}))))
    for a, p, t in rows:
        if (a, p) in wanted:
            old[(a, p)] = t
    if keys:
        await session.execute(update(pictures).where(pictures.c.area_id == bindparam("a"),
                                                     pictures.c.period == bindparam("p"))
                              .values(report_token=token), [{"a": a, "p": p} for a, p, _m in keys])
    return old


async def report_tokens(session: AsyncSession, area_id: str, periods: Iterable[str]) -> dict[str, str | None]:
    """``report_token`` by picture period of an area (a period without a picture row is absent)."""
    rows = await session.execute(select(pictures.c.period, pictures.c.report_token).where(
        pictures.c.area_id == area_id, pictures.c.period.in_(list(periods))))
    return {p: t for p, t in rows}
