"""The batch path's hand-written encodings: byte for byte what the models and ``json`` wrote before."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from est_intake.adapters.jetstream import JetStreamReports
from est_intake.adapters.ledger import LedgerSql
from est_intake.org.domain import build_snapshot, principal_for
from est_intake.reports.api import batch_out
from est_intake.reports.db import accepted_json, response_json
from est_intake.reports.domain import Accepted, AnswerIn, KnownReport, ReportIn, content_hash, validate_report
from est_intake.reports.handlers import (
    REPORT_SUBMITTED,
    SOURCE,
    STORED,
    Outcome,
    ReportEvent,
    conflict,
    report_event,
    unavailable,
)
from est_shared.bus import encode, parse_event
from est_shared.checklists import MAX_COUNT_CEILING
from est_shared.db import make_engine
from est_shared.events import Answer, ReportSubmitted
from fastapi.responses import JSONResponse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.intake.support import make_org, report

texts = st.text(max_size=20)  # any code point: quotes, backslashes, control characters, non-ASCII, surrogates
safe_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)  # what can be UTF-8 encoded
values = st.one_of(st.booleans(), st.integers(min_value=-MAX_COUNT_CEILING, max_value=MAX_COUNT_CEILING))
uuids = st.uuids(version=4).map(str)
answers = st.dictionaries(safe_texts, st.fixed_dictionaries(
    {"value": values}, optional={"places": st.lists(safe_texts, max_size=3), "note": safe_texts}), max_size=4)
zones = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-3, minutes=-30))])


def _reference_hash(req: ReportIn, person_id: str) -> str:
    """The idempotency fingerprint as it was first defined (stored rows hold it)."""
    body = req.model_dump(mode="json")
    body["_caller"] = person_id
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


@settings(max_examples=300, deadline=None)
@given(answers=answers, note=safe_texts, period=st.none() | safe_texts, supersedes=st.none() | uuids,
       nothing=st.booleans(), caller=safe_texts, area=safe_texts.filter(bool), rid=uuids)
def test_content_hash_is_the_canonical_dump_of_the_report(answers: dict[str, Any], note: str, period: str | None,
                                                         supersedes: str | None, nothing: bool, caller: str,
                                                         area: str, rid: str) -> None:
    req = ReportIn.model_validate({"report_id": rid, "area_id": area, "answers": answers, "note": note[:500],
                                   "period": period, "supersedes": supersedes, "nothing_to_report": nothing})
    assert content_hash(req, caller) == _reference_hash(req, caller)


def _fields(rid: str, answers: dict[str, Any], note: str, supersedes: str | None, at: datetime,
            late: bool) -> dict[str, Any]:
    """ReportSubmitted's fields as validate_report lays them out."""
    data: dict[str, Any] = {
        "report_id": rid, "municipality_id": "vaxjo", "area_id": "araby", "period": "2026-W48",
        "checklist": "est-standard@1",
        "answers": {c: AnswerIn.model_validate(a) for c, a in answers.items()},
        "nothing_to_report": False, "note": note}
    if supersedes is not None:
        data["supersedes"] = supersedes
    data.update(reporter_id="anna", actor_id="vaxjohem", received_at=at, late=late)
    return data


@settings(max_examples=300, deadline=None)
@given(rid=safe_texts.filter(bool), answers=answers, note=safe_texts, supersedes=st.none() | safe_texts,
       micro=st.integers(0, 999_999), zone=zones, late=st.booleans(), cid=st.none() | safe_texts)
def test_report_event_is_encoded_as_the_contract_models_encode_it(rid: str, answers: dict[str, Any], note: str,
                                                                  supersedes: str | None, micro: int,
                                                                  zone: timezone, late: bool,
                                                                  cid: str | None) -> None:
    at = datetime(2026, 11, 25, 23, 30, 13, micro, UTC).astimezone(zone)
    fields = _fields(rid, answers, note, supersedes, at, late)
    acc = Accepted(fields=fields, municipality_id="vaxjo", period=None, late=late)  # type: ignore[arg-type]
    event = report_event(acc, cid)
    # the event as validate_report built it before: the contract's models, validated
    data = ReportSubmitted(**{**fields, "answers": {c: Answer(value=a.value, places=list(a.places), note=a.note)
                                                    for c, a in fields["answers"].items()}})
    model = ReportEvent(id=rid, source=SOURCE, type=REPORT_SUBMITTED, time=at, subject="araby", data=data,
                        correlationid=cid)
    assert event.payload == encode(model)
    assert event.id == rid and event.type == REPORT_SUBMITTED
    assert event.parse() == model  # a consumer reads exactly the event the models describe
    assert acc.data == data


