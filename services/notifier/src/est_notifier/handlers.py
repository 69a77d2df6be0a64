"""Use cases of the notifier as plain async functions: subscriptions, fan-out, ledger queries."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from est_shared.bus import encode
from est_shared.db import mark_processed, transaction
from est_shared.events import CloudEvent
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_notifier import db
from est_notifier.db import Tables
from est_notifier.domain import (
    Caller,
    Forbidden,
    Invalid,
    NotFound,
    Scope,
    SubscriptionView,
    channel_target,
    delivery_id,
    event_kind,
    recipients,
    resolve_scope,
    sign,
    valid_webhook_url,
)
from est_notifier.render import build_email, render_event

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
        "created_at": db.aware(row["created_at"]), "updated_at": db.aware(row["updated_at"]),
    }


def _check_channel(channel: dict[str, Any]) -> dict[str, Any]:
    if channel.get("type") == "webhook" and not valid_webhook_url(str(channel.get("url", ""))):
        raise Invalid("The webhook URL must be http(s) with a host.",
                      "Webhookens URL måste vara http(s) med en värd.", field="channel.url")
    return channel


def _municipality_areas(snapshot: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {m: list(mun.area_ids) for m, mun in snapshot.municipalities.items()}
    for a in snapshot.areas.values():
        if a.id not in out.setdefault(a.municipality_id, []):
            out[a.municipality_id].append(a.id)
    return out


async def create_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, snapshot: Any,
                              spec: dict[str, Any], source: str = "api",
                              declared_key: str | None = None) -> dict[str, Any]:
    """Store a new subscription after checking its scope against the caller's areas."""
    scope = spec["scope"]
    areas = resolve_scope(caller, scope["municipality_id"], scope.get("area_ids"),
                          municipality_areas=_municipality_areas(snapshot))
    channel = _check_channel(dict(spec["channel"]))
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
                              changes: dict[str, Any]) -> dict[str, Any]:
    """Change fields of a subscription; ``paused`` pauses or resumes it."""
    async with transaction(sessions) as s:
        row = await _owned(s, tables, caller, sub_id)
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
            channel = _check_channel(dict(changes["channel"]))
            if channel.get("type") == "webhook" and not channel.get("secret"):
                old = row["channel"]
                if old.get("type") != "webhook" or not old.get("secret"):
                    raise Invalid("A webhook needs a secret.", "En webhook behöver en hemlighet.",
                                  field="channel.secret")
                channel["secret"] = old["secret"]
            values["channel"] = channel
            values["channel_target"] = channel_target(channel)
        if "paused" in changes:
            values["paused"] = bool(changes["paused"])
            values["paused_reason"] = "paused by owner" if changes["paused"] else None
            if not changes["paused"]:
                values["consecutive_dead"] = 0
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


