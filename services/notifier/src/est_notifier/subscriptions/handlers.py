"""Use cases of the notifier as plain async functions: subscriptions, fan-out, ledger queries."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from est_shared.bus import encode
from est_shared.db import mark_processed, transaction
from est_shared.events import CloudEvent
from est_shared.org import period_deadline
from est_shared.periods import DEFAULT_TIMEZONE, Period, PeriodError, current_period
from pydantic import ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_notifier.adapters.webhook import NO_ALLOW, AllowList
from est_notifier.deliveries import db
from est_notifier.deliveries.db import Tables
from est_notifier.messages.render import (
    Rendered,
    build_email,
    render_credential_changed,
    render_event,
    render_paused_notice,
    render_reminder,
)
from est_notifier.subscriptions.domain import (
    DELIVERY_NAMESPACE,
    END_REASONS,
    NOTIFICATION_TYPE,
    PERSONAL_KINDS,
    RESTRICTED,
    Audience,
    Caller,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ReminderTimes,
    Scope,
    SubscriptionView,
    audience,
    channel_target,
    check_webhook_role,
    delivery_id,
    end_reason,
    event_kind,
    matches,
    recipients,
    reminder_event_id,
    reminder_kind,
    render_for,
    resolve_scope,
    sign,
    valid_webhook_url,
)
from est_notifier.subscriptions.receipt import (
    check_personal_channel,
    check_receipt,
    may_receive,
    message_scope,
    refused_kinds,
)
from est_notifier.subscriptions.schemas import DeclaredSubscription

log = logging.getLogger("est.notifier")

Sessions = async_sessionmaker[AsyncSession]


# --- subscriptions -------------------------------------------------------------------------

def public_view(row: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the API shows it: the webhook secret never leaves."""
    channel = dict(row["channel"])
    if channel.get("type") == "webhook":
        channel["secret_set"] = bool(channel.pop("secret", None))
    return {
        "id": row["id"], "name": row["name"], "owner_id": row["owner_id"],
        "scope": {"municipality_id": row["municipality_id"], "area_ids": list(row["area_ids"])},
        "events": list(row["events"]), "channel": channel, "digest": row["digest"],
        "language": row["language"], "min_severity": row["min_severity"], "paused": bool(row["paused"]),
        "paused_reason": row["paused_reason"], "source": row["source"],
        "status": "ended" if row.get("ended_at") else "paused" if row["paused"] else "active",
        "ended_at": db.aware(row.get("ended_at")),
        "ended_reason": END_REASONS[row["ended_reason"]][0] if row.get("ended_reason") in END_REASONS else None,
        "created_at": db.aware(row["created_at"]), "updated_at": db.aware(row["updated_at"]),
    }


CheckTarget = Callable[[str], Awaitable[None]]
"""Checks a webhook URL against the egress policy (``est_notifier.egress``); raises Invalid if refused."""


def _check_channel(channel: dict[str, Any], owner: Caller | None) -> dict[str, Any]:
    """The owner may use the channel, and a webhook's URL has a form the notifier sends to."""
    check_webhook_role(owner, str(channel.get("type", "")))
    if channel.get("type") == "webhook" and not valid_webhook_url(str(channel.get("url", ""))):
        raise Invalid("The webhook URL must be http(s) with a host.",
                      "Webhookens URL måste vara http(s) med en värd.", field="channel.url")
    return channel


async def _check_target(channel: dict[str, Any] | None, check_target: CheckTarget | None) -> None:
    """A webhook's target against the egress policy (it may resolve a name: never inside a transaction)."""
    if channel is not None and channel.get("type") == "webhook" and check_target is not None:
        await check_target(str(channel.get("url", "")))


