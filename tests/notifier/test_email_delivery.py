"""E-mail deliveries: a real aiosmtpd SMTP server, and the .eml outbox without SMTP."""

from __future__ import annotations

import email
from datetime import timedelta
from email.message import Message
from email.policy import default
from pathlib import Path

from est_notifier.deliveries import reminders
from est_notifier.deliveries.domain import delivery_id
from est_shared.events import PicturePublished, new_event

from tests.notifier.support import (
    Org,
    alert_event,
    alert_subject,
    notifier_db,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    running_notifier,
    smtp_server,
)
from tests.support import eventually


def _parts(msg: Message) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in msg.walk()  # type: ignore[attr-defined]
            if part.get_content_type() in ("text/plain", "text/html")}


async def test_picture_email_reaches_a_real_smtp_server(nats_url: str, tmp_path: Path, org: Org) -> None:
    with smtp_server() as (handler, url):
        settings = notifier_settings(nats_url, tmp_path, org, smtp_url=url)
        async with running_notifier(settings, org) as n:
            sub = await n.subscribe(channel={"type": "email", "to": "drift@example.org"}, language="sv")
            event = picture_event(org)
            await publish(nats_url, picture_subject(org), event)

            async def got() -> bool:
                return bool(handler.messages)

            await eventually(got)
            _sender, rcpts, raw = handler.messages[0]
            assert rcpts == ["drift@example.org"]
            msg = email.message_from_bytes(raw, policy=default)
            assert msg["Subject"] == "Lägesbild Araby 2026-W48 (23–29 nov), version 1"
            assert msg["X-EST-Delivery"] == delivery_id(sub["id"], event.id)
            parts = _parts(msg)
            assert "Klotter" in parts["text/plain"] and "ökande" in parts["text/plain"]
            assert "Klottret ökar vid centrum." in parts["text/plain"]
            assert "<table" in parts["text/html"] and "<td>Klotter</td>" in parts["text/html"]

            async def delivered() -> bool:
                rows = await n.ledger(subscription_id=sub["id"])
                return bool(rows) and rows[0]["status"] == "delivered" and rows[0]["channel"] == "email"

            await eventually(delivered)


async def test_the_key_functions_publish_comment_is_in_both_parts_of_the_e_mail(nats_url: str, tmp_path: Path,
                                                                                org: Org) -> None:
    comments = [{"by": "p-kf", "actor_id": "kommun", "text": "Tidigare vecka: lugnt.", "version": 1, "at": ""},
                {"by": "p-kf", "actor_id": "kommun", "text": "Vaktbolaget går extra rundor vid garagen.",
                 "version": 2, "at": ""}]
    with smtp_server() as (handler, url):
        settings = notifier_settings(nats_url, tmp_path, org, smtp_url=url)
        async with running_notifier(settings, org) as n:
            await n.subscribe(channel={"type": "email", "to": "drift@example.org"}, language="sv")
            await publish(nats_url, picture_subject(org), picture_event(org, version=2, comments=comments))

            async def got() -> bool:
                return bool(handler.messages)

            await eventually(got)
            parts = _parts(email.message_from_bytes(handler.messages[0][2], policy=default))
            for kind in ("text/plain", "text/html"):
                body = parts[kind]
                assert "Kommentar från nyckelfunktionen" in body, kind
                assert "Vaktbolaget går extra rundor vid garagen." in body, kind
                assert "Tidigare vecka: lugnt. (tidigare version 1)" in body, kind
                # this version's comment comes before the table and before the earlier one
                assert body.index("Vaktbolaget") < body.index("Tidigare vecka") < body.index("Klotter"), kind
                assert "p-kf" not in body, kind


