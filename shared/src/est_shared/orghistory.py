"""The organisation as it was: what it held of each area (its cadence, its name) and of each area's reporters,
and from when until when. Services that judge a past period (who was expected, who is missing, which
reminders are due) read it instead of today's organisation.

One way for every service: ``add_org_history`` puts the table on a service's MetaData, ``record_org`` keeps
it as the organisation versions arrive, ``held_over`` reads what was held of some areas, and the pure
``expected_in_period`` / ``expected_reporters`` answer who a period expected.

Rules: an area never recorded before is held, with its reporters, from its ``since`` (``Area.since``: None
for the areas of the intake's first version, so from before any period; the intake dates every area it
adds later); anything else a version holds anew (a reporter added to an area, a changed cadence) is held
from when it took effect (``OrgSnapshot.applied_at``), and what it no longer holds ends then. An area's
first period is the first one that begins once it is held; a reporter is expected in a period of an area
when the area was held, with that cadence, when the period began and the person was its reporter at some
time in the period (one who moved away later is still expected there; one who came after it is not).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from est_shared.periods import Cadence


@dataclass(frozen=True, slots=True)
class Held:
    """A stretch of time the organisation held something: an area (with its cadence and name) or a reporter
    of an area (with their actor). ``since`` None: from before the first organisation recorded; ``until``
    None: still."""

    since: datetime | None
    until: datetime | None
    cadence: Cadence | None = None
    actor_id: str | None = None
    name: str | None = None

    def at(self, t: datetime) -> bool:
        return (self.since is None or self.since <= t) and (self.until is None or t < self.until)

    def during(self, start: datetime, end: datetime) -> bool:
        return (self.since is None or self.since < end) and (self.until is None or self.until > start)


def held_at(spans: Iterable[Held], t: datetime) -> Held | None:
    """The stretch holding moment ``t``, if any."""
    return next((h for h in spans if h.at(t)), None)


def expected_in_period(area: Iterable[Held], reporter: Iterable[Held], cadence: Cadence, start: datetime,
                       end: datetime) -> bool:
    """Whether a reporter was expected to report for a period [start, end) of an area's ``cadence``: the
    area existed when the period began, with that cadence in force, and the person was a reporter of the
    area at some time in the period. An area's first period is the first one beginning after it was made."""
    held = held_at(area, start)
    return held is not None and held.cadence == cadence and any(r.during(start, end) for r in reporter)


@dataclass(frozen=True)
class OrgHistory:
    """What the organisation held of some areas over time (``held_over``): each area's stretches, and each
    of its reporters' (by (area, person))."""

    areas: dict[str, list[Held]] = field(default_factory=dict)
    reporters: dict[tuple[str, str], list[Held]] = field(default_factory=dict)
    _by_area: dict[str, list[tuple[str, list[Held]]]] = field(default_factory=dict, init=False, repr=False,
                                                             compare=False)
    _indexed: list[int] = field(default_factory=lambda: [-1], init=False, repr=False, compare=False)

    def reporters_of(self, area_id: str) -> list[tuple[str, list[Held]]]:
        """(person, stretches) of everyone ever recorded as the area's reporter, by person id: an index by
        area built on first use (a history of thousands of areas is otherwise scanned once per picture)."""
        if self._indexed[0] != len(self.reporters):  # new, or added to since
            self._by_area.clear()
            self._indexed[0] = len(self.reporters)
            for (a, person_id), spans in sorted(self.reporters.items()):
                self._by_area.setdefault(a, []).append((person_id, spans))
        return self._by_area.get(area_id, [])

    def knows(self, area_id: str) -> bool:
        """Whether anything of the area was recorded (else a caller may fall back on today's organisation)."""
        return area_id in self.areas

    def first_held(self, area_id: str) -> Held | None:
        """The area's earliest stretch."""
        spans = self.areas.get(area_id)
        if not spans:
            return None
        return min(spans, key=lambda h: h.since or datetime.min.replace(tzinfo=UTC))

    def name_of(self, area_id: str) -> str | None:
        """The name the area had last."""
        spans = self.areas.get(area_id) or []
        named = [h for h in spans if h.name]
        if not named:
            return None
        return max(named, key=lambda h: h.since or datetime.min.replace(tzinfo=UTC)).name


def expected_reporters(history: OrgHistory, area_id: str, cadence: Cadence, start: datetime, end: datetime
                       ) -> dict[str, str | None]:
    """The reporters an area expected in a period [start, end) of ``cadence``, each with their actor (the one
    recorded last): ``expected_in_period`` for every person ever recorded as its reporter."""
    area = history.areas.get(area_id, [])
    out: dict[str, str | None] = {}
    for person_id, spans in history.reporters_of(area_id):
        if expected_in_period(area, spans, cadence, start, end):
            last = max(spans, key=lambda h: h.since or datetime.min.replace(tzinfo=UTC))
            out[person_id] = last.actor_id
    return out