def _municipality_areas(snapshot: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {m: list(mun.area_ids) for m, mun in snapshot.municipalities.items()}
    for a in snapshot.areas.values():
        if a.id not in out.setdefault(a.municipality_id, []):
            out[a.municipality_id].append(a.id)
    return out


async def create_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, snapshot: Any,
                              spec: dict[str, Any], source: str = "api", declared_key: str | None = None,
                              check_target: CheckTarget | None = None, webhook_allow: AllowList = NO_ALLOW
                              ) -> dict[str, Any]:
    """Store a new subscription after checking its scope against the caller's areas, its kinds against what
    the caller may receive (``receipt``), its channel against the caller's roles, a webhook's target against
    the egress policy (``check_target``) and that personal data would travel only over https."""
    scope = spec["scope"]
    areas = resolve_scope(caller, scope["municipality_id"], scope.get("area_ids"),
                          municipality_areas=_municipality_areas(snapshot))
    check_receipt(caller, scope["municipality_id"], areas, spec["events"])
    channel = _check_channel(dict(spec["channel"]), caller)
    check_personal_channel(channel, spec["events"], webhook_allow)
    await _check_target(channel, check_target)
    sub_id = str(uuid.uuid4())
    row = {
        "id": sub_id, "owner_id": caller.person_id, "name": spec["name"],
        "municipality_id": scope["municipality_id"], "area_ids": areas,
        "events": sorted(set(spec["events"])), "channel": channel, "channel_target": channel_target(channel),
        "digest": spec.get("digest", "immediate"), "language": spec.get("language", "sv"),
        "min_severity": spec.get("min_severity"), "source": source, "declared_key": declared_key,
    }
    async with transaction(sessions) as s:
        await db.insert_subscription(s, tables, row)
        stored = await db.get_subscription(s, tables, sub_id)
    assert stored is not None
    return public_view(stored)


async def _owned(s: AsyncSession, tables: Tables, caller: Caller, sub_id: str) -> dict[str, Any]:
    row = await db.get_subscription(s, tables, sub_id)
    if row is None:
        raise NotFound(f"No subscription {sub_id}.", f"Ingen prenumeration {sub_id}.")
    if not caller.admin and row["owner_id"] != caller.person_id:
        raise Forbidden("This subscription belongs to someone else.", "Prenumerationen tillhör någon annan.")
    return row


async def get_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, sub_id: str) -> dict[str, Any]:
    """One subscription of the caller (admins: any)."""
    async with sessions() as s:
        return public_view(await _owned(s, tables, caller, sub_id))


async def list_subscriptions(*, sessions: Sessions, tables: Tables, caller: Caller) -> list[dict[str, Any]]:
    """The caller's subscriptions (admins: all)."""
    async with sessions() as s:
        rows = await db.list_subscriptions(s, tables, owner_id=None if caller.admin else caller.person_id)
    return [public_view(r) for r in rows]


async def update_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, snapshot: Any, sub_id: str,
                              changes: dict[str, Any], check_target: CheckTarget | None = None,
                              webhook_allow: AllowList = NO_ALLOW) -> dict[str, Any]:
    """Change fields of a subscription; ``paused`` pauses or resumes it. A new channel, and a webhook
    resumed, are checked again (the owner's roles, the egress policy)."""
    if "channel" in changes or changes.get("paused") is False:
        async with sessions() as s:
            current = await _owned(s, tables, caller, sub_id)
        await _check_target(changes["channel"] if "channel" in changes else current["channel"], check_target)
    async with transaction(sessions) as s:
        row = await _owned(s, tables, caller, sub_id)
        if row.get("ended_at"):
            raise Conflict("This subscription has ended; create a new one.",
                           "Prenumerationen är avslutad; skapa en ny.")
        values: dict[str, Any] = {}
        for key in ("name", "digest", "language", "min_severity"):
            if key in changes:
                values[key] = changes[key]
        if "events" in changes:
            values["events"] = sorted(set(changes["events"]))
        if "scope" in changes:
            scope = changes["scope"]
            values["municipality_id"] = scope["municipality_id"]
            values["area_ids"] = resolve_scope(caller, scope["municipality_id"], scope.get("area_ids"),
                                               municipality_areas=_municipality_areas(snapshot))
        if "channel" in changes:
            channel = _check_channel(dict(changes["channel"]), caller_for(snapshot, row["owner_id"]))
            if channel.get("type") == "webhook" and not channel.get("secret"):
                old = row["channel"]
                if old.get("type") != "webhook" or not old.get("secret"):
                    raise Invalid("A webhook needs a secret.", "En webhook behöver en hemlighet.",
                                  field="channel.secret")
                channel["secret"] = old["secret"]
            values["channel"] = channel
            values["channel_target"] = channel_target(channel)
        if "paused" in changes:
            if not changes["paused"] and "channel" not in changes:  # e.g. paused because its target was refused
                _check_channel(dict(row["channel"]), caller_for(snapshot, row["owner_id"]))
            values["paused"] = bool(changes["paused"])
            values["paused_reason"] = "paused by owner" if changes["paused"] else None
            if not changes["paused"]:
                values["consecutive_dead"] = 0
        if {"events", "scope"} & set(values) or values.get("paused") is False:
            # what the owner (not an admin editing it) may receive decides, as at fan-out time
            check_receipt(caller_for(snapshot, row["owner_id"]), values.get("municipality_id", row["municipality_id"]),
                          values.get("area_ids", row["area_ids"]) or [], values.get("events", row["events"]))
        check_personal_channel(values.get("channel", row["channel"]), values.get("events", row["events"]),
                               webhook_allow)
        if values:
            await db.update_subscription(s, tables, sub_id, values)
        stored = await db.get_subscription(s, tables, sub_id)
    assert stored is not None
    return public_view(stored)


