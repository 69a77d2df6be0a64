"""Use cases of subscriptions as plain async functions: the API's, and applying the organisation's changes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from est_shared.clock import utcnow
from est_shared.db import transaction
from est_shared.errors import Conflict, Forbidden, NotFound
from pydantic import ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from est_notifier.deliveries.domain import DELIVERY_NAMESPACE
from est_notifier.deliveries.handlers import Handover, end_subscription, hand_over
from est_notifier.subscriptions import db
from est_notifier.subscriptions.domain import (
    END_REASONS,
    PERSONAL_KINDS,
    Caller,
    InvalidField,
    audience_for,
    caller_for,
    channel_target,
    check_webhook_role,
    end_reason,
    resolve_scope,
    successor_of,
    valid_webhook_url,
)
from est_notifier.subscriptions.egress import NO_ALLOW, AllowList
from est_notifier.subscriptions.receipt import check_personal_channel, check_receipt, refused_kinds
from est_notifier.subscriptions.schemas import DeclaredSubscription
from est_notifier.tables import Sessions, Tables, aware

log = logging.getLogger("est.notifier")


# --- subscriptions -------------------------------------------------------------------------

def public_view(row: dict[str, Any], owner_name: str | None = None) -> dict[str, Any]:
    """A subscription as the API shows it: the webhook secret never leaves."""
    channel = dict(row["channel"])
    if channel.get("type") == "webhook":
        channel["secret_set"] = bool(channel.pop("secret", None))
    return {
        "id": row["id"], "name": row["name"], "owner_id": row["owner_id"], "owner_name": owner_name,
        "scope": {"municipality_id": row["municipality_id"], "area_ids": list(row["area_ids"])},
        "events": list(row["events"]), "channel": channel, "digest": row["digest"],
        "language": row["language"], "min_severity": row["min_severity"], "paused": bool(row["paused"]),
        "paused_reason": row["paused_reason"], "source": row["source"],
        "status": "ended" if row.get("ended_at") else "paused" if row["paused"] else "active",
        "ended_at": aware(row.get("ended_at")),
        "ended_reason": END_REASONS[row["ended_reason"]][0] if row.get("ended_reason") in END_REASONS else None,
        "created_at": aware(row["created_at"]), "updated_at": aware(row["updated_at"]),
    }


async def _owner_names(s: AsyncSession, tables: Tables, rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The names of the owners of some subscriptions, as the organisation last held them (``people_seen``)."""
    ids = {r["owner_id"] for r in rows}
    if not ids:
        return {}
    t = tables.people_seen
    return {r.person_id: r.name for r in (await s.execute(select(t.c.person_id, t.c.name)
                                                          .where(t.c.person_id.in_(ids))))}


async def _view(s: AsyncSession, tables: Tables, row: dict[str, Any]) -> dict[str, Any]:
    """``public_view`` with the owner's name."""
    return public_view(row, (await _owner_names(s, tables, [row])).get(row["owner_id"]))


CheckTarget = Callable[[str], Awaitable[None]]
"""Checks a webhook URL against the egress policy (``est_notifier.subscriptions.egress``); raises Invalid if refused."""


def _check_channel(channel: dict[str, Any], owner: Caller | None) -> dict[str, Any]:
    """The owner may use the channel, and a webhook's URL has a form the notifier sends to."""
    check_webhook_role(owner, str(channel.get("type", "")))
    if channel.get("type") == "webhook" and not valid_webhook_url(str(channel.get("url", ""))):
        raise InvalidField("Webhookens URL måste vara http(s) med en värd.",
                      "The webhook URL must be http(s) with a host.", field="channel.url")
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
        return await _view(s, tables, stored)


async def _owned(s: AsyncSession, tables: Tables, caller: Caller, sub_id: str) -> dict[str, Any]:
    row = await db.get_subscription(s, tables, sub_id)
    if row is None:
        raise NotFound(f"Ingen prenumeration {sub_id}.", f"No subscription {sub_id}.")
    if not caller.admin and row["owner_id"] != caller.person_id:
        raise Forbidden("Prenumerationen tillhör någon annan.", "This subscription belongs to someone else.")
    return row


async def get_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, sub_id: str) -> dict[str, Any]:
    """One subscription of the caller (admins: any)."""
    async with sessions() as s:
        return await _view(s, tables, await _owned(s, tables, caller, sub_id))


