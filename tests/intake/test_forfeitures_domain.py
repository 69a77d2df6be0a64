"""Unit tests of the Kronoberg protocol rules: personal identity numbers, age, validation, purposes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from est_intake.errors import ForfeitureRejected
from est_intake.forfeitures.domain import (
    MALFORMED_ID,
    AnonymousBudget,
    ForfeitureIn,
    InvalidPersonalNumber,
    age_band,
    age_on,
    content_fingerprint,
    credential_changes,
    logged_purpose,
    luhn_ok,
    parse_personal_number,
    protocol_id_of,
    purpose_problem,
    validate_protocol,
)
from est_intake.org.domain import build_snapshot, principal_for
from pydantic import ValidationError

from tests.security.support import born_years_ago, forfeiture_org, pnr, protocol

ON = date(2026, 5, 29)


def test_luhn_accepts_the_right_check_digit_only() -> None:
    good = pnr(date(2009, 3, 15), long=False, sep="")
    assert luhn_ok(good)
    wrong = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert not luhn_ok(wrong)


@pytest.mark.parametrize("kw", [{}, {"long": False}, {"sep": ""}, {"long": False, "sep": ""}])
def test_personal_number_forms_normalise_to_twelve_digits(kw: dict) -> None:
    born = date(2009, 3, 15)
    parsed = parse_personal_number(pnr(born, **kw), on=ON)
    assert parsed.birth_date == born and parsed.canonical == pnr(born)
    assert "2009" not in repr(parsed)


def test_samordningsnummer_has_day_plus_60() -> None:
    born = date(2010, 7, 4)
    parsed = parse_personal_number(pnr(born, coordination=True, long=False), on=ON)
    assert parsed.coordination and parsed.birth_date == born
    assert parsed.canonical == pnr(born, coordination=True) and parsed.canonical[6:8] == "64"


def test_century_of_the_short_form_is_resolved_against_the_event_date() -> None:
    assert parse_personal_number(pnr(date(2008, 5, 30), long=False), on=ON).birth_date == date(2008, 5, 30)
    assert parse_personal_number(pnr(date(2026, 5, 29), long=False), on=ON).birth_date == date(2026, 5, 29)
    assert parse_personal_number(pnr(date(2026, 5, 30), long=False), on=ON).birth_date == date(1926, 5, 30)
    assert parse_personal_number(pnr(date(1926, 1, 1), long=False, sep="+"), on=ON).birth_date == date(1926, 1, 1)


@pytest.mark.parametrize("text, reason", [
    ("2009031", "format"), ("20090315-12345", "format"), ("abcdefghij", "format"),
    ("20090315+" + pnr(date(2009, 3, 15))[-4:], "format"),
    (pnr(date(2009, 3, 15))[:-1] + "0" if not pnr(date(2009, 3, 15)).endswith("0") else
     pnr(date(2009, 3, 15))[:-1] + "1", "check_digit"),
])
def test_malformed_personal_numbers_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidPersonalNumber) as exc:
        parse_personal_number(text, on=ON)
    assert exc.value.reason == reason and text not in str(exc.value)


def test_impossible_date_and_unborn_are_refused() -> None:
    # 2009-02-30 with a valid check digit
    nine = "090230238"
    from tests.security.support import check_digit
    with pytest.raises(InvalidPersonalNumber) as exc:
        parse_personal_number(f"20{nine[:6]}-{nine[6:]}{check_digit(nine)}", on=ON)
    assert exc.value.reason == "date"
    with pytest.raises(InvalidPersonalNumber) as exc:
        parse_personal_number(pnr(date(2026, 6, 1)), on=ON)
    assert exc.value.reason == "unborn"


def test_age_counts_completed_years_and_leap_day_births() -> None:
    born = date(2006, 5, 30)
    assert age_on(born, ON) == 19 and age_on(born, date(2026, 5, 30)) == 20
    leap = date(2008, 2, 29)
    assert age_on(leap, date(2026, 2, 28)) == 17 and age_on(leap, date(2026, 3, 1)) == 18


def test_age_bands() -> None:
    assert [age_band(a) for a in (12, 14, 15, 17, 18, 19, 20, 45)] == [
        "under_15", "under_15", "15_17", "15_17", "18_19", "18_19", None, None]


def _ctx(who: str = "petra") -> tuple:
    snap, _ = build_snapshot(forfeiture_org(), None)
    return snap, principal_for(snap, who)


def _validate(body: dict, who: str = "petra"):
    snap, caller = _ctx(who)
    return validate_protocol(ForfeitureIn.model_validate(body), caller=caller, snapshot=snap,
                             now=datetime.now(UTC), retention=timedelta(days=365))


def test_valid_protocol_yields_anonymous_event_data_and_reminders() -> None:
    v = _validate(protocol(guardian_contacted=False, guardian_came=False, social_services_notified=False))
    assert v.age_band == "15_17" and v.age == 16
    dumped = v.data.model_dump_json()
    assert "Kim Testsson" not in dumped and v.personal_number not in dumped and "4711" not in dumped
    assert "Maxi" not in dumped and v.data.source == "adult_supplier"
    assert {w["code"] for w in v.warnings} == {"guardian_not_contacted", "social_services_not_notified"}


def test_the_event_carries_whether_guardians_came() -> None:
    came = _validate(protocol(guardian_contacted=True, guardian_came=True))
    stayed = _validate(protocol(guardian_contacted=True, guardian_came=False))
    assert (came.data.guardian_came, stayed.data.guardian_came) == (True, False)
    assert came.data.guardian_contacted and stayed.data.guardian_contacted


def test_twenty_or_over_is_refused_with_a_bilingual_reason_that_does_not_repeat_the_number() -> None:
    number = pnr(born_years_ago(20, days_more=1))
    with pytest.raises(ForfeitureRejected) as exc:
        _validate(protocol(number=number))
    e = exc.value
    assert e.kind == "invalid" and e.reason == "age"
    assert "20 år eller äldre" in e.detail and "20 or older" in e.detail
    assert number not in repr(e.__dict__) and number[2:] not in repr(e.__dict__)
    assert _validate(protocol(number=pnr(born_years_ago(19, days_more=360)))).age_band == "18_19"


def test_caller_outside_the_municipality_is_forbidden() -> None:
    with pytest.raises(ForfeitureRejected) as exc:
        _validate(protocol(), who="olle")
    assert exc.value.kind == "forbidden"


@pytest.mark.parametrize("change, field", [
    ({"area_id": "ljungby-c"}, "area_id"),
    ({"place": "ring 070-123 45 67"}, "place"),
    ({"guardian_contacted": False, "guardian_came": True}, "guardian_came"),
    ({"occurred_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "occurred_at"),
    ({"occurred_at": (datetime.now(UTC) - timedelta(days=400)).isoformat()}, "occurred_at"),
])
def test_invalid_protocol_names_the_field(change: dict, field: str) -> None:
    with pytest.raises(ForfeitureRejected) as exc:
        _validate(protocol(**change))
    assert exc.value.kind == "invalid" and field in {e["field"] for e in exc.value.errors or []}


def test_fingerprint_covers_facts_and_caller_but_not_personal_fields() -> None:
    body = protocol()
    base = content_fingerprint(ForfeitureIn.model_validate(body), "petra")
    other_person = {**body, "person": {"name": "Någon Annan", "personal_number": body["person"]["personal_number"]}}
    assert content_fingerprint(ForfeitureIn.model_validate(other_person), "petra") == base
    assert content_fingerprint(ForfeitureIn.model_validate({**body, "place": "torget"}), "petra") != base
    assert content_fingerprint(ForfeitureIn.model_validate(body), "olle") != base


def test_request_repr_hides_personal_fields() -> None:
    req = ForfeitureIn.model_validate(protocol())
    text = repr(req)
    assert "Kim Testsson" not in text and req.person.personal_number not in text and "Maxi" not in text


@pytest.mark.parametrize("purpose, problem", [
    (None, "missing"), ("", "missing"), ("ab", "missing"), ("x" * 201, "too_long"),
    ("samtal med 20090315-1234", "personal_data"), ("uppföljningssamtal", None), ("orosanmälan", None),
    ("samtal\nrad två", "control_character"), ("samtal\x00", "control_character"),
    ("Testa Testsson 20100515-2382", "personal_data"),
])
def test_purpose_of_a_read(purpose: str | None, problem: str | None) -> None:
    assert purpose_problem(purpose) == problem


@pytest.mark.parametrize("purpose, logged", [
    (None, None), ("  uppföljning ", "uppföljning"), ("x" * 5000, "x" * 200),
    ("Testa Testsson 20100515-2382", "[refused: personal data]"),
    ("ring 070-123 45 67" + "x" * 300, "[refused: personal data]"),
    ("samtal\r\nX-Injected: 1", "[refused: control character]"),
])
def test_the_access_log_keeps_a_purpose_capped_or_as_a_marker(purpose: str | None, logged: str | None) -> None:
    assert logged_purpose(purpose) == logged


def test_protocol_ids_are_uuids_in_lower_case() -> None:
    pid = "5B8D6C7E-3F0A-4D8B-9A51-2F7C1E0D4B66"
    assert protocol_id_of(pid) == pid.lower() and protocol_id_of(pid.lower()) == pid.lower()
    for bad in ("no-such", "Testa Testsson 20100515-2382", f"{pid}x", f"{{{pid}}}", pid.replace("-", ""),
                "x" * 12_000, "5b8d6c7e-3f0a-4d8b-9a51-2f7c1e0d4b6g", ""):
        assert protocol_id_of(bad) is None
    assert MALFORMED_ID == "[malformed id]"
    body = protocol(protocol_id=pid)
    assert ForfeitureIn.model_validate(body).protocol_id == pid.lower()
    for bad in ("p-1", "vaxjo:2026:0001", "x" * 100):
        with pytest.raises(ValidationError):
            ForfeitureIn.model_validate(protocol(protocol_id=bad))


@pytest.mark.parametrize("item", [
    {"volume_liters": 1e308}, {"volume_liters": float("inf")}, {"volume_liters": float("nan")},
    {"volume_liters": 1e-320}, {"volume_liters": 0}, {"volume_liters": 200.5},
    {"containers": 10 ** 400}, {"containers": 1001}, {"containers": 0}, {"containers": 2.0},
])
def test_absurd_volumes_and_counts_are_refused(item: dict) -> None:
    body = protocol()
    body["items"] = [{**body["items"][0], **item}]
    with pytest.raises(ValidationError) as exc:
        ForfeitureIn.model_validate(body)
    assert {e["loc"][-1] for e in exc.value.errors()} <= {"volume_liters", "containers"}


@pytest.mark.parametrize("change, field", [
    ({"place": "centrum\x00"}, "place"), ({"unit": "Ingripande\r\nBcc: x"}, "unit"),
    ({"officer": "insp\x004711"}, "officer"), ({"source_details": "köpt\x00"}, "source_details"),
    ({"person": {"name": "Kim\nTestsson"}}, "person.name"),
])
def test_control_characters_in_protocol_texts_are_refused(change: dict, field: str) -> None:
    body = protocol()
    if "person" in change:
        change = {"person": {**body["person"], **change["person"]}}
    with pytest.raises(ForfeitureRejected) as exc:
        _validate({**body, **change})
    assert exc.value.kind == "invalid"
    assert [(e["field"], e["reason"]) for e in exc.value.errors or []] == [(field, "control_character")]


def test_source_details_may_hold_line_breaks_and_personal_fields_may_name_people() -> None:
    v = _validate(protocol(source_details="köpt av en äldre kille\nvid Maxi, 070-123 45 67", officer="insp 4711"))
    assert v.age_band == "15_17"


def test_an_unknown_municipality_and_one_the_caller_does_not_work_in_answer_alike() -> None:
    answers = []
    for muni in ("ljungby", "no-such-kommun", "20100515-2382"):
        with pytest.raises(ForfeitureRejected) as exc:
            _validate(protocol(muni, None))
        answers.append((exc.value.kind, exc.value.detail, exc.value.errors))
    assert answers[0][0] == "forbidden" and answers.count(answers[0]) == 3 and "2382" not in str(answers)


def test_anonymous_budget_admits_one_row_per_address_and_minute_and_a_few_in_all() -> None:
    budget = AnonymousBudget(per_minute=3)
    t = datetime(2026, 5, 29, 22, 40, 5, tzinfo=UTC)
    assert [budget.admit("10.0.0.1", t + timedelta(seconds=s)) for s in range(5)] == [True] + [False] * 4
    assert [budget.admit(f"10.0.0.{i}", t) for i in range(2, 6)] == [True, True, False, False]
    assert budget.admit("10.0.0.1", t + timedelta(minutes=1)) is True


def _people(**changes: dict) -> dict:
    """An organisation document with people changed by id."""
    org = forfeiture_org()
    for person in org["people"]:
        person.update(changes.get(person["id"], {}))
    return org


def test_credential_changes_name_new_tokens_and_read_roles_of_police_and_social_services_only() -> None:
    before, _ = build_snapshot(forfeiture_org(), None)
    org = _people(petra={"token": "new-petra"}, anna={"token": "new-anna"},
                  admin={"roles": ["admin", "police"], "areas": ["vaxjo"]}, sara={"name": "Sara Ny"})
    org["people"].append({"id": "ghost", "name": "Ny", "actor": "polisen", "roles": ["police"], "areas": ["vaxjo"],
                          "token": "tok-ghost"})
    org["people"].append({"id": "tokenless", "name": "Utan", "actor": "soc", "roles": ["social_services"],
                          "areas": ["vaxjo"]})
    after, _ = build_snapshot(org, before)
    got = [(c.person_id, c.kind, c.roles) for c in credential_changes(before, after)]
    assert got == [("admin", "read_role_granted", ("police",)), ("ghost", "person_added", ("police",)),
                   ("petra", "token_changed", ("police",))]
    assert credential_changes(after, after) == []