async def delete_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, sub_id: str) -> None:
    """Remove a subscription (soft: its ledger stays queryable by admins)."""
    async with transaction(sessions) as s:
        await _owned(s, tables, caller, sub_id)
        await db.update_subscription(s, tables, sub_id, {"deleted_at": db.utcnow(), "paused": True,
                                                         "declared_key": None})


def caller_for(snapshot: Any, person_id: str) -> Caller | None:
    """The organisation's current view of a person as a Caller (None if they are not in it)."""
    person = snapshot.people.get(person_id) if snapshot is not None else None
    if person is None:
        return None
    return Caller(person_id=person.id, roles=tuple(person.roles), areas=tuple(person.areas),
                  municipalities=tuple(person.municipalities))


def audience_for(snapshot: Any, person_id: str) -> Audience:
    """What the owner of a subscription may see now; the most restricted view if unknown."""
    person = snapshot.people.get(person_id) if snapshot is not None else None
    if person is None:
        return RESTRICTED
    actor = snapshot.actors.get(person.actor)
    return audience(roles=person.roles, areas=person.areas, actor_kind=actor.kind if actor else None)


def ledger_target(channel: dict[str, Any]) -> dict[str, Any]:
    """Where a ledger row that sends nothing says it would have gone: the URL or the address."""
    return {"url": channel.get("url")} if channel.get("type") == "webhook" else {"to": [channel.get("to", "")]}


async def end_subscription(s: AsyncSession, tables: Tables, row: dict[str, Any], reason: str) -> bool:
    """End one subscription visibly (in the caller's transaction): status ended, a ledger row, and its
    pending deliveries and digest entries cancelled with a ledger row each. False if already ended."""
    c = tables.subscriptions.c
    now = db.utcnow()
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


async def cancel_pending(s: AsyncSession, tables: Tables, *, subscription_id: str, reason: str,
                         delivery_ids: list[str] | None = None) -> int:
    """Cancel a subscription's deliveries that have not gone out yet, each with a ledger row."""
    c = tables.deliveries.c
    q = select(c.id, c.attempts, c.event_id, c.event_type, c.channel).where(
        c.subscription_id == subscription_id, c.status.in_(("pending", "delivering")))
    if delivery_ids is not None:
        q = q.where(c.id.in_(delivery_ids))
    rows = (await s.execute(q)).all()
    now = db.utcnow()
    for did, attempts, event_id, event_type, channel in rows:
        wipe = {"payload": b""} if event_type == NOTIFICATION_TYPE else {}  # no sealed personal data kept
        await s.execute(update(tables.deliveries).where(c.id == did).values(
            status="cancelled", claimed_until=None, claimed_by=None, last_error=reason, finished_at=now, **wipe))
        await s.execute(tables.attempts.insert().values(
            delivery_id=did, subscription_id=subscription_id, event_id=event_id, event_type=event_type,
            channel=channel, attempt=int(attempts) + 1, at=now, status="cancelled", error=reason))
    return len(rows)


