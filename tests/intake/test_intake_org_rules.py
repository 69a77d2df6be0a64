"""Unit tests of the organisation file: parsing, validation, snapshot building and the change list."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from est_intake.domain import OrgInvalid, OrgSyntaxError, build_snapshot, load_org_file, parse_org_text
from est_shared.org import hash_token

from tests.intake.support import make_org

YAML = """
municipalities:
  - id: vaxjo
    name: Växjö kommun
    analysis_period: tertial
    deadline_weekday: 1
    deadline_time: 10:30
    areas:
      - id: araby
        name: Araby
        cadence: weekly
        places: [centrum, skolgarden, parkeringen]
actors:
  - id: vaxjohem
    name: Växjöhem AB
    kind: property_company
people:
  - id: anna
    name: Anna Andersson
    actor: vaxjohem
    email: anna@example.org
    roles: [reporter]
    areas: [araby]
    token: demo-anna
  - id: bo
    name: Bo
    actor: vaxjohem
    roles: [reporter]
    areas: [vaxjo]
    token_sha256: %s
subscriptions:
  - name: Växjöhem driftcentral
    scope: {municipality_id: vaxjo}
""" % ("ab" * 32)


def test_load_org_file_reads_the_contract_example(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(YAML, encoding="utf-8")
    doc = load_org_file(path)
    snap, changes = build_snapshot(doc, None)
    assert snap.version == 1
    assert snap.municipalities["vaxjo"].area_ids == ["araby"]
    assert snap.municipalities["vaxjo"].deadline_time == "10:30"  # YAML 1.1 sexagesimal 630 turned back
    assert snap.municipalities["vaxjo"].deadline_weekday == 1
    assert snap.areas["araby"].municipality_id == "vaxjo"
    assert snap.people["anna"].token_sha256 == hash_token("demo-anna")
    assert snap.people["bo"].token_sha256 == "ab" * 32
    assert snap.people["bo"].areas == ["araby"] and snap.people["bo"].municipalities == ["vaxjo"]
    assert "demo-anna" not in snap.model_dump_json()
    assert "person anna added" in changes and "area araby added" in changes


def test_build_snapshot_is_idempotent_and_lists_changes() -> None:
    doc = make_org()
    v1, _ = build_snapshot(doc, None)
    same, changes = build_snapshot(copy.deepcopy(doc), v1)
    assert same is v1 and changes == []
    doc2 = copy.deepcopy(doc)
    doc2["people"] = [p for p in doc2["people"] if p["id"] != "anna"]
    doc2["people"][0]["roles"] = ["reporter"]
    doc2["municipalities"][0]["areas"][0]["places"].append("hallplatsen")
    v2, changes = build_snapshot(doc2, v1)
    assert v2.version == 2
    assert "person anna removed" in changes
    assert "person bo changed (roles)" in changes
    assert "area araby changed (places)" in changes
    v2b, none = build_snapshot(doc2, v2)
    assert v2b.version == 2 and none == []


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d["actors"].append({"id": "araby", "name": "X"}), "actors.2.id", "already used by area araby"),
    (lambda d: d["people"][0].update(actor="nobody"), "people.0.actor", "unknown actor"),
    (lambda d: d["people"][0].update(areas=["nowhere"]), "people.0.areas.0", "unknown area"),
    (lambda d: d["people"][0].update(roles=["king"]), "people.0.roles.0", "reporter"),
    (lambda d: d["people"][1].update(token="tok-anna"), "people.1.token", "same token"),
    (lambda d: d["people"][0].update(token_sha256="ab" * 32), "people.0.token", "not both"),
    (lambda d: d["municipalities"][0]["areas"][0].update(cadence="daily"), "municipalities.0.areas.0.cadence",
     "weekly"),
    (lambda d: d["municipalities"][0].update(timezone="Mars/Olympus"), "municipalities.0.timezone", "timezone"),
    (lambda d: d["municipalities"][0]["areas"][0].update(places=["a", "a"]), "municipalities.0.areas.0.places",
     "twice"),
    (lambda d: d["people"][0].update(rols=["reporter"]), "people.0.rols", "Extra"),
    (lambda d: d["municipalities"][0].update(id="Växjö kommun"), "municipalities.0.id", "pattern"),
])
def test_invalid_org_names_the_field(mutate, field: str, words: str) -> None:  # type: ignore[no-untyped-def]
    doc = make_org()
    mutate(doc)
    with pytest.raises(OrgInvalid) as info:
        build_snapshot(doc, None)
    fields = {e["field"]: e["message"] for e in info.value.errors}
    assert field in fields, fields
    assert words.lower() in fields[field].lower()


def test_not_yaml_is_a_syntax_error() -> None:
    with pytest.raises(OrgSyntaxError):
        parse_org_text("municipalities: [unclosed")
    with pytest.raises(OrgInvalid):
        parse_org_text("- just\n- a list\n")
