"""Reporting reminders: who has not reported, the reminders due at a moment, and the loop that checks for them
on a clock that tests (and operators) can move."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from est_shared import orghistory
from est_shared.clock import Clock, utcnow
from est_shared.db import transaction
from est_shared.events import CloudEvent
from est_shared.org import period_deadline
from est_shared.orghistory import expected_in_period
from est_shared.periods import Cadence, current_period
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from est_notifier.deliveries import db
from est_notifier.deliveries.domain import (
    REMINDERS_SUBSCRIPTION,
    ReminderTimes,
    delivery_id,
    reminder_event_id,
    reminder_kind,
)
from est_notifier.messages.render import build_email, render_reminder
from est_notifier.subscriptions.domain import caller_for
from est_notifier.subscriptions.receipt import may_receive
from est_notifier.tables import Sessions, Tables, aware

log = logging.getLogger("est.notifier")


async def record_missing(event: CloudEvent[Any], *, sessions: Sessions, tables: Tables) -> bool:
    """Keep the newest list of missing reporters per area and period (from picture.updated/published)."""
    pic = getattr(event.data, "picture", None)
    if pic is None:
        return False
    t = tables.reminder_state
    c = t.c
    values = {"municipality_id": pic.municipality_id, "missing": list(pic.completeness.missing_reporters),
              "event_time": event.time, "updated_at": utcnow()}
    for _ in range(3):
        try:
            async with transaction(sessions) as s:
                old = await s.scalar(select(c.event_time).where(c.area_id == pic.area_id, c.period == pic.period))
                if old is None:
                    await s.execute(insert(t).values(area_id=pic.area_id, period=pic.period, **values))
                    return True
                if aware(old) > event.time:  # an older event arriving late changes nothing
                    return False
                await s.execute(update(t).where(c.area_id == pic.area_id, c.period == pic.period).values(**values))
                return True
        except IntegrityError:  # another replica inserted it first: read again
            continue
    return False


async def record_org(snapshot: Any, at: datetime, *, sessions: Sessions, tables: Tables) -> int:
    """Keep what the organisation holds from when the version took effect (its ``applied_at``, else ``at``,
    when the notifier learnt of it) on (``est_shared.orghistory.record_org``): reminders expect what it held
    in a period. Returns how many stretches began or ended."""
    async with transaction(sessions) as s:
        return await orghistory.record_org(snapshot, snapshot.applied_at or at, session=s, table=tables.org_history)


async def send_due_reminders(now: datetime, *, sessions: Sessions, tables: Tables, snapshot: Any, sender: str,
                             times: ReminderTimes, on_reminder: Callable[[str, str], None] | None = None,
                             caught_up: Callable[[], Awaitable[bool]] | None = None) -> list[str]:
    """Queue the reminders due at ``now``: e-mail, in Swedish, to reporters of an area who have not
    reported for a period, before and after its deadline; at most once per person, period and kind.

    Who was expected follows the organisation as it was in the period (``expected_in_period``). Who has
    not reported comes from the newest picture.updated/published of the area and period, or, before any
    report arrived, is every expected reporter; so nothing goes until ``caught_up`` says the notifier has
    handled the picture events already in the stream (after a start, its local view can still be empty).
    Returns the reminder delivery ids.
    """
    if snapshot is None or not snapshot.areas:
        return []
    due: dict[tuple[str, str, str], dict[str, Any]] = {}  # (person, period, kind) -> areas, deadline
    async with sessions() as s:
        history = await orghistory.held_over(s, tables.org_history, set(snapshot.areas))
    area_spans, reporter_spans = history.areas, history.reporters
    plans: list[tuple[Any, Any, str, datetime]] = []
    for area in snapshot.areas.values():
        mun = snapshot.municipalities.get(area.municipality_id)
        if mun is None:
            continue
        for cadence in sorted({h.cadence for h in area_spans.get(area.id, []) if h.cadence}):
            current = current_period(cadence, now, mun.timezone)
            for period in (current.prev(), current):
                dl = period_deadline(mun, period)
                kind = reminder_kind(now, dl, times)
                if kind:
                    plans.append((area, period, kind, dl))
    if not plans:
        return []
    if caught_up is not None and not await caught_up():
        log.info("reminders wait: the notifier has not yet read who has reported")
        return []
    st = tables.reminder_state.c
    async with sessions() as s:
        state = {(r.area_id, r.period): list(r.missing) for r in (await s.execute(
            select(st.area_id, st.period, st.missing).where(st.area_id.in_({a.id for a, _, _, _ in plans})))).all()}
        rc = tables.reminders.c
        sent = {(r.person_id, r.period, r.kind) for r in (await s.execute(
            select(rc.person_id, rc.period, rc.kind).where(rc.period.in_({p.id for _, p, _, _ in plans})))).all()}
    for area, period, kind, dl in plans:
        tz = snapshot.municipalities[area.municipality_id].timezone
        start, end = period.start_at(tz), period.end_at(tz)
        of: Cadence = "weekly" if period.kind == "week" else "biweekly"
        reporters = {p.id for p in snapshot.reporters_for(area.id)
                     if expected_in_period(area_spans.get(area.id, []), reporter_spans.get((area.id, p.id), []),
                                           of, start, end)
                     and may_receive(caller_for(snapshot, p.id), "reminder", area.municipality_id, area.id)}
        missing = reporters if (area.id, period.id) not in state else reporters & set(state[(area.id, period.id)])
        for person_id in sorted(missing):
            key = (person_id, period.id, kind)
            if key in sent:
                continue
            entry = due.setdefault(key, {"areas": [], "deadline": dl})
            entry["areas"].append(area.name or area.id)
    made: list[str] = []
    for (person_id, period_id, kind), entry in sorted(due.items()):
        person = snapshot.people[person_id]
        event_id = reminder_event_id(kind, period_id, person_id)
        did = delivery_id(REMINDERS_SUBSCRIPTION, event_id)
        try:
            async with transaction(sessions) as s:
                await s.execute(tables.reminders.insert().values(
                    person_id=person_id, person_name=person.name, period=period_id, kind=kind,
                    areas=sorted(entry["areas"]),
                    delivery_id=did if person.email else None, created_at=utcnow()))
                if not person.email:
                    log.warning("reminder not sent: the person has no e-mail address",
                                extra={"person_id": person_id, "period": period_id, "kind": kind})
                    if on_reminder:
                        on_reminder(kind, "no_email")
                    continue
                mun_tz = entry["deadline"].tzinfo
                rendered = render_reminder(kind=kind, person_name=person.name, period=period_id,
                                           areas=sorted(entry["areas"]), deadline=entry["deadline"].astimezone(mun_tz))
                body = build_email(rendered, sender=sender, to=person.email, delivery_id=did, event_id=event_id,
                                   language="sv", date=now)
                await db.insert_delivery(s, tables, {
                    "id": did, "subscription_id": REMINDERS_SUBSCRIPTION, "event_id": event_id,
                    "event_type": "se.est.notifier.reminder", "event_time": now, "channel": "email",
                    "channel_target": f"email:{person.email.strip().lower()}", "target": {"from": sender,
                                                                                          "to": [person.email]},
                    "payload": body, "next_attempt_at": time.time(),
                })
        except IntegrityError:  # another replica queued it first (unique person, period, kind)
            continue
        made.append(did)
        if on_reminder:
            on_reminder(kind, "queued")
    return made


class ReminderLoop:
    """Every ``interval`` seconds (or when woken) queue the reminders due at ``clock.now()``."""

    def __init__(self, *, clock: Clock, check: Callable[[datetime], Awaitable[int]], interval: float = 60.0) -> None:
        self.clock, self.check, self.interval = clock, check, interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.check(self.clock.now())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reminder check failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
