"""Every e-mail a person reads is in their language with the organisation's names: no level, trend, flag or
severity code, no id of an area, item, municipality, actor or person, and every period with its dates."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from est_notifier.deliveries import handlers as deliveries
from est_notifier.deliveries import notices, reminders
from est_notifier.deliveries.domain import ReminderTimes
from est_notifier.messages.render import (
    build_email,
    period_text,
    render_credential_changed,
    render_forfeiture_notification,
    render_reminder,
)
from est_shared.checklists import BUILTIN_CHECKLISTS
from est_shared.events import AlertData, AnalysisPublished, new_event
from est_shared.org import OrgSnapshot, period_deadline
from est_shared.periods import Period
from sqlalchemy import select

from tests.notifier.support import (
    REAL_PERIOD,
    insert_subscription,
    notifier_db,
    read_email,
    realistic_org,
    realistic_picture,
)

CODES = ("up", "down", "flat", "new", "rising", "high", "info", "warning", "critical")
"""Trend, flag and severity codes as the events carry them (level codes are the numbers 0-3, shown with their word)."""
SENDER = "EST Lägesbild <est-lagesbild@vaxjo.se>"


def org_ids(snapshot: OrgSnapshot) -> set[str]:
    """Every id of the organisation a message could leak: areas, municipalities, actors, people, checklist items."""
    items = {i.code for c in BUILTIN_CHECKLISTS.values() for i in c.items}
    return {*snapshot.areas, *snapshot.municipalities, *snapshot.actors, *snapshot.people, *items}


def org_names(snapshot: OrgSnapshot) -> list[str]:
    """Every name and label a message may show (longest first): an id inside a name ("brand" in "Anlagd
    brand") is the name, not a leaked id."""
    labels = {x for c in BUILTIN_CHECKLISTS.values() for i in c.items for x in (i.label_sv, i.label_en)}
    names = {*(a.name for a in snapshot.areas.values()), *(m.name for m in snapshot.municipalities.values()),
             *(a.name for a in snapshot.actors.values()), *(p.name for p in snapshot.people.values()), *labels}
    return sorted(names, key=len, reverse=True)


def raw_codes(text: str, snapshot: OrgSnapshot, language: str) -> list[str]:
    """The raw codes a reader would find in ``text``: names and addresses (URLs, e-mail addresses, paths) are
    taken out first; ids are matched as whole words as written (lower case), codes in any case."""
    for name in org_names(snapshot):
        text = text.replace(name, " ")
    text = re.sub(r"\S*[/@]\S*", " ", text)
    found = [i for i in org_ids(snapshot) if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", text)]
    found += [c for c in CODES if re.search(rf"(?<![\w-]){c}(?![\w-])", text, re.IGNORECASE)]
    found += [f"undated {m}" for m in re.findall(r"\b\d{4}-[WBQT]\d{1,2}\b(?! \()", text)]
    if language == "sv":
        found += [w for w in ("interventions", "Interventions") if w in text]
    return found


def alert(kind: str, *, severity: str, resolved: bool = False, period: str = REAL_PERIOD) -> Any:
    data = AlertData(alert_id=f"{kind}:araby:klotter", municipality_id="vaxjo", area_id="araby", item="klotter",
                     kind=kind, period=period, severity=severity,  # type: ignore[arg-type]
                     message={"sv": "Klotter i Araby 2026-W49: ökande.", "en": "Graffiti in Araby 2026-W49: rising."})
    suffix = "resolved" if resolved else "raised"
    return new_event(type=f"se.est.alert.{suffix}", source="/est/aggregator", data=data, subject="araby",
                     id=f"alert:{kind}:{suffix}")


def analysis() -> Any:
    data = AnalysisPublished(
        analysis_id="vaxjo:2026-T3:r1", municipality_id="vaxjo", period="2026-T3",
        summary={"sv": "Strategisk analys för Växjö kommun, tertial 3 2026 (sep–dec): 1 bestående problem i 1 av 2 "
                       "områden.",
                 "en": "Strategic analysis for Växjö kommun, T3 2026 (Sep–Dec): 1 persistent problem in 1 of 2 areas."},
        persistent_problems=[{"area_id": "araby", "area_name": "Araby", "item": "klotter", "label_sv": "Klotter",
                              "label_en": "Graffiti", "k": 3, "n": 4, "held_at": ["2026-W49"],
                              "periods_flagged": ["2026-W47", "2026-W48", "2026-W49"], "ongoing": True},
                             {"area_id": "teleborg", "item": "brand", "ongoing": False}],
        report_path="/v1/analyses/vaxjo:2026-T3:r1/report.html")
    return new_event(type="se.est.analysis.published", source="/est/analysis", data=data, subject="vaxjo",
                     id="analysis:vaxjo:2026-T3:r1")


REVISION_CHANGES = ["reports: 2 → 3", "klotter: 1 → 2", "klotter flag: - → rising", "skadegorelse flag: high → -",
                    "completeness.received: 2 → 3", "comments: 0 → 1"]


async def every_message(tmp_path: Path, snapshot: OrgSnapshot) -> list[tuple[str, str, bytes]]:
    """(what, language, raw e-mail) of every kind of message, made by the notifier's own code paths."""
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    events = ["picture.published", "alert.raised", "alert.resolved", "analysis.published"]
    subs: dict[str, tuple[str, str]] = {}
    for owner in ("lena", "bo", "kim"):
        for language in ("sv", "en"):
            for digest in ("immediate", "period"):
                sub = await insert_subscription(
                    sessions, tables, owner_id=owner, language=language, digest=digest,
                    events=events if owner == "lena" else events[:3], area_ids=["araby", "teleborg"],
                    channel={"type": "email", "to": f"{owner}.{language}.{digest}@example.org"})
                subs[sub] = (f"{owner} {digest}", language)
    made = [realistic_picture(), realistic_picture(version=2, revision=True, changes=REVISION_CHANGES),
            alert("flag:high", severity="warning"), alert("flag:rising", severity="info"),
            alert("flag:new", severity="info"), alert("persistent", severity="critical"),
            alert("flag:high", severity="info", resolved=True), analysis()]
    for event in made:
        await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="c", sender=SENDER,
                                 snapshot=snapshot, digest_due=lambda _m, _p: 0.0)
    assert await deliveries.flush_digests(time.time() + 1, sessions=sessions, tables=tables, sender_address=SENDER,
                                          max_items=20, snapshot=snapshot) == 8  # per subscription and window
    deadline = period_deadline(snapshot.municipalities["vaxjo"], Period.parse(REAL_PERIOD))
    # reminders go to whom the organisation expected in the period: it must be known since before it
    await reminders.record_org(snapshot, deadline - timedelta(days=30), sessions=sessions, tables=tables)
    await reminders.send_due_reminders(deadline - timedelta(hours=1), sessions=sessions, tables=tables,
                                       snapshot=snapshot, sender=SENDER, times=ReminderTimes())
    async with sessions() as s:
        paused = [await notices.queue_paused_notice(s, tables=tables, snapshot=snapshot, sender=SENDER,
                                                    subscription_id=sub, dead=5)
                  for sub, (who, _language) in subs.items() if who == "lena immediate"]
        await s.commit()
    async with sessions() as s:
        rows = (await s.execute(select(tables.deliveries))).mappings().all()
    await engine.dispose()
    out: list[tuple[str, str, bytes]] = []
    for r in rows:
        if r["subscription_id"] in subs:
            who, language = subs[r["subscription_id"]]
            out.append((f"{r['event_type']} for {who}", language, r["payload"]))
        elif r["id"] in paused:
            out.append(("paused notice", "en" if b"Content-Language: en" in r["payload"] else "sv", r["payload"]))
        elif r["event_type"] == "se.est.notifier.reminder":
            out.append(("reminder", "sv", r["payload"]))
    when = deadline.astimezone(deadline.tzinfo)
    out.append(("reminder after", "en", build_email(
        render_reminder(kind="after", person_name="Bo Berg", period=REAL_PERIOD, areas=["Araby"], deadline=when,
                        language="en"), sender=SENDER, to="bo.berg@vaxjohem.se", delivery_id="d-r", event_id="e-r",
        language="en", date=datetime.now(UTC))))
    out.append(("credential notice", "sv", build_email(
        render_credential_changed(person_name="Kim Karlsson", when="2026-12-02 09:15 CET"), sender=SENDER,
        to="kim.karlsson@polisen.se", delivery_id="d-c", event_id="e-c", language="sv", date=datetime.now(UTC))))
    for language in ("sv", "en"):
        notice = render_forfeiture_notification(
            {"protocol_id": "5b0e6c1e-2f55-4c39-9d3a-7f1b8a0c2d44", "reason": "under_18"},
            municipality="Växjö kommun", day="2026-12-01", link="https://est.vaxjo.se/protokoll/5b0e6c1e",
            language=language)
        out.append(("social-services notification", language, build_email(
            notice, sender=SENDER, to="sara.svensson@vaxjo.se", delivery_id="d-n", event_id="e-n",
            language=language, date=datetime.now(UTC))))
    return out


async def test_every_message_names_things_in_the_readers_language(tmp_path: Path) -> None:
    snapshot = realistic_org()
    messages = await every_message(tmp_path, snapshot)
    kinds = {(what.split(" for ")[0], language) for what, language, _raw in messages}
    for kind in ("se.est.picture.published", "se.est.alert.raised", "se.est.alert.resolved",
                 "se.est.analysis.published", "se.est.notification.digest", "paused notice",
                 "social-services notification"):
        assert {(kind, "sv"), (kind, "en")} <= kinds, kind
    assert {("reminder", "sv"), ("reminder after", "en"), ("credential notice", "sv")} <= kinds
    for what, language, raw in messages:
        mail = read_email(raw)
        for part, text in mail.items():
            assert raw_codes(text, snapshot, language) == [], (what, language, part, text)


async def test_names_dates_and_words_a_key_function_reads(tmp_path: Path) -> None:
    snapshot = realistic_org()
    mails = [(what, language, read_email(raw)) for what, language, raw in await every_message(tmp_path, snapshot)]

    def one(what: str, language: str, subject: str = "") -> dict[str, str]:
        (found,) = [m for w, lang, m in mails if w == what and lang == language and m["subject"].startswith(subject)]
        return found

    first = one("se.est.picture.published for lena immediate", "sv", "Lägesbild")
    assert first["subject"] == "Lägesbild Araby 2026-W49 (30 nov – 6 dec), version 1"
    for part in ("text", "html"):
        body = first[part]
        assert "Har inte rapporterat: Anna Andersson, Bo Berg" in body, part
        assert "Växjöhem AB: 2 av 4" in body and "2 (återkommande)" in body, part
        assert "Kronobergsmodellen" in body and "<3" in body, part
        assert "Klottret ökar vid Garagen sedan 2026-W47 (16–22 nov)." in body, part
        assert all(w in body for w in ("uppåt", "nedåt", "oförändrad", "ökande", "hög")), part
    police = one("se.est.picture.published for kim immediate", "sv", "Lägesbild")
    assert "dolt (färre än 3 ingripanden)" in police["text"] and "dolt (färre än 3 ingripanden)" in police["html"]
    alerts_en = [m for w, lang, m in mails if w == "se.est.alert.raised for lena immediate" and lang == "en"]
    assert len(alerts_en) == 4
    assert all(m["subject"].startswith("Alert: Araby – Graffiti 2026-W49 (30 Nov – 6 Dec)") for m in alerts_en)
    assert {line for m in alerts_en for line in m["text"].splitlines() if line.startswith("Severity")} == {
        "Severity: moderate", "Severity: low", "Severity: severe"}
    assert "Graffiti in Araby, 2026-W49 (30 Nov – 6 Dec): above-normal level." in alerts_en[0]["text"] + \
        "".join(m["text"] for m in alerts_en[1:])
    assert any("Allvarlighet: varning" in m["text"] for w, lang, m in mails
               if lang == "sv" and w.startswith("se.est.alert.raised"))
    revised = one("se.est.picture.published for lena immediate", "en", "Revision")
    assert "Graffiti, flag: – → growing" in revised["text"] and "Graffiti: 1 → 2" in revised["text"]
    analysis_mail = one("se.est.analysis.published for lena immediate", "sv")
    assert analysis_mail["subject"] == "Strategisk analys Växjö kommun 2026-T3 (sep–dec 2026)"
    assert "Araby: Klotter (pågår)" in analysis_mail["text"] and "Teleborg: Anlagd brand" in analysis_mail["text"]
    digests = [m for w, lang, m in mails if w == "se.est.notification.digest for lena period" and lang == "sv"]
    assert {m["subject"] for m in digests} == {"Sammanfattning: Växjö kommun 2026-W49 (30 nov – 6 dec)",
                                               "Sammanfattning: Växjö kommun 2026-T3 (sep–dec 2026)"}
    reminder_subjects = {m["subject"].rsplit(" senast ", 1)[0] for w, _lang, m in mails if w == "reminder"}
    assert reminder_subjects == {"Påminnelse: rapportera 2026-W49 (30 nov – 6 dec) för Araby"}


@pytest.mark.parametrize(("period", "sv", "en"), [
    ("2026-W49", "2026-W49 (30 nov – 6 dec)", "2026-W49 (30 Nov – 6 Dec)"),
    ("2026-W48", "2026-W48 (23–29 nov)", "2026-W48 (23–29 Nov)"),
    ("2026-W01", "2026-W01 (29 dec 2025 – 4 jan 2026)", "2026-W01 (29 Dec 2025 – 4 Jan 2026)"),
    ("2026-B47", "2026-B47 (16–29 nov)", "2026-B47 (16–29 Nov)"),
    ("2026-T2", "2026-T2 (maj–aug 2026)", "2026-T2 (May–Aug 2026)"),
    ("2026-Q4", "2026-Q4 (okt–dec 2026)", "2026-Q4 (Oct–Dec 2026)"),
    ("not-a-period", "not-a-period", "not-a-period"),
])
def test_a_period_reads_with_its_dates(period: str, sv: str, en: str) -> None:
    assert period_text(period, "sv") == sv and period_text(period, "en") == en