def add_org_history(md: MetaData, name: str = "org_history") -> Table:
    """The history table on a service's MetaData (SQLite and PostgreSQL)."""
    return Table(
        name, md,                                                # what the organisation held, and when
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("area_id", String(100), nullable=False, index=True),
        Column("person_id", String(100)),                        # None: the area itself; else a reporter of it
        Column("cadence", String(10)),                           # the area's cadence (area rows only)
        Column("name", String(200)),                             # the area's name (area rows only)
        Column("actor_id", String(100)),                         # the reporter's actor (reporter rows only)
        Column("since", DateTime(timezone=True)),                # None: from before any period
        Column("until", DateTime(timezone=True)),                # None: still held
    )


def _aware(dt: datetime | None) -> datetime | None:
    """In UTC (SQLite keeps no offset: a naive moment read back is UTC, so only UTC is stored)."""
    if dt is None:
        return None
    return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)


async def record_org(snapshot: Any, at: datetime, *, session: AsyncSession, table: Table) -> int:
    """Keep what the organisation ``snapshot`` holds from ``at`` on (when it took effect: callers pass
    ``snapshot.applied_at`` when it has one): each area with its cadence and name, each reporter of an area
    with their actor; what it no longer holds ends at ``at``. An area never recorded before is held, with its
    reporters, from its ``since`` (None, as the intake says of the areas of its first version: from before
    any period), so what the first organisation recorded holds counts as held from before any period; a
    reporter new to an area recorded before, a changed cadence or an area held again from ``at``. Runs in the
    caller's transaction; returns how many stretches began or ended (a renamed area or a reporter's new
    actor is kept in place, not counted)."""
    c = table.c
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    wanted: dict[tuple[str, str | None], tuple[str | None, str | None]] = {
        (a.id, None): (a.cadence, a.name) for a in snapshot.areas.values()}
    for p in snapshot.people.values():
        if "reporter" in p.roles:
            wanted.update({(area_id, p.id): (None, p.actor) for area_id in p.areas if area_id in snapshot.areas})
    held: set[tuple[str, str | None]] = set()
    ended: list[int] = []
    for r in (await session.execute(select(c.id, c.area_id, c.person_id, c.cadence, c.name, c.actor_id)
                                    .where(c.until.is_(None)).order_by(c.id))):
        key = (r.area_id, r.person_id)
        want = wanted.get(key)
        if want is None or want[0] != r.cadence or key in held:  # gone, changed cadence, or held twice
            ended.append(r.id)
            continue
        held.add(key)
        extra = want[1]
        if extra != (r.name if r.person_id is None else r.actor_id):
            await session.execute(update(table).where(c.id == r.id).values(
                **({"name": extra} if r.person_id is None else {"actor_id": extra})))
    if ended:
        await session.execute(update(table).where(c.id.in_(ended)).values(until=at))
    new_areas = sorted({a for a, _ in wanted if (a, None) not in held})
    recorded = set((await session.scalars(select(c.area_id).distinct().where(c.area_id.in_(new_areas)))).all()
                   ) if new_areas else set()
    unseen = set(new_areas) - recorded  # areas this version brings that were never recorded
    began = []
    for (area_id, person_id), (cadence, extra) in wanted.items():
        if (area_id, person_id) in held:
            continue
        # an area never held before, with its reporters, from its ``since`` (None: the intake has held it from
        # its first version, so from before any period); anything else new from when the version took effect
        since = _aware(snapshot.areas[area_id].since) if area_id in unseen else at
        began.append({"area_id": area_id, "person_id": person_id, "cadence": cadence, "since": since, "until": None,
                      "name": extra if person_id is None else None, "actor_id": extra if person_id else None})
    if began:
        await session.execute(table.insert(), began)
    return len(ended) + len(began)


async def held_over(session: AsyncSession, table: Table, area_ids: Iterable[str], *,
                    start: datetime | None = None, end: datetime | None = None) -> OrgHistory:
    """What the organisation held of some areas over time (only stretches meeting [start, end) when given)."""
    c = table.c
    ids = sorted(set(area_ids))
    history = OrgHistory()
    if not ids:
        return history
    q = select(c.area_id, c.person_id, c.cadence, c.name, c.actor_id, c.since, c.until).where(c.area_id.in_(ids))
    if end is not None:
        q = q.where((c.since.is_(None)) | (c.since < end))
    if start is not None:
        q = q.where((c.until.is_(None)) | (c.until > start))
    for r in (await session.execute(q.order_by(c.id))).all():
        h = Held(_aware(r.since), _aware(r.until), r.cadence, r.actor_id, r.name)
        if r.person_id is None:
            history.areas.setdefault(r.area_id, []).append(h)
        else:
            history.reporters.setdefault((r.area_id, r.person_id), []).append(h)
    return history
