"""E-mail deliveries: a real aiosmtpd SMTP server, and the .eml outbox without SMTP."""

from __future__ import annotations

import email
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from est_notifier.domain import delivery_id
from est_shared.testing import free_port
from notifier_helpers import (
    Org,
    alert_event,
    alert_subject,
    eventually,
    notifier_settings,
    picture_event,
    picture_subject,
    publish,
    running_notifier,
)


class Collector:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def _parts(msg: Message) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in msg.walk()  # type: ignore[attr-defined]
            if part.get_content_type() in ("text/plain", "text/html")}


async def test_picture_email_reaches_a_real_smtp_server(nats_url: str, tmp_path: Path, org: Org) -> None:
    handler = Collector()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings = notifier_settings(nats_url, tmp_path, org, smtp_url=f"smtp://127.0.0.1:{port}")
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
            assert msg["Subject"] == "Lägesbild Araby 2026-W48 (version 1)"
            assert msg["X-EST-Delivery"] == delivery_id(sub["id"], event.id)
            parts = _parts(msg)
            assert "Klotter" in parts["text/plain"] and "ökande" in parts["text/plain"]
            assert "Klottret ökar vid centrum." in parts["text/plain"]
            assert "<table" in parts["text/html"] and "<td>Klotter</td>" in parts["text/html"]

            async def delivered() -> bool:
                rows = await n.ledger(subscription_id=sub["id"])
                return bool(rows) and rows[0]["status"] == "delivered" and rows[0]["channel"] == "email"

            await eventually(delivered)
    finally:
        controller.stop()


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
        assert "Graffiti at a high level in Araby." in parts["text/plain"]
        assert "Graffiti at a high level in Araby." in parts["text/html"]
