"""A person who leaves hands their subscriptions over (``successor:`` in the organisation file, or an admin's
hand-over), an admin restores an ended one, pending e-mails and digests follow, the ledger names who; and a
municipality-wide subscription holds an area added to the municipality later."""

from __future__ import annotations

import email
import time
import uuid
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
from est_intake.app import create_app as create_intake
from est_notifier.app import Settings, create_app
from est_notifier.deliveries import handlers as deliveries
from est_notifier.deliveries.domain import delivery_id
from est_notifier.subscriptions import handlers as subscriptions
from est_notifier.subscriptions.domain import (
    Audience,
    Caller,
    end_reason,
    handover_text,
    municipality_wide_match,
    resolve_scope,
    seen_as,
    sees_as_much,
    successor_of,
)
from est_shared.natsserver import NatsServer
from est_shared.org import Person, hash_token
from est_shared.subjects import picture_published
from est_shared.testing import serve

from tests.intake.support import settings_for
from tests.notifier import support
from tests.notifier.support import Org
from tests.support import eventually

LENA, PER = "lena.lind@vaxjo.se", "per.persson@vaxjo.se"
TOK = {"lena": "tok-lena-h", "per": "tok-per-h", "ada": "tok-ada-h", "bo": "tok-bo-h"}


def _auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOK[who]}"}


def org_file(*, lena: bool = True, successor: str | None = None, ostra: bool = False) -> dict[str, Any]:
    """Växjö as an organisation file: two key functions of the whole municipality (lena, per), an admin and a
    reporter; ``successor`` on lena, ``lena=False`` when she has left, ``ostra``: an area added later."""
    areas = [{"id": "araby", "name": "Araby"}, {"id": "teleborg", "name": "Teleborg"}]
    if ostra:
        areas.append({"id": "ostra", "name": "Östra"})
    people: list[dict[str, Any]] = [
        {"id": "per", "name": "Per Persson", "actor": "kommun", "email": PER, "roles": ["key_function"],
         "areas": ["vaxjo"], "token": TOK["per"]},
        {"id": "ada", "name": "Ada Admin", "actor": "kommun", "email": "ada@vaxjo.se", "roles": ["admin"],
         "areas": ["vaxjo"], "token": TOK["ada"]},
        {"id": "bo", "name": "Bo Berg", "actor": "vaxjohem", "email": "bo@vaxjohem.se", "roles": ["reporter"],
         "areas": ["araby"], "token": TOK["bo"]},
    ]
    if lena:
        people.insert(0, {"id": "lena", "name": "Lena Lind", "actor": "kommun", "email": LENA,
                          "roles": ["key_function"], "areas": ["vaxjo"], "token": TOK["lena"],
                          **({"successor": successor} if successor else {})})
    return {"municipalities": [{"id": "vaxjo", "name": "Växjö kommun", "areas": areas}],
            "actors": [{"id": "kommun", "name": "Växjö kommun", "kind": "municipality"},
                       {"id": "vaxjohem", "name": "Växjöhem AB", "kind": "property_company"}],
            "people": people}


def _vaxjo() -> Org:
    """The shape picture_event wants, for Växjö's areas."""
    org = support.make_org()
    return Org("vaxjo", "araby", "teleborg", org.snapshot, {})


