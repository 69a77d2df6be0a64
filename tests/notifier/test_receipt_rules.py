"""The receipt rule over time: a person who loses a role, or leaves, gets nothing more on any channel, visibly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from est_notifier.deliveries import handlers as deliveries
from est_notifier.deliveries.handlers import flush_digests
from est_notifier.subscriptions import handlers
from est_notifier.subscriptions.domain import caller_for
from est_notifier.subscriptions.receipt import RECEIPT, may_receive
from est_shared.org import OrgSnapshot
from est_shared.subjects import analysis_published

from tests.notifier.support import (
    Org,
    alert_event,
    alert_subject,
    analysis_event,
    notifier_db,
    notifier_settings,
    picture_event,
    publish,
    running_notifier,
    stream,
)
from tests.support import eventually


def _owner_id(org: Org, who: str = "owner") -> str:
    return next(p for p in org.snapshot.people if p.startswith(who))


def _demoted(org: Org, version: int, who: str = "owner", roles: tuple[str, ...] = ("reporter",)) -> OrgSnapshot:
    """The organisation with ``who`` holding only ``roles``."""
    pid = _owner_id(org, who)
    person = org.snapshot.people[pid].model_copy(update={"roles": list(roles)})
    return org.snapshot.model_copy(update={"version": version, "people": {**org.snapshot.people, pid: person}})


def test_the_table_names_every_role_and_admins_never_get_personal_data() -> None:
    from est_notifier.subscriptions.domain import Caller

    assert set().union(*(r.roles for r in RECEIPT.values())) <= {
        "reporter", "key_function", "beredningsgrupp", "styrgrupp", "police", "social_services", "admin"}
    admin = Caller("adm", ("admin",), (), ())
    assert may_receive(admin, "analysis.published", "elsewhere") and may_receive(admin, "picture.published", "m", "x")
    assert not may_receive(admin, "forfeiture.notification_due", "m")
    reporter = Caller("r", ("reporter",), ("a",), ("m",))
    assert may_receive(reporter, "picture.published", "m", "a") and not may_receive(reporter, "picture.published",
                                                                                    "m", "b")
    assert not may_receive(reporter, "analysis.published", "m")
    assert not may_receive(None, "picture.published", "m", "a")
    assert not may_receive(reporter, "no.such.kind", "m", "a")


async def test_a_reporter_cannot_patch_analyses_into_a_subscription_nor_an_admin_for_them(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe("other", scope={"municipality_id": org.m, "area_ids": [org.a2]},
                                events=["picture.published"], channel={"type": "email", "to": "ada@example.org"})
        for who in ("other", "admin"):  # what the owner may receive decides, not who edits
            r = await n.http.patch(f"/v1/subscriptions/{sub['id']}", headers=org.auth(who),
                                   json={"events": ["picture.published", "analysis.published"]})
            assert r.status_code == 403, (who, r.text)
            assert "analysis.published" in r.json()["detail"] and "Dina roller (reporter)" in r.json()["detail"]
        r = await n.http.get(f"/v1/subscriptions/{sub['id']}", headers=org.auth("other"))
        assert r.json()["events"] == ["picture.published"]


async def test_a_subscription_whose_owner_loses_the_role_ends_and_gets_nothing_more(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe(events=["picture.published", "analysis.published"],
                                channel={"type": "email", "to": "olle@example.org"})
        await n.app.state.runtime.apply_org(_demoted(org, 2))
        body = (await n.http.get(f"/v1/subscriptions/{sub['id']}", headers=org.auth("owner"))).json()
        assert body["status"] == "ended"
        assert body["ended_reason"] == "subscription ended: the owner's roles no longer receive one of its event kinds"
        metrics = (await n.http.get("/metrics")).text
        assert 'est_notifier_subscriptions_ended_total{reason="role_lost"} 1.0' in metrics
        await publish(nats_url, analysis_published(org.m), analysis_event(org))
        await publish(nats_url, f"est.picture.published.{org.m}.{org.a1}", picture_event(org))
        await asyncio.sleep(1.0)
        rows = await n.ledger("admin", subscription_id=sub["id"])
        assert [r["status"] for r in rows] == ["ended"]
        assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").glob("*.eml"))


async def test_a_subscription_of_a_removed_owner_is_withheld_before_the_organisation_is_reconciled(
        nats_url: str, tmp_path: Path, org: Org) -> None:
    """Fan-out asks the current organisation itself: between a change and its reconciliation (or when that
    failed) nothing goes to someone who may not have it, and the ledger says so."""
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe(events=["alert.raised"], channel={"type": "email", "to": "olle@example.org"})
        demoted = _demoted(org, 2, roles=())
        n.app.state.runtime.directory.replace(demoted)  # the snapshot changes; no reconciliation runs
        await publish(nats_url, alert_subject(org), alert_event(org))

        async def withheld() -> list[dict[str, Any]]:
            return [r for r in await n.ledger("admin", subscription_id=sub["id"]) if r["status"] == "withheld"]

        (row,) = await eventually(withheld)
        assert row["event_type"] == "se.est.alert.raised" and row["target"] == "olle@example.org"
        assert row["last_error"].startswith("not sent: the owner may not receive alert.raised")
        assert 'est_notifier_withheld_total{kind="alert.raised"} 1.0' in (await n.http.get("/metrics")).text


async def test_a_digest_leaves_out_what_its_owner_may_no_longer_receive(tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    owner = caller_for(org.snapshot, _owner_id(org))
    assert owner is not None
    sub = await handlers.create_subscription(
        sessions=sessions, tables=tables, caller=owner, snapshot=org.snapshot, spec={
            "name": "digest", "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
            "events": ["picture.published", "analysis.published"], "channel": {"type": "email", "to": "d@example.org"},
            "digest": "period", "language": "sv"})
    due = time.time() + 60
    for event in (picture_event(org), analysis_event(org)):
        assert await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="c", sender="a@b.se",
                                        snapshot=org.snapshot, digest_due=lambda m, p: due) == []
    demoted = _demoted(org, 2)  # a key function no more, before the digest closed
    assert await flush_digests(due + 1, sessions=sessions, tables=tables, sender_address="a@b.se", max_items=10,
                               snapshot=demoted) == 1  # the picture's week; the analysis's tertial has nothing left
    rows = await deliveries.ledger(sessions=sessions, tables=tables, caller=owner, subscription_id=sub["id"],
                                   event_id=None)
    await engine.dispose()
    assert sorted(r["status"] for r in rows) == ["pending", "withheld"]
    (withheld,) = [r for r in rows if r["status"] == "withheld"]
    assert "analysis.published" in withheld["last_error"]


async def test_a_person_who_leaves_the_organisation_gets_stream_closed(nats_url: str, tmp_path: Path,
                                                                      org: Org) -> None:
    settings = notifier_settings(nats_url, tmp_path, org, stream_heartbeat=0.3)
    async with running_notifier(settings, org) as n:
        async with stream(n.base, org.tokens["owner"]) as (resp, sse):
            assert resp.status_code == 200 and (await sse.next())[":"] == "connected"
            gone = org.snapshot.model_copy(update={"version": 2, "people": {
                k: v for k, v in org.snapshot.people.items() if not k.startswith("owner")}})
            await n.app.state.runtime.apply_org(gone)
            (closed,) = await sse.events(1, timeout=5)
            assert closed["event"] == "stream.closed"
            assert "du finns inte längre i organisationen" in closed["data"]


async def test_a_declared_subscription_to_a_kind_its_owner_may_not_receive_is_skipped(tmp_path: Path,
                                                                                      org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    reasons: list[str] = []
    item = {"name": "Analyser", "scope": {"municipality_id": org.m, "area_ids": [org.a2]},
            "channel": {"type": "email", "to": "ada@example.org"}}
    counts = await handlers.upsert_declared_subscriptions(
        sessions=sessions, tables=tables, snapshot=org.snapshot, on_invalid=reasons.append,
        declared=[{"id": "r1", "owner": _owner_id(org, "other"), "events": ["analysis.published"], **item},
                  {"id": "r2", "owner": _owner_id(org, "other"), "events": ["picture.published"], **item}])
    await engine.dispose()
    assert counts["created"] == 1 and reasons == ["role"]
