"""Embedded default: the NATS server crashes (SIGKILL) under a steady load of reports and comes back on the same
port with the same store. While it is away the intake answers 503 problem+json with Retry-After; every report a
client resent until 202 is counted exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.support import make_reports, post_steadily, start_embedded, wait_counted, weeks

pytestmark = pytest.mark.e2e

N_REPORTS = 150


@pytest.mark.timeout(120)
async def test_reports_sent_while_nats_is_down_and_back_are_all_counted_once_and_503s_say_retry(
        tmp_path: Path) -> None:
    system = start_embedded(tmp_path, ("intake", "aggregator"))
    try:
        reports = make_reports(N_REPORTS, weeks(2), seed=1)
        # 25 reports/s for 6 s; NATS is gone from 2 s to 5 s
        load = await post_steadily(system["intake"].url, reports, rate=25, give_up_after=60,
                                   ticks={2.0: system.nats.kill, 5.0: system.nats.start})
        print(f"load: {dict(load.statuses)}")
        assert load.statuses[503] > 0, f"NATS was down for 3 s but no 503 was seen: {load.statuses}"
        assert not load.no_retry_after, f"503 without Retry-After: {load.no_retry_after[:3]}"
        assert not load.not_problem_json, load.not_problem_json[:3]
        assert not load.unexpected, load.unexpected[:5]
        assert not load.gave_up, f"{len(load.gave_up)} reports never accepted: {load.statuses}"
        assert len(load.accepted) == N_REPORTS

        # the intake and the aggregator are ready again (reconnected), and every 202 is counted once
        system["intake"].wait_ready(30)
        system["aggregator"].wait_ready(30)
        pictures = await wait_counted(system["aggregator"].url, load.expected_totals(), timeout=60)
        assert sum(p["reports"] for p in pictures.values()) == N_REPORTS
    except BaseException:
        print(system.logs())
        raise
    finally:
        system.stop()