async def list_subscriptions(*, sessions: Sessions, tables: Tables, caller: Caller) -> list[dict[str, Any]]:
    """The caller's subscriptions (admins: all)."""
    async with sessions() as s:
        rows = await db.list_subscriptions(s, tables, owner_id=None if caller.admin else caller.person_id)
        names = await _owner_names(s, tables, rows)
    return [public_view(r, names.get(r["owner_id"])) for r in rows]


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
            raise Conflict("Prenumerationen är avslutad; skapa en ny.",
                           "This subscription has ended; create a new one.")
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
                    raise InvalidField("En webhook behöver en hemlighet.", "A webhook needs a secret.",
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
        return await _view(s, tables, stored)


async def delete_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, sub_id: str) -> None:
    """Remove a subscription (soft: its ledger stays queryable by admins)."""
    async with transaction(sessions) as s:
        await _owned(s, tables, caller, sub_id)
        await db.update_subscription(s, tables, sub_id, {"deleted_at": utcnow(), "paused": True,
                                                         "declared_key": None})


# --- the organisation's changes ------------------------------------------------------------

def _may_hold(who: Caller | None, row: dict[str, Any], known: dict[str, list[str]]) -> str | None:
    """Why ``who`` may not hold a stored subscription (a key of END_REASONS), or None if they may."""
    reason = end_reason(who, row["municipality_id"], row["area_ids"] or [], municipality_areas=known,
                        events=row["events"] or [], channel_type=(row["channel"] or {}).get("type", ""))
    if reason is None and refused_kinds(who, row["municipality_id"], row["area_ids"] or [], row["events"] or []):
        reason = "role_lost"  # the owner's roles no longer receive one of its kinds (receipt.RECEIPT)
    return reason


async def remember_people(*, sessions: Sessions, tables: Tables, snapshot: Any) -> None:
    """Keep the name and address of everyone the organisation holds, so that a hand-over names a person who left
    and knows the address their subscriptions went to (``people_seen``; nobody is forgotten)."""
    people = dict(getattr(snapshot, "people", {}) or {})
    if not people:
        return
    t = tables.people_seen
    try:
        async with transaction(sessions) as s:
            had = {r.person_id: (r.name, r.email) for r in (await s.execute(select(t)))}
            now = utcnow()
            new = [{"person_id": pid, "name": p.name, "email": p.email, "updated_at": now}
                   for pid, p in people.items() if pid not in had]
            if new:
                await s.execute(insert(t), new)
            for pid, p in people.items():
                if pid in had and had[pid] != (p.name, p.email):
                    await s.execute(update(t).where(t.c.person_id == pid).values(name=p.name, email=p.email,
                                                                                 updated_at=now))
    except IntegrityError:  # another replica remembered them in the same instant
        return


async def _handover(s: AsyncSession, tables: Tables, snapshot: Any, from_id: str, to_id: str, *,
                    by: tuple[str, str] | None = None) -> Handover:
    """Who a subscription goes from and to, as last known (the leaving person is in ``people_seen``)."""
    seen = {r.person_id: (r.name, r.email) for r in (await s.execute(select(tables.people_seen).where(
        tables.people_seen.c.person_id.in_([from_id, to_id]))))}

    def known(pid: str) -> tuple[str | None, str | None]:
        person = snapshot.people.get(pid) if snapshot is not None else None
        return (person.name, person.email) if person is not None else seen.get(pid, (None, None))

    (from_name, from_email), (to_name, to_email) = known(from_id), known(to_id)
    return Handover(from_id=from_id, from_name=from_name, from_email=from_email, to_id=to_id, to_name=to_name,
                    to_email=to_email, by_id=by[0] if by else None, by_name=by[1] if by else None,
                    org_version=None if by else getattr(snapshot, "version", None))