async def test_without_smtp_the_mail_goes_to_the_eml_outbox_in_english(nats_url: str, tmp_path: Path,
                                                                       org: Org) -> None:
    async with running_notifier(notifier_settings(nats_url, tmp_path, org), org) as n:
        sub = await n.subscribe(channel={"type": "email", "to": "ops@example.org"}, language="en",
                                events=["alert.raised"])
        event = alert_event(org, severity="critical")
        await publish(nats_url, alert_subject(org), event)
        path = tmp_path / "outbox" / f"{delivery_id(sub['id'], event.id)}.eml"

        async def written() -> bool:
            return path.exists()

        await eventually(written)
        msg = email.message_from_bytes(path.read_bytes(), policy=default)
        assert msg["To"] == "ops@example.org"
        assert msg["Subject"].startswith("Alert:")
        parts = _parts(msg)
        lead = "Graffiti in Araby, 2026-W48 (23–29 Nov): above-normal level."
        assert lead in parts["text/plain"] and lead in parts["text/html"]


HOSTILE = "Araby\r\nBcc: evil@example.org"
"""An area name as an organisation snapshot of an older version may hold it (new files refuse it)."""


async def test_an_area_name_with_a_line_break_does_not_break_its_e_mails(nats_url: str, tmp_path: Path,
                                                                         org: Org) -> None:
    with smtp_server() as (handler, url):
        settings = notifier_settings(nats_url, tmp_path, org, smtp_url=url)
        async with running_notifier(settings, org) as n:
            sub = await n.subscribe(channel={"type": "email", "to": "drift@example.org"}, events=["picture.published"])
            base = picture_event(org)
            hostile = base.data.picture.model_copy(update={"area_name": HOSTILE})
            event = new_event(type=base.type, source=base.source, subject=base.subject, id=base.id,
                              data=PicturePublished(picture=hostile))
            await publish(nats_url, picture_subject(org), event)

            async def delivered() -> bool:
                rows = await n.ledger(subscription_id=sub["id"])
                return bool(rows) and rows[0]["status"] == "delivered"

            await eventually(delivered)
        (_sender, rcpts, raw) = handler.messages[0]
        assert rcpts == ["drift@example.org"]
        msg = email.message_from_bytes(raw, policy=default)
        assert msg["Subject"] == "Lägesbild Araby Bcc: evil@example.org 2026-W48 (23–29 nov), version 1"
        assert msg["Bcc"] is None and len(handler.messages) == 1


async def test_a_reminder_for_an_area_named_with_a_line_break_is_still_sent(tmp_path: Path, org: Org) -> None:
    from est_notifier.deliveries.db import get_delivery
    from est_notifier.deliveries.domain import ReminderTimes
    from est_shared.org import Area, Person, period_deadline
    from est_shared.periods import Period

    anna = Person(id=f"anna{org.m}", name="Anna\r\nAndersson", actor="vaxjohem", email="anna@example.org",
                  roles=["reporter"], areas=[org.a1], municipalities=[org.m])
    snapshot = org.snapshot.model_copy(update={
        "areas": {**org.snapshot.areas, org.a1: Area(id=org.a1, name=HOSTILE, municipality_id=org.m)},
        "people": {**org.snapshot.people, anna.id: anna}})
    deadline = period_deadline(snapshot.municipalities[org.m], Period.parse("2026-W48"))
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    await reminders.record_org(snapshot, deadline - timedelta(days=30), sessions=sessions, tables=tables)
    (made,) = await reminders.send_due_reminders(deadline - timedelta(hours=1), sessions=sessions, tables=tables,
                                                 snapshot=snapshot, sender="est@example.org", times=ReminderTimes())
    async with sessions() as s:
        row = await get_delivery(s, tables, made)
    await engine.dispose()
    assert row is not None
    msg = email.message_from_bytes(row["payload"], policy=default)
    assert msg["Subject"] == "Påminnelse: rapportera 2026-W48 (23–29 nov) för Araby Bcc: evil@example.org senast " \
                             f"{deadline.strftime('%Y-%m-%d %H:%M')}"
    assert msg["Bcc"] is None and msg["To"] == "anna@example.org"