async def test_a_key_function_who_leaves_hands_over_through_the_organisation_file(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    (tmp_path / "intake").mkdir()
    intake = create_intake(settings_for(tmp_path / "intake", fresh_nats.url, org_file()))
    tag = uuid.uuid4().hex[:8]
    vaxjo = _vaxjo()
    with support.smtp_server() as (mail, smtp_url):
        notifier = create_app(Settings(
            nats_url=fresh_nats.url, data_dir=tmp_path / "notifier", log_level="WARNING", reminders_enabled=False,
            municipality_filter="vaxjo", poll_interval=0.1, durable_pictures=f"p-{tag}", durable_alerts=f"al-{tag}",
            durable_analyses=f"an-{tag}", durable_updates=f"up-{tag}", durable_notifications=f"nf-{tag}",
            smtp_url=smtp_url, retry_base_delay=0.5, retry_max_delay=0.5, max_attempts=30))
        async with serve(intake) as ibase, serve(notifier) as nbase, \
                httpx.AsyncClient(base_url=ibase, timeout=10) as intake_http, \
                httpx.AsyncClient(base_url=nbase, timeout=10) as http:
            runtime = notifier.state.runtime

            async def apply(doc: dict[str, Any]) -> int:
                before = runtime.directory.snapshot.version
                r = await intake_http.put("/v1/admin/org", json=doc, headers=_auth("ada"))
                assert r.status_code == 200, r.text

                async def applied() -> int | None:
                    v = int(runtime.directory.snapshot.version)
                    return v if v > before else None

                return int(await eventually(applied, timeout=15))

            await eventually(lambda: _now("lena" in runtime.directory.snapshot.people), timeout=15)
            # lena subscribes to the whole municipality (no areas named): stored as the municipality, not its areas
            r = await http.post("/v1/subscriptions", headers=_auth("lena"), json={
                "name": "Lägesbilder Växjö", "scope": {"municipality_id": "vaxjo"}, "events": ["picture.published"],
                "channel": {"type": "email", "to": LENA}})
            assert r.status_code == 201, r.text
            sub = r.json()
            assert sub["scope"]["area_ids"] == [] and sub["owner_id"] == "lena" and sub["owner_name"] == "Lena Lind"

            # the file names her successor while she is still there: nothing moves yet
            await apply(org_file(successor="per"))
            r = await http.get(f"/v1/subscriptions/{sub['id']}", headers=_auth("lena"))
            assert r.json()["owner_id"] == "lena" and r.json()["status"] == "active"

            # her mailbox is closed: a picture waits for a retry, addressed to her
            mail.busy.add(LENA)
            first = support.picture_event(vaxjo, "araby", event_id=f"picture:araby:2026-W48:v1:{tag}")
            await support.publish(fresh_nats.url, picture_published("vaxjo", "araby"), first)
            did = delivery_id(sub["id"], first.id)

            async def retrying() -> bool:
                r = await http.get("/v1/deliveries", params={"subscription_id": sub["id"]}, headers=_auth("ada"))
                return any(d["delivery_id"] == did and d["status"] == "pending" and d["attempts"] >= 1
                           for d in r.json())

            await eventually(retrying, timeout=15)

            # she leaves the file: her subscription and the picture not sent yet go to per
            left = await apply(org_file(lena=False))

            async def handed() -> dict[str, Any] | None:
                r = await http.get(f"/v1/subscriptions/{sub['id']}", headers=_auth("ada"))
                return r.json() if r.json()["owner_id"] == "per" else None

            now = await eventually(handed, timeout=15)
            assert now["status"] == "active" and now["channel"] == {"type": "email", "to": PER}
            (listed,) = (await http.get("/v1/subscriptions", headers=_auth("per"))).json()
            assert listed["id"] == sub["id"] and listed["owner_id"] == "per" and listed["owner_name"] == "Per Persson"

            got = await eventually(lambda: _now(mail.to(PER) or None), timeout=15)
            assert got[0]["To"] == PER and got[0]["X-EST-Delivery"] == did
            assert str(got[0]["Subject"]).startswith("Lägesbild Araby 2026-W48")
            assert "Klotter" in got[0].get_body(("plain",)).get_content()
            assert mail.to(LENA) == []

            rows = (await http.get("/v1/deliveries", params={"subscription_id": sub["id"]},
                                   headers=_auth("ada"))).json()
            (ho,) = [d for d in rows if d["status"] == "handed_over"]
            assert ho["handover"]["from_name"] == "Lena Lind" and ho["handover"]["to_name"] == "Per Persson"
            assert ho["handover"]["by_person_id"] is None and ho["handover"]["org_version"] == left
            assert ho["handover"]["text"]["sv"].startswith(
                f"Överlämnad från Lena Lind till Per Persson av organisationsfilen (version {left}) ")
            assert ho["handover"]["text"]["en"].startswith("Handed over from Lena Lind to Per Persson by the "
                                                           f"organisation file (version {left}) at ")
            (sent,) = [d for d in rows if d["delivery_id"] == did]
            assert sent["status"] == "delivered" and sent["target"] == PER
            assert [a["status"] for a in sent["attempt_log"]][-1] == "delivered"
            # per sees the ledger of the subscription now; the ended rule did not run
            assert (await http.get("/v1/deliveries", params={"subscription_id": sub["id"]},
                                   headers=_auth("per"))).status_code == 200
            assert not [d for d in rows if d["status"] == "ended"]

            # an area added to the municipality later: its pictures reach the municipality-wide subscription
            await apply(org_file(lena=False, ostra=True))
            ostra = support.picture_event(vaxjo, "ostra", event_id=f"picture:ostra:2026-W48:v1:{tag}")
            await support.publish(fresh_nats.url, picture_published("vaxjo", "ostra"), ostra)

            async def ostra_arrived() -> list[Any] | None:
                found = [m for m in mail.to(PER) if m["X-EST-Event"] == ostra.id]
                return found or None

            (msg,) = await eventually(ostra_arrived, timeout=15)
            assert msg["X-EST-Delivery"] == delivery_id(sub["id"], ostra.id)
            metrics = (await http.get("/metrics")).text
            assert 'est_notifier_subscriptions_handed_over_total{via="org"} 1.0' in metrics


async def _now(value: Any) -> Any:
    return value


def _people(org: Org) -> tuple[Org, dict[str, str]]:
    """``org`` with two more people in a1: heir (a key function) and cop (police); their ids by short name."""
    suffix = org.m[1:]
    extra = {
        "heir": Person(id=f"heir{suffix}", name="Hedda Arvinge", actor="kommun", email="hedda@example.org",
                       roles=["key_function"], areas=[org.a1], municipalities=[org.m],
                       token_sha256=hash_token(f"tok-heir-{suffix}")),
        "cop": Person(id=f"cop{suffix}", name="Kim Polis", actor="kommun", email="kim@example.org",
                      roles=["police"], areas=[org.a1], municipalities=[org.m],
                      token_sha256=hash_token(f"tok-cop-{suffix}")),
    }
    snapshot = org.snapshot.model_copy(update={"people": {**org.snapshot.people,
                                                          **{p.id: p for p in extra.values()}}})
    tokens = {**org.tokens, "heir": f"tok-heir-{suffix}", "cop": f"tok-cop-{suffix}"}
    ids = {k: next(p for p in snapshot.people if p.startswith(k)) for k in ("owner", "other", "admin")}
    ids.update({k: p.id for k, p in extra.items()})
    return Org(org.m, org.a1, org.a2, snapshot, tokens), ids


async def test_hand_over_and_restore_by_an_admin(nats_url: str, tmp_path: Path, org: Org) -> None:
    org, ids = _people(org)
    olle, hedda, kim = "olle@example.org", "hedda@example.org", "kim@example.org"
    with support.smtp_server() as (mail, smtp_url):
        settings = support.notifier_settings(nats_url, tmp_path, org, smtp_url=smtp_url, retry_base_delay=0.5,
                                     retry_max_delay=0.5, max_attempts=30)
        async with support.running_notifier(settings, org) as n:
            sub = await n.subscribe(events=["picture.published"], channel={"type": "email", "to": olle})
            url = f"/v1/admin/subscriptions/{sub['id']}"

            # who may: admins only (a key function of the municipality, the owner included, may not)
            for who in ("owner", "heir", "other"):
                r = await n.http.post(f"{url}/handover", json={"to": ids["heir"]}, headers=org.auth(who))
                assert r.status_code == 403, (who, r.text)
                r = await n.http.post(f"{url}/restore", json={}, headers=org.auth(who))
                assert r.status_code == 403, (who, r.text)
            # to whom: a person of the organisation who may hold it, named in the field "to"
            for to in ("nobody", ids["other"], ids["owner"]):
                r = await n.http.post(f"{url}/handover", json={"to": to}, headers=org.auth("admin"))
                assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to", (to, r.text)
            r = await n.http.post(f"{url}/handover", json={}, headers=org.auth("admin"))
            assert r.status_code == 422
            r = await n.http.post("/v1/admin/subscriptions/nope/handover", json={"to": ids["heir"]},
                                  headers=org.auth("admin"))
            assert r.status_code == 404
            r = await n.http.post(f"{url}/restore", headers=org.auth("admin"))
            assert r.status_code == 409  # not ended

            # a picture waits for olle's closed mailbox; the hand-over takes it to hedda
            mail.busy.add(olle)
            v1 = support.picture_event(org, version=1)
            await support.publish(nats_url, support.picture_subject(org), v1)
            await eventually(lambda: _pending(n, sub["id"], delivery_id(sub["id"], v1.id)), timeout=15)
            r = await n.http.post(f"{url}/handover", json={"to": ids["heir"]}, headers=org.auth("admin"))
            assert r.status_code == 200, r.text
            assert r.json()["owner_id"] == ids["heir"] and r.json()["channel"]["to"] == hedda
            (got,) = await eventually(lambda: _now(mail.to(hedda) or None), timeout=15)
            assert got["To"] == hedda and got["X-EST-Delivery"] == delivery_id(sub["id"], v1.id)
            (mine,) = (await n.http.get("/v1/subscriptions", headers=org.auth("heir"))).json()
            assert mine["id"] == sub["id"]
            assert (await n.http.get("/v1/subscriptions", headers=org.auth("owner"))).json() == []

            # to the police of the area: a pending e-mail written for a key function (who has not reported) is
            # not re-addressed to someone who may not read that; it is cancelled, visibly
            mail.busy.add(hedda)
            v2 = support.picture_event(org, version=2)
            await support.publish(nats_url, support.picture_subject(org), v2)
            await eventually(lambda: _pending(n, sub["id"], delivery_id(sub["id"], v2.id)), timeout=15)
            r = await n.http.post(f"{url}/handover", json={"to": ids["cop"]}, headers=org.auth("admin"))
            assert r.status_code == 200 and r.json()["channel"]["to"] == kim
            rows = await n.ledger("admin", subscription_id=sub["id"])
            (v2row,) = [d for d in rows if d["event_id"] == v2.id]
            assert v2row["status"] == "cancelled" and v2row["last_error"].startswith("cancelled: handed over")
            handed = [d["handover"] for d in rows if d["status"] == "handed_over"]
            assert [(h["from_name"], h["to_name"], h["by_name"]) for h in handed] == [
                ("Hedda Arvinge", "Kim Polis", "Adam Admin"), ("Olle Ägare", "Hedda Arvinge", "Adam Admin")]
            assert handed[1]["text"]["sv"].startswith("Överlämnad från Olle Ägare till Hedda Arvinge av Adam Admin ")

            # kim leaves without a successor: the subscription ends; restoring needs an owner
            gone = {k: v for k, v in org.snapshot.people.items() if k != ids["cop"]}
            await n.app.state.runtime.apply_org(org.snapshot.model_copy(update={"version": 2, "people": gone}))
            r = await n.http.get(f"/v1/subscriptions/{sub['id']}", headers=org.auth("admin"))
            assert r.json()["status"] == "ended"
            r = await n.http.post(f"{url}/handover", json={"to": ids["heir"]}, headers=org.auth("admin"))
            assert r.status_code == 409  # ended: restore it instead
            r = await n.http.post(f"{url}/restore", headers=org.auth("admin"))
            assert r.status_code == 409 and "successor" in r.json()["detail"]
            r = await n.http.post(f"{url}/restore", json={"to": ids["other"]}, headers=org.auth("admin"))
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to"
            # a successor named for kim afterwards: restoring without an owner gives it to them
            await n.app.state.runtime.apply_org(org.snapshot.model_copy(update={
                "version": 3, "people": gone, "handovers": {ids["cop"]: ids["heir"]}}))
            mail.busy.clear()
            r = await n.http.post(f"{url}/restore", headers=org.auth("admin"))
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "active" and r.json()["owner_id"] == ids["heir"]
            assert r.json()["channel"]["to"] == hedda
            rows = await n.ledger("admin", subscription_id=sub["id"])
            (restored,) = [d["handover"] for d in rows if d["status"] == "restored"]
            assert restored["text"]["sv"].startswith("Återställd till Hedda Arvinge (tidigare Kim Polis) av Adam Admin")
            assert restored["text"]["en"].startswith("Restored to Hedda Arvinge (before: Kim Polis) by Adam Admin at")
            v3 = support.picture_event(org, version=3)
            await support.publish(nats_url, support.picture_subject(org), v3)
            await eventually(lambda: _now([m for m in mail.to(hedda) if m["X-EST-Event"] == v3.id] or None),
                             timeout=15)
            assert mail.to(kim) == []
            metrics = (await n.http.get("/metrics")).text
            assert 'est_notifier_subscriptions_handed_over_total{via="admin"} 2.0' in metrics
            assert 'est_notifier_subscriptions_handed_over_total{via="restored"} 1.0' in metrics


async def _pending(n: Any, sub_id: str, did: str) -> bool:
    rows = await n.ledger("admin", subscription_id=sub_id)
    return any(d["delivery_id"] == did and d["status"] == "pending" and d["attempts"] >= 1 for d in rows)


async def test_a_digest_follows_a_hand_over_along_a_chain_of_successors(nats_url: str, tmp_path: Path,
                                                                        org: Org) -> None:
    org, ids = _people(org)
    with support.smtp_server() as (mail, smtp_url):
        settings = support.notifier_settings(nats_url, tmp_path, org, smtp_url=smtp_url)
        async with support.running_notifier(settings, org) as n:
            sub = await n.subscribe(events=["picture.published"], digest="period",
                                    channel={"type": "email", "to": "olle@example.org"})
            event = support.picture_event(org, period="2026-W52")  # its window closes in the future
            await support.publish(nats_url, support.picture_subject(org), event)
            state = n.app.state.notifier
            t = state["tables"]

            async def held() -> bool:
                async with state["sessions"]() as s:
                    return bool((await s.execute(t.digest_items.select().where(
                        t.digest_items.c.subscription_id == sub["id"]))).first())

            await eventually(held, timeout=15)
            # olle leaves naming cop, who leaves too naming heir: the chain ends at heir, still there
            people = {k: v for k, v in org.snapshot.people.items() if k not in (ids["owner"], ids["cop"])}
            snap = org.snapshot.model_copy(update={"version": 2, "people": people, "handovers": {
                ids["owner"]: ids["cop"], ids["cop"]: ids["heir"]}})
            await n.app.state.runtime.apply_org(snap)
            r = await n.http.get(f"/v1/subscriptions/{sub['id']}", headers=org.auth("heir"))
            assert r.status_code == 200 and r.json()["channel"]["to"] == "hedda@example.org"
            made = await deliveries.flush_digests(time.time() + 60 * 86400, sessions=state["sessions"], tables=t,
                                                  sender_address="est@example.org", max_items=50, snapshot=snap)
            assert made == 1
            state["worker"].wake()
            (msg,) = await eventually(lambda: _now(mail.to("hedda@example.org") or None), timeout=15)
            assert msg["To"] == "hedda@example.org" and "2026-W52" in str(msg["Subject"])
            assert mail.to("olle@example.org") == []
            rows = await n.ledger("heir", subscription_id=sub["id"])
            (ho,) = [d["handover"] for d in rows if d["status"] == "handed_over"]
            assert (ho["from_name"], ho["to_name"]) == ("Olle Ägare", "Hedda Arvinge")


def test_the_ledger_sentence_names_people() -> None:
    at = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    assert handover_text("handed_over", from_name="Lena Lind", to_name="Per Persson", by_name=None, org_version=4,
                         at=at) == {
        "sv": "Överlämnad från Lena Lind till Per Persson av organisationsfilen (version 4) 2026-12-02 08:00 UTC",
        "en": "Handed over from Lena Lind to Per Persson by the organisation file (version 4) at 2026-12-02 08:00 UTC"}
    assert handover_text("restored", from_name="Lena Lind", to_name="Lena Lind", by_name="Ada Admin",
                         org_version=None, at=at)["sv"] == "Återställd för Lena Lind av Ada Admin 2026-12-02 08:00 UTC"


def test_successors_chain_to_the_first_person_still_there() -> None:
    people = {"c", "d"}
    assert successor_of({"a": "b", "b": "c"}, people, "a") == "c"
    assert successor_of({"a": "c", "c": "d"}, people, "a") == "c"  # c is there: c's own successor waits
    assert successor_of({"a": "b"}, people, "a") is None  # b left too, without a successor
    assert successor_of({"a": "b", "b": "a"}, people, "a") is None  # a cycle of people who left
    assert successor_of({}, people, "a") is None


def test_a_pending_message_follows_only_someone_who_may_read_it_as_written() -> None:
    kf = Audience(areas=("x", "y"), roles=frozenset({"key_function"}), municipalities=("m",))
    police = Audience(areas=("x", "y"), roles=frozenset({"police"}), municipalities=("m",), sees_protected=True)
    admin = Audience(admin=True, roles=frozenset({"admin"}))
    written = seen_as(kf, "m", ["x", "y"])
    assert sees_as_much(kf, written, "m") and sees_as_much(admin, written, "m")
    assert not sees_as_much(police, written, "m")  # who has not reported: key functions only
    assert not sees_as_much(Audience(areas=("x",), roles=frozenset({"key_function"}), municipalities=("m",)),
                            written, "m")  # an analysis' entries of y
    assert not sees_as_much(kf, None, "m")  # written before this was kept: not known, not re-addressed


def test_the_whole_municipality_is_kept_as_the_municipality() -> None:
    known = {"m": ["x", "y"]}
    kf = Caller("kf", ("key_function",), ("x", "y"), ("m",))
    reporter = Caller("r", ("reporter",), ("x",), ("m",))
    assert resolve_scope(kf, "m", None, municipality_areas=known) == []
    assert resolve_scope(kf, "m", ["x", "y"], municipality_areas=known) == ["x", "y"]  # named areas stay named
    assert resolve_scope(reporter, "m", None, municipality_areas=known) == ["x"]
    assert end_reason(kf, "m", [], municipality_areas=known) is None
    assert end_reason(Caller("kf", ("key_function",), ("z",), ("n",)), "m", [], municipality_areas=known) == \
        "scope_lost"
    # at delivery time: every area its owner sees then, a new one too; not areas they do not see
    later = Caller("kf", ("key_function",), ("x", "y", "new"), ("m",))
    assert municipality_wide_match(later, [], "new")
    assert not municipality_wide_match(reporter, [], "y")
    assert municipality_wide_match(reporter, ["y"], "y")  # listed areas: withheld visibly, as before


@pytest.mark.postgres
async def test_hand_over_and_restore_on_postgresql(postgres_url: str, org: Org) -> None:
    org, ids = _people(org)
    engine, sessions, tables = await support.notifier_db(postgres_url)
    try:
        owner = Caller(ids["owner"], ("key_function",), (org.a1,), (org.m,))
        admin = Caller(ids["admin"], ("admin",), (org.a1, org.a2), (org.m,))
        await subscriptions.reconcile_org(sessions=sessions, tables=tables, snapshot=org.snapshot)
        sub = await subscriptions.create_subscription(
            sessions=sessions, tables=tables, caller=owner, snapshot=org.snapshot, spec={
                "name": "Araby", "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
                "events": ["picture.published"], "channel": {"type": "email", "to": "olle@example.org"}})
        event = support.picture_event(org)
        assert await deliveries.fan_out(event, sessions=sessions, tables=tables, consumer="c", sender="est@b.se",
                                        snapshot=org.snapshot) == ["email"]
        people = {k: v for k, v in org.snapshot.people.items() if k != ids["owner"]}
        snap = org.snapshot.model_copy(update={"version": 2, "people": people,
                                               "handovers": {ids["owner"]: ids["heir"]}})
        result = await subscriptions.reconcile_org(sessions=sessions, tables=tables, snapshot=snap)
        assert result["handed_over"] == 1 and result["ended"] == {}
        async with sessions() as s:
            row = (await s.execute(tables.deliveries.select().where(
                tables.deliveries.c.id == delivery_id(sub["id"], event.id)))).mappings().one()
        assert row["status"] == "pending" and row["target"]["to"] == ["hedda@example.org"]
        assert email.message_from_bytes(row["payload"], policy=default)["To"] == "hedda@example.org"
        # hedda leaves without a successor: ended; restored by an admin to the owner given
        snap3 = snap.model_copy(update={"version": 3, "people": {k: v for k, v in people.items()
                                                                 if k != ids["heir"]}})
        assert (await subscriptions.reconcile_org(sessions=sessions, tables=tables, snapshot=snap3))["ended"] == {
            "owner_removed": 1}
        out = await subscriptions.restore_subscription(sessions=sessions, tables=tables, caller=admin,
                                                       by_name="Adam Admin", snapshot=snap3, sub_id=sub["id"],
                                                       to=ids["cop"])
        assert out["status"] == "active" and out["owner_id"] == ids["cop"] and out["channel"]["to"] == "kim@example.org"
        rows = await deliveries.ledger(sessions=sessions, tables=tables, caller=admin, subscription_id=sub["id"],
                                       event_id=None)
        assert [r["status"] for r in rows if r["handover"]] == ["restored", "handed_over"]
        assert rows[0]["handover"]["from_name"] == "Hedda Arvinge" and rows[0]["handover"]["to_name"] == "Kim Polis"
    finally:
        await engine.dispose()


async def test_a_declared_subscription_of_someone_who_left_stays_with_the_successor(tmp_path: Path,
                                                                                   org: Org) -> None:
    org, ids = _people(org)
    engine, sessions, tables = await support.notifier_db(f"sqlite+aiosqlite:///{tmp_path}/n.db")
    try:
        declared = [{"id": "drift", "owner": ids["owner"], "name": "Driftcentral", "events": ["picture.published"],
                     "scope": {"municipality_id": org.m, "area_ids": [org.a1]},
                     "channel": {"type": "email", "to": "olle@example.org"}}]
        first = org.snapshot.model_copy(update={"version": 2, "subscriptions": declared})
        assert (await subscriptions.reconcile_org(sessions=sessions, tables=tables, snapshot=first))["created"] == 1
        people = {k: v for k, v in org.snapshot.people.items() if k != ids["owner"]}
        skipped: list[str] = []
        for version in (3, 4):  # the file still names olle; applied twice
            snap = first.model_copy(update={"version": version, "people": people,
                                            "handovers": {ids["owner"]: ids["heir"]}})
            result = await subscriptions.reconcile_org(sessions=sessions, tables=tables, snapshot=snap,
                                                       on_invalid=skipped.append)
            assert result["invalid"] == 0 and result["ended"] == {}
            assert result["handed_over"] == (1 if version == 3 else 0)
        assert skipped == []
        heir = Caller(ids["heir"], ("key_function",), (org.a1,), (org.m,))
        (sub,) = await subscriptions.list_subscriptions(sessions=sessions, tables=tables, caller=heir)
        assert sub["id"] == subscriptions.declared_id("drift") and sub["source"] == "org"
        assert sub["owner_name"] == "Hedda Arvinge" and sub["channel"]["to"] == "hedda@example.org"
    finally:
        await engine.dispose()
