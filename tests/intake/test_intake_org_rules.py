"""Unit tests of the organisation file: parsing, validation, snapshot building and the change list."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from est_intake.org.domain import (
    OrgInvalid,
    OrgSyntaxError,
    build_snapshot,
    load_org_file,
    parse_org_json,
    parse_org_text,
)
from est_shared.org import hash_token

from tests.intake.org_support import BILLION_LAUGHS
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


# --- hostile organisation documents ------------------------------------------------------------------------

FEATURES = """
municipalities:
  - id: m
    name: "Kommun: med kolon"
    deadline_time: 10:30
    flag: yes
    none: ~
    count: 0x1f
    ratio: 1.5e3
    day: 2026-12-01
    text: |
      två
      rader
    folded: >
      en
      rad
    'quoted key': 'it''s'
"""


@pytest.mark.parametrize("text", [YAML, FEATURES], ids=["contract", "yaml-1.1-features"])
def test_the_yaml_reader_gives_what_pyyaml_safe_load_gives(text: str) -> None:
    """The organisation's YAML reader builds values from the parser's events, without recursion: for an
    ordinary file it is PyYAML's safe_load, value for value (YAML 1.1 times, booleans, dates included)."""
    import yaml

    assert parse_org_text(text) == yaml.safe_load(text)


def test_a_large_organisation_file_reads_as_pyyaml_reads_it() -> None:
    import yaml

    from tests.intake.org_support import large_org

    doc = large_org(people=2_000, areas=200)
    assert parse_org_text(yaml.dump(doc, Dumper=yaml.CSafeDumper, allow_unicode=True)) == doc


@pytest.mark.parametrize(("text", "words"), [
    (BILLION_LAUGHS, "alias"),                                                  # "billion laughs": 9^9 values
    ("people: &p []\nactors: *p\n", "alias"),                           # any alias, however small
    ("subscriptions:\n" + "".join("  " * i + "- \n" for i in range(1, 40)), "nested deeper"),
    ("subscriptions: " + "[" * 50 + "]" * 50 + "\n", "nested deeper"),
    ("subscriptions: " + "[" * 200_000 + "]" * 200_000 + "\n", "YAML"),  # the parser's own limit
    ("actors:\n  - id: a\n    name: " + "x" * 20_000 + "\n", "longer than"),
    ("people: !!python/object/apply:os.system [echo]\n", "tag"),
    ("actors: !!set {a: null}\n", "tag"),
    ("? [a, b]\n: c\n", "plain value"),
    ("people: []\n---\npeople: []\n", "one document"),
], ids=["billion-laughs", "alias", "deep-block", "deep-flow", "very-deep-flow", "huge-scalar", "python-tag",
        "set-tag", "complex-key", "two-documents"])
def test_hostile_yaml_is_a_syntax_error_not_a_crash(text: str, words: str) -> None:
    with pytest.raises(OrgSyntaxError) as info:
        parse_org_text(text)
    assert words.lower() in str(info.value).lower()


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"subscriptions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper"),
    (b'{"subscriptions": ' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper"),
    (b'{"actors": [{"id": "a", "name": "' + b"x" * 20_000 + b'"}]}', "longer than"),
    (b'{"people": [', "not valid JSON"),
    (b'{"n": ' + b"9" * 10_000 + b"}", "not valid JSON"),
], ids=["very-deep", "deep", "huge-scalar", "broken", "huge-number"])
def test_hostile_json_is_a_syntax_error_not_a_crash(raw: bytes, words: str) -> None:
    with pytest.raises(OrgSyntaxError) as info:
        parse_org_json(raw)
    assert words.lower() in str(info.value).lower()


@pytest.mark.parametrize(("mutate", "field", "reason"), [
    (lambda d: d["municipalities"][0].update(name="Växjö\r\nBcc: x@example.org"), "municipalities.0.name",
     "control_character"),
    (lambda d: d["municipalities"][0]["areas"][0].update(name="Araby\x00"), "municipalities.0.areas.0.name",
     "control_character"),
    (lambda d: d["municipalities"][0]["areas"][0]["places"].append("torg\nplats"),
     "municipalities.0.areas.0.places.3", "control_character"),
    (lambda d: d["municipalities"][0]["areas"][0]["places"].append("hos 19800101-1234"),
     "municipalities.0.areas.0.places.3", "personal_identity_number"),
    (lambda d: d["municipalities"][0]["areas"][1].update(name="Ring 070-123 45 67"),
     "municipalities.0.areas.1.name", "phone_number"),
    (lambda d: d["actors"][0].update(name="Kontakt anna@example.org"), "actors.0.name", "email_address"),
    (lambda d: d["people"][0].update(name="Anna\nAndersson"), "people.0.name", "control_character"),
    (lambda d: d["people"][0].update(email="anna\x00@example.org"), "people.0.email", "control_character"),
], ids=["crlf-municipality", "nul-area", "lf-place", "pnr-place", "phone-area", "email-actor", "lf-person",
        "nul-email"])
def test_organisation_texts_with_control_characters_or_personal_data_are_refused_naming_the_field(
        mutate, field: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    doc = make_org()
    mutate(doc)
    with pytest.raises(OrgInvalid) as info:
        build_snapshot(doc, None)
    assert (field, reason) in {(e["field"], e.get("reason")) for e in info.value.errors}, info.value.errors
    assert "19800101" not in str(info.value) and "070-123" not in str(info.value)  # never quoted back


def test_person_names_are_names_and_long_texts_are_refused_by_field() -> None:
    doc = make_org()
    doc["people"][0]["name"] = "Anna-Karin Öberg Andersson"  # a name is not refused as personal data
    build_snapshot(doc, None)
    doc["actors"][0]["name"] = "A" * 201
    with pytest.raises(OrgInvalid) as info:
        build_snapshot(doc, None)
    assert [e["field"] for e in info.value.errors] == ["actors.0.name"]
