"""Subscriptions declared in the organisation file, and subscriptions ending when their owner leaves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from est_notifier.deliveries.domain import delivery_id
from est_notifier.subscriptions import handlers
from est_notifier.subscriptions.domain import Caller
from est_shared.org import OrgSnapshot
from sqlalchemy import select

from tests.notifier.support import (
    Org,
    notifier_db,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    receiver,
    running_notifier,
)
from tests.support import eventually


def _person(org: Org, who: str) -> str:
    return next(p for p in org.snapshot.people if p.startswith(who))


def _declared(org: Org, url: str, **over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "drift", "owner": _person(org, "owner"), "name": "Driftcentral (deklarerad)",
        "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
        "events": ["picture.published"], "channel": {"type": "webhook", "url": url, "secret": "k"},
        "digest": "immediate", "language": "sv"}
    item.update(over)
    return item


def _with(org: Org, version: int, *, subscriptions: list[dict[str, Any]] | None = None,
          drop: tuple[str, ...] = (), people: dict[str, Any] | None = None) -> OrgSnapshot:
    kept = {pid: p for pid, p in org.snapshot.people.items() if not any(pid.startswith(d) for d in drop)}
    kept.update(people or {})
    return org.snapshot.model_copy(update={"version": version, "people": kept,
                                           "subscriptions": subscriptions or []})


async def test_declared_subscriptions_validate_update_and_skip_invalid(tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    skipped: list[str] = []
    good = _declared(org, "https://example.org/hook")
    bad = [
        {"id": "no-owner", **{k: v for k, v in good.items() if k not in ("id", "owner")}},
        _declared(org, "https://example.org/x", id="stranger", owner="nobody"),
        _declared(org, "https://example.org/y", id="outside", scope={"municipality_id": org.m, "area_ids": [org.a2]}),
        _declared(org, "ftp://example.org/z", id="bad-url"),
        _declared(org, "https://example.org/w", id="env-secret",
                  channel={"type": "webhook", "url": "https://example.org/w", "secret_env": "EST_TEST_UNSET_SECRET"}),
        _declared(org, "https://example.org/v", id="typo", evnets=["picture.published"]),
    ]
    snap = _with(org, 2, subscriptions=[good, *bad])
    first = await handlers.reconcile_org(sessions=sessions, tables=tables, snapshot=snap, env={},
                                         on_invalid=skipped.append)
    assert first["created"] == 1 and first["invalid"] == 6
    assert sorted(skipped) == sorted(["schema", "unknown_owner", "scope", "schema", "secret", "schema"])
    again = await handlers.reconcile_org(sessions=sessions, tables=tables, snapshot=snap, env={})
    assert again["created"] == 0 and again["updated"] == 0 and again["unchanged"] == 1

    # secret from the environment, a changed name: one update, same subscription id
    changed = _declared(org, "https://example.org/hook", name="Nytt namn",
                        channel={"type": "webhook", "url": "https://example.org/hook", "secret_env": "HOOK_KEY"})
    result = await handlers.reconcile_org(sessions=sessions, tables=tables,
                                          snapshot=_with(org, 3, subscriptions=[changed]), env={"HOOK_KEY": "from-env"})
    assert result["updated"] == 1
    owner = Caller(person_id=_person(org, "owner"), roles=("key_function",), areas=(org.a1,))
    (sub,) = await handlers.list_subscriptions(sessions=sessions, tables=tables, caller=owner)
    assert sub["id"] == handlers.declared_id("drift") and sub["name"] == "Nytt namn" and sub["source"] == "org"
    async with sessions() as s:
        channel = await s.scalar(select(tables.subscriptions.c.channel).where(tables.subscriptions.c.id == sub["id"]))
    assert channel["secret"] == "from-env"
    # removed from the file: deleted
    result = await handlers.reconcile_org(sessions=sessions, tables=tables, snapshot=_with(org, 4), env={})
    assert result["deleted"] == 1
    assert await handlers.list_subscriptions(sessions=sessions, tables=tables, caller=owner) == []
    await engine.dispose()


async def test_declared_subscription_delivers_and_ends_when_owner_leaves(nats_url: str, tmp_path: Path,
                                                                         org: Org) -> None:
    settings = notifier_settings(nats_url, tmp_path, org, retry_base_delay=30.0, retry_max_delay=30.0,
                                 max_attempts=5)
    async with receiver() as rx, running_notifier(settings, org) as n:
        runtime = n.app.state.runtime
        await runtime.apply_org(_with(org, 2, subscriptions=[_declared(org, rx.url)]))
        sub_id = handlers.declared_id("drift")
        # an API subscription of another person, whose areas will shrink
        other = await n.subscribe("other", scope={"municipality_id": org.m, "area_ids": [org.a2]},
                                  events=["picture.published", "alert.raised"],
                                  channel={"type": "email", "to": "ada@example.org"})
        await publish(nats_url, picture_subject(org), picture_event(org, version=1))
        await eventually(lambda: _async(len(rx.requests) == 1))
        assert rx.requests[0][0]["x-est-delivery"] == delivery_id(sub_id, f"picture:{org.a1}:2026-W48:v1")

        # the receiver starts failing: the next delivery waits for a retry 30 s away
        rx.script.extend([503] * 10)
        await publish(nats_url, picture_subject(org), picture_event(org, version=2))

        async def retrying() -> bool:
            rows = await n.ledger("admin", subscription_id=sub_id)
            return any(r["status"] == "pending" and r["attempts"] == 1 for r in rows)

        await eventually(retrying)
        other_person = org.snapshot.people[_person(org, "other")]
        await runtime.apply_org(_with(org, 3, subscriptions=[_declared(org, rx.url)], drop=("owner",),
                                      people={other_person.id: other_person.model_copy(update={"areas": []})}))

        r = await n.http.get(f"/v1/subscriptions/{sub_id}", headers=org.auth("admin"))
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ended"
        assert body["ended_reason"] == "subscription ended: owner removed from the organisation"
        rows = await n.ledger("admin", subscription_id=sub_id)
        ended = [x for x in rows if x["status"] == "ended"]
        assert len(ended) == 1 and ended[0]["last_error"] == "subscription ended: owner removed from the organisation"
        cancelled = [x for x in rows if x["status"] == "cancelled"]
        assert len(cancelled) == 1
        assert [a["status"] for a in cancelled[0]["attempt_log"]] == ["retry", "cancelled"]
        assert cancelled[0]["attempt_log"][-1]["error"].startswith("cancelled: subscription ended")
        assert [x["status"] for x in rows if x["event_id"].endswith(":v1")] == ["delivered"]

        r = await n.http.get(f"/v1/subscriptions/{other['id']}", headers=org.auth("admin"))
        assert r.json()["status"] == "ended"
        assert r.json()["ended_reason"] == "subscription ended: owner may no longer see its areas"
        # the removed owner's token no longer works; nothing more is sent to the ended subscriptions
        assert (await n.http.get("/v1/subscriptions", headers=org.auth("owner"))).status_code == 401
        await publish(nats_url, picture_subject(org), picture_event(org, version=3))
        metrics = (await n.http.get("/metrics")).text
        assert 'est_notifier_subscriptions_ended_total{reason="owner_removed"} 1.0' in metrics
        assert 'est_notifier_subscriptions_ended_total{reason="scope_lost"} 1.0' in metrics
        assert 'est_notifier_declared_subscriptions_invalid_total{reason="unknown_owner"} 1.0' in metrics
        # applying the same organisation again ends nothing twice
        await runtime.apply_org(_with(org, 4, subscriptions=[_declared(org, rx.url)], drop=("owner",),
                                      people={other_person.id: other_person.model_copy(update={"areas": []})}))
        rows = await n.ledger("admin", subscription_id=sub_id)
        assert len([x for x in rows if x["status"] == "ended"]) == 1
        assert not [x for x in rows if x["event_id"].endswith(":v3")]
        r = await n.http.patch(f"/v1/subscriptions/{sub_id}", json={"paused": False}, headers=org.auth("admin"))
        assert r.status_code == 409


async def _async(value: bool) -> bool:
    return value