async def end_unauthorised_subscriptions(*, sessions: Sessions, tables: Tables, snapshot: Any) -> dict[str, int]:
    """End every live subscription whose owner left the organisation, may no longer see its scope or no
    longer receives one of its kinds."""
    known = _municipality_areas(snapshot)
    c = tables.subscriptions.c
    async with sessions() as s:
        rows = [dict(r) for r in (await s.execute(select(tables.subscriptions).where(
            c.deleted_at.is_(None), c.ended_at.is_(None)))).mappings()]
    counts: dict[str, int] = {}
    for row in rows:
        reason = end_reason(caller_for(snapshot, row["owner_id"]), row["municipality_id"], row["area_ids"] or [],
                            municipality_areas=known, events=row["events"] or [],
                            channel_type=(row["channel"] or {}).get("type", ""))
        if reason is None and refused_kinds(caller_for(snapshot, row["owner_id"]), row["municipality_id"],
                                            row["area_ids"] or [], row["events"] or []):
            reason = "role_lost"  # the owner's roles no longer receive one of its kinds (receipt.RECEIPT)
        if reason is None:
            continue
        try:
            async with transaction(sessions) as s:
                if await end_subscription(s, tables, row, reason):
                    counts[reason] = counts.get(reason, 0) + 1
                    log.warning("subscription ended", extra={"subscription_id": row["id"], "reason": reason})
        except IntegrityError:  # another replica ended it in the same instant
            continue
    return counts


