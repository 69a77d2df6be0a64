"""The coalescing refresher: one pass over the dirty pictures (``refresh_dirty``), each open one recomputed
once and sent as one ``se.est.picture.updated``, each published one revised once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from est_shared.clock import utcnow
from est_shared.db import add_many_to_outbox
from est_shared.events import CloudEvent, PictureUpdated
from est_shared.org import OrgSnapshot
from est_shared.periods import Period, PeriodError
from est_shared.subjects import picture_updated
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.pictures import db
from est_aggregator.pictures.compute import AreaInfo, area_info, compute_picture, outgoing, pass_inputs
from est_aggregator.pictures.deps import Deps, Effects, new_event, picture_failed, picture_ok
from est_aggregator.pictures.domain.errors import AreaNotFound
from est_aggregator.pictures.domain.picture import BuiltPicture
from est_aggregator.pictures.domain.reports import as_utc
from est_aggregator.pictures.publish import publish_locked

REFRESH_LOT = 10  # pictures computed and written together in a pass


async def _refresh_lot(todo: Sequence[tuple[Any, AreaInfo | None, Period | None]], *, deps: Deps,
                       org: OrgSnapshot, now: datetime) -> int:
    """Recompute open dirty pictures, queue their picture.updated and clear their marks; returns how many went out.

    A picture whose computation fails keeps its mark and is left for a later pass (``FailingPictures``);
    the others of the lot go out as usual.
    """
    updates: list[tuple[Any, BuiltPicture | None, CloudEvent[Any] | None]] = []
    async with deps.reading() as s:
        wanted = [(info, period) for _, info, period in todo if info is not None and period is not None]
        inputs = (await pass_inputs(s, org=org, pictures=wanted, rules=deps.rules, with_reports=deps.cache is None)
                  if wanted else None)
        for row, info, period in todo:
            built = event = None
            if info is not None and period is not None:
                try:
                    built = await compute_picture(s, org=org, info=info, period=period, rules=deps.rules,
                                                  cache=deps.cache, inputs=inputs)
                    event = new_event(type="se.est.picture.updated", subject=row.area_id, time=now,
                                      id=f"picture-updated:{row.area_id}:{row.period}:{row.token}",
                                      data=PictureUpdated(picture=outgoing(built.picture, deps)))
                except Exception as exc:  # this picture only: its mark stays for a later try
                    picture_failed(deps, "refresh", row.area_id, row.period, exc)
                    await deps.units.recover(s, exc)
                    continue
                picture_ok(deps, row.area_id, row.period)
            updates.append((row, built, event))
    if not updates:
        return 0
    effects = Effects()

    async def write(s: AsyncSession) -> int:
        effects.rates, effects.lags = [], []  # a retried transaction starts over
        now_states = await db.picture_rows_of(s, [r.area_id for r, _, _ in updates],
                                              [r.period for r, _, _ in updates])
        queued: list[tuple[str, CloudEvent[Any]]] = []
        at = utcnow()
        for row, built, event in updates:
            state = now_states.get((row.area_id, row.period))
            if built is not None and event is not None and (state is None or state.status == "open"):
                queued.append((picture_updated(row.municipality_id, row.area_id), event))
                effects.rates.append((row.municipality_id, row.area_id, built.picture.completeness.rate))
                effects.lags.append((at - as_utc(row.first_at)).total_seconds())
        await add_many_to_outbox(s, db.outbox, queued)
        await db.clear_dirty_many(s, [(r.area_id, r.period, r.token) for r, _, _ in updates], seen_at=now)
        effects.outbox = len(queued)
        return len(queued)

    updated = await deps.write(write)
    effects.apply(deps)
    return updated


@dataclass
class RefreshOutcome:
    """What one pass of the refresher did."""

    updated: int = 0
    revised: int = 0
    waiting: int = 0
    deferred: int = 0  # pictures left out of this pass: their last computation failed (see FailingPictures)
    busy: float = 0.0  # seconds the pass itself ran (not the other tasks served between its lots)


async def refresh_dirty(*, deps: Deps, org: OrgSnapshot, now: datetime | None = None, revise_after: float = 2.0,
                        limit: int = 1000) -> RefreshOutcome:
    """One coalescing pass over the dirty pictures.

    An open picture is recomputed once and one ``se.est.picture.updated`` goes out for it, whatever
    number of reports arrived since the last pass (event id ``picture-updated:AREA:PERIOD:TOKEN``,
    the token of the dirty mark: a replica repeating the pass adds nothing). A published picture
    is revised once its first unhandled mark is ``revise_after`` seconds old: ONE version N+1
    covering every late report that came meanwhile (no version when nothing visible changed).
    A mark is cleared only if no newer report replaced its token meanwhile. A picture whose
    computation fails is counted, logged and tried again after a growing delay
    (``FailingPictures``); it never holds up the other pictures of the pass.
    """
    now = now or utcnow()
    out = RefreshOutcome()
    started = time.perf_counter()
    clock = time.monotonic()
    revisions: list[Any] = []
    todo: list[tuple[Any, AreaInfo | None, Period | None]] = []
    async with deps.reading() as s:
        dirty = await db.dirty_rows(s, limit)
        states = await db.picture_rows_of(s, [r.area_id for r in dirty], [r.period for r in dirty])
        for row in dirty:
            if not deps.failing.due((row.area_id, row.period), clock):
                out.deferred += 1
                continue
            state = states.get((row.area_id, row.period))
            if state is not None and state.status == "published":
                if (now - as_utc(row.first_at)).total_seconds() >= revise_after:
                    revisions.append(row)
                else:
                    out.waiting += 1
                continue
            info: AreaInfo | None = None
            period: Period | None = None
            if deps.emit_updates:
                try:
                    info = await area_info(s, org, row.area_id, row.municipality_id)
                    period = Period.parse(row.period)
                except (PeriodError, AreaNotFound):
                    info = None
            todo.append((row, info, period))
    # a few pictures at a time, each lot written (and handed to the relay) at once: the first ones
    # go out while the rest are computed, and the loop serves the consumer and the relay in between
    for i in range(0, len(todo), REFRESH_LOT):
        if i:
            out.busy += time.perf_counter() - started
            await asyncio.sleep(0)
            started = time.perf_counter()
        out.updated += await _refresh_lot(todo[i:i + REFRESH_LOT], deps=deps, org=org, now=now)
    for row in revisions:
        effects = Effects()
        try:
            async with deps.unit_of_work() as s:
                locked = await db.lock_picture_row(s, row.area_id, row.period)
                info = await area_info(s, org, row.area_id, row.municipality_id)
                result = await publish_locked(s, deps=deps, org=org, info=info, period=Period.parse(row.period),
                                               current_version=locked.version, by=None, mode="revision", now=now,
                                               effects=effects)
                await db.clear_dirty(s, row.area_id, row.period, row.token)
        except IntegrityError:  # another replica published this version first; the mark stays for a new look
            deps.metrics.conflicts.inc()
            continue
        except Exception as exc:  # this picture only: rolled back, its mark stays for a later try
            picture_failed(deps, "revision", row.area_id, row.period, exc)
            continue
        picture_ok(deps, row.area_id, row.period)
        effects.apply(deps)
        out.revised += 1 if result else 0
    out.busy += time.perf_counter() - started
    return out
