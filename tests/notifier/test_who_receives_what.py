"""Who receives what, on every channel: every role × every kind × every channel against a running notifier on
real NATS, asserted to be exactly ``est_notifier.receipt.RECEIPT``.

One person per role works in area A of municipality M (the admin has no areas: admins receive everywhere).

- Subscribing: each role asks for each kind on webhook, e-mail and e-mail digest: 201 exactly where the
  table says so, otherwise 403 naming the kind (open pictures are not subscribable at all: 422).
- Delivering: the refused cells are stored anyway, as a version before these rules may have stored them;
  one event of each kind is published; what each recipient gets (the webhook receiver, the outbox read as a
  mailbox, each role's live stream) is exactly the table, and each refused cell has a ``withheld`` ledger row.
- Reminders and the notice of a changed sign-in credential reach only the roles the table names.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import uuid
from datetime import timedelta
from email.policy import default
from itertools import product
from pathlib import Path
from typing import Any, get_args

from est_notifier.deliveries.domain import delivery_id
from est_notifier.subscriptions import db
from est_notifier.subscriptions.domain import WEBHOOK_ROLES, caller_for, channel_target
from est_notifier.subscriptions.receipt import RECEIPT, ROLES, may_receive
from est_notifier.subscriptions.schemas import EventName
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token, period_deadline
from est_shared.periods import current_period
from est_shared.sealed import PiiCipher, generate_key, parse_keys
from est_shared.subjects import alert_raised, alert_resolved, analysis_published, picture_published, picture_updated

from tests.notifier.support import (
    Org,
    alert_event,
    analysis_event,
    notification_event,
    notifier_settings,
    picture_event,
    publish,
    receiver,
    running_notifier,
    stream,
    updated_event,
)
from tests.support import eventually

SUBSCRIBED = ("webhook", "email", "digest")  # digest: an e-mail subscription with digest "period"
OLD = "2020-W10"  # a period long closed: its digest is due at once
ACTOR_OF = {"police": "polisen", "social_services": "soc"}


def matrix_org() -> Org:
    """Municipality M (areas A, B); one person per role in A, the admin without areas."""
    tag = uuid.uuid4().hex[:8]
    m, a, b = f"m{tag}", f"a{tag}", f"b{tag}"
    people = {f"{role}-{tag}": Person(
        id=f"{role}-{tag}", name=role.replace("_", " ").title(), actor=ACTOR_OF.get(role, "kommun"),
        email=f"{role.replace('_', '-')}@example.org", roles=[role],  # type: ignore[list-item]
        areas=[] if role == "admin" else [a], municipalities=[] if role == "admin" else [m],
        token_sha256=hash_token(f"tok-{role}-{tag}")) for role in ROLES}
    snapshot = OrgSnapshot(
        version=1, municipalities={m: Municipality(id=m, name="Växjö kommun", area_ids=[a, b])},
        areas={a: Area(id=a, name="Araby", municipality_id=m), b: Area(id=b, name="Teleborg", municipality_id=m)},
        actors={"kommun": Actor(id="kommun", name="Växjö kommun", kind="municipality"),
                "polisen": Actor(id="polisen", name="Polisen", kind="police"),
                "soc": Actor(id="soc", name="Socialtjänsten", kind="social_services")},
        people=people)
    return Org(m, a, b, snapshot, {role: f"tok-{role}-{tag}" for role in ROLES})


def person_of(org: Org, role: str) -> str:
    return next(p for p in org.snapshot.people if p.startswith(f"{role}-"))


def cell_address(role: str, kind: str, channel: str) -> str:
    return f"{role}.{kind}.{channel}".replace("_", "-") + "@example.org"


def spec(org: Org, kind: str, channel: str, url: str, role: str) -> dict[str, Any]:
    target = ({"type": "webhook", "url": f"{url}?cell={role}.{kind}", "secret": "s3cret"} if channel == "webhook"
              else {"type": "email", "to": cell_address(role, kind, channel)})
    return {"name": f"{role} {kind} {channel}", "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
            "events": [kind], "channel": target, "digest": "period" if channel == "digest" else "immediate",
            "language": "sv"}


def allowed(org: Org, role: str, kind: str) -> bool:
    return may_receive(caller_for(org.snapshot, person_of(org, role)), kind, org.m, org.a1)


def mails(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=default)  # type: ignore[misc]
            for p in sorted(outbox.glob("*.eml"))] if outbox.exists() else []


async def test_every_role_gets_exactly_what_the_receipt_table_says_on_every_channel(
        nats_url: str, tmp_path: Path) -> None:
    org = matrix_org()
    key = generate_key()
    cipher = PiiCipher(parse_keys(key))
    settings = notifier_settings(nats_url, tmp_path, org, pii_key=key, webhook_allow="127.0.0.1/32",
                                 digest_grace_seconds=0.0, reminders_enabled=True, reminder_before=60.0,
                                 reminder_after=60.0, reminder_late_limit=60.0, reminder_interval=3600.0)
    subscribable = get_args(EventName)
    assert set(subscribable) | {"picture.updated", "reminder", "credential.changed"} == set(RECEIPT)
    async with receiver() as rx, running_notifier(settings, org) as n:
        state = n.app.state.notifier

        # 1. subscribing, every role x kind x channel
        cells: dict[tuple[str, str, str], str] = {}  # cell -> subscription id
        refused: list[tuple[str, str, str]] = []  # by the receipt rule
        no_webhook_role: list[tuple[str, str, str]] = []  # receivable, but not by a webhook of theirs
        for role, kind, channel in product(ROLES, (*subscribable, "picture.updated"), SUBSCRIBED):
            r = await n.http.post("/v1/subscriptions", json=spec(org, kind, channel, rx.url, role),
                                  headers=org.auth(role))
            if kind == "picture.updated":
                assert r.status_code == 422, (role, channel, r.text)  # the stream carries open pictures
            elif allowed(org, role, kind) and channel == "webhook" and role not in WEBHOOK_ROLES:
                assert r.status_code == 403 and "webhook" in r.json()["detail"], (role, kind, r.text)
                no_webhook_role.append((role, kind, channel))  # the receipt rule still applies to one stored earlier
            elif allowed(org, role, kind):
                assert r.status_code == 201, (role, kind, channel, r.text)
                cells[(role, kind, channel)] = r.json()["id"]
            else:
                assert r.status_code == 403, (role, kind, channel, r.text)
                assert kind in r.json()["detail"] and r.headers["content-type"] == "application/problem+json"
                refused.append((role, kind, channel))
        # what a version before these rules may have stored: the refused cells, as subscriptions (a webhook of a
        # role without webhooks is delivered until the organisation is next applied, then it ends)
        async with state["sessions"]() as s, s.begin():
            for role, kind, channel in (*refused, *no_webhook_role):
                body = spec(org, kind, channel, rx.url, role)
                sub_id = str(uuid.uuid4())
                await db.insert_subscription(s, state["tables"], {
                    "id": sub_id, "owner_id": person_of(org, role), "name": body["name"],
                    "municipality_id": org.m, "area_ids": [org.a1], "events": [kind], "channel": body["channel"],
                    "channel_target": channel_target(body["channel"]), "digest": body["digest"], "language": "sv",
                    "min_severity": None, "source": "api", "declared_key": None})
                cells[(role, kind, channel)] = sub_id

        # 2. every role listens on the live stream
        heard: dict[str, list[str]] = {role: [] for role in ROLES}
        ready = {role: asyncio.Event() for role in ROLES}

        async def listen(role: str) -> None:
            async with stream(n.base, org.tokens[role]) as (resp, sse):
                assert resp.status_code == 200
                assert (await sse.next())[":"] == "connected"
                ready[role].set()
                while True:
                    msg = await sse.next(timeout=120)
                    if "id" in msg:
                        heard[role].append(msg["event"].removeprefix("se.est."))

        listeners = [asyncio.create_task(listen(role)) for role in ROLES]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready.values())), 20)

            # 3. one event of each kind
            events = {
                "picture.updated": (picture_updated(org.m, org.a1), updated_event(org, 1, period=OLD)),
                "picture.published": (picture_published(org.m, org.a1), picture_event(org, period=OLD)),
                "alert.raised": (alert_raised(org.m, org.a1), alert_event(org, period=OLD)),
                "alert.resolved": (alert_resolved(org.m, org.a1), alert_event(org, kind="resolved", period=OLD)),
                "analysis.published": (analysis_published(org.m), analysis_event(org, period="2020-T1")),
                "forfeiture.notification_due": (f"est.forfeiture.notification_due.{org.m}", notification_event(
                    org, cipher, {"name": "Tindra Hemligdotter", "personal_number": "20100101-0017", "age": 16})),
            }
            for subject, event in events.values():
                await publish(nats_url, subject, event)

            expect_hooks = {(r, k) for r, k, c in cells if c == "webhook" and allowed(org, r, k)}
            expect_mails = {cell_address(r, k, c) for r, k, c in cells if c != "webhook" and allowed(org, r, k)}
            expect_heard = {role: sorted(k for k in events if "stream" in RECEIPT[k].channels
                                         and allowed(org, role, k)) for role in ROLES}
            by_delivery = {delivery_id(sub, events[k][1].id): (r, k) for (r, k, c), sub in cells.items()
                           if c == "webhook"}
            outbox = tmp_path / "outbox"

            async def all_arrived() -> bool:
                got = {m["To"] for m in await asyncio.to_thread(mails, outbox)}
                return (len(rx.requests) >= len(expect_hooks) and got >= expect_mails
                        and all(len(heard[r]) >= len(expect_heard[r]) for r in ROLES))

            await eventually(all_arrived, timeout=30)
            await asyncio.sleep(1.0)  # anything that should not come has had its chance
        finally:
            for task in listeners:
                task.cancel()
            for task in listeners:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        # 4. exactly the table, read where the recipients read it
        assert {by_delivery[h["x-est-delivery"]] for h, _ in rx.requests} == expect_hooks
        assert len(rx.requests) == len(expect_hooks)
        received = mails(outbox)
        assert sorted(m["To"] for m in received) == sorted(expect_mails)
        for m in received:
            role, kind, channel = next(c for c in cells if cell_address(*c) == m["To"])
            in_digest = str(m["Subject"]).startswith("Sammanfattning:")
            assert in_digest == (channel == "digest" and "digest" in RECEIPT[kind].channels), (m["To"], m["Subject"])
        assert {r: sorted(heard[r]) for r in ROLES} == expect_heard
        ledger = (await n.http.get("/v1/deliveries", params={"limit": "1000"}, headers=org.auth("admin"))).json()
        withheld = {d["subscription_id"] for d in ledger if d["status"] == "withheld"}
        assert withheld == {cells[c] for c in refused}
        assert not [d for d in ledger if d["subscription_id"] in withheld and d["status"] != "withheld"]
        assert all("inte skickat" in d["last_error"] for d in ledger if d["status"] == "withheld")

        # 5. reminders: due 30 s before the deadline of the period that just ended
        mun = org.snapshot.municipalities[org.m]
        now = state["clock"].now()
        deadline = period_deadline(mun, current_period("weekly", now, mun.timezone))
        state["clock"].set(deadline - timedelta(seconds=30))
        state["reminders"].wake()
        reminded = await eventually(lambda: _subjects_to(outbox, "Påminnelse"), timeout=10)
        expected = {p.email for p in org.snapshot.people.values()
                    if may_receive(caller_for(org.snapshot, p.id), "reminder", org.m, org.a1)}
        assert reminded == expected == {"reporter@example.org"}

        # 6. a new sign-in credential for everyone: only police and social services are told
        changed = org.snapshot.model_copy(update={"version": 2, "people": {
            pid: p.model_copy(update={"token_sha256": hash_token(f"new-{pid}")})
            for pid, p in org.snapshot.people.items()}})
        await n.app.state.runtime.apply_org(changed)
        told = await eventually(lambda: _subjects_to(outbox, "Din inloggningsuppgift"), timeout=10)
        assert told == {p.email for p in org.snapshot.people.values()
                        if may_receive(caller_for(org.snapshot, p.id), "credential.changed", org.m)}
        assert told == {"police@example.org", "social-services@example.org"}


async def _subjects_to(outbox: Path, prefix: str) -> set[str]:
    """The recipients of outbox e-mails whose subject starts with ``prefix``."""
    return {str(m["To"]) for m in await asyncio.to_thread(mails, outbox) if str(m["Subject"]).startswith(prefix)}
