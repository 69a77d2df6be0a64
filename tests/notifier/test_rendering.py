"""Per-recipient rendering: each owner gets only what they may see, frozen per delivery."""

from __future__ import annotations

import email
import json
from email.policy import default
from pathlib import Path
from typing import Any

from est_notifier.deliveries import handlers as deliveries
from est_notifier.deliveries.domain import verify
from est_notifier.subscriptions import handlers
from est_notifier.subscriptions.domain import Audience, audience, caller_for, coarsen_kronoberg, render_for
from est_shared.events import AnalysisPublished, Completeness, PictureData, PicturePublished, new_event
from est_shared.org import Actor, Person, hash_token
from sqlalchemy import select

from tests.notifier.support import Org, notifier_db, picture_event, store_subscription

KRONOBERG = {"interventions": 7, "litres_by_beverage": {"beer": 3.3}, "litres_total": 3.3, "share_under_18": 0.57,
             "guardian_contacted": 2, "direct_forfeiture": 5, "by_weekday": {"fri": 5, "sat": 1, "sun": 1},
             "by_time_of_day": {"evening": 6, "night": 1}, "places": {"centrum": 4}, "coarsened": False}


def test_kronoberg_counts_below_three_are_coarsened() -> None:
    out = coarsen_kronoberg(KRONOBERG)
    assert out is not None
    assert out["interventions"] == 7 and out["direct_forfeiture"] == 5 and out["guardian_contacted"] == "<3"
    assert out["by_weekday"] == {"fri": 5, "sat": "<3", "sun": "<3"}
    assert out["by_time_of_day"] == {"evening": 6, "night": "<3"}
    assert out["litres_total"] == 3.3 and out["share_under_18"] == 0.57 and out["coarsened"] is True
    assert coarsen_kronoberg({"interventions": 2, "litres_total": 1.0}) == {"interventions": "<3", "coarsened": True}
    assert coarsen_kronoberg({"interventions": "<3", "coarsened": True}) == {"interventions": "<3", "coarsened": True}
    assert KRONOBERG["guardian_contacted"] == 2  # the input is not changed


def test_missing_reporters_only_for_key_functions_and_admins() -> None:
    data = {"picture": {"municipality_id": "m", "completeness": {"expected": 3, "missing_reporters": ["anna"]},
                        "kronoberg": KRONOBERG}}
    reporter = audience(roles=["reporter"], areas=["a"], actor_kind="property_company", municipalities=["m"])
    key = audience(roles=["key_function"], areas=["a"], actor_kind="municipality", municipalities=["m"])
    police = audience(roles=["reporter"], areas=["a"], actor_kind="police", municipalities=["m"])
    assert "missing_reporters" not in render_for("picture.published", data, reporter)["picture"]["completeness"]
    assert render_for("picture.published", data, key)["picture"]["completeness"]["missing_reporters"] == ["anna"]
    assert render_for("picture.published", data, key)["picture"]["kronoberg"]["by_weekday"]["sat"] == "<3"
    seen = render_for("picture.published", data, police)["picture"]
    assert seen["kronoberg"] == KRONOBERG and "missing_reporters" not in seen["completeness"]
    assert data["picture"]["completeness"]["missing_reporters"] == ["anna"]


def test_analysis_shows_only_the_recipients_areas() -> None:
    data = {"persistent_problems": [{"area_id": "a", "item": "klotter"}, {"area_id": "b", "item": "brand"}]}
    assert render_for("analysis.published", data, Audience(areas=("a",)))["persistent_problems"] == [
        {"area_id": "a", "item": "klotter"}]
    assert len(render_for("analysis.published", data, Audience(admin=True))["persistent_problems"]) == 2


def _kronoberg_picture(org: Org) -> Any:
    base = picture_event(org)
    pic: PictureData = base.data.picture
    pic = pic.model_copy(update={"kronoberg": KRONOBERG, "completeness": Completeness(
        expected=3, received=1, on_time=1, rate=0.33, missing_reporters=["anna", "bo"])})
    return new_event(type=base.type, source=base.source, subject=base.subject, id=base.id,
                     data=PicturePublished(picture=pic))


