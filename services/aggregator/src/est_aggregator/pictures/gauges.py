"""Business gauges: expected, received and late reporters per municipality in its latest closed period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from est_shared.org import OrgSnapshot, period_deadline
from est_shared.orghistory import held_over
from est_shared.periods import Cadence, Period, current_period

from est_aggregator.pictures import db
from est_aggregator.pictures.compute import expected_in
from est_aggregator.pictures.deps import Deps
from est_aggregator.pictures.domain.periods import period_ids
from est_aggregator.pictures.domain.reports import effective_reports
from est_aggregator.pictures.domain.tally import completeness


@dataclass(frozen=True)
class ReportingTally:
    """Expected against received reporters of a municipality in its latest closed period(s)."""

    expected: int
    received: int
    late: int


def latest_closed(muni: Any, cadence: Cadence, now: datetime) -> Period:
    """The latest period of a cadence whose deadline has passed at ``now``."""
    p = current_period(cadence, now, muni.timezone)
    for _ in range(8):
        if period_deadline(muni, p) <= now:
            break
        p = p.prev()
    return p


async def reporting_tallies(*, deps: Deps, org: OrgSnapshot, now: datetime) -> dict[str, ReportingTally]:
    """Per municipality: expected reporters, expected ones heard from and late ones in each area's latest
    closed period (the business gauges ``est_aggregator_reports_*``), expected as the organisation was then."""
    out: dict[str, ReportingTally] = {}
    async with deps.sessions() as s:
        history = await held_over(s, db.org_history, org.areas)
        for muni in org.municipalities.values():
            expected = received = late = 0
            for area in org.areas.values():
                if area.municipality_id != muni.id:
                    continue
                period = latest_closed(muni, area.cadence, now)
                stored = await db.reports_for(s, area.id, period_ids(period))
                gone = await db.superseded_in_area(s, area.id) if any(r.supersedes for r in stored) else set()
                comp = completeness(effective_reports(stored, gone),
                                    expected_in(history, org, area.id, period, muni.timezone),
                                    deadline=period_deadline(muni, period), all_reports=stored)
                expected += comp.expected
                received += comp.expected - len(comp.missing_reporters)
                late += comp.late
            out[muni.id] = ReportingTally(expected, received, late)
    return out


async def refresh_business_metrics(*, deps: Deps, org: OrgSnapshot, now: datetime) -> dict[str, ReportingTally]:
    """Set the reports expected / received / late gauges from ``reporting_tallies``."""
    tallies = await reporting_tallies(deps=deps, org=org, now=now)
    m = deps.metrics
    for muni, t in tallies.items():
        m.expected.labels(muni).set(t.expected)
        m.received.labels(muni).set(t.received)
        m.late.labels(muni).set(t.late)
    return tallies