def test_an_accepted_reports_event_carries_its_answers_places_notes_and_correction() -> None:
    snap, _ = build_snapshot(make_org(), None)
    anna = principal_for(snap, "anna")
    assert anna is not None
    now = datetime.now(UTC)
    first = ReportIn.model_validate(report(note="Trappan \"B\" – åter klotter\n"))
    fix = ReportIn.model_validate(report(supersedes=first.report_id, nothing_to_report=False))
    for req, known in ((first, {}), (fix, {first.report_id: KnownReport("araby", "vaxjo", "anna")})):
        acc = validate_report(req, caller=anna, snapshot=snap, received_at=now, known_reports=known)
        event = parse_event(report_event(acc, "corr-1").payload)
        assert event.data == acc.data  # type: ignore[comparison-overlap]
        assert event.data.answers["klotter"].places == ["centrum"]  # type: ignore[attr-defined]
        assert event.data.supersedes == req.supersedes and event.correlationid == "corr-1"  # type: ignore[attr-defined]
        assert event.time == now and event.subject == "araby"


def test_reports_of_one_batch_share_look_ups_but_not_answers() -> None:
    from est_intake.reports.domain import Lookups

    snap, _ = build_snapshot(make_org(), None)
    anna = principal_for(snap, "anna")
    assert anna is not None
    now = datetime.now(UTC)
    lookups = Lookups()
    reqs = [ReportIn.model_validate(report()), ReportIn.model_validate(report(period="2026-W01")),
            ReportIn.model_validate(report(answers={"klotter": {"value": 3}}))]
    got = [validate_report(r, caller=anna, snapshot=snap, received_at=now, known_reports={}, lookups=lookups)
           for r in reqs]
    alone = [validate_report(r, caller=anna, snapshot=snap, received_at=now, known_reports={}) for r in reqs]
    assert [a.fields for a in got] == [a.fields for a in alone]
    assert got[1].fields["period"] == "2026-W01" and got[1].late and not got[0].late


@settings(max_examples=200, deadline=None)
@given(rid=st.none() | safe_texts, period=safe_texts, late=st.booleans(), replayed=st.booleans())
def test_the_batch_answer_is_rendered_as_json_response_rendered_it(rid: str | None, period: str, late: bool,
                                                                  replayed: bool) -> None:
    ok = Outcome(202, {"report_id": rid or "r", "period": period, "status": "accepted", "late": late},
                 "replayed" if replayed else None)
    odd = Outcome(202, {"report_id": "r", "period": period, "status": "accepted", "late": late, "extra": 1})
    outcomes = [ok, conflict(rid or "r"), unavailable(), odd, ok]
    items: list[Any] = [{"report_id": rid}, {"report_id": 5}, "not an object", {}, {"report_id": rid}]
    results = []
    for i, (item, o) in enumerate(zip(items, outcomes, strict=True)):
        r = item.get("report_id") if isinstance(item, dict) else None
        results.append({"index": i, "report_id": r if isinstance(r, str) and len(r) <= 128 else None,
                        "status": o.status,
                        "replayed": o.reason == "replayed", **({"body": o.body} if o.ok else {"problem": o.body})})
    before = JSONResponse({"results": results, "accepted": 3, "rejected": 2}, headers={"Retry-After": "5"})
    now = batch_out(items, outcomes)
    assert now.body == before.body
    assert now.headers["content-type"] == before.headers["content-type"] and now.headers["retry-after"] == "5"
    assert "retry-after" not in batch_out(items[:1], outcomes[:1]).headers


@given(rid=texts, period=texts, late=st.booleans())
def test_a_ledger_rows_stored_answer_is_json_dumps_of_it(rid: str, period: str, late: bool) -> None:
    body = {"report_id": rid, "period": period, "status": "accepted", "late": late}
    assert response_json(body) == json.dumps(body) == accepted_json(rid, period, late)
    other = {"report_id": rid, "late": late, "period": period, "status": "accepted"}
    assert response_json(other) == json.dumps(other)


def test_jetstream_acks_are_read_as_stored_duplicate_or_refused() -> None:
    read = JetStreamReports._ack_of
    assert read(b'{"stream":"EST_REPORTS","seq":12}') is STORED
    assert read(b'{"stream":"EST_REPORTS","domain":"hub","seq":12}') is STORED
    dup = read(b'{"stream":"EST_REPORTS","seq":7,"duplicate":true}')
    assert dup is not None and dup.duplicate and dup.seq == 7 and dup.stream == "EST_REPORTS"
    assert read(b'{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}') is None
    assert read(b'{"stream":"EST_REPORTS"') is None and read(b"") is None


def test_ledger_rows_of_one_batch_are_written_as_each_would_be_alone() -> None:
    sql = LedgerSql(make_engine("sqlite+aiosqlite:///:memory:"))
    utc = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
    plus_one = utc.astimezone(timezone(timedelta(hours=1)))  # the same instant, other wall time
    row = {"report_id": "r", "content_sha256": "x", "response": "{}", "municipality_id": "m", "area_id": "a",
           "period": "2026-W10", "reporter_id": "anna", "received_at": utc, "recorded_at": utc}
    fresh = [LedgerSql(make_engine("sqlite+aiosqlite:///:memory:")).values(r)
             for r in (row, {**row, "received_at": plus_one})]
    assert [sql.values(row), sql.values({**row, "received_at": plus_one})] == fresh
    assert fresh[0][7] != fresh[1][7]
