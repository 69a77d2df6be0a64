"""Publishing: a version N of a picture, manual (``publish_picture``), at the deadline (``auto_publish_due``)
or as a revision (``publish_locked`` from the refresher); each with its alerts raised and resolved.

A manual publication is gated (``domain.publishing``): a period that has not begun is refused, one before
its deadline or below the completeness threshold needs ``confirm_incomplete``, and one that would
change nothing against the latest version answers with that version and sends nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from est_shared.bus import encode
from est_shared.clock import utcnow
from est_shared.db import add_to_outbox
from est_shared.errors import TextRefused
from est_shared.events import AlertData, Completeness, PictureData, PicturePublished
from est_shared.freetext import free_text_errors
from est_shared.org import AlertRules, OrgSnapshot, period_deadline
from est_shared.periods import DEFAULT_TIMEZONE, Period, PeriodError
from est_shared.subjects import alert_raised, alert_resolved, picture_published
from pydantic import Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from est_aggregator.pictures import db
from est_aggregator.pictures.compute import (
    AreaInfo,
    area_info,
    compute_picture,
    deadline_of,
    extras_of,
    outgoing,
    resolve_period,
)
from est_aggregator.pictures.deps import Deps, Effects, new_event, picture_failed
from est_aggregator.pictures.domain.alerts import (
    DEFAULT_ALERT_RULES,
    OpenAlert,
    alert_message,
    alert_transitions,
    carried_alerts,
    history_needed,
    rising_streak,
    severity,
)
from est_aggregator.pictures.domain.errors import (
    PeriodNotBegun,
    PublishNotConfirmed,
    VersionConflict,
)
from est_aggregator.pictures.domain.picture import picture_changes
from est_aggregator.pictures.domain.publishing import (
    PublishGate,
    badge,
    completeness_threshold,
    gate_texts,
    period_begun,
)
from est_aggregator.pictures.domain.reports import as_utc

log = logging.getLogger("est.aggregator")


@dataclass(frozen=True)
class PublishResult:
    """A published version."""

    area_id: str
    period: str
    version: int
    revision: bool
    changes: list[str]
    event_id: str
    unchanged: bool = False  # nothing new against the latest version: that version, nothing sent
    completeness: dict[str, Any] = field(default_factory=dict)  # the version's completeness and badge


class BadgedCompleteness(Completeness):
    """Completeness with the badge a published picture carries (``domain.publishing.badge``)."""

    complete: bool = Field(default=False, description="every expected reporter has reported")
    threshold: float = Field(default=0.0, description="the completeness threshold of a publication by hand")
    below_threshold: bool = Field(default=False, description="published with a rate below the threshold")


class BadgedPicture(PictureData):
    """A published picture: its completeness carries the badge."""

    completeness: BadgedCompleteness = Field(default_factory=BadgedCompleteness)


class BadgedPublished(PicturePublished):
    """``se.est.picture.published`` with the badged picture (fields added to the event's schema, which
    consumers that know only ``PicturePublished`` ignore)."""

    picture: BadgedPicture


def badged(picture: PictureData, threshold: float) -> BadgedPicture:
    """The picture with its completeness badge."""
    comp = BadgedCompleteness(**picture.completeness.model_dump(), **badge(picture.completeness, threshold))
    return BadgedPicture.model_construct(**{**dict(picture), "completeness": comp})


def _summary(completeness: dict[str, Any]) -> dict[str, Any]:
    keys = ("expected", "received", "rate", "complete", "threshold", "below_threshold")
    return {k: completeness[k] for k in keys if k in completeness}


def alert_rules_of(org: OrgSnapshot, municipality_id: str) -> AlertRules:
    """The municipality's alert rules (the defaults for a municipality the organisation does not know)."""
    muni = org.municipalities.get(municipality_id)
    return muni.alerts if muni is not None else DEFAULT_ALERT_RULES