def declared_id(declaration_id: str) -> str:
    """The subscription id of a declaration: the same on every replica and every apply."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"declared:{declaration_id}"))


async def upsert_declared_subscriptions(*, sessions: Sessions, tables: Tables, snapshot: Any,
                                        declared: Iterable[dict[str, Any]], env: Mapping[str, str] | None = None,
                                        on_invalid: Callable[[str], None] | None = None,
                                        check_target: CheckTarget | None = None,
                                        webhook_allow: AllowList = NO_ALLOW) -> dict[str, int]:
    """Make the subscriptions declared in the organisation exist exactly as declared (idempotent).

    Each item is a ``DeclaredSubscription`` (id, owner, name, scope, events, channel, digest, language,
    min_severity). Invalid items (bad fields, unknown owner, a scope the owner may not see, a missing
    secret, a webhook of an owner who may not use webhooks or to a target the egress policy refuses) are
    skipped with a log line and ``on_invalid(reason)`` (an existing one stays as it was, and ends if its
    owner may no longer hold it; one whose target is refused is refused when sending); declared
    subscriptions no longer listed are deleted. A declared subscription that had ended comes back when its
    owner may hold it again.
    """
    env = env if env is not None else {}
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0, "invalid": 0}
    known = _municipality_areas(snapshot)

    def invalid(reason: str, item_id: str, detail: str) -> None:
        counts["invalid"] += 1
        log.warning("declared subscription skipped", extra={"declaration": item_id, "reason": reason,
                                                            "detail": detail[:300]})
        if on_invalid is not None:
            on_invalid(reason)

    wanted: dict[str, dict[str, Any]] = {}
    listed: set[str] = set()  # still in the file, valid or not: an invalid entry does not delete its subscription
    for raw in declared:
        item_id = str(raw.get("id", "?")) if isinstance(raw, dict) else "?"
        listed.add(f"org:{item_id}")
        try:
            item = DeclaredSubscription.model_validate(raw)
        except ValidationError as exc:
            invalid("schema", item_id, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                  for e in exc.errors()))
            continue
        key = f"org:{item.id}"
        if key in wanted:
            invalid("duplicate_id", item.id, "id used twice")
            continue
        caller = caller_for(snapshot, item.owner)
        if caller is None:
            invalid("unknown_owner", item.id, f"no person {item.owner}")
            continue
        try:
            areas = resolve_scope(caller, item.scope.municipality_id, item.scope.area_ids, municipality_areas=known)
        except (Invalid, Forbidden) as exc:
            invalid("scope", item.id, exc.en)
            continue
        refused = refused_kinds(caller, item.scope.municipality_id, areas, item.events)
        if refused:
            invalid("personal_data" if set(refused) & set(PERSONAL_KINDS) else "role", item.id,
                    f"the owner's roles do not receive {', '.join(refused)}")
            continue
        channel = item.channel.model_dump(exclude_none=True)
        try:
            _check_channel(channel, caller)
            await _check_target(channel, check_target)
        except Forbidden as exc:
            invalid("webhook_role", item.id, exc.en)
            continue
        except Invalid as exc:
            invalid("webhook_target", item.id, exc.en)
            continue
        if channel["type"] == "webhook":
            secret_env = channel.pop("secret_env", None)
            if secret_env:
                channel["secret"] = env.get(secret_env, "")
            if not channel.get("secret"):
                invalid("secret", item.id, "webhook without secret (or its secret_env is unset)")
                continue
        try:
            check_personal_channel(channel, item.events, webhook_allow)
        except Invalid as exc:
            invalid("personal_data_http", item.id, exc.en)
            continue
        wanted[key] = {
            "owner_id": caller.person_id, "name": item.name, "municipality_id": item.scope.municipality_id,
            "area_ids": areas, "events": sorted(set(item.events)), "channel": channel,
            "channel_target": channel_target(channel), "digest": item.digest, "language": item.language,
            "min_severity": item.min_severity, "id": declared_id(item.id),
        }
    async with sessions() as s:
        existing = {r["declared_key"]: r for r in (await s.execute(select(tables.subscriptions).where(
            tables.subscriptions.c.source == "org", tables.subscriptions.c.declared_key.is_not(None),
            tables.subscriptions.c.deleted_at.is_(None)))).mappings()}
    for key, values in wanted.items():
        old = existing.get(key)
        sub_id = values.pop("id")
        try:
            async with transaction(sessions) as s:
                if old is None:
                    stale = await db.get_subscription(s, tables, sub_id, include_deleted=True)
                    if stale is None:
                        await db.insert_subscription(s, tables, {"id": sub_id, "source": "org", "declared_key": key,
                                                                 **values})
                    else:  # declared again after being removed from the file
                        await db.update_subscription(s, tables, sub_id, {
                            **values, "declared_key": key, "deleted_at": None, "ended_at": None,
                            "ended_reason": None, "paused": False, "paused_reason": None, "consecutive_dead": 0})
                    counts["created"] += 1
                    continue
                changed = {k: v for k, v in values.items() if old.get(k) != v}
                if old.get("ended_at"):
                    changed.update(ended_at=None, ended_reason=None)
                if changed:
                    await db.update_subscription(s, tables, old["id"], changed)
                    counts["updated"] += 1
                else:
                    counts["unchanged"] += 1
        except IntegrityError:  # another replica applied the same declaration first
            counts["unchanged"] += 1
    for key, row in existing.items():
        if key not in wanted and key not in listed:
            async with transaction(sessions) as s:
                await db.update_subscription(s, tables, row["id"], {"deleted_at": db.utcnow(), "paused": True,
                                                                    "declared_key": None})
            counts["deleted"] += 1
    return counts


async def reconcile_org(*, sessions: Sessions, tables: Tables, snapshot: Any, env: Mapping[str, str] | None = None,
                        on_invalid: Callable[[str], None] | None = None,
                        check_target: CheckTarget | None = None, webhook_allow: AllowList = NO_ALLOW
                        ) -> dict[str, Any]:
    """After an organisation change: apply the declared subscriptions, then end every subscription
    (declared or made through the API) whose owner may no longer hold it."""
    declared = await upsert_declared_subscriptions(sessions=sessions, tables=tables, snapshot=snapshot,
                                                   declared=list(getattr(snapshot, "subscriptions", []) or []),
                                                   env=env, on_invalid=on_invalid, check_target=check_target,
                                                   webhook_allow=webhook_allow)
    ended = await end_unauthorised_subscriptions(sessions=sessions, tables=tables, snapshot=snapshot)
    return {"ended": ended, **declared}


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
                 sender: str, now: datetime) -> tuple[dict[str, Any], bytes]:
    """Target and exact bytes of an e-mail delivery."""
    to = row["channel"]["to"]
    rendered = render_event(event_type, data, row["language"])
    body = build_email(rendered, sender=sender, to=to, delivery_id=did, event_id=event_id,
                       language=row["language"], date=now)
    return {"from": sender, "to": [to]}, body


def withheld_delivery(row: dict[str, Any], *, event_id: str, event_type: str, event_time: datetime,
                      kind: str) -> dict[str, Any]:
    """The ledger row saying that an event was not sent to a subscription whose owner may not receive it now
    (nothing is sent; the row makes it visible to the owner and admins)."""
    now = db.utcnow()
    return {
        "id": delivery_id(row["id"], event_id), "subscription_id": row["id"], "event_id": event_id,
        "event_type": event_type, "event_time": event_time, "channel": row["channel"].get("type", "webhook"),
        "channel_target": f"{row['channel_target']}#withheld:{row['id']}", "target": ledger_target(row["channel"]),
        "payload": b"",
        "status": "withheld", "attempts": 0, "next_attempt_at": 0.0, "created_at": now, "finished_at": now,
        "last_error": f"not sent: the owner may not receive {kind} (roles, areas or membership) / "
                      f"inte skickat: ägaren får inte ta emot {kind} (roller, områden eller medlemskap)",
    }


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


async def fan_out(event: CloudEvent[Any], *, sessions: Sessions, tables: Tables, consumer: str, sender: str,
                  snapshot: Any, now: Callable[[], datetime] = db.utcnow,
                  digest_due: Callable[[str, str], float] | None = None,
                  on_withheld: Callable[[str], None] | None = None) -> list[str]:
    """Create one frozen delivery per matching subscription and channel target; returns their channels.

    Only subscriptions whose owner may receive the event now (``receipt.may_receive`` against ``snapshot``)
    take part; a matching one whose owner may not gets a ``withheld`` ledger row instead (and
    ``on_withheld(kind)``). Each delivery holds the event as its subscription's owner may see it
    (``domain.render_for``), rendered once, now: retries send these bytes. A notification with personal
    data is the exception (``est_notifier.personal``): it is never held for a digest, and it is stored
    still sealed, to be opened and rendered when it is sent.
    """
    scope = event_scope(event)
    async with transaction(sessions) as s:
        if not await mark_processed(s, tables.processed, consumer=consumer, event_id=event.id):
            return []
        if scope is None:
            return []
        rows = await db.candidate_subscriptions(s, tables, scope.municipality_id)
        close_at = period_close(event, snapshot)
        event_bytes = encode(event)
        event_json: dict[str, Any] = json.loads(event_bytes)
        created: list[str] = []
        allowed, refused = [], []
        for r in rows:
            view = view_of(r)
            if not matches(view, scope):
                continue
            owner = caller_for(snapshot, r["owner_id"])
            (allowed if may_receive(owner, scope.kind, scope.municipality_id, scope.area_id) else refused).append(view)
        chosen = recipients(allowed, scope)
        done_subs, done_targets = await db.already_sent(s, tables, event.id) if rows else (set(), set())
        new_deliveries: list[dict[str, Any]] = []
        withheld: list[dict[str, Any]] = []
        for view in refused:
            kept: dict[str, Any] = view.extra["row"]  # type: ignore[assignment]
            if kept["id"] not in done_subs:
                withheld.append(withheld_delivery(kept, event_id=event.id, event_type=event.type,
                                                  event_time=event.time, kind=scope.kind))
                log.warning("event withheld: the subscription's owner may not receive it", extra={
                    "subscription_id": kept["id"], "event_id": event.id, "kind": scope.kind})
                if on_withheld is not None:
                    on_withheld(scope.kind)
        for view in chosen:
            row: dict[str, Any] = view.extra["row"]  # type: ignore[assignment]
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
                    "attempts": 0, "created_at": db.utcnow(), "period_close_at": close_at})
                created.append(channel["type"])
                continue
            seen = personalise(event_json, scope.kind, audience_for(snapshot, row["owner_id"]))
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
                                               now=now())
            new_deliveries.append({
                "id": did, "subscription_id": row["id"], "event_id": event.id, "event_type": event.type,
                "event_time": event.time, "channel": row["channel"]["type"], "channel_target": row["channel_target"],
                "target": target, "payload": payload, "next_attempt_at": now().timestamp(), "status": "pending",
                "attempts": 0, "created_at": db.utcnow(), "period_close_at": close_at,
            })
            created.append(row["channel"]["type"])
        for batch in (new_deliveries, withheld):  # one statement per shape of row
            if batch:
                await s.execute(insert(tables.deliveries), batch)
    return created


# --- ledger ----------------------------------------------------------------------------------

async def ledger(*, sessions: Sessions, tables: Tables, caller: Caller, subscription_id: str | None,
                 event_id: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """Deliveries with their attempts, for the owner of the subscription or an admin."""
    async with sessions() as s:
        if subscription_id:
            row = await db.get_subscription(s, tables, subscription_id, include_deleted=True)
            if row is None:
                raise NotFound(f"No subscription {subscription_id}.", f"Ingen prenumeration {subscription_id}.")
            if not caller.admin and row["owner_id"] != caller.person_id:
                raise Forbidden("This subscription belongs to someone else.",
                                "Prenumerationen tillhör någon annan.")
            ids: list[str] | None = [subscription_id]
        elif caller.admin:
            ids = None
        else:
            ids = [r["id"] for r in await db.list_subscriptions(s, tables, owner_id=caller.person_id)]
        rows = await db.list_deliveries(s, tables, subscription_ids=ids, event_id=event_id, limit=limit)
    out = []
    for r in rows:
        target = r["target"]
        out.append({
            "delivery_id": r["id"], "subscription_id": r["subscription_id"], "event_id": r["event_id"],
            "event_type": r["event_type"], "channel": r["channel"],
            "target": target.get("url") if r["channel"] == "webhook" else ", ".join(target.get("to", [])),
            "status": r["status"], "attempts": r["attempts"], "last_status_code": r["last_status_code"],
            "last_error": r["last_error"], "created_at": db.aware(r["created_at"]),
            "finished_at": db.aware(r["finished_at"]),
            "attempt_log": [{
                "attempt": a["attempt"], "at": db.aware(a["at"]), "status": a["status"],
                "response_code": a["response_code"], "error": a["error"], "duration_ms": a["duration_ms"],
                "delivery_id": a["delivery_id"], "subscription_id": a["subscription_id"],
                "event_id": a["event_id"], "event_type": a["event_type"], "channel": a["channel"],
            } for a in r["attempt_log"]],
        })
    return out


# --- reminders -------------------------------------------------------------------------------

REMINDERS_SUBSCRIPTION = "reminders"  # the ledger's subscription id of reminder deliveries


async def record_missing(event: CloudEvent[Any], *, sessions: Sessions, tables: Tables) -> bool:
    """Keep the newest list of missing reporters per area and period (from picture.updated/published)."""
    pic = getattr(event.data, "picture", None)
    if pic is None:
        return False
    t = tables.reminder_state
    c = t.c
    values = {"municipality_id": pic.municipality_id, "missing": list(pic.completeness.missing_reporters),
              "event_time": event.time, "updated_at": db.utcnow()}
    for _ in range(3):
        try:
            async with transaction(sessions) as s:
                old = await s.scalar(select(c.event_time).where(c.area_id == pic.area_id, c.period == pic.period))
                if old is None:
                    await s.execute(insert(t).values(area_id=pic.area_id, period=pic.period, **values))
                    return True
                if db.aware(old) > event.time:  # an older event arriving late changes nothing
                    return False
                await s.execute(update(t).where(c.area_id == pic.area_id, c.period == pic.period).values(**values))
                return True
        except IntegrityError:  # another replica inserted it first: read again
            continue
    return False


async def send_due_reminders(now: datetime, *, sessions: Sessions, tables: Tables, snapshot: Any, sender: str,
                             times: ReminderTimes, on_reminder: Callable[[str, str], None] | None = None
                             ) -> list[str]:
    """Queue the reminders due at ``now``: e-mail, in Swedish, to reporters of an area who have not
    reported for a period, before and after its deadline; at most once per person, period and kind.

    Who has not reported comes from the newest picture.updated/published of the area and period, or,
    before any report arrived, is every reporter of the area. Returns the reminder delivery ids.
    """
    if snapshot is None or not snapshot.areas:
        return []
    st = tables.reminder_state.c
    due: dict[tuple[str, str, str], dict[str, Any]] = {}  # (person, period, kind) -> areas, deadline
    wanted_state: list[tuple[str, str]] = []
    plans: list[tuple[Any, Any, str, datetime]] = []
    for area in snapshot.areas.values():
        mun = snapshot.municipalities.get(area.municipality_id)
        if mun is None:
            continue
        current = current_period(area.cadence, now, mun.timezone)
        for period in (current.prev(), current):
            dl = period_deadline(mun, period)
            kind = reminder_kind(now, dl, times)
            if kind:
                plans.append((area, period, kind, dl))
                wanted_state.append((area.id, period.id))
    if not plans:
        return []
    async with sessions() as s:
        state = {(r.area_id, r.period): list(r.missing) for r in (await s.execute(
            select(st.area_id, st.period, st.missing).where(st.area_id.in_({a for a, _ in wanted_state})))).all()}
        rc = tables.reminders.c
        sent = {(r.person_id, r.period, r.kind) for r in (await s.execute(
            select(rc.person_id, rc.period, rc.kind).where(rc.period.in_({p.id for _, p, _, _ in plans})))).all()}
    for area, period, kind, dl in plans:
        reporters = {p.id for p in snapshot.reporters_for(area.id)
                     if may_receive(caller_for(snapshot, p.id), "reminder", area.municipality_id, area.id)}
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
                    person_id=person_id, period=period_id, kind=kind, areas=sorted(entry["areas"]),
                    delivery_id=did if person.email else None, created_at=db.utcnow()))
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
    now = db.utcnow()
    rendered = render_paused_notice(person_name=person.name, subscription_name=row.name, target=str(target),
                                    dead=dead, language=row.language or "sv")
    return await queue_notice(s, tables=tables, rendered=rendered, to=person.email, sender=sender,
                              event_id=f"subscription-paused:{subscription_id}:{int(now.timestamp())}",
                              event_type="se.est.notifier.subscription_paused", language=row.language or "sv",
                              now=now)


def credential_fingerprint(token_sha256: str | None) -> str:
    """A shortened hash of a person's token hash: enough to see that it changed ("" without a token)."""
    return hashlib.sha256(f"est-credential|{token_sha256}".encode()).hexdigest()[:16] if token_sha256 else ""


