"""Use cases of the delivery ledger as plain async functions: fan-out, digests, cancelling, the ledger's queries."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from est_shared.bus import encode
from est_shared.clock import utcnow
from est_shared.db import mark_processed, transaction
from est_shared.errors import Forbidden, NotFound
from est_shared.events import CloudEvent
from est_shared.org import period_deadline
from est_shared.periods import Period, PeriodError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from est_notifier.deliveries import db
from est_notifier.deliveries.domain import REMINDERS_SUBSCRIPTION, delivery_id, sign
from est_notifier.messages.render import (
    NO_NAMES,
    Names,
    Rendered,
    build_email,
    names_of,
    readdressed,
    render_digest,
    render_event,
)
from est_notifier.metrics import NotifierMetrics
from est_notifier.subscriptions import db as subscription_db
from est_notifier.subscriptions.domain import (
    END_REASONS,
    NOTIFICATION_TYPE,
    PERSONAL_KINDS,
    Audience,
    Caller,
    Scope,
    SubscriptionView,
    audience_for,
    caller_for,
    channel_target,
    event_kind,
    handover_text,
    matches,
    municipality_wide_match,
    recipients,
    render_for,
    seen_as,
    sees_as_much,
)
from est_notifier.subscriptions.receipt import may_receive, message_scope
from est_notifier.tables import Sessions, Tables, aware

log = logging.getLogger("est.notifier")


# --- the ledger's rows ----------------------------------------------------------------------

def ledger_target(channel: dict[str, Any]) -> dict[str, Any]:
    """Where a ledger row that sends nothing says it would have gone: the URL or the address."""
    return {"url": channel.get("url")} if channel.get("type") == "webhook" else {"to": [channel.get("to", "")]}


async def end_subscription(s: AsyncSession, tables: Tables, row: dict[str, Any], reason: str) -> bool:
    """End one subscription visibly (in the caller's transaction): status ended, a ledger row, and its
    pending deliveries and digest entries cancelled with a ledger row each. False if already ended."""
    c = tables.subscriptions.c
    now = utcnow()
    res = await s.execute(update(tables.subscriptions).where(c.id == row["id"], c.ended_at.is_(None))
                          .values(ended_at=now, ended_reason=reason, updated_at=now))
    if int(getattr(res, "rowcount", 0) or 0) != 1:
        return False
    text = END_REASONS[reason][0]
    channel = row["channel"]
    event_id = f"subscription-ended:{row['id']}:{int(now.timestamp() * 1000)}"
    await s.execute(insert(tables.deliveries).values(
        id=delivery_id(row["id"], event_id), subscription_id=row["id"], event_id=event_id,
        event_type="se.est.notifier.subscription.ended", event_time=now, channel=channel.get("type", "webhook"),
        channel_target=f"{row['channel_target']}#ended:{row['id']}", target=ledger_target(channel), payload=b"",
        status="ended",
        attempts=0, next_attempt_at=0.0, last_error=text, created_at=now, finished_at=now))
    await cancel_pending(s, tables, subscription_id=row["id"], reason=f"cancelled: {text}")
    d = tables.digest_items.c
    await s.execute(update(tables.digest_items).where(d.subscription_id == row["id"], d.sent.is_(False))
                    .values(sent=True))
    return True


HANDOVER_TYPES = {"handed_over": "se.est.notifier.subscription.handed_over",
                  "restored": "se.est.notifier.subscription.restored"}


@dataclass(frozen=True)
class Handover:
    """A subscription going from one person to another: who (names and addresses as last known, ``people_seen``)
    and who made it so (``by_id`` None: the organisation file of ``org_version``)."""

    from_id: str
    from_name: str | None
    from_email: str | None
    to_id: str
    to_name: str | None
    to_email: str | None
    by_id: str | None = None
    by_name: str | None = None
    org_version: int | None = None


async def hand_over(s: AsyncSession, tables: Tables, row: dict[str, Any], h: Handover, *, successor: Audience,
                    kind: str = "handed_over") -> bool:
    """Give a subscription to another owner (in the caller's transaction), visibly: a ledger row naming who it went
    from and to and by whom. An e-mail channel addressed to the old owner's address now goes to the new owner's;
    a webhook keeps its target. The deliveries to the old address not sent yet follow it when the new owner may
    read them as they were written (``sees_as_much``); the others are cancelled with a ledger row. Digest entries
    follow by themselves (rendered again for the owner, sent to the channel, when the digest closes).
    ``kind`` restored: an ended subscription runs again. False if the row changed meanwhile."""
    c = tables.subscriptions.c
    now = utcnow()
    channel = dict(row["channel"])
    old_to = str(channel.get("to", "")).strip().lower() if channel.get("type") == "email" else ""
    readdress = bool(old_to) and bool(h.to_email) and old_to == (h.from_email or "").strip().lower()
    if readdress:
        channel["to"] = str(h.to_email)
    values: dict[str, Any] = {"owner_id": h.to_id, "channel": channel, "channel_target": channel_target(channel),
                              "updated_at": now}
    q = update(tables.subscriptions).where(c.id == row["id"], c.owner_id == row["owner_id"], c.deleted_at.is_(None))
    if kind == "restored":
        q = q.where(c.ended_at.is_not(None))
        values.update(ended_at=None, ended_reason=None, paused=False, paused_reason=None, consecutive_dead=0)
    else:
        q = q.where(c.ended_at.is_(None))
    res = await s.execute(q.values(**values))
    if int(getattr(res, "rowcount", 0) or 0) != 1:
        return False
    text = handover_text(kind, from_name=h.from_name or h.from_id, to_name=h.to_name or h.to_id, by_name=h.by_name,
                         org_version=h.org_version, at=now)
    event_id = f"subscription-{kind}:{row['id']}:{int(now.timestamp() * 1000)}"
    did = delivery_id(row["id"], event_id)
    await s.execute(insert(tables.deliveries).values(
        id=did, subscription_id=row["id"], event_id=event_id, event_type=HANDOVER_TYPES[kind], event_time=now,
        channel=channel.get("type", "webhook"), channel_target=f"{values['channel_target']}#{kind}:{did}",
        target=ledger_target(channel), payload=b"", status=kind, attempts=0, next_attempt_at=0.0,
        last_error=f"{text['sv']} / {text['en']}", created_at=now, finished_at=now))
    await s.execute(insert(tables.handovers).values(
        delivery_id=did, subscription_id=row["id"], kind=kind, from_person_id=h.from_id, from_name=h.from_name,
        to_person_id=h.to_id, to_name=h.to_name, by_person_id=h.by_id, by_name=h.by_name,
        org_version=h.org_version, at=now))
    if readdress and kind == "handed_over":
        await _pending_follow(s, tables, row, old_to=old_to, to=str(h.to_email), successor=successor,
                              municipality_id=row["municipality_id"])
    return True


async def _pending_follow(s: AsyncSession, tables: Tables, row: dict[str, Any], *, old_to: str, to: str,
                          successor: Audience, municipality_id: str) -> None:
    """The subscription's e-mails to ``old_to`` not sent yet, re-addressed to ``to`` (or cancelled)."""
    c = tables.deliveries.c
    new_target = channel_target({"type": "email", "to": to})
    pending = [dict(r) for r in (await s.execute(select(c.id, c.event_id, c.event_type, c.target, c.payload).where(
        c.subscription_id == row["id"], c.channel == "email", c.status.in_(("pending", "delivering"))))).mappings()]
    taken = set((await s.scalars(select(c.event_id).where(
        c.channel_target == new_target, c.event_id.in_([p["event_id"] for p in pending])))).all()) if pending else set()
    refused: list[str] = []
    for p in pending:
        target = dict(p["target"] or {})
        if [str(t).strip().lower() for t in target.get("to", [])] != [old_to]:
            continue
        sealed = p["event_type"] == NOTIFICATION_TYPE  # opened and rendered for the owner when it is sent
        if p["event_id"] in taken or not (sealed or sees_as_much(successor, target.get("seen_as"), municipality_id)):
            refused.append(p["id"])
            continue
        values: dict[str, Any] = {"target": {**target, "to": [to]}, "channel_target": new_target}
        if not sealed:
            values["payload"] = readdressed(p["payload"], to)
        await s.execute(update(tables.deliveries).where(c.id == p["id"]).values(**values))
    if refused:
        await cancel_pending(s, tables, subscription_id=row["id"], delivery_ids=refused,
                             reason="cancelled: handed over to a successor who may not read it as it was written, "
                                    "or who receives it already / avbrutet: överlämnat till en efterträdare som inte "
                                    "får läsa det som det skrevs, eller som redan får det")


async def cancel_pending(s: AsyncSession, tables: Tables, *, subscription_id: str, reason: str,
                         delivery_ids: list[str] | None = None) -> int:
    """Cancel a subscription's deliveries that have not gone out yet, each with a ledger row."""
    c = tables.deliveries.c
    q = select(c.id, c.attempts, c.event_id, c.event_type, c.channel).where(
        c.subscription_id == subscription_id, c.status.in_(("pending", "delivering")))
    if delivery_ids is not None:
        q = q.where(c.id.in_(delivery_ids))
    rows = (await s.execute(q)).all()
    now = utcnow()
    for did, attempts, event_id, event_type, channel in rows:
        wipe = {"payload": b""} if event_type == NOTIFICATION_TYPE else {}  # no sealed personal data kept
        await s.execute(update(tables.deliveries).where(c.id == did).values(
            status="cancelled", claimed_until=None, claimed_by=None, last_error=reason, finished_at=now, **wipe))
        await s.execute(tables.attempts.insert().values(
            delivery_id=did, subscription_id=subscription_id, event_id=event_id, event_type=event_type,
            channel=channel, attempt=int(attempts) + 1, at=now, status="cancelled", error=reason))
    return len(rows)


def withheld_delivery(row: dict[str, Any], *, event_id: str, event_type: str, event_time: datetime,
                      kind: str) -> dict[str, Any]:
    """The ledger row saying that an event was not sent to a subscription whose owner may not receive it now
    (nothing is sent; the row makes it visible to the owner and admins)."""
    now = utcnow()
    return {
        "id": delivery_id(row["id"], event_id), "subscription_id": row["id"], "event_id": event_id,
        "event_type": event_type, "event_time": event_time, "channel": row["channel"].get("type", "webhook"),
        "channel_target": f"{row['channel_target']}#withheld:{row['id']}", "target": ledger_target(row["channel"]),
        "payload": b"",
        "status": "withheld", "attempts": 0, "next_attempt_at": 0.0, "created_at": now, "finished_at": now,
        "last_error": f"not sent: the owner may not receive {kind} (roles, areas or membership) / "
                      f"inte skickat: ägaren får inte ta emot {kind} (roller, områden eller medlemskap)",
    }


# --- fan-out -------------------------------------------------------------------------------

def event_scope(event: CloudEvent[Any]) -> Scope | None:
    """Municipality, area and severity of a deliverable event; None for other types."""
    kind = event_kind(event.type)
    if kind is None:
        return None
    data = event.data
    if kind == "picture.published":
        return Scope(kind, data.picture.municipality_id, data.picture.area_id)
    if kind.startswith("alert."):
        return Scope(kind, data.municipality_id, data.area_id, data.severity)
    return Scope(kind, data.municipality_id, None)  # analyses; notifications go to the whole municipality


def period_close(event: CloudEvent[Any], snapshot: Any) -> float | None:
    """The period's deadline (epoch seconds) of a first published picture; None for anything else or unknown."""
    if event_kind(event.type) != "picture.published" or event.data.picture.version != 1 or snapshot is None:
        return None
    pic = event.data.picture
    mun = snapshot.municipalities.get(pic.municipality_id)
    if mun is None:
        return None
    try:
        return period_deadline(mun, Period.parse(pic.period)).timestamp()
    except (PeriodError, ValueError):
        return None


def view_of(row: dict[str, Any]) -> SubscriptionView:
    return SubscriptionView(
        id=row["id"], municipality_id=row["municipality_id"], area_ids=tuple(row["area_ids"] or ()),
        events=tuple(row["events"]), channel_target=row["channel_target"], paused=bool(row["paused"]),
        min_severity=row["min_severity"], created_at=float(row["created_seq"]), extra={"row": row},
    )


def digest_window(event: CloudEvent[Any]) -> str:
    """The period a digest entry closes with: the event's own period."""
    data = event.data
    period = data.picture.period if hasattr(data, "picture") else getattr(data, "period", "")
    return f"{data.picture.municipality_id if hasattr(data, 'picture') else data.municipality_id}:{period}"


def personalise(event_json: dict[str, Any], kind: str, who: Audience) -> dict[str, Any] | None:
    """The event as this recipient may see it, or None when it is the same as the original."""
    data = event_json.get("data")
    if not isinstance(data, dict):
        return None
    seen = render_for(kind, data, who)
    return None if seen == data else {**event_json, "data": seen}


def dump_event(doc: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a (personalised) CloudEvent."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def freeze_webhook(event_bytes: bytes, *, row: dict[str, Any], did: str) -> tuple[dict[str, Any], bytes]:
    """Target and exact bytes of a webhook delivery (the signature is part of what is frozen)."""
    channel = row["channel"]
    headers = {"Content-Type": "application/cloudevents+json", "X-EST-Signature": sign(channel["secret"], event_bytes),
               "X-EST-Delivery": did, "Idempotency-Key": did}
    return {"url": channel["url"], "headers": headers}, event_bytes


def freeze_email(event_type: str, event_id: str, data: dict[str, Any], *, row: dict[str, Any], did: str,
                 sender: str, now: datetime, names: Names = NO_NAMES) -> tuple[dict[str, Any], bytes]:
    """Target and exact bytes of an e-mail delivery (``data`` as its owner may see it, ``render_for``), with the
    organisation's names for the ids in it."""
    to = row["channel"]["to"]
    rendered = render_event(event_type, data, row["language"], names)
    body = build_email(rendered, sender=sender, to=to, delivery_id=did, event_id=event_id,
                       language=row["language"], date=now)
    return {"from": sender, "to": [to]}, body


async def fan_out(event: CloudEvent[Any], *, sessions: Sessions, tables: Tables, consumer: str, sender: str,
                  snapshot: Any, now: Callable[[], datetime] = utcnow,
                  digest_due: Callable[[str, str], float] | None = None,
                  on_withheld: Callable[[str], None] | None = None) -> list[str]:
    """Create one frozen delivery per matching subscription and channel target; returns their channels.

    Only subscriptions whose owner may receive the event now (``subscriptions.receipt.may_receive``, ``snapshot``)
    take part; a matching one whose owner may not gets a ``withheld`` ledger row instead (and
    ``on_withheld(kind)``). Each delivery holds the event as its subscription's owner may see it
    (``subscriptions.domain.render_for``), rendered once, now: retries send these bytes. A notification with personal
    data is the exception (``est_notifier.deliveries.personal``): it is never held for a digest, and it is stored
    still sealed, to be opened and rendered when it is sent.
    """
    scope = event_scope(event)
    async with transaction(sessions) as s:
        if not await mark_processed(s, tables.processed, consumer=consumer, event_id=event.id):
            return []
        if scope is None:
            return []
        rows = await subscription_db.candidate_subscriptions(s, tables, scope.municipality_id)
        close_at = period_close(event, snapshot)
        event_bytes = encode(event)
        event_json: dict[str, Any] = json.loads(event_bytes)
        created: list[str] = []
        allowed: list[SubscriptionView] = []
        refused: list[SubscriptionView] = []
        for r in rows:
            view = view_of(r)
            if not matches(view, scope):
                continue
            owner = caller_for(snapshot, r["owner_id"])
            if not municipality_wide_match(owner, view.area_ids, scope.area_id):
                continue  # an area of the municipality its owner does not see: not theirs
            (allowed if may_receive(owner, scope.kind, scope.municipality_id, scope.area_id) else refused).append(view)
        chosen = recipients(allowed, scope)
        done_subs, done_targets = await db.already_sent(s, tables, event.id) if rows else (set(), set())
        new_deliveries: list[dict[str, Any]] = []
        withheld: list[dict[str, Any]] = []
        for view in refused:
            kept: dict[str, Any] = view.extra["row"]
            if kept["id"] not in done_subs:
                withheld.append(withheld_delivery(kept, event_id=event.id, event_type=event.type,
                                                  event_time=event.time, kind=scope.kind))
                log.warning("event withheld: the subscription's owner may not receive it", extra={
                    "subscription_id": kept["id"], "event_id": event.id, "kind": scope.kind})
                if on_withheld is not None:
                    on_withheld(scope.kind)
        for view in chosen:
            row: dict[str, Any] = view.extra["row"]
            if row["id"] in done_subs or row["channel_target"] in done_targets:
                continue
            if scope.kind in PERSONAL_KINDS:
                channel = row["channel"]
                new_deliveries.append({
                    "id": delivery_id(row["id"], event.id), "subscription_id": row["id"], "event_id": event.id,
                    "event_type": event.type, "event_time": event.time, "channel": channel["type"],
                    "channel_target": row["channel_target"],
                    "target": {"url": channel["url"]} if channel["type"] == "webhook" else {"to": [channel["to"]]},
                    "payload": event_bytes, "next_attempt_at": now().timestamp(), "status": "pending",
                    "attempts": 0, "created_at": utcnow(), "period_close_at": close_at})
                created.append(channel["type"])
                continue
            who = audience_for(snapshot, row["owner_id"])
            seen = personalise(event_json, scope.kind, who)
            doc = seen or event_json
            if row["digest"] == "period" and digest_due is not None:
                window = digest_window(event)
                await s.execute(tables.digest_items.insert().values(
                    subscription_id=row["id"], event_id=event.id, channel_target=row["channel_target"],
                    digest_window=window, due_at=digest_due(scope.municipality_id, window.split(":", 1)[1]),
                    event_type=event.type, event_time=event.time, data=doc, sent=False))
                continue
            did = delivery_id(row["id"], event.id)
            if row["channel"]["type"] == "webhook":
                target, payload = freeze_webhook(dump_event(seen) if seen else event_bytes, row=row, did=did)
            else:
                target, payload = freeze_email(event.type, event.id, doc["data"], row=row, did=did, sender=sender,
                                               now=now(), names=names_of(snapshot))
                mun = snapshot.municipalities.get(scope.municipality_id) if snapshot is not None else None
                target["seen_as"] = seen_as(who, scope.municipality_id, mun.area_ids if mun is not None else ())
            new_deliveries.append({
                "id": did, "subscription_id": row["id"], "event_id": event.id, "event_type": event.type,
                "event_time": event.time, "channel": row["channel"]["type"], "channel_target": row["channel_target"],
                "target": target, "payload": payload, "next_attempt_at": now().timestamp(), "status": "pending",
                "attempts": 0, "created_at": utcnow(), "period_close_at": close_at,
            })
            created.append(row["channel"]["type"])
        for batch in (new_deliveries, withheld):  # one statement per shape of row
            if batch:
                await s.execute(insert(tables.deliveries), batch)
    return created


# --- digests -------------------------------------------------------------------------------

def receivable_digest_items(items: list[dict[str, Any]], snapshot: Any,
                            owner_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The digest entries the owner may receive now, rendered as they may see them, and the kinds withheld."""
    owner, who = caller_for(snapshot, owner_id), audience_for(snapshot, owner_id)
    kept, withheld = [], []
    for item in items:
        kind = event_kind(item["event_type"]) or item["event_type"]
        doc = item["data"]
        data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
        if may_receive(owner, kind, *message_scope(kind, data)):
            kept.append({**item, "data": {**doc, "data": render_for(kind, data, who)}})
        else:
            withheld.append(kind)
    return kept, sorted(set(withheld))


async def flush_digests(now: float, *, sessions: Sessions, tables: Tables, sender_address: str, max_items: int,
                        snapshot: Any, metrics: NotifierMetrics | None = None) -> int:
    """Turn every digest window that has closed into one delivery per subscription; returns how many.

    Each entry is checked again against what the owner may receive now (``snapshot``): entries of kinds
    they lost are left out, with a ``withheld`` ledger row naming them."""
    d = tables.digest_items.c
    async with sessions() as s:
        groups = (await s.execute(select(d.subscription_id, d.digest_window).where(
            d.sent.is_(False), d.due_at <= now).distinct())).all()
    made = 0
    for sub_id, window in groups:
        try:
            async with transaction(sessions) as s:
                sub = await subscription_db.get_subscription(s, tables, sub_id, include_deleted=True)
                items = [dict(r) for r in (await s.execute(select(tables.digest_items).where(
                    d.subscription_id == sub_id, d.digest_window == window, d.sent.is_(False))
                    .order_by(d.event_time, d.id))).mappings()]
                if not items:
                    continue
                await s.execute(update(tables.digest_items).where(d.id.in_([i["id"] for i in items]))
                                .values(sent=True))
                if sub is None or sub["deleted_at"] is not None or sub.get("ended_at") is not None:
                    continue
                event_id = f"digest:{window}:{items[0]['id']}"  # late stragglers of a closed window get their own
                items, refused = receivable_digest_items(items, snapshot, sub["owner_id"])
                if refused:
                    await s.execute(insert(tables.deliveries).values(**withheld_delivery(
                        sub, event_id=event_id, event_type="se.est.notification.digest", event_time=utcnow(),
                        kind=", ".join(refused))))
                    if metrics is not None:
                        for kind in refused:
                            metrics.withheld.labels(kind).inc()
                if not items:
                    continue
                event_id += ":part" if refused else ""
                did = delivery_id(sub_id, event_id)
                shown, more = items[:max_items], max(0, len(items) - max_items)
                if sub["channel"]["type"] == "webhook":
                    body = json.dumps({
                        "specversion": "1.0", "id": event_id + f":{sub_id}", "source": "/est/notifier",
                        "type": "se.est.notification.digest", "time": utcnow().isoformat(),
                        "subject": window, "datacontenttype": "application/json",
                        "data": {"window": window, "events": [i["data"] for i in shown], "more": more},
                    }, ensure_ascii=False, separators=(",", ":")).encode()
                    target = {"url": sub["channel"]["url"], "headers": {
                        "Content-Type": "application/cloudevents+json",
                        "X-EST-Signature": sign(sub["channel"]["secret"], body),
                        "X-EST-Delivery": did, "Idempotency-Key": did}}
                else:
                    names = names_of(snapshot)
                    entries: list[Rendered] = [render_event(i["event_type"], i["data"].get("data", {}),
                                                            sub["language"], names) for i in shown]
                    rendered = render_digest(window, entries, more, sub["language"], names)
                    body = build_email(rendered, sender=sender_address, to=sub["channel"]["to"], delivery_id=did,
                                       event_id=event_id, language=sub["language"], date=utcnow())
                    target = {"from": sender_address, "to": [sub["channel"]["to"]]}
                await db.insert_delivery(s, tables, {
                    "id": did, "subscription_id": sub_id, "event_id": event_id,
                    "event_type": "se.est.notification.digest", "event_time": aware(shown[0]["event_time"]),
                    "channel": sub["channel"]["type"], "channel_target": f"{sub['channel_target']}#{sub_id}",
                    "target": target, "payload": body, "next_attempt_at": min(now, time.time()),
                })
                made += 1
                if metrics is not None:
                    metrics.created.labels(sub["channel"]["type"]).inc()
        except IntegrityError:  # another replica made this digest first
            continue
    return made


# --- queries -------------------------------------------------------------------------------

async def ledger(*, sessions: Sessions, tables: Tables, caller: Caller, subscription_id: str | None,
                 event_id: str | None, limit: int = 200,
                 reminded: tuple[str | None, str | None] | None = None) -> list[dict[str, Any]]:
    """Deliveries with their attempts, for the owner of the subscription or an admin; a reminder names whom
    it reminded of which period (``reminded``: only reminders to that person and/or of that period)."""
    async with sessions() as s:
        if subscription_id:
            row = await subscription_db.get_subscription(s, tables, subscription_id, include_deleted=True)
            if row is None:
                raise NotFound(f"Ingen prenumeration {subscription_id}.", f"No subscription {subscription_id}.")
            if not caller.admin and row["owner_id"] != caller.person_id:
                raise Forbidden("Prenumerationen tillhör någon annan.",
                                "This subscription belongs to someone else.")
            ids: list[str] | None = [subscription_id]
        elif caller.admin:
            ids = None
        else:
            ids = [r["id"] for r in await subscription_db.list_subscriptions(s, tables, owner_id=caller.person_id)]
        rows = await db.list_deliveries(s, tables, subscription_ids=ids, event_id=event_id, limit=limit,
                                        reminded=reminded)
        reminders = await db.by_delivery(s, tables.reminders, [r["id"] for r in rows
                                                               if r["subscription_id"] == REMINDERS_SUBSCRIPTION])
        handovers = await db.by_delivery(s, tables.handovers, [r["id"] for r in rows if r["status"] in HANDOVER_TYPES])
    out = []
    for r in rows:
        target = r["target"]
        rem = reminders.get(r["id"])
        ho = handovers.get(r["id"])
        out.append({
            "delivery_id": r["id"], "subscription_id": r["subscription_id"], "event_id": r["event_id"],
            "event_type": r["event_type"], "channel": r["channel"],
            "target": target.get("url") if r["channel"] == "webhook" else ", ".join(target.get("to", [])),
            "status": r["status"], "attempts": r["attempts"], "last_status_code": r["last_status_code"],
            "last_error": r["last_error"], "created_at": aware(r["created_at"]),
            "finished_at": aware(r["finished_at"]),
            "reminder": None if rem is None else {
                "person_id": rem["person_id"], "person_name": rem["person_name"], "period": rem["period"],
                "kind": rem["kind"], "areas": list(rem["areas"])},
            "handover": None if ho is None else handover_view(ho),
            "attempt_log": [{
                "attempt": a["attempt"], "at": aware(a["at"]), "status": a["status"],
                "response_code": a["response_code"], "error": a["error"], "duration_ms": a["duration_ms"],
                "delivery_id": a["delivery_id"], "subscription_id": a["subscription_id"],
                "event_id": a["event_id"], "event_type": a["event_type"], "channel": a["channel"],
            } for a in r["attempt_log"]],
        })
    return out


def handover_view(ho: dict[str, Any]) -> dict[str, Any]:
    """A hand-over (or a restored subscription) as the ledger shows it: names first, ids beside them."""
    at = aware(ho["at"])
    return {"kind": ho["kind"], "from_person_id": ho["from_person_id"],
            "from_name": ho["from_name"] or ho["from_person_id"], "to_person_id": ho["to_person_id"],
            "to_name": ho["to_name"] or ho["to_person_id"], "by_person_id": ho["by_person_id"],
            "by_name": ho["by_name"], "org_version": ho["org_version"], "at": at,
            "text": handover_text(ho["kind"], from_name=ho["from_name"] or ho["from_person_id"],
                                  to_name=ho["to_name"] or ho["to_person_id"], by_name=ho["by_name"],
                                  org_version=ho["org_version"], at=at)}


async def personal_data_log(*, sessions: Sessions, tables: Tables, caller: Caller, protocol_id: str | None,
                            subscription_id: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """Who personal data of which protocol was opened for and delivered to (admins only)."""
    if not caller.admin:
        raise Forbidden("Bara en administratör får läsa loggen över personuppgifter.",
                        "Only an admin may read the personal-data log.")
    async with sessions() as s:
        return await db.personal_reads(s, tables, protocol_id=protocol_id, subscription_id=subscription_id,
                                       limit=limit)
