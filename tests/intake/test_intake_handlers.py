"""Use-case tests without a broker: publish-then-record, idempotency and the organisation apply."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from est_intake.adapters.ledger import ReportLedger
from est_intake.metrics import IntakeMetrics
from est_intake.org import db as org_db
from est_intake.org.domain import build_snapshot, principal_for
from est_intake.org.handlers import apply_org
from est_intake.reports import db as reports_db
from est_intake.reports.domain import ReportIn
from est_intake.reports.handlers import Submission, single_publisher, submit_reports
from est_shared.bus import BusUnavailable
from est_shared.db import make_engine, session_factory
from est_shared.events import CloudEvent
from est_shared.org import OrgSnapshot, SnapshotBlob
from prometheus_client import CollectorRegistry

from tests.intake.support import make_org, report, rid


async def _sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(org_db.metadata.create_all)
        await conn.run_sync(reports_db.metadata.create_all)
    return engine, session_factory(engine)


async def test_nothing_is_recorded_when_the_bus_does_not_ack(tmp_path: Path) -> None:
    engine, sessions = await _sessions(tmp_path)
    snap, _ = build_snapshot(make_org(), None)
    anna = principal_for(snap, "anna")
    assert anna is not None
    published: list[tuple[str, CloudEvent[Any]]] = []
    down = True

    async def publish(subject: str, event: CloudEvent[Any]) -> None:
        if down:
            raise BusUnavailable("down")
        published.append((subject, event))

    metrics = IntakeMetrics(CollectorRegistry())
    ledger = ReportLedger(engine)
    many = single_publisher(publish)
    sub = Submission(req=ReportIn.model_validate(report()), caller=anna, received_at=datetime.now(UTC))
    [out] = await submit_reports([sub], ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    assert out.status == 503 and out.headers == {"Retry-After": "5"}
    async with sessions() as s:
        assert await reports_db.find_reports(s, [sub.req.report_id]) == {}
    down = False
    [out] = await submit_reports([sub], ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    assert out.status == 202
    [(subject, event)] = published
    assert subject == "est.report.submitted.vaxjo.araby" and event.id == sub.req.report_id
    [again] = await submit_reports([sub], ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    assert again.body == out.body and len(published) == 1  # answered from the store, not republished
    await engine.dispose()


async def test_apply_org_stores_versions_and_outbox_once(tmp_path: Path) -> None:
    engine, sessions = await _sessions(tmp_path)
    seen: list[OrgSnapshot] = []
    wakes: list[int] = []

    stored: list[SnapshotBlob] = []

    async def on_applied(snap: OrgSnapshot) -> None:
        seen.append(snap)

    async def store(snap: OrgSnapshot) -> SnapshotBlob:
        stored.append(SnapshotBlob.of(snap))
        return stored[-1]

    first = await apply_org(make_org(), sessions=sessions, applied_by="t", on_applied=on_applied,
                            wake=lambda: wakes.append(1), store=store)
    again = await apply_org(make_org(), sessions=sessions, applied_by="t", on_applied=on_applied,
                            wake=lambda: wakes.append(1), store=store)
    assert first.changed and first.snapshot.version == 1
    assert not again.changed and again.snapshot.version == 1 and len(wakes) == 1
    assert [b.version for b in stored] == [1]  # the snapshot is stored once, for the new version only
    async with sessions() as s:
        rows = (await s.execute(org_db.outbox.select())).all()
        assert [r.event_id for r in rows] == ["org:v1"] and rows[0].subject == "est.org.changed"
        data = json.loads(rows[0].payload)["data"]  # the event names the stored object, without the snapshot
        assert data["snapshot_object"] == stored[0].name and data["snapshot_sha256"] == stored[0].sha256
        assert "snapshot" not in data
        assert [v["version"] for v in await org_db.org_history(s)] == [1]
    assert [s.version for s in seen] == [1, 1]
    await engine.dispose()


async def test_concurrent_batches_sharing_ids_wait_for_each_other(tmp_path: Path) -> None:
    engine, _ = await _sessions(tmp_path)
    snap, _ = build_snapshot(make_org(), None)
    anna = principal_for(snap, "anna")
    assert anna is not None
    publishing, gate = asyncio.Event(), asyncio.Event()
    published: list[str] = []
    attempts: list[str] = []

    async def publish(subject: str, event: CloudEvent[Any]) -> None:
        publishing.set()
        await gate.wait()  # the first batch holds its ids until the second has seen them in flight
        attempts.append(event.id)
        if event.id == rid("r-down") and attempts.count(rid("r-down")) == 1:
            raise BusUnavailable("down")  # only the first batch's attempt
        published.append(event.id)

    metrics = IntakeMetrics(CollectorRegistry())
    ledger = ReportLedger(engine)
    many = single_publisher(publish)
    now = datetime.now(UTC)

    def sub(name: str, **kw: Any) -> Submission:
        return Submission(req=ReportIn.model_validate(report(report_id=rid(name), **kw)), caller=anna,
                          received_at=now)

    same, other = report(report_id=rid("r-same")), report(report_id=rid("r-other"))
    first = asyncio.create_task(submit_reports(
        [sub("r-same", answers=same["answers"]), sub("r-other", answers=other["answers"]), sub("r-down")],
        ledger=ledger, snapshot=snap, publish=many, metrics=metrics))
    await publishing.wait()
    second = asyncio.create_task(submit_reports(
        [sub("r-same", answers=same["answers"]), sub("r-other", note="other content"), sub("r-down", note="again")],
        ledger=ledger, snapshot=snap, publish=many, metrics=metrics))
    await asyncio.sleep(0.05)
    assert set(ledger.inflight) == {rid("r-same"), rid("r-other"), rid("r-down")}
    gate.set()
    a, b = await first, await second
    assert [o.status for o in a] == [202, 202, 503]  # the first did not get through: the other content retries
    assert [(o.status, o.reason) for o in b] == [(202, "replayed"), (409, "conflict"), (202, None)]
    assert b[0].body == a[0].body and sorted(published) == sorted(rid(n) for n in ("r-down", "r-other", "r-same"))
    assert ledger.inflight == {}
    await engine.dispose()


async def test_ledger_rows_moved_in_bulk_still_answer_replays_and_conflicts(tmp_path: Path) -> None:
    """New ledger rows go into ``reports_recent`` and move into ``reports`` in bulk (see ``LocalLedger``):
    a replay of a moved report gets its original answer, other content under its id 409, and after a
    restart the ledger still counts the rows waiting to move."""
    engine, sessions = await _sessions(tmp_path)
    snap, _ = build_snapshot(make_org(), None)
    anna = principal_for(snap, "anna")
    assert anna is not None
    published: list[str] = []

    async def publish(subject: str, event: CloudEvent[Any]) -> None:
        published.append(event.id)

    metrics = IntakeMetrics(CollectorRegistry())
    ledger = ReportLedger(engine)
    assert ledger.local is not None
    ledger.local.recent_limit = 50
    ledger.local.MOVE_CHUNK = 20  # several chunks a move
    many = single_publisher(publish)
    now = datetime.now(UTC)
    subs = [Submission(req=ReportIn.model_validate(report(report_id=rid(f"mv-{i}"))), caller=anna,
                       received_at=now)
            for i in range(120)]
    first: list[Any] = []
    for i in range(0, 120, 20):
        first += await submit_reports(subs[i:i + 20], ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    for _ in range(100):
        if ledger.local._moving is None or ledger.local._moving.done():
            break
        await asyncio.sleep(0.02)
    assert ledger.local.moves >= 1 and all(o.status == 202 for o in first)

    def counts() -> tuple[int, int]:
        with sqlite3.connect(tmp_path / "intake.db") as conn:
            return (conn.execute("SELECT count(*) FROM reports").fetchone()[0],
                    conn.execute("SELECT count(*) FROM reports_recent").fetchone()[0])

    moved, waiting = counts()
    assert moved + waiting == 120 and moved >= 50 and ledger.local.recent == waiting
    again = await submit_reports(subs, ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    assert [(o.status, o.reason, o.body) for o in again] == [(202, "replayed", o.body) for o in first]
    other = Submission(req=ReportIn.model_validate(report(report_id=rid("mv-0"), note="annat")), caller=anna,
                       received_at=now)
    [clash] = await submit_reports([other], ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    assert clash.status == 409 and len(published) == 120
    async with sessions() as s:
        assert set(await reports_db.find_reports(s, [rid("mv-0"), rid("mv-119")])) == {rid("mv-0"), rid("mv-119")}
    ledger.close()
    # a restart: the rows still waiting are counted before the next insert decides on a move
    ledger = ReportLedger(engine)
    assert ledger.local is not None
    ledger.local.recent_limit = waiting + 1
    extra = Submission(req=ReportIn.model_validate(report(report_id=rid("mv-new"))), caller=anna,
                       received_at=now)
    [ok] = await submit_reports([extra], ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    assert ok.status == 202
    for _ in range(100):
        if ledger.local.moves:
            break
        await asyncio.sleep(0.02)
    assert ledger.local.moves == 1 and counts() == (121, 0)
    ledger.close()
    await engine.dispose()


async def test_a_failed_ledger_move_keeps_the_rows_answering_and_waits_before_the_next(tmp_path: Path) -> None:
    """A move that fails (a full disk, say) leaves the rows in ``reports_recent``, where replays still
    find them, and no new move starts before ``MOVE_RETRY`` has passed; then one does, and succeeds."""
    engine, _ = await _sessions(tmp_path)
    snap, _ = build_snapshot(make_org(), None)
    anna = principal_for(snap, "anna")
    assert anna is not None

    async def publish(subject: str, event: CloudEvent[Any]) -> None:
        return None

    metrics = IntakeMetrics(CollectorRegistry())
    ledger = ReportLedger(engine)
    local = ledger.local
    assert local is not None
    local.recent_limit = 10
    tries: list[int] = []
    real = local._move_rows

    def failing() -> int:
        tries.append(1)
        raise sqlite3.OperationalError("database or disk is full")

    local._move_rows = failing  # type: ignore[method-assign]
    many = single_publisher(publish)
    now = datetime.now(UTC)

    def subs(prefix: str, n: int) -> list[Submission]:
        return [Submission(req=ReportIn.model_validate(report(report_id=rid(f"{prefix}-{i}"))), caller=anna,
                           received_at=now) for i in range(n)]

    async def settled() -> None:
        for _ in range(100):
            if local._moving is None or local._moving.done():
                return
            await asyncio.sleep(0.02)

    first = subs("fail", 12)
    answers = await submit_reports(first, ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    await settled()
    assert len(tries) == 1 and local.moves == 0 and local.recent == 12
    await submit_reports(subs("more", 3), ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    await settled()
    assert len(tries) == 1  # within MOVE_RETRY: no second attempt
    again = await submit_reports(first, ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    assert [(o.status, o.reason, o.body) for o in again] == [(202, "replayed", o.body) for o in answers]
    local._move_rows = real  # type: ignore[method-assign]
    local._retry_at = 0.0  # MOVE_RETRY has passed
    await submit_reports(subs("last", 1), ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    await settled()
    assert local.moves == 1 and local.recent == 0
    ledger.close()
    await engine.dispose()