async def end_unauthorised_subscriptions(*, sessions: Sessions, tables: Tables, snapshot: Any) -> dict[str, int]:
    """Hand over or end every live subscription whose owner left the organisation, may no longer see its scope
    or no longer receives one of its kinds: one whose owner has a successor (``successor:`` in the organisation
    file, kept in ``snapshot.handovers``; a chain resolves to its first person still there) who may hold it goes
    to them (``deliveries.handlers.hand_over``), the others end. Counts by reason, and ``handed_over``."""
    known = _municipality_areas(snapshot)
    c = tables.subscriptions.c
    async with sessions() as s:
        rows = [dict(r) for r in (await s.execute(select(tables.subscriptions).where(
            c.deleted_at.is_(None), c.ended_at.is_(None)))).mappings()]
    counts: dict[str, int] = {}
    handovers = dict(getattr(snapshot, "handovers", {}) or {})
    for row in rows:
        reason = _may_hold(caller_for(snapshot, row["owner_id"]), row, known)
        if reason is None:
            continue
        to = successor_of(handovers, snapshot.people, row["owner_id"])
        try:
            async with transaction(sessions) as s:
                if to is not None and _may_hold(caller_for(snapshot, to), row, known) is None:
                    h = await _handover(s, tables, snapshot, row["owner_id"], to)
                    if await hand_over(s, tables, row, h, successor=audience_for(snapshot, to)):
                        counts["handed_over"] = counts.get("handed_over", 0) + 1
                        log.info("subscription handed over", extra={"subscription_id": row["id"],
                                                                    "org_version": h.org_version})
                    continue
                if await end_subscription(s, tables, row, reason):
                    counts[reason] = counts.get(reason, 0) + 1
                    log.warning("subscription ended", extra={"subscription_id": row["id"], "reason": reason})
        except IntegrityError:  # another replica ended it in the same instant
            continue
    return counts


# --- hand-over and restore by an admin -------------------------------------------------------

def _check_admin(caller: Caller) -> None:
    """Giving someone else's subscription to another person, or bringing an ended one back, is an admin's: only an
    admin acts on subscriptions that are not their own (``_owned``), key functions included."""
    if not caller.admin:
        raise Forbidden("Bara en administratör får lämna över eller återställa en prenumeration.",
                        "Only an admin may hand over or restore a subscription.")


def _new_owner(snapshot: Any, to: str, row: dict[str, Any], *, field: str | None) -> Caller:
    """The person a subscription goes to, who may hold it; InvalidField naming ``field`` (None: Conflict)."""
    who = caller_for(snapshot, to)
    why = (f"{to} finns inte i organisationen", f"{to} is not in the organisation") if who is None else None
    if who is not None:
        reason = _may_hold(who, row, _municipality_areas(snapshot))
        if reason is not None:
            why = (f"{to} får inte ha den ({END_REASONS[reason][1].split(': ', 1)[-1]})",
                   f"{to} may not hold it ({END_REASONS[reason][0].split(': ', 1)[-1]})")
    if why is None:
        assert who is not None
        return who
    if field is None:
        raise Conflict(f"Prenumerationen kan inte återställas till {why[0]}; ange en ny ägare (to).",
                       f"The subscription cannot be restored: {why[1]}; give a new owner (to).")
    raise InvalidField(f"Prenumerationen kan inte gå till {why[0]}.", f"The subscription cannot go to {why[1]}.",
                       field=field)


async def _live_row(s: AsyncSession, tables: Tables, sub_id: str) -> dict[str, Any]:
    row = await db.get_subscription(s, tables, sub_id)
    if row is None:
        raise NotFound(f"Ingen prenumeration {sub_id}.", f"No subscription {sub_id}.")
    return row


async def handover_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, by_name: str, snapshot: Any,
                                sub_id: str, to: str) -> dict[str, Any]:
    """An admin gives a running subscription to another person who may hold it (as the organisation file's
    ``successor:`` does): its owner changes, an e-mail channel addressed to the old owner follows, and the ledger
    says who it went from and to, by whom."""
    _check_admin(caller)
    async with transaction(sessions) as s:
        row = await _live_row(s, tables, sub_id)
        if row.get("ended_at"):
            raise Conflict("Prenumerationen är avslutad; återställ den (POST …/restore).",
                           "This subscription has ended; restore it (POST …/restore).")
        if to == row["owner_id"]:
            raise InvalidField(f"{to} äger redan prenumerationen.", f"{to} owns the subscription already.", field="to")
        _new_owner(snapshot, to, row, field="to")
        h = await _handover(s, tables, snapshot, row["owner_id"], to, by=(caller.person_id, by_name))
        if not await hand_over(s, tables, row, h, successor=audience_for(snapshot, to)):
            raise Conflict("Prenumerationen ändrades samtidigt; försök igen.",
                           "The subscription changed meanwhile; try again.")
        stored = await db.get_subscription(s, tables, sub_id)
        assert stored is not None
        return await _view(s, tables, stored)


