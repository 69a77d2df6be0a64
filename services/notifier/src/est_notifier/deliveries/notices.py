"""Notices to people: an owner told that a subscription was paused, a holder told that their credential changed."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from est_shared.clock import utcnow
from est_shared.db import transaction
from est_shared.periods import DEFAULT_TIMEZONE
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from est_notifier.deliveries import db
from est_notifier.deliveries.domain import delivery_id
from est_notifier.messages.render import Rendered, build_email, render_credential_changed, render_paused_notice
from est_notifier.subscriptions.domain import caller_for
from est_notifier.subscriptions.receipt import may_receive
from est_notifier.tables import Sessions, Tables

log = logging.getLogger("est.notifier")


NOTICES_SUBSCRIPTION = "notices"  # the ledger's subscription id of notices to people (owners, credential holders)


async def queue_notice(s: AsyncSession, *, tables: Tables, rendered: Rendered, to: str, sender: str, event_id: str,
                       event_type: str, language: str, now: datetime) -> str:
    """Queue an e-mail to one person under the ledger's notices; returns its delivery id (the same for the same
    ``event_id``: a second queueing of it fails on the ledger's unique id)."""
    did = delivery_id(NOTICES_SUBSCRIPTION, event_id)
    body = build_email(rendered, sender=sender, to=to, delivery_id=did, event_id=event_id, language=language,
                       date=now)
    await db.insert_delivery(s, tables, {
        "id": did, "subscription_id": NOTICES_SUBSCRIPTION, "event_id": event_id, "event_type": event_type,
        "event_time": now, "channel": "email", "channel_target": f"email:{to.strip().lower()}",
        "target": {"from": sender, "to": [to]}, "payload": body, "next_attempt_at": time.time(),
    })
    return did


async def queue_paused_notice(s: AsyncSession, *, tables: Tables, snapshot: Any, sender: str, subscription_id: str,
                              dead: int) -> str | None:
    """An e-mail to the owner of a subscription paused for a dead endpoint; returns its delivery id."""
    c = tables.subscriptions.c
    row = (await s.execute(select(c.owner_id, c.name, c.channel, c.language).where(c.id == subscription_id))).first()
    person = snapshot.people.get(row.owner_id) if row is not None and snapshot is not None else None
    if row is None or person is None or not person.email:
        log.warning("paused subscription's owner cannot be told (no e-mail)",
                    extra={"subscription_id": subscription_id})
        return None
    channel = row.channel or {}
    target = channel.get("url") or channel.get("to") or "?"
    now = utcnow()
    rendered = render_paused_notice(person_name=person.name, subscription_name=row.name, target=str(target),
                                    dead=dead, language=row.language or "sv")
    return await queue_notice(s, tables=tables, rendered=rendered, to=person.email, sender=sender,
                              event_id=f"subscription-paused:{subscription_id}:{int(now.timestamp())}",
                              event_type="se.est.notifier.subscription_paused", language=row.language or "sv",
                              now=now)


def credential_fingerprint(token_sha256: str | None, issued: Sequence[str] = ()) -> str:
    """A shortened hash of a person's credentials: the token hash of the organisation file and the hashes of the
    personal API tokens issued to them, enough to see that any changed ("" without any). Without issued tokens
    it is what it always was, so that no one is told of a change that did not happen."""
    if not token_sha256 and not issued:
        return ""
    text = f"est-credential|{token_sha256}" + (f"|{','.join(sorted(issued))}" if issued else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


async def notify_credential_changes(*, sessions: Sessions, tables: Tables, snapshot: Any, sender: str,
                                    now: datetime | None = None) -> list[str]:
    """E-mail each person who may receive ``credential.changed`` (police, social services: they can read
    protocols) whose credentials in ``snapshot`` (their token, the personal API tokens issued to them) differ
    from those the notifier last saw, and remember the new ones; the first sight of a person is only
    remembered. The mail says when, and to contact their administrator if they did not expect it; it never
    holds the token. Safe across replicas and restarts (the comparison is with the database, not with the
    previous snapshot in memory). Returns the delivery ids.
    """
    if snapshot is None or not snapshot.version:
        return []
    people = [p for p in snapshot.people.values()
              if may_receive(caller_for(snapshot, p.id), "credential.changed", "")]
    if not people:
        return []
    c = tables.credentials.c
    async with sessions() as s:
        known = {r.person_id: (r.fingerprint, r.org_version) for r in (await s.execute(
            select(c.person_id, c.fingerprint, c.org_version).where(c.person_id.in_([p.id for p in people])))).all()}
    issued: dict[str, list[str]] = {}  # an API token issued to a police officer reads protocols as well
    for token in snapshot.tokens.values():
        issued.setdefault(token.person_id, []).append(token.sha256)
    at = now or utcnow()
    made: list[str] = []
    for person in people:
        fingerprint = credential_fingerprint(person.token_sha256, issued.get(person.id, ()))
        old = known.get(person.id)
        if old is not None and (old[0] == fingerprint or old[1] >= snapshot.version):
            continue
        try:
            async with transaction(sessions) as s:
                if old is None:
                    await s.execute(insert(tables.credentials).values(
                        person_id=person.id, fingerprint=fingerprint, org_version=snapshot.version, updated_at=at))
                    continue
                res = await s.execute(update(tables.credentials).where(
                    c.person_id == person.id, c.fingerprint == old[0], c.org_version == old[1]).values(
                    fingerprint=fingerprint, org_version=snapshot.version, updated_at=at))
                if int(getattr(res, "rowcount", 0) or 0) != 1:
                    continue  # another replica took this change
                if not person.email:
                    log.warning("changed credential cannot be told: the person has no e-mail address",
                                extra={"person_id": person.id, "org_version": snapshot.version})
                    continue
                mun = snapshot.municipalities.get(person.municipalities[0]) if person.municipalities else None
                tz = ZoneInfo(mun.timezone if mun else DEFAULT_TIMEZONE)
                when = at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")
                made.append(await queue_notice(
                    s, tables=tables, rendered=render_credential_changed(person_name=person.name, when=when),
                    to=person.email, sender=sender, event_id=f"credential-changed:{person.id}:{snapshot.version}",
                    event_type="se.est.notifier.credential_changed", language="sv", now=at))
                log.info("credential change told to its holder",
                         extra={"person_id": person.id, "org_version": snapshot.version})
        except IntegrityError:  # another replica recorded this person first
            continue
    return made