async def notify_credential_changes(*, sessions: Sessions, tables: Tables, snapshot: Any, sender: str,
                                    now: datetime | None = None) -> list[str]:
    """E-mail each person who may receive ``credential.changed`` (police, social services: they can read
    protocols) whose token hash in ``snapshot`` differs from the one the notifier last saw, and remember the
    new one; the first sight of a person is only remembered. The mail says when, and to contact their
    administrator if they did not expect it; it never holds the token. Safe across replicas and restarts
    (the comparison is with the database, not with the previous snapshot in memory). Returns the delivery ids.
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
    at = now or db.utcnow()
    made: list[str] = []
    for person in people:
        fingerprint, old = credential_fingerprint(person.token_sha256), known.get(person.id)
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


# --- personal data -----------------------------------------------------------------------------

async def personal_data_log(*, sessions: Sessions, tables: Tables, caller: Caller, protocol_id: str | None,
                            subscription_id: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """Who personal data of which protocol was opened for and delivered to (admins only)."""
    if not caller.admin:
        raise Forbidden("Only an admin may read the personal-data log.",
                        "Bara en administratör får läsa loggen över personuppgifter.")
    async with sessions() as s:
        return await db.personal_reads(s, tables, protocol_id=protocol_id, subscription_id=subscription_id,
                                       limit=limit)