async def upsert_declared_subscriptions(*, sessions: Sessions, tables: Tables, snapshot: Any,
                                        declared: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Make the subscriptions declared in the organisation exist exactly as declared (idempotent).

    Each declared item has ``person_id`` (the owner, whose areas bound the scope), ``key`` (stable
    within the person) and the fields of ``POST /v1/subscriptions``. Declared subscriptions no longer
    listed are deleted. The organisation snapshot does not carry subscriptions yet; this is the hook
    for when it does.
    """
    counts = {"created": 0, "updated": 0, "deleted": 0}
    wanted: dict[str, dict[str, Any]] = {}
    for item in declared:
        wanted[f"org:{item['person_id']}:{item['key']}"] = item
    async with sessions() as s:
        existing = {r["declared_key"]: r for r in await db.list_subscriptions(s, tables, owner_id=None)
                    if r["source"] == "org" and r["declared_key"]}
    for key, item in wanted.items():
        person = snapshot.people.get(item["person_id"])
        if person is None:
            continue
        caller = Caller(person_id=person.id, roles=tuple(person.roles), areas=tuple(person.areas),
                        municipalities=tuple(person.municipalities))
        if key in existing:
            await update_subscription(sessions=sessions, tables=tables, caller=caller, snapshot=snapshot,
                                      sub_id=existing[key]["id"], changes={
                                          k: item[k] for k in ("name", "scope", "events", "channel", "digest",
                                                               "language", "min_severity") if k in item})
            counts["updated"] += 1
        else:
            await create_subscription(sessions=sessions, tables=tables, caller=caller, snapshot=snapshot,
                                      spec=item, source="org", declared_key=key)
            counts["created"] += 1
    for key, row in existing.items():
        if key not in wanted:
            async with transaction(sessions) as s:
                await db.update_subscription(s, tables, row["id"], {"deleted_at": db.utcnow(), "paused": True,
                                                                    "declared_key": None})
            counts["deleted"] += 1
    return counts


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
    return Scope(kind, data.municipality_id, None)


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


def freeze_webhook(event_bytes: bytes, *, row: dict[str, Any], did: str) -> tuple[dict[str, Any], bytes]:
    """Target and exact bytes of a webhook delivery (the signature is part of what is frozen)."""
    channel = row["channel"]
    headers = {"Content-Type": "application/cloudevents+json", "X-EST-Signature": sign(channel["secret"], event_bytes),
               "X-EST-Delivery": did, "Idempotency-Key": did}
    return {"url": channel["url"], "headers": headers}, event_bytes


def freeze_email(event: CloudEvent[Any], *, row: dict[str, Any], did: str, sender: str,
                 now: datetime) -> tuple[dict[str, Any], bytes]:
    """Target and exact bytes of an e-mail delivery."""
    to = row["channel"]["to"]
    rendered = render_event(event.type, event.data.model_dump(mode="json"), row["language"])
    body = build_email(rendered, sender=sender, to=to, delivery_id=did, event_id=event.id,
                       language=row["language"], date=now)
    return {"from": sender, "to": [to]}, body


async def fan_out(event: CloudEvent[Any], *, sessions: Sessions, tables: Tables, consumer: str, sender: str,
                  now: Callable[[], datetime] = db.utcnow, digest_due: Callable[[str, str], float] | None = None
                  ) -> list[str]:
    """Create one frozen delivery per matching subscription and channel target; returns their channels."""
    scope = event_scope(event)
    async with transaction(sessions) as s:
        if not await mark_processed(s, tables.processed, consumer=consumer, event_id=event.id):
            return []
        if scope is None:
            return []
        rows = await db.candidate_subscriptions(s, tables, scope.municipality_id)
        event_bytes = encode(event)
        created: list[str] = []
        for view in recipients([view_of(r) for r in rows], scope):
            row: dict[str, Any] = view.extra["row"]  # type: ignore[assignment]
            if await db.delivery_exists(s, tables, subscription_id=row["id"], channel_target=row["channel_target"],
                                        event_id=event.id):
                continue
            if row["digest"] == "period" and digest_due is not None:
                window = digest_window(event)
                await s.execute(tables.digest_items.insert().values(
                    subscription_id=row["id"], event_id=event.id, channel_target=row["channel_target"],
                    digest_window=window, due_at=digest_due(scope.municipality_id, window.split(":", 1)[1]),
                    event_type=event.type, event_time=event.time, data=json.loads(event_bytes), sent=False))
                continue
            did = delivery_id(row["id"], event.id)
            if row["channel"]["type"] == "webhook":
                target, payload = freeze_webhook(event_bytes, row=row, did=did)
            else:
                target, payload = freeze_email(event, row=row, did=did, sender=sender, now=now())
            await db.insert_delivery(s, tables, {
                "id": did, "subscription_id": row["id"], "event_id": event.id, "event_type": event.type,
                "event_time": event.time, "channel": row["channel"]["type"], "channel_target": row["channel_target"],
                "target": target, "payload": payload, "next_attempt_at": now().timestamp(),
            })
            created.append(row["channel"]["type"])
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
