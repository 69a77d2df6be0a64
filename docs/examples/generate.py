"""Write the notifier examples in this folder with the notifier's own code.

Run: .venv/bin/python docs/examples/generate.py
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from est_notifier.deliveries.domain import delivery_id
from est_notifier.deliveries.handlers import dump_event, freeze_email, freeze_webhook, personalise
from est_notifier.messages.render import build_email, names_of, render_reminder
from est_notifier.subscriptions.domain import audience
from est_shared.bus import encode
from est_shared.events import Completeness, ItemSummary, NoteSummary, PictureData, PicturePublished, new_event
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, period_deadline
from est_shared.periods import Period

HERE = Path(__file__).parent
WHEN = datetime(2026, 11, 30, 8, 5, tzinfo=UTC)
SUBSCRIPTION = "6f1c2a9e-3b7d-4f10-9a55-2c8e7d4b1a01"
SENDER = "EST Lägesbild <est-lagesbild@vaxjo.se>"
ORG = OrgSnapshot(
    version=1, municipalities={"vaxjo": Municipality(id="vaxjo", name="Växjö kommun", area_ids=["araby"])},
    areas={"araby": Area(id="araby", name="Araby", municipality_id="vaxjo", places=["Garagen", "Centrum"])},
    actors={"vaxjohem": Actor(id="vaxjohem", name="Växjöhem AB", kind="property_company"),
            "vaxjo-kommun": Actor(id="vaxjo-kommun", name="Växjö kommun", kind="municipality")},
    people={"bo": Person(id="bo", name="Bo Berg", actor="vaxjohem", roles=["reporter"], areas=["araby"],
                         municipalities=["vaxjo"]),
            "kf-vaxjo": Person(id="kf-vaxjo", name="Lena Lind", actor="vaxjo-kommun", roles=["key_function"],
                               areas=["araby"], municipalities=["vaxjo"])})


def picture_event() -> object:
    pic = PictureData(
        municipality_id="vaxjo", area_id="araby", area_name="Araby", period="2026-W48", status="published", version=1,
        reports=5,
        items={
            "klotter": ItemSummary(item="klotter", answer="level", label_sv="Klotter", label_en="Graffiti", value=2,
                                   reports=3, places={"centrum": 2, "skolgarden": 1}, previous=1, baseline=1.2,
                                   trend="up", flag="rising"),
            "skadegorelse": ItemSummary(item="skadegorelse", answer="count", label_sv="Skadegörelse",
                                        label_en="Vandalism", value=4, reports=2, places={"parkeringen": 2},
                                        previous=4, baseline=3.5, trend="flat"),
            "brand": ItemSummary(item="brand", answer="count", label_sv="Anlagd brand",
                                 label_en="Deliberately set fire", value=1, reports=1, previous=0, trend="new",
                                 flag="new"),
        },
        completeness=Completeness(expected=6, received=5, on_time=4, late=1, rate=0.83,
                                  per_actor={"vaxjohem": {"expected": 3, "received": 3, "on_time": 3, "late": 0,
                                                          "nothing_to_report": 0}},
                                  missing_reporters=["bo"]),
        first_analysis={"sv": "Klottret ökar vid centrum och skolgården; skadegörelsen ligger kvar på samma nivå.",
                        "en": "Graffiti is rising at the centre and the schoolyard; vandalism is unchanged."},
        notes=[NoteSummary(item="klotter", label_sv="Klotter", label_en="Graffiti", place="Garagen",
                           place_name="Garagen", text="Ny tagg på garagelängan", report_id="r-1"),
               NoteSummary(item="skadegorelse", label_sv="Skadegörelse", label_en="Vandalism",
                           text="Krossad ruta i porten mot parkeringen", report_id="r-2")],
        note_count=2,
        comments=[{"by": "kf-vaxjo", "actor_id": "vaxjo-kommun", "version": 1, "at": "2026-11-30T16:05:00+00:00",
                   "text": "Fastighetsbolaget lagar belysningen vid garagen den här veckan."}],
        kronoberg={"interventions": 4, "litres_by_beverage": {"beer": 3.3, "cider": 1.0}, "litres_total": 4.3,
                   "share_under_18": 0.75, "guardian_contacted": 2, "direct_forfeiture": 4,
                   "by_weekday": {"fri": 3, "sat": 1}, "by_time_of_day": {"evening": 4}, "places": {},
                   "coarsened": False},
    )
    return new_event(type="se.est.picture.published", source="/est/aggregator", subject="araby", time=WHEN,
                     id="picture:araby:2026-W48:v1", data=PicturePublished(picture=pic))


def main() -> None:
    event = picture_event()
    raw = json.loads(encode(event))  # type: ignore[arg-type]
    did = delivery_id(SUBSCRIPTION, event.id)  # type: ignore[attr-defined]
    # a property company's operations centre: coarsened Kronoberg counts, no list of who has not reported, the
    # number of notes without their text
    company = audience(roles=["reporter"], areas=["araby"], actor_kind="property_company", municipalities=["vaxjo"])
    seen = personalise(raw, "picture.published", company) or raw
    row = {"channel": {"type": "webhook", "url": "https://drift.vaxjohem.se/est", "secret": "s3cret"},
           "language": "sv"}
    target, body = freeze_webhook(dump_event(seen), row=row, did=did)
    headers = {**target["headers"], "X-EST-Attempt": "1", "User-Agent": "est-lagesbild-notifier/0.1",
               "Content-Length": str(len(body))}
    http = "POST /est HTTP/1.1\r\nHost: drift.vaxjohem.se\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    (HERE / "webhook-picture-published.http").write_bytes(http.encode() + b"\r\n" + body)
    (HERE / "webhook-picture-published.json").write_text(json.dumps(seen, ensure_ascii=False, indent=2) + "\n")

    # the key function's e-mail: who has not reported by name, the notes by item and place, Kronoberg counts
    # coarsened
    key = audience(roles=["key_function"], areas=["araby"], actor_kind="municipality", municipalities=["vaxjo"])
    mail_seen = personalise(raw, "picture.published", key) or raw
    mail_row = {"channel": {"type": "email", "to": "lena.lind@vaxjo.se"}, "language": "sv"}
    _t, eml = freeze_email(event.type, event.id, mail_seen["data"], row=mail_row,  # type: ignore[attr-defined]
                           did=delivery_id("7a0d3c55-1e2f-4b8a-8c61-9f0e2d3c4b5a", event.id),  # type: ignore[attr-defined]
                           sender=SENDER, now=WHEN, names=names_of(ORG))
    (HERE / "picture-published.sv.eml").write_bytes(eml)

    mun = Municipality(id="vaxjo", name="Växjö kommun", area_ids=["araby"])
    deadline = period_deadline(mun, Period.parse("2026-W48"))
    rendered = render_reminder(kind="before", person_name="Bo Berg", period="2026-W48", areas=["Araby"],
                               deadline=deadline)
    reminder_id = delivery_id("reminders", "reminder:before:2026-W48:bo")
    (HERE / "reminder-before.sv.eml").write_bytes(build_email(
        rendered, sender=SENDER, to="bo.berg@vaxjohem.se", delivery_id=reminder_id,
        event_id="reminder:before:2026-W48:bo", language="sv", date=datetime(2026, 11, 29, 8, 0, tzinfo=UTC)))


if __name__ == "__main__":
    main()