async def _raise_and_resolve(s: AsyncSession, *, org: OrgSnapshot, info: AreaInfo, period: Period,
                             picture: PictureData, version: int, now: datetime, effects: Effects,
                             continues: Mapping[str, Sequence[str]] | None = None) -> None:
    """Edge-triggered alerts against the area's open alerts, by the municipality's alert rules
    (``domain.alerts``); older periods' revisions raise nothing. An open alert of an earlier code goes on
    as the item that continues it (``continues``)."""
    if await db.later_period_published(s, info.area_id, period.id):
        return
    rules = alert_rules_of(org, info.municipality_id)
    open_rows = await db.open_alerts(s, info.area_id)
    for old, heir in carried_alerts([k for k in open_rows if k not in picture.items], continues or {}):
        await db.move_alert(s, area_id=info.area_id, item=old, to_item=heir)
        open_rows[heir] = open_rows.pop(old)
    earlier = await db.earlier_flags(s, info.area_id, period.id, history_needed(rules))
    flags = {code: sm.flag for code, sm in picture.items.items()}
    to_raise, to_resolve = alert_transitions({k: OpenAlert(r.kind, r.period) for k, r in open_rows.items()}, flags,
                                             period=period.id, earlier=earlier, rules=rules)
    m, a, name = info.municipality_id, info.area_id, info.name or info.area_id
    for item, kind in sorted(to_raise.items()):
        alert_id = f"alert:{a}:{item}:{kind}:{period.id}"
        if await db.alert_id_taken(s, alert_id):  # raised, resolved and raised again in one period
            alert_id = f"{alert_id}:v{version}"
        summary = picture.items.get(item)
        level = severity(kind, summary.value if summary else None, rules.for_item(item))
        text = alert_message(kind, summary, item, area_name=name, period=period.id, resolved=False,
                             severity_=level, streak=1 + rising_streak(item, earlier))
        data = AlertData(alert_id=alert_id, municipality_id=m, area_id=a, item=item, kind=kind, period=period.id,
                         severity=level, message=text)
        await add_to_outbox(s, db.outbox, alert_raised(m, a),
                            new_event(type="se.est.alert.raised", data=data, subject=a, id=alert_id, time=now))
        await db.open_alert(s, alert_id=alert_id, municipality_id=m, area_id=a, item=item, kind=kind,
                            period=period.id, at=now)
        effects.outbox += 1
        effects.raised.append(kind)
    for item, kind in sorted(to_resolve.items()):
        row = open_rows[item]
        data = AlertData(alert_id=row.alert_id, municipality_id=m, area_id=a, item=item, kind=kind,
                         period=period.id, severity="info",
                         message=alert_message(kind, picture.items.get(item), item, area_name=name,
                                               period=period.id, resolved=True, raised_in=row.period))
        await add_to_outbox(s, db.outbox, alert_resolved(m, a),
                            new_event(type="se.est.alert.resolved", data=data, subject=a,
                                      id=f"{row.alert_id}:resolved", time=now))
        await db.close_alert(s, area_id=a, item=item, alert_id=row.alert_id, period=period.id, at=now)
        effects.outbox += 1
        effects.resolved.append(kind)


