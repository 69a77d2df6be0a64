"""Notifications with personal data for social services: opened only to send them, every opening logged.

The fan-out stores a delivery of ``se.est.forfeiture.notification_due`` with the event exactly as it came
from the bus: the person still sealed (AES-GCM, ``est_shared.sealed``). Nothing is rendered then. At each
attempt the worker asks ``PersonalDeliveries.prepare``, which checks that the owner is still social
services of the municipality, and then:

- for a webhook: checks that the target is https (plain http only to a host or range the operator allows
  in ``EST_NOTIFIER_WEBHOOK_ALLOW``), opens the sealed person with ``EST_PII_KEY``, renders the body in
  memory and signs it; the read goes to ``personal_data_log`` in the same transaction as the attempt's
  ledger row (who: subscription and owner; what: protocol; outcome);
- for an e-mail: opens nothing. An e-mail passes servers and mailboxes outside the system's control, so it
  only says that a protocol concerning a young person in the municipality needs action, and links to where
  it is read after sign-in (``{public_url}/app/#forfeitures/<protocol id>``; the intake's
  ``GET /v1/forfeitures/{id}?purpose=`` logs that read).

Choice made: re-render from the sealed event on every retry instead of freezing rendered bytes encrypted, so
the stored payload is never anything but the sealed event, and once the delivery is finished (delivered,
failed, dead or cancelled) even that is wiped from the row. The e-mail Date and the webhook signature are
therefore per attempt; the delivery id (``X-EST-Delivery``/``Idempotency-Key``, Message-ID) stays the same
for de-duplication. Logs and metrics carry ids and outcomes only, never the opened data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from est_shared.clock import utcnow
from est_shared.errors import Invalid
from est_shared.periods import DEFAULT_TIMEZONE
from est_shared.sealed import NOTIFICATION_PURPOSE, PiiCipher, PiiDecryptError, PiiKeyError, open_json, purpose_context
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from est_notifier.deliveries.domain import sign
from est_notifier.messages.render import build_email, notification_notice, render_forfeiture_notification
from est_notifier.subscriptions import db as subscription_db
from est_notifier.subscriptions.domain import NOTIFICATION_TYPE, PERSONAL_KINDS, caller_for, may_hold_personal
from est_notifier.subscriptions.egress import NO_ALLOW, AllowList
from est_notifier.subscriptions.receipt import check_personal_channel
from est_notifier.tables import Tables

log = logging.getLogger("est.notifier")

SEALED_FIELDS = ("sealed_person", "key_id")


class NotOpened(Exception):
    """The sealed data was not opened: ``outcome`` retry (key missing, may be configured) or failed."""

    def __init__(self, outcome: str, error: str) -> None:
        super().__init__(error)
        self.outcome, self.error = outcome, error


@dataclass
class Prepared:
    """A delivery ready to send (payload and target rendered in memory) and the read to log (None when
    nothing sealed was opened)."""

    delivery: dict[str, Any]
    read: dict[str, Any] | None


def is_personal(delivery: dict[str, Any]) -> bool:
    """Whether a delivery holds a sealed notification (rendered at send time)."""
    return delivery.get("event_type") == NOTIFICATION_TYPE


class PersonalDeliveries:
    """Opens sealed notifications for the delivery worker; the key is loaded when first needed."""

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], tables: Tables,
                 load_cipher: Callable[[], PiiCipher], snapshot: Callable[[], Any], sender: str,
                 public_url: str = "http://127.0.0.1:8080", webhook_allow: AllowList = NO_ALLOW) -> None:
        self.sessions, self.tables, self.load_cipher, self.snapshot = sessions, tables, load_cipher, snapshot
        self.sender, self.public_url, self.webhook_allow = sender, public_url.rstrip("/"), webhook_allow
        self._cipher: PiiCipher | None = None

    def link(self, protocol_id: str) -> str:
        """Where social services read a protocol after sign-in: the web front end's protocol page."""
        return f"{self.public_url}/app/#forfeitures/{protocol_id}"

    def cipher(self) -> PiiCipher:
        if self._cipher is None:
            try:
                self._cipher = self.load_cipher()
            except PiiKeyError as exc:
                raise NotOpened("retry", f"personal-data key not available: {exc}") from None
        return self._cipher

    async def prepare(self, d: dict[str, Any]) -> Prepared:
        """The delivery with its personal data opened and rendered for the subscription; NotOpened if not."""
        async with self.sessions() as s:
            sub = await subscription_db.get_subscription(s, self.tables, d["subscription_id"], include_deleted=True)
        if sub is None or sub["deleted_at"] is not None or sub.get("ended_at") is not None:
            raise NotOpened("failed", "subscription gone; personal data not opened")
        try:
            event = json.loads(d["payload"])
            data = dict(event["data"])
            pid, municipality = str(data["protocol_id"]), str(data["municipality_id"])
        except (ValueError, KeyError, TypeError):
            raise NotOpened("failed", "stored notification unreadable") from None
        owner = caller_for(self.snapshot(), sub["owner_id"])
        if not may_hold_personal(owner, municipality) or sub["municipality_id"] != municipality:
            raise NotOpened("failed", "owner is not social services of the municipality; personal data not opened")
        purpose = str(data.get("purpose") or NOTIFICATION_PURPOSE)
        if purpose != NOTIFICATION_PURPOSE:
            raise NotOpened("failed", "sealed for another purpose; not opened")
        clear = {k: v for k, v in data.items() if k not in SEALED_FIELDS}
        channel = sub["channel"]
        did = d["id"]
        out = dict(d)
        if channel["type"] != "webhook":  # the e-mail holds no personal data: nothing to open
            mun = self.snapshot().municipalities.get(municipality)
            rendered = render_forfeiture_notification(clear, municipality=mun.name if mun else municipality,
                                                      day=self._when(clear)[:10], link=self.link(pid),
                                                      language=sub["language"])
            out["payload"] = build_email(rendered, sender=self.sender, to=channel["to"], delivery_id=did,
                                         event_id=d["event_id"], language=sub["language"], date=utcnow())
            out["target"] = {"from": self.sender, "to": [channel["to"]]}
            return Prepared(out, None)
        try:
            check_personal_channel(channel, PERSONAL_KINDS, self.webhook_allow)
        except Invalid:
            raise NotOpened("failed", "personal data goes only over https (plain http only to targets the "
                                      "operator allows); not opened") from None
        cipher = self.cipher()
        try:
            person = open_json(cipher, str(data.get("sealed_person", "")), context=purpose_context(pid, purpose))
        except PiiDecryptError as exc:
            outcome = "retry" if exc.key_id and exc.key_id not in cipher.key_ids else "failed"
            raise NotOpened(outcome, f"sealed personal data cannot be opened: {exc} (key {exc.key_id})") from None
        doc = {**event, "data": {**clear, "person": person,
                                 "notice": notification_notice(str(data.get("reason")), sub["language"])}}
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        out["payload"] = body
        out["target"] = {"url": channel["url"], "headers": {
            "Content-Type": "application/cloudevents+json", "X-EST-Signature": sign(channel["secret"], body),
            "X-EST-Delivery": did, "Idempotency-Key": did}}
        read = {"protocol_id": pid, "event_id": d["event_id"], "delivery_id": did,
                "subscription_id": sub["id"], "owner_id": sub["owner_id"], "channel": channel["type"],
                "target": str(channel["url"])[:600], "purpose": purpose}
        return Prepared(out, read)

    def _when(self, data: dict[str, Any]) -> str:
        """The local time of the forfeiture in the municipality's timezone."""
        mun = self.snapshot().municipalities.get(str(data.get("municipality_id")))
        tz = ZoneInfo(mun.timezone if mun else DEFAULT_TIMEZONE)
        try:
            return datetime.fromisoformat(str(data["occurred_at"])).astimezone(tz).strftime("%Y-%m-%d %H:%M")
        except (KeyError, ValueError):
            return str(data.get("occurred_at", ""))
