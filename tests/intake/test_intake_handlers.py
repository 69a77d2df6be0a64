"""Use-case tests without a broker: publish-then-record, idempotency and the organisation apply."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from est_intake import db
from est_intake.domain import ReportIn, build_snapshot, principal_for
from est_intake.handlers import IntakeMetrics, Submission, apply_org, single_publisher, submit_reports
from est_shared.bus import BusUnavailable
from est_shared.db import make_engine, session_factory
from est_shared.events import CloudEvent
from est_shared.org import OrgSnapshot
from prometheus_client import CollectorRegistry

from tests.intake.support import make_org, report


async def _sessions(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(db.metadata.create_all)
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
    ledger = db.ReportLedger(engine)
    many = single_publisher(publish)
    sub = Submission(req=ReportIn.model_validate(report()), caller=anna, received_at=datetime.now(UTC))
    [out] = await submit_reports([sub], ledger=ledger, snapshot=snap, publish=many, metrics=metrics)
    assert out.status == 503 and out.headers == {"Retry-After": "5"}
    async with sessions() as s:
        assert await db.find_reports(s, [sub.req.report_id]) == {}
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

    async def on_applied(snap: OrgSnapshot) -> None:
        seen.append(snap)

    first = await apply_org(make_org(), sessions=sessions, applied_by="t", on_applied=on_applied,
                            wake=lambda: wakes.append(1))
    again = await apply_org(make_org(), sessions=sessions, applied_by="t", on_applied=on_applied,
                            wake=lambda: wakes.append(1))
    assert first.changed and first.snapshot.version == 1
    assert not again.changed and again.snapshot.version == 1 and len(wakes) == 1
    async with sessions() as s:
        rows = (await s.execute(db.outbox.select())).all()
        assert [r.event_id for r in rows] == ["org:v1"] and rows[0].subject == "est.org.changed"
        assert [v["version"] for v in await db.org_history(s)] == [1]
    assert [s.version for s in seen] == [1, 1]
    await engine.dispose()