async def publish_locked(s: AsyncSession, *, deps: Deps, org: OrgSnapshot, info: AreaInfo, period: Period,
                          current_version: int, by: str | None, mode: str, now: datetime, effects: Effects,
                          require_reports: bool = False,
                          check: Callable[[PictureData], None] | None = None) -> PublishResult | None:
    """Publish the next version inside a transaction holding the picture row; None if nothing to publish.

    A revision (mode ``revision``) with no change against the last version is not published; another
    mode with no change answers with the last version (``unchanged``) and publishes nothing. ``check``
    sees the picture about to be published and may refuse it by raising (the transaction rolls back).
    The (area, period, version) primary key makes a second replica's identical attempt fail.
    """
    version = current_version + 1
    built = await compute_picture(s, org=org, info=info, period=period, rules=deps.rules, status="published",
                                  version=version)
    if require_reports and built.picture.reports == 0:
        return None
    revision = current_version >= 1
    changes: list[str] = []
    if revision:
        old = await db.get_version(s, info.area_id, period.id, current_version)
        if old is not None:
            # compared exactly: the version went out with small Kronoberg counts coarsened, kept exact beside it
            before = PictureData.model_validate_json(old.picture)
            exact = (old.extras or {}).get("kronoberg_exact")
            if exact is not None:
                before = before.model_copy(update={"kronoberg": exact})
            changes = picture_changes(before, built.picture, built.continues)
            if not changes and mode != "revision":
                sent_before = json.loads(old.picture)
                return PublishResult(info.area_id, period.id, current_version, bool(old.revision),
                                     list(old.changes or []), old.event_id, unchanged=True,
                                     completeness=_summary(sent_before.get("completeness") or {}))
        if mode == "revision" and not changes:
            return None
    if check is not None:
        check(built.picture)
    event_id = f"picture:{info.area_id}:{period.id}:v{version}"
    deadline = deadline_of(org, info.municipality_id, period)
    event = new_event(type="se.est.picture.published", subject=info.area_id, id=event_id, time=now,
                      data=BadgedPublished(picture=badged(outgoing(built.picture, deps), completeness_threshold(
                          org, info.municipality_id, deps.publish_min_completeness)),
                                           revision=revision, changes=changes, published_by=by))
    sent = json.loads(encode(event))["data"]["picture"]  # frozen exactly as it goes on the wire
    await db.insert_version(s, area_id=info.area_id, period=period.id, version=version,
                            municipality_id=info.municipality_id, picture=json.dumps(sent, ensure_ascii=False),
                            extras={**extras_of(built, deadline), "kronoberg_exact": built.picture.kronoberg},
                            revision=revision,
                            changes=changes, published_by=by, published_at=now, event_id=event_id)
    await db.set_published(s, area_id=info.area_id, period=period.id, version=version, at=now)
    await add_to_outbox(s, db.outbox, picture_published(info.municipality_id, info.area_id), event)
    log.info("picture published", extra={"event_id": event_id, "area": info.area_id, "period": period.id,
                                         "version": version, "reports": built.picture.reports, "mode": mode})
    effects.outbox += 1
    if version == 1 and deadline is not None:
        effects.delays.append((mode, (as_utc(now) - as_utc(deadline)).total_seconds()))
    effects.published.append((info.area_id, version, mode))
    effects.rates.append((info.municipality_id, info.area_id, built.picture.completeness.rate))
    await _raise_and_resolve(s, org=org, info=info, period=period, picture=built.picture, version=version, now=now,
                             effects=effects, continues=built.continues)
    return PublishResult(info.area_id, period.id, version, revision, changes, event_id,
                         completeness=_summary(sent["completeness"]))


def _reporter(org: OrgSnapshot, person_id: str) -> dict[str, str]:
    """An expected reporter as the key function knows them: name and organisation."""
    person = org.people.get(person_id)
    actor = org.actors.get(person.actor) if person else None
    return {"id": person_id, "name": person.name if person else person_id,
            "actor": actor.name if actor else (person.actor if person else "")}


def require_confirmation(picture: PictureData, *, org: OrgSnapshot, deadline: datetime | None, threshold: float,
                         now: datetime) -> None:
    """Refuse (``PublishNotConfirmed``) a picture before its deadline or below the threshold, naming what is
    missing: only key functions and admins publish, and they may see who has not reported."""
    gate = PublishGate(picture.completeness, threshold, deadline, now)
    if not gate.needs_confirmation:
        return
    c = picture.completeness
    sv, en = gate_texts(gate)
    raise PublishNotConfirmed(
        sv, en, reasons=gate.reasons,
        completeness={"expected": c.expected, "received": c.received, "rate": c.rate, "threshold": threshold},
        missing_reporters=[_reporter(org, pid) for pid in c.missing_reporters],
        deadline=deadline.isoformat() if deadline else None, seconds_to_deadline=gate.seconds_left)


async def _repeats_last_comment(s: AsyncSession, area_id: str, period: str, text: str) -> bool:
    """Whether ``text`` is the picture's latest comment (sent again, it is nothing new)."""
    stored = await db.comments_for(s, area_id, period)
    return bool(stored) and stored[-1]["text"] == text