async def restore_subscription(*, sessions: Sessions, tables: Tables, caller: Caller, by_name: str, snapshot: Any,
                               sub_id: str, to: str | None) -> dict[str, Any]:
    """An admin brings an ended subscription back, owned by ``to``; without it by the owner's successor (the chain
    of ``successor:``), else by the owner if still in the organisation; Conflict if the owner is gone and none is
    given, or the default owner may not hold it."""
    _check_admin(caller)
    async with transaction(sessions) as s:
        row = await _live_row(s, tables, sub_id)
        if not row.get("ended_at"):
            raise Conflict("Prenumerationen är inte avslutad.", "This subscription has not ended.")
        owner = to
        if owner is None:
            owner = successor_of(dict(getattr(snapshot, "handovers", {}) or {}), snapshot.people, row["owner_id"])
        if owner is None and row["owner_id"] in snapshot.people:
            owner = row["owner_id"]
        if owner is None:
            raise Conflict("Ägaren finns inte längre i organisationen och har ingen efterträdare; ange en ny ägare "
                           "(to).", "The owner has left the organisation without a successor; give a new owner (to).")
        _new_owner(snapshot, owner, row, field="to" if to is not None else None)
        h = await _handover(s, tables, snapshot, row["owner_id"], owner, by=(caller.person_id, by_name))
        if not await hand_over(s, tables, row, h, successor=audience_for(snapshot, owner), kind="restored"):
            raise Conflict("Prenumerationen ändrades samtidigt; försök igen.",
                           "The subscription changed meanwhile; try again.")
        stored = await db.get_subscription(s, tables, sub_id)
        assert stored is not None
        return await _view(s, tables, stored)


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
    owner may no longer hold it; one whose target is refused is refused when sending); one whose owner left
    naming a successor stays as it is, handed over (``end_unauthorised_subscriptions``); declared
    subscriptions no longer listed are deleted. A declared subscription that had ended comes back when its
    owner may hold it again.
    """
    env = env if env is not None else {}
    counts = {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0, "invalid": 0}
    handovers = dict(getattr(snapshot, "handovers", {}) or {})
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
        if caller is None and successor_of(handovers, snapshot.people, item.owner) is not None:
            counts["unchanged"] += 1  # its owner left naming a successor: handed over, kept as it is until the
            continue                  # file names the new owner (end_unauthorised_subscriptions)
        if caller is None:
            invalid("unknown_owner", item.id, f"no person {item.owner}")
            continue
        try:
            areas = resolve_scope(caller, item.scope.municipality_id, item.scope.area_ids, municipality_areas=known)
        except (InvalidField, Forbidden) as exc:
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
        except InvalidField as exc:
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
        except InvalidField as exc:
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
                await db.update_subscription(s, tables, row["id"], {"deleted_at": utcnow(), "paused": True,
                                                                    "declared_key": None})
            counts["deleted"] += 1
    return counts


async def reconcile_org(*, sessions: Sessions, tables: Tables, snapshot: Any, env: Mapping[str, str] | None = None,
                        on_invalid: Callable[[str], None] | None = None,
                        check_target: CheckTarget | None = None, webhook_allow: AllowList = NO_ALLOW
                        ) -> dict[str, Any]:
    """After an organisation change: apply the declared subscriptions, then hand over to their successor or end
    every subscription (declared or made through the API) whose owner may no longer hold it, and remember who the
    organisation holds (``people_seen``)."""
    declared = await upsert_declared_subscriptions(sessions=sessions, tables=tables, snapshot=snapshot,
                                                   declared=list(getattr(snapshot, "subscriptions", []) or []),
                                                   env=env, on_invalid=on_invalid, check_target=check_target,
                                                   webhook_allow=webhook_allow)
    ended = await end_unauthorised_subscriptions(sessions=sessions, tables=tables, snapshot=snapshot)
    await remember_people(sessions=sessions, tables=tables, snapshot=snapshot)
    handed = ended.pop("handed_over", 0)
    return {"ended": ended, "handed_over": handed, **declared}
