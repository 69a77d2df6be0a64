"""The organisation changes under a running system while reports flow (``est up``, every service a process):
a municipality's new checklist version, a key function who leaves with a successor, a new area, an area
split in two, a reporter who moves. For each: who is expected, who is reminded, who receives what, and that
the series continue. Then a restart with the same start-up file, which must not undo any of it."""

from __future__ import annotations

import email
import uuid
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from est_shared.periods import Period

from tests.support import System, start_system, wait_for

pytestmark = pytest.mark.e2e

NOW = datetime.now(UTC)
WEEK = Period.week_containing(NOW.date())
PREV, OLD = WEEK.prev(), WEEK.shift(-2)


def _standard_items() -> list[dict[str, Any]]:
    return [{"code": "klotter", "label_sv": "Klotter", "label_en": "Graffiti", "answer": "level"},
            {"code": "skadegorelse", "label_sv": "Skadegörelse", "label_en": "Vandalism", "answer": "count"}]


LJ1 = {"id": "ljungby-lista", "version": 1, "name_sv": "Ljungbys checklista", "name_en": "Ljungby's checklist",
       "items": _standard_items()}
LJ2 = {**LJ1, "version": 2, "items": [
    {"code": "klotter_tagg", "label_sv": "Klotter och tagg", "label_en": "Graffiti and tags", "answer": "level",
     "continues": ["klotter"]},
    {"code": "skadegorelse", "label_sv": "Skadegörelse", "label_en": "Vandalism", "answer": "count"}]}


def _person(pid: str, name: str, actor: str, roles: list[str], areas: list[str], **extra: Any) -> dict[str, Any]:
    return {"id": pid, "name": name, "actor": actor, "email": f"{pid}@example.org", "roles": roles,
            "areas": areas, "token": f"t-{pid}", **extra}


def org_v1() -> dict[str, Any]:
    return {
        "checklists": [LJ1],
        "municipalities": [
            {"id": "vaxjo", "name": "Växjö kommun", "areas": [
                {"id": "araby", "name": "Araby", "places": ["centrum"]},
                {"id": "dalbo", "name": "Dalbo", "places": ["torget"]}]},
            {"id": "ljungby", "name": "Ljungby kommun", "checklist": "ljungby-lista@1", "areas": [
                {"id": "ljcentrum", "name": "Ljungby centrum"}]}],
        "actors": [{"id": "kommunen", "name": "Kommunen", "kind": "municipality"},
                   {"id": "bolaget", "name": "Bostadsbolaget", "kind": "property_company"}],
        "people": [
            _person("anna", "Anna Andersson", "bolaget", ["reporter"], ["araby"]),
            _person("bo", "Bo Berg", "bolaget", ["reporter"], ["dalbo"]),
            _person("lisa", "Lisa Lund", "bolaget", ["reporter"], ["ljcentrum"]),
            _person("lena", "Lena Lind", "kommunen", ["key_function"], ["vaxjo"]),
            _person("maja", "Maja Mark", "kommunen", ["key_function"], ["vaxjo"]),
            _person("kim", "Kim Kvist", "kommunen", ["key_function"], ["ljungby"]),
            _person("admin", "Admin", "kommunen", ["admin"], ["vaxjo", "ljungby"]),
        ],
    }


def org_v2() -> dict[str, Any]:
    org = org_v1()
    org["checklists"] = [LJ1, LJ2]
    vaxjo, ljungby = org["municipalities"]
    vaxjo["areas"].append({"id": "oster", "name": "Öster", "places": ["skolan"]})           # a new area
    ljungby["checklist"], ljungby["accepted_checklists"] = "ljungby-lista@2", ["ljungby-lista@1"]
    ljungby["areas"] = [{"id": "ljnorra", "name": "Ljungby norra", "replaces": ["ljcentrum"]},  # a split
                        {"id": "ljsodra", "name": "Ljungby södra", "replaces": ["ljcentrum"]}]
    people = {p["id"]: p for p in org["people"]}
    people["bo"]["areas"] = ["araby"]                                                          # bo moves
    people["lisa"]["areas"] = ["ljnorra"]
    people["lena"]["successor"] = "maja"                                                       # lena leaves
    people["lena"]["roles"] = []
    org["people"].append(_person("cy", "Cy Cedergren", "bolaget", ["reporter"], ["oster"]))
    return org


def _auth(person: str) -> dict[str, str]:
    return {"Authorization": f"Bearer t-{person}"}


def _report(area: str, period: Period, answers: dict[str, Any], checklist: str = "est-standard@1",
            **extra: Any) -> dict[str, Any]:
    return {"report_id": str(uuid.uuid4()), "area_id": area, "period": period.id, "checklist": checklist,
            "answers": answers, "nothing_to_report": False, "note": "", "supersedes": None, **extra}


