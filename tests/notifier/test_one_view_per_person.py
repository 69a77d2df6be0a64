"""One rule for what a person sees of a picture, on every channel: the names of who has not reported reach key
functions of the municipality and admins, the notes' text key functions and police of the municipality and
admins; everyone else gets the counts (``received``/``expected``, ``note_count``)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from est_notifier.deliveries import handlers as deliveries
from est_notifier.subscriptions.domain import audience, render_for
from est_shared.org import OrgSnapshot, hash_token
from est_shared.subjects import picture_published
from sqlalchemy import select

from tests.notifier.support import (
    Org,
    insert_subscription,
    notifier_db,
    notifier_settings,
    publish,
    read_email,
    realistic_org,
    realistic_picture,
    running_notifier,
    stream,
)

SENDER = "EST Lägesbild <est-lagesbild@vaxjo.se>"
PEOPLE = ("lena", "bo", "kim")
"""A key function, a property company's reporter and a police officer, all of Araby in Växjö."""
EXPECTED = {"lena": (True, True), "bo": (False, False), "kim": (False, True)}
"""Per person: (sees who has not reported by name, reads the notes' text)."""
MISSING_NAMES = "Anna Andersson, Bo Berg"
NOTE = "Klotter · Garagen: Ny tagg på garagelängan"


def shown(picture: dict[str, Any]) -> tuple[bool, bool]:
    """What a picture as delivered shows: (missing_reporters, notes' text), and it always keeps the counts."""
    c = picture["completeness"]
    assert c["received"] == 3 and c["expected"] == 5 and picture["note_count"] == 3
    return "missing_reporters" in c, bool(picture["notes"])


def shown_in_mail(raw: bytes) -> tuple[bool, bool]:
    """The same read from an e-mail, in its text and its HTML part alike (in Swedish)."""
    mail = read_email(raw)
    text, page = mail["text"], mail["html"]
    missing, notes = MISSING_NAMES in text, NOTE in text
    assert (MISSING_NAMES in page, NOTE in page) == (missing, notes)
    assert "3 inkomna / 5 förväntade" in text
    if not notes:
        assert "3 anteckningar" in text and "3 anteckningar" in page and "garagelängan" not in text + page
    if not missing:
        assert "Har inte rapporterat" not in text + page
    return missing, notes


def picture_of(out: dict[str, object]) -> dict[str, Any]:
    picture = out["picture"]
    assert isinstance(picture, dict)
    return picture


def test_the_rule_holds_per_municipality() -> None:
    data = {"picture": realistic_picture().data.picture.model_dump(mode="json")}
    elsewhere = audience(roles=["key_function"], areas=["araby"], actor_kind="municipality",
                         municipalities=["alvesta"])
    assert shown(picture_of(render_for("picture.published", data, elsewhere))) == (False, False)
    admin = audience(roles=["admin"], areas=[], actor_kind="municipality")
    assert shown(picture_of(render_for("picture.published", data, admin))) == (True, True)
    police_actor = audience(roles=["reporter"], areas=["araby"], actor_kind="police", municipalities=["vaxjo"])
    assert shown(picture_of(render_for("picture.published", data, police_actor))) == (False, False)
    assert len(data["picture"]["notes"]) == 3  # the input is not changed


async def test_webhook_email_and_digests_show_each_person_the_same(tmp_path: Path) -> None:
    snapshot = realistic_org()
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    subs: dict[str, tuple[str, str]] = {}
    for person in PEOPLE:
        for digest in ("immediate", "period"):
            for channel in ({"type": "webhook", "url": f"https://hooks.example.org/{person}/{digest}",
                             "secret": person},
                            {"type": "email", "to": f"{person}.{digest}@example.org"}):
                sub = await insert_subscription(sessions, tables, owner_id=person, channel=channel,
                                                events=["picture.published"], digest=digest)
                subs[sub] = (person, f"{channel['type']} {digest}")
    await deliveries.fan_out(realistic_picture(), sessions=sessions, tables=tables, consumer="c", sender=SENDER,
                             snapshot=snapshot, digest_due=lambda _m, _p: 0.0)
    assert await deliveries.flush_digests(time.time() + 1, sessions=sessions, tables=tables, sender_address=SENDER,
                                          max_items=10, snapshot=snapshot) == 6
    async with sessions() as s:
        rows = (await s.execute(select(tables.deliveries))).mappings().all()
    await engine.dispose()
    seen: dict[tuple[str, str], tuple[bool, bool]] = {}
    for r in rows:
        person, how = subs[r["subscription_id"]]
        if how == "webhook immediate":
            seen[(person, how)] = shown(json.loads(r["payload"])["data"]["picture"])
        elif how == "webhook period":
            (entry,) = json.loads(r["payload"])["data"]["events"]
            seen[(person, how)] = shown(entry["data"]["picture"])
        else:
            seen[(person, how)] = shown_in_mail(r["payload"])
    assert seen == {(p, how): EXPECTED[p] for p in PEOPLE
                    for how in ("webhook immediate", "webhook period", "email immediate", "email period")}


def with_tokens(snapshot: OrgSnapshot) -> tuple[OrgSnapshot, dict[str, str]]:
    tokens = {p: f"tok-{p}-view" for p in PEOPLE}
    people = {pid: p.model_copy(update={"token_sha256": hash_token(tokens[pid])}) if pid in tokens else p
              for pid, p in snapshot.people.items()}
    return snapshot.model_copy(update={"people": people}), tokens


async def test_the_live_stream_shows_each_person_the_same(nats_url: str, tmp_path: Path) -> None:
    snapshot, tokens = with_tokens(realistic_org())
    org = Org("vaxjo", "araby", "teleborg", snapshot, tokens)
    event = realistic_picture(event_id=f"picture:araby:2026-W49:v1:{time.time_ns()}")
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n, \
            contextlib.AsyncExitStack() as stack:
        streams = {p: (await stack.enter_async_context(stream(n.base, tokens[p])))[1] for p in PEOPLE}
        for sse in streams.values():
            assert (await sse.next())[":"] == "connected"
        await publish(nats_url, picture_published("vaxjo", "araby"), event)
        seen = {}
        for person, sse in streams.items():
            (got,) = await sse.events(1)
            assert got["id"] == event.id
            seen[person] = shown(json.loads(got["data"])["data"]["picture"])
    assert seen == EXPECTED