async def publish_picture(*, deps: Deps, org: OrgSnapshot, area_id: str, period_text: str, by: str | None,
                          actor_id: str = "", comment: str | None = None, now: datetime | None = None,
                          mode: str = "manual", confirm_incomplete: bool = False) -> PublishResult:
    """Publish a picture now (version 1, or N+1 when something changed), with an optional comment.

    The comment goes to every actor the picture is sent to: one that looks like personal data or
    holds control characters is refused (``TextRefused``) and nothing is published. A period that has
    not begun is refused (``PeriodNotBegun``); a picture before its deadline or below the completeness
    threshold is published only with ``confirm_incomplete`` (else ``PublishNotConfirmed``). A picture
    unchanged since its latest version answers with that version (``unchanged``) and sends nothing.
    """
    refused = free_text_errors({"body.comment": comment}, multiline={"body.comment"})
    if refused:
        raise TextRefused(refused)
    at = now or utcnow()
    text = comment.strip() if comment else ""
    for _attempt in range(3):
        effects = Effects()
        try:
            async with deps.unit_of_work() as s:
                info = await area_info(s, org, area_id)
                period = resolve_period(info, period_text)
                muni = org.municipalities.get(info.municipality_id)
                if not period_begun(period, at, muni.timezone if muni else DEFAULT_TIMEZONE):
                    raise PeriodNotBegun(period.id)
                await db.ensure_picture_row(s, area_id=area_id, period=period.id,
                                            municipality_id=info.municipality_id)
                row = await db.lock_picture_row(s, area_id, period.id)
                if text and by and not await _repeats_last_comment(s, area_id, period.id, text):
                    await db.add_comment(s, area_id=area_id, period=period.id, person_id=by, actor_id=actor_id,
                                         text=text, version=row.version + 1)
                check = None if confirm_incomplete else partial(
                    require_confirmation, org=org, deadline=deadline_of(org, info.municipality_id, period),
                    threshold=completeness_threshold(org, info.municipality_id, deps.publish_min_completeness),
                    now=at)
                result = await publish_locked(s, deps=deps, org=org, info=info, period=period,
                                               current_version=row.version, by=by, mode=mode,
                                               now=at, effects=effects, check=check)
        except IntegrityError:
            deps.metrics.conflicts.inc()
            continue
        effects.apply(deps)
        assert result is not None
        return result
    raise VersionConflict(f"{area_id} {period_text}")


async def auto_publish_due(*, deps: Deps, org: OrgSnapshot, now: datetime) -> list[PublishResult]:
    """Publish every open picture with at least one report whose deadline has passed."""
    async with deps.sessions() as s:
        rows = await db.open_pictures(s)
    done: list[PublishResult] = []
    for row in rows:
        area = org.areas.get(row.area_id)
        muni = org.municipalities.get(area.municipality_id) if area else None
        if area is None or muni is None:
            continue  # no deadline known yet: wait for the organisation
        if not deps.failing.due((row.area_id, row.period), time.monotonic()):
            continue  # its last computation failed: tried again after its delay
        try:
            period = Period.parse(row.period)
        except PeriodError:
            continue
        if period_deadline(muni, period) > now:
            continue
        effects = Effects()
        try:
            async with deps.unit_of_work() as s:
                locked = await db.lock_picture_row(s, row.area_id, row.period)
                if locked is None or locked.status != "open":
                    continue
                info = AreaInfo(area.id, area.municipality_id, area.name, area.cadence, True)
                result = await publish_locked(s, deps=deps, org=org, info=info, period=period, current_version=
                                               locked.version, by=None, mode="auto", now=now, effects=effects,
                                               require_reports=True)
        except IntegrityError:
            deps.metrics.conflicts.inc()
            continue
        except Exception as exc:  # this picture only: the others still publish at their deadline
            picture_failed(deps, "auto_publish", row.area_id, row.period, exc)
            continue
        effects.apply(deps)
        if result:
            log.info("picture published at deadline", extra={"area": row.area_id, "period": row.period})
            done.append(result)
    return done
