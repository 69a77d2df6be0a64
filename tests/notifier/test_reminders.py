"""Reminders before and after the deadline, only to reporters who have not reported, once each."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path
from typing import Any

from est_notifier.deliveries.domain import ReminderTimes, reminder_kind
from est_shared.events import Completeness, PictureUpdated, new_event
from est_shared.org import Person, period_deadline
from est_shared.periods import Period
from est_shared.subjects import picture_updated

from tests.notifier.support import Org, notifier_settings, picture_event, publish, running_notifier
from tests.support import eventually

PERIOD = "2026-W48"


def test_reminder_windows() -> None:
    times = ReminderTimes(before=24 * 3600, after=2 * 3600, late_limit=3600)
    dl = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert reminder_kind(dl - timedelta(hours=25), dl, times) is None
    assert reminder_kind(dl - timedelta(hours=23), dl, times) == "before"
    assert reminder_kind(dl - timedelta(hours=22, minutes=59), dl, times) is None  # too late for "before"
    assert reminder_kind(dl + timedelta(hours=1), dl, times) is None
    assert reminder_kind(dl + timedelta(hours=2, minutes=30), dl, times) == "after"
    assert reminder_kind(dl + timedelta(hours=4), dl, times) is None


def _org_with_reporters(org: Org) -> Org:
    extra = {
        "anna": Person(id=f"anna{org.m}", name="Anna Andersson", actor="vaxjohem", email="anna@example.org",
                       roles=["reporter"], areas=[org.a1], municipalities=[org.m]),
        "bo": Person(id=f"bo{org.m}", name="Bo Berg", actor="vaxjohem", email="bo@example.org",
                     roles=["reporter"], areas=[org.a1, org.a2], municipalities=[org.m]),
        "cissi": Person(id=f"cissi{org.m}", name="Cissi Ceder", actor="vaxjohem", roles=["reporter"],
                        areas=[org.a1], municipalities=[org.m]),
    }
    snap = org.snapshot.model_copy(update={"people": {**org.snapshot.people, **{p.id: p for p in extra.values()}}})
    return Org(org.m, org.a1, org.a2, snap, org.tokens)


def _updated(org: Org, missing: list[str], n: int, at: datetime) -> Any:
    pic = picture_event(org).data.picture.model_copy(update={
        "status": "open", "version": 0, "period": PERIOD,
        "completeness": Completeness(expected=3, received=3 - len(missing), missing_reporters=missing)})
    return new_event(type="se.est.picture.updated", source="/est/aggregator", data=PictureUpdated(picture=pic),
                     subject=org.a1, id=f"picture-updated:{org.a1}:{PERIOD}:{n}", time=at)


async def test_reminders_go_to_missing_reporters_before_and_after_the_deadline(nats_url: str, tmp_path: Path,
                                                                               org: Org) -> None:
    org = _org_with_reporters(org)
    anna, bo, cissi = (f"{n}{org.m}" for n in ("anna", "bo", "cissi"))
    settings = notifier_settings(nats_url, tmp_path, org, reminders_enabled=True, reminder_interval=0.1,
                                 reminder_late_limit=6 * 3600)
    mun = org.snapshot.municipalities[org.m]
    deadline = period_deadline(mun, Period.parse(PERIOD))
    outbox = tmp_path / "outbox"

    def mails() -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(p.read_bytes(), policy=default)  # type: ignore[misc]
                for p in sorted(outbox.glob("*.eml"))] if outbox.exists() else []

    async with running_notifier(settings, org) as n:
        clock = n.app.state.notifier["clock"]
        loop = n.app.state.notifier["reminders"]
        clock.set(deadline - timedelta(days=3))
        now = datetime.now(UTC)
        await publish(nats_url, picture_updated(org.m, org.a1), _updated(org, [bo, cissi], 1, now))
        await publish(nats_url, picture_updated(org.m, org.a1), _updated(org, [anna, bo, cissi], 0,
                                                                        now - timedelta(minutes=5)))  # older: ignored

        async def recorded() -> bool:
            async with n.app.state.notifier["sessions"]() as s:
                t = n.app.state.notifier["tables"].reminder_state
                row = (await s.execute(t.select().where(t.c.area_id == org.a1))).mappings().first()
                return bool(row) and sorted(row["missing"]) == sorted([bo, cissi])

        await eventually(recorded)
        loop.wake()
        assert mails() == []  # nothing due three days before

        clock.set(deadline - timedelta(hours=23))
        loop.wake()
        first = await eventually(lambda: _count(mails, 1))
        assert [m["To"] for m in first] == ["bo@example.org"]  # anna reported; cissi has no e-mail
        msg = first[0]
        assert msg["Subject"].startswith(f"Påminnelse: rapportera {PERIOD}")
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "Hej Bo Berg!" in text and "Araby" in text and "Teleborg" in text  # one mail for both areas
        assert msg["Content-Language"] == "sv"

        for _ in range(3):  # the clock moving on inside the window sends nothing again
            clock.advance(600)
            loop.wake()
        # bo reports; cissi still has not
        await publish(nats_url, picture_updated(org.m, org.a1),
                      _updated(org, [cissi], 2, datetime.now(UTC) + timedelta(seconds=1)))
        await eventually(_missing_is(n, org, [cissi]))
        clock.set(deadline + timedelta(hours=2, minutes=5))
        loop.wake()
        # bo is still missing in Teleborg (no report there at all): the after-reminder names only Teleborg
        after = await eventually(lambda: _count(mails, 2))
        late = next(m for m in after if "saknas" in m["Subject"])
        assert late["To"] == "bo@example.org" and "Teleborg" in late["Subject"] and "Araby" not in late["Subject"]
        clock.advance(600)
        loop.wake()
        metrics = (await n.http.get("/metrics")).text
        assert 'est_notifier_reminders_total{kind="before",outcome="queued"} 1.0' in metrics
        assert 'est_notifier_reminders_total{kind="before",outcome="no_email"} 2.0' in metrics  # cissi, other
        ledger = await n.ledger("admin")
        reminders = [r for r in ledger if r["event_type"] == "se.est.notifier.reminder"]
        assert len(reminders) == 2 and all(r["status"] == "delivered" for r in reminders)
    assert len(mails()) == 2


async def _count(mails: Any, n: int) -> Any:
    got = mails()
    assert len(got) <= n, [m["Subject"] for m in got]
    return got if len(got) == n else None


def _missing_is(n: Any, org: Org, missing: list[str]) -> Any:
    async def check() -> bool:
        async with n.app.state.notifier["sessions"]() as s:
            t = n.app.state.notifier["tables"].reminder_state
            row = (await s.execute(t.select().where(t.c.area_id == org.a1))).mappings().first()
            return bool(row) and row["missing"] == missing
    return check