def _picture(http: httpx.Client, system: System, area: str, period: Period, who: str = "admin") -> dict[str, Any]:
    r = http.get(f"{system.urls['aggregator']}/v1/areas/{area}/pictures/{period.id}", headers=_auth(who))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _missing(pic: dict[str, Any]) -> list[str]:
    return sorted(pic["completeness"].get("missing_reporters", []))


def _mails(system: System) -> list[dict[str, str]]:
    out = []
    for path in sorted((system.data_dir / "outbox").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=default)
        plain = msg.get_body(("plain",))
        out.append({"to": str(msg["To"]), "subject": str(msg["Subject"]),
                    "text": plain.get_content() if plain else ""})
    return out


def test_the_organisation_changes_while_reports_flow(tmp_path: Path) -> None:
    org_file = tmp_path / "org.yaml"
    org_file.write_text(yaml.safe_dump(org_v1(), allow_unicode=True))
    quiet = {"EST_NOTIFIER_REMINDERS_ENABLED": "false"}
    system = start_system(tmp_path / "data", org_file, extra_env=quiet)
    restarted: System | None = None
    try:
        with httpx.Client(timeout=15) as http:
            post = lambda who, body: http.post(f"{system.urls['intake']}/v1/reports",  # noqa: E731
                                               headers=_auth(who), json=body)
            # under the first organisation
            assert post("anna", _report("araby", PREV, {"klotter": {"value": 2}})).status_code == 202
            bo_old = _report("dalbo", OLD, {"skadegorelse": {"value": 1}})
            assert post("bo", bo_old).status_code == 202
            assert post("lisa", _report("ljcentrum", PREV, {"klotter": {"value": 3}},
                                        checklist="ljungby-lista@1")).status_code == 202
            # Ljungby reports against its own checklist, not Växjö's
            assert post("lisa", _report("ljcentrum", PREV, {"klotter": {"value": 1}})).status_code == 422
            sub = http.post(f"{system.urls['notifier']}/v1/subscriptions", headers=_auth("lena"), json={
                "name": "Växjö alla områden", "scope": {"municipality_id": "vaxjo", "area_ids": []},
                "events": ["picture.published"], "channel": {"type": "email", "to": "lena@example.org"},
                "digest": "immediate", "language": "sv"})
            assert sub.status_code == 201, sub.text
            wait_for(lambda: _picture(http, system, "ljcentrum", PREV)["reports"] == 1)
            wait_for(lambda: _picture(http, system, "dalbo", OLD)["reports"] == 1)
            pub = http.post(f"{system.urls['aggregator']}/v1/areas/ljcentrum/pictures/{PREV.id}/publish",
                            headers=_auth("kim"), json={"confirm_incomplete": True})
            assert pub.status_code == 200, pub.text

            # the second organisation, applied through the API
            applied = http.put(f"{system.urls['intake']}/v1/admin/org",
                               headers={**_auth("admin"), "Content-Type": "application/yaml"},
                               content=yaml.safe_dump(org_v2(), allow_unicode=True))
            assert applied.status_code == 200, applied.text
            changes = applied.json()["changes"]
            assert "area oster added" in changes and "checklist ljungby-lista@2 added" in changes
            wait_for(lambda: http.get(f"{system.urls['aggregator']}/v1/areas/oster/pictures/{WEEK.id}",
                                      headers=_auth("admin")).status_code == 200)

            # expected: a past period keeps the organisation it had; the present one has today's
            prev_dalbo = _picture(http, system, "dalbo", PREV)
            assert prev_dalbo["completeness"]["expected"] == 1 and _missing(prev_dalbo) == ["bo"]
            prev_araby = _picture(http, system, "araby", PREV)
            assert prev_araby["completeness"]["expected"] == 1 and _missing(prev_araby) == []
            assert _missing(_picture(http, system, "araby", WEEK)) == ["anna", "bo"]
            assert _picture(http, system, "ljnorra", WEEK)["completeness"]["expected"] == 0  # from its next period

            # a reporter who moved corrects her own earlier report
            fix = {**_report("dalbo", OLD, {"skadegorelse": {"value": 2}}), "supersedes": bo_old["report_id"]}
            assert post("bo", fix).status_code == 202
            wait_for(lambda: _picture(http, system, "dalbo", OLD)["items"]["skadegorelse"]["value"] == 2)

            # Ljungby: the new version and the old one are accepted, the renamed item continues its series
            assert post("lisa", _report("ljnorra", WEEK, {"klotter_tagg": {"value": 2}},
                                        checklist="ljungby-lista@2")).status_code == 202
            assert post("lisa", _report("ljnorra", WEEK, {"klotter": {"value": 1}},
                                        checklist="ljungby-lista@1")).status_code == 202
            def own_series() -> dict[str, Any] | None:
                got = http.get(f"{system.urls['aggregator']}/v1/areas/ljnorra/pictures", headers=_auth("kim"),
                               params={"from": OLD.id, "to": WEEK.id}).json()
                week = next(p for p in got["pictures"] if p["period"] == WEEK.id)
                return got if week["reports"] == 2 else None

            series = wait_for(own_series)
            week = next(p for p in series["pictures"] if p["period"] == WEEK.id)
            assert week["items"]["klotter_tagg"]["value"] == 2 and "klotter" not in week["items"]  # one series
            [old_area] = series["replaces"]  # the replaced area's history, beside the new area's
            assert old_area["area_id"] == "ljcentrum" and old_area["area_name"] == "Ljungby centrum"
            before = next(p for p in old_area["pictures"] if p["period"] == PREV.id)
            assert before["reports"] == 1
            assert 3 in (before["items"].get("klotter_tagg", {}).get("value"), before["items"].get("klotter", {})
                         .get("value"))
            # the tertial's analysis continues across the split and the new checklist version
            pub = http.post(f"{system.urls['aggregator']}/v1/areas/ljnorra/pictures/{WEEK.id}/publish",
                            headers=_auth("kim"), json={"confirm_incomplete": True})
            assert pub.status_code == 200, pub.text
            tertial = Period.tertial_containing(WEEK.start)
            analysis = wait_for(lambda: (lambda r: r.json() if r.status_code == 201 and any(
                a.get("replaces_text") for a in r.json()["areas"]) else None)(
                http.post(f"{system.urls['analysis']}/v1/analyses", headers=_auth("kim"),
                          json={"municipality_id": "ljungby", "period": tertial.id})), timeout=30)
            norra = next(a for a in analysis["areas"] if a["area_id"] == "ljnorra")
            assert "Ljungby centrum" in norra["replaces_text"]["sv"]

        # a restart with the same start-up file, reminders on: nothing is undone
        assert system.stop() == 0
        ports = {s: int(u.rsplit(":", 1)[1]) for s, u in system.urls.items()}
        restarted = start_system(system.data_dir, org_file, ports=ports, extra_env={
            # the first reminder of a period is due from eight days before its deadline, whatever the weekday
            "EST_NOTIFIER_REMINDER_BEFORE": str(8 * 86400), "EST_NOTIFIER_REMINDER_LATE_LIMIT": str(9 * 86400),
            "EST_NOTIFIER_REMINDER_INTERVAL": "1"})
        with httpx.Client(timeout=15) as http:
            me = http.get(f"{restarted.urls['intake']}/v1/me", headers=_auth("cy"))
            assert me.status_code == 200 and [a["id"] for a in me.json()["areas"]] == ["oster"]

            # who is reminded: the present period's reporters as the organisation is now
            def reminded() -> dict[str, set[str]] | None:
                rows = http.get(f"{restarted.urls['notifier']}/v1/deliveries", headers=_auth("admin"),
                                params={"period": WEEK.id}).json()
                got: dict[str, set[str]] = {}
                for row in rows:
                    if row.get("reminder"):
                        got.setdefault(row["reminder"]["person_id"], set()).update(row["reminder"]["areas"])
                return got if {"anna", "bo"} <= set(got) else None

            got = wait_for(reminded, timeout=30)
            assert got["bo"] == {"Araby"} and got["anna"] == {"Araby"}  # by name
            assert "cy" not in got and "lisa" not in got  # new areas are expected from their next period
            prev_rows = http.get(f"{restarted.urls['notifier']}/v1/deliveries", headers=_auth("admin"),
                                 params={"period": PREV.id, "person_id": "bo"}).json()
            assert not any("Dalbo" in (r.get("reminder") or {}).get("areas", []) for r in prev_rows)

            # who receives what: Lena's subscription went to Maja, and covers the area added since
            subs = http.get(f"{restarted.urls['notifier']}/v1/subscriptions", headers=_auth("maja")).json()
            assert [s["name"] for s in subs] == ["Växjö alla områden"], subs
            r = http.post(f"{restarted.urls['intake']}/v1/reports", headers=_auth("cy"),
                          json=_report("oster", WEEK, {"skadegorelse": {"value": 1}}))
            assert r.status_code == 202, r.text
            wait_for(lambda: _picture(http, restarted, "oster", WEEK)["reports"] == 1)
            for area, period in (("araby", PREV), ("oster", WEEK)):
                r = http.post(f"{restarted.urls['aggregator']}/v1/areas/{area}/pictures/{period.id}/publish",
                              headers=_auth("maja"), json={"comment": f"Vecka {period.id} i {area}.",
                                                           "confirm_incomplete": True})
                assert r.status_code == 200, r.text

            def picture_mails() -> list[dict[str, str]] | None:
                found = [m for m in _mails(restarted) if "Vecka" in m["text"]]
                return found if len(found) >= 2 else None

            mails = wait_for(picture_mails, timeout=30)
            assert {m["to"] for m in mails} == {"maja@example.org"}
            assert any("Öster" in m["subject"] for m in mails) and any("Araby" in m["subject"] for m in mails)
    finally:
        for s in (restarted, system):
            if s is not None:
                s.stop()

