"""Alerts per area and month of the demo's year: ``est up --demo``'s reports replayed through the aggregator's rules.

The demo's generator (``est_cli.demo.history_reports``) makes about a year of weekly reports for four areas.
Each area's weeks are published in order, as the aggregator does at each deadline, and every published
picture goes through ``domain.alerts.alert_transitions`` with the alert rules given, exactly as
``publish._raise_and_resolve`` calls it (the open alerts and the earlier periods' flags kept here instead
of in the database). The current week is not published (it is still being reported).

    .venv/bin/python -m bench.alert_rate            # the default rules against the old ones
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from est_aggregator.pictures.domain.alerts import (  # noqa: E402
    Earlier,
    OpenAlert,
    alert_transitions,
    history_needed,
    severity,
)
from est_aggregator.pictures.domain.picture import build_picture  # noqa: E402
from est_aggregator.pictures.domain.reports import ReportRecord  # noqa: E402
from est_aggregator.pictures.domain.tally import PeriodTally  # noqa: E402
from est_cli.demo import AREAS, history_reports  # noqa: E402
from est_shared.checklists import EST_STANDARD_1  # noqa: E402
from est_shared.org import AlertRule, AlertRules  # noqa: E402
from est_shared.periods import Period  # noqa: E402

# What the aggregator did before the rules: every flag raised, resolved at the first period without it.
OLD_RULES = AlertRules(default=AlertRule(raise_on=["high", "rising", "new"], rising_periods=1, quiet_periods=1))
NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Raised:
    area_id: str
    item: str
    kind: str
    period: str
    severity: str
    value: float


@dataclass
class Replay:
    raised: list[Raised]
    resolved: list[tuple[str, str, str]]  # (area, item, period)
    open_at_end: dict[str, list[str]]  # area → items with an open alert after the last published week
    weeks: int  # published weeks per area

    def raised_again(self, weeks: int = 4) -> int:
        """Alerts raised for an item whose previous alert in the area ended at most ``weeks`` weeks before."""
        ended: dict[tuple[str, str], list[Period]] = defaultdict(list)
        for area, item, period in self.resolved:
            ended[(area, item)].append(Period.parse(period))
        return sum(1 for r in self.raised
                   if any(0 < (Period.parse(r.period).start - e.start).days <= 7 * weeks
                          for e in ended[(r.area_id, r.item)]))

    def per_area_month(self) -> dict[str, Counter[str]]:
        """area → month (YYYY-MM of the week's Thursday) → alerts raised."""
        out: dict[str, Counter[str]] = {a: Counter() for a in AREAS}
        for r in self.raised:
            thursday = Period.parse(r.period).start + timedelta(days=3)
            out[r.area_id][f"{thursday:%Y-%m}"] += 1
        return out


def _records(now: datetime) -> dict[str, dict[Period, list[ReportRecord]]]:
    by_area: dict[str, dict[Period, list[ReportRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in history_reports(now):
        rec = ReportRecord(report_id=r["report_id"], municipality_id="vaxjo", area_id=r["area_id"], period=r["period"],
                           checklist=r["checklist"], answers=r["answers"], reporter_id=r["reporter_id"],
                           actor_id="", received_at=datetime.fromisoformat(r["submitted_at"]),
                           nothing_to_report=r["nothing_to_report"])
        by_area[r["area_id"]][Period.parse(r["period"])].append(rec)
    return by_area


def replay(rules: AlertRules, now: datetime = NOW) -> Replay:
    """The demo's weeks published in order per area, their alerts raised and resolved by ``rules``."""
    current = Period.week_containing(now.date())
    raised: list[Raised] = []
    resolved: list[tuple[str, str, str]] = []
    open_at_end: dict[str, list[str]] = {}
    need = history_needed(rules)
    weeks = 0
    for area, periods in sorted(_records(now).items()):
        tallies = {p: PeriodTally.of(rs) for p, rs in periods.items()}
        published: list[Earlier] = []  # newest first
        open_alerts: dict[str, OpenAlert] = {}
        weeks = 0
        for period in sorted(p for p in periods if p < current):
            pic = build_picture(municipality_id="vaxjo", area_id=area, area_name=AREAS[area][0], period=period,
                                superseded=(), items=EST_STANDARD_1.items, expected=[], deadline=None,
                                tallies=tallies, status="published", version=1).picture
            weeks += 1
            flags = {code: s.flag for code, s in pic.items.items()}
            up, down = alert_transitions(open_alerts, flags, period=period.id, earlier=published[:need], rules=rules)
            for item, kind in up.items():
                value = pic.items[item].value
                raised.append(Raised(area, item, kind, period.id, severity(kind, value, rules.for_item(item)), value))
                open_alerts[item] = OpenAlert(kind, period.id)
            for item in down:
                resolved.append((area, item, period.id))
                del open_alerts[item]
            published.insert(0, Earlier(period.id, flags))
        open_at_end[area] = sorted(open_alerts)
    return Replay(raised, resolved, open_at_end, weeks)


def table(result: Replay) -> str:
    """Alerts raised per area and month, as a Markdown table, with the mean per area and month."""
    counts = result.per_area_month()
    months = sorted({m for c in counts.values() for m in c})
    lines = ["| area | " + " | ".join(months) + " | total | per month |",
             "|---|" + "---|" * (len(months) + 2)]
    for area in AREAS:
        c = counts[area]
        total = sum(c.values())
        lines.append(f"| {area} | " + " | ".join(str(c.get(m, 0)) for m in months)
                     + f" | {total} | {total / max(1, len(months)):.1f} |")
    return "\n".join(lines)


def summary(name: str, result: Replay) -> dict[str, Any]:
    kinds = Counter(r.kind for r in result.raised)
    levels = Counter(r.severity for r in result.raised)
    return {"rules": name, "weeks": result.weeks, "raised": len(result.raised), "resolved": len(result.resolved),
            "per_area_week": round(len(result.raised) / len(AREAS) / max(1, result.weeks), 2),
            "raised_again_within_4_weeks": result.raised_again(), "kinds": dict(kinds), "severity": dict(levels),
            "open_at_end": result.open_at_end}


def main() -> None:
    for name, rules in (("before (every flag, no hysteresis)", OLD_RULES),
                        ("quiet_periods 2", AlertRules(default=AlertRule(quiet_periods=2))),
                        ("defaults", AlertRules())):
        result = replay(rules)
        print(f"## {name}\n{summary(name, result)}\n\n{table(result)}\n")
    if len(sys.argv) > 1:  # e.g. raise_on=high rising_periods=3 quiet_periods=2
        fields: dict[str, Any] = {}
        for arg in sys.argv[1:]:
            key, _, value = arg.partition("=")
            fields[key] = value.split(",") if key == "raise_on" else float(value) if "." in value else int(value)
        rules = AlertRules(default=AlertRule(**fields))
        result = replay(rules)
        print(f"## {fields}\n{summary(str(fields), result)}\n\n{table(result)}\n")


if __name__ == "__main__":
    main()