async def test_each_recipient_gets_its_own_frozen_rendering(tmp_path: Path, org: Org) -> None:
    engine, sessions, tables = await notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    cop = Person(id=f"cop{org.m}", name="Polis", actor="polisen", roles=["police"], areas=[org.a1],
                 municipalities=[org.m], token_sha256=hash_token(f"cop{org.m}"))
    snapshot = org.snapshot.model_copy(update={
        "actors": {**org.snapshot.actors, "polisen": Actor(id="polisen", name="Polisen", kind="police")},
        "people": {**org.snapshot.people, cop.id: cop}})
    owners = {"key": next(p for p in snapshot.people if p.startswith("owner")), "police": cop.id,
              "reporter": next(p for p in snapshot.people if p.startswith("other"))}
    steering = Person(id=f"sg{org.m}", name="Styr", actor="kommun", roles=["styrgrupp"], areas=[org.a2],
                      municipalities=[org.m])
    snapshot = snapshot.model_copy(update={"people": {**snapshot.people, steering.id: steering}})
    owners["steering"] = steering.id
    subs: dict[str, dict[str, Any]] = {}
    for name, person_id in owners.items():
        caller = caller_for(snapshot, person_id)
        assert caller is not None
        area = org.a2 if name in ("reporter", "steering") else org.a1
        analyses = ["analysis.published"] if name in ("key", "steering") else []  # receipt.RECEIPT
        channel = {"type": "webhook", "url": f"https://example.org/{name}", "secret": name}
        events = ["picture.published", *analyses]
        if name in ("reporter", "steering"):  # they may not make webhooks; one made before is rendered for its owner
            subs[name] = {"id": await store_subscription(sessions, tables, owner_id=person_id, municipality_id=org.m,
                                                         area_ids=[area], channel=channel, events=events)}
            continue
        subs[name] = await handlers.create_subscription(
            sessions=sessions, tables=tables, caller=caller, snapshot=snapshot, spec={
                "name": name, "scope": {"municipality_id": org.m, "area_ids": [area]}, "events": events,
                "channel": channel, "digest": "immediate", "language": "sv"})
    mail = await handlers.create_subscription(
        sessions=sessions, tables=tables, caller=caller_for(snapshot, owners["key"]),  # type: ignore[arg-type]
        snapshot=snapshot, spec={"name": "mail", "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
                                 "events": ["picture.published"], "channel": {"type": "email", "to": "k@example.org"},
                                 "digest": "immediate", "language": "sv"})
    await deliveries.fan_out(_kronoberg_picture(org), sessions=sessions, tables=tables, consumer="c",
                             sender="est@example.org", snapshot=snapshot)
    a2 = _kronoberg_picture(org).data.picture.model_copy(update={"area_id": org.a2})
    await deliveries.fan_out(new_event(type="se.est.picture.published", source="/est/aggregator", id="pic-a2",
                                     data=PicturePublished(picture=a2)),
                           sessions=sessions, tables=tables, consumer="c", sender="est@example.org", snapshot=snapshot)
    analysis = new_event(type="se.est.analysis.published", source="/est/analysis", id=f"an-{org.m}",
                         data=AnalysisPublished(analysis_id="x", municipality_id=org.m, period="2026-T3",
                                                report_path="/r", persistent_problems=[
                                                    {"area_id": org.a1, "item": "klotter"},
                                                    {"area_id": org.a2, "item": "brand"}]))
    await deliveries.fan_out(analysis, sessions=sessions, tables=tables, consumer="c", sender="est@example.org",
                             snapshot=snapshot)
    async with sessions() as s:
        rows = (await s.execute(select(tables.deliveries))).mappings().all()
    by = {(r["subscription_id"], r["event_id"]): r for r in rows}

    def body(name: str, event_id: str) -> dict[str, Any]:
        row = by[(subs[name]["id"], event_id)]
        assert verify(name, row["payload"], row["target"]["headers"]["X-EST-Signature"])
        return json.loads(row["payload"])  # type: ignore[no-any-return]

    pic_id = f"picture:{org.a1}:2026-W48:v1"
    key_pic = body("key", pic_id)["data"]["picture"]
    assert key_pic["completeness"]["missing_reporters"] == ["anna", "bo"]
    assert key_pic["kronoberg"]["guardian_contacted"] == "<3" and key_pic["kronoberg"]["coarsened"] is True
    police_pic = body("police", pic_id)["data"]["picture"]
    assert police_pic["kronoberg"]["guardian_contacted"] == 2 and "missing_reporters" not in police_pic["completeness"]
    reporter_pic = body("reporter", "pic-a2")["data"]["picture"]
    assert "missing_reporters" not in reporter_pic["completeness"]
    assert reporter_pic["kronoberg"]["by_weekday"]["sat"] == "<3"
    assert (subs["reporter"]["id"], pic_id) not in by  # not their area
    assert [p["area_id"] for p in body("steering", analysis.id)["data"]["persistent_problems"]] == [org.a2]
    assert (subs["reporter"]["id"], analysis.id) not in by and (subs["police"]["id"], analysis.id) not in by
    assert [p["area_id"] for p in body("key", analysis.id)["data"]["persistent_problems"]] == [org.a1]
    assert body("key", pic_id)["id"] == pic_id  # the envelope stays the event's
    # the e-mail shows the coarsened Kronoberg aggregates
    msg = email.message_from_bytes(by[(mail["id"], pic_id)]["payload"], policy=default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Kronoberg" in text and "<3" in text
    await engine.dispose()
