"""Embedded default: the intake's data dir cannot be written (disk full, simulated with RLIMIT_FSIZE on the
running process: every write to a regular file fails with EFBIG; chmod would not stop root). A report that
cannot be recorded is refused with 503 problem+json and Retry-After: never 500, never 202. Once writes work
again, resending the same reports gives 202 and each is counted exactly once."""

from __future__ import annotations

import resource
from pathlib import Path

import httpx
import pytest

from tests.faults.support import (
    auth,
    fifo_log,
    make_reports,
    post_steadily,
    start_embedded,
    totals_of,
    wait_counted,
    weeks,
)

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs resource.prlimit (Linux)")]


@pytest.mark.timeout(120)
async def test_intake_refuses_reports_it_cannot_store_with_503_and_accepts_them_once_the_disk_is_back(
        tmp_path: Path) -> None:
    fifo_log(tmp_path / "intake.log")  # the intake logs through a pipe: its log is not a file the limit hits
    system = start_embedded(tmp_path, ("intake", "aggregator"))
    intake = system["intake"]
    assert intake.proc is not None
    pid = intake.proc.pid
    before = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    reports = make_reports(30, weeks(2), seed=4)
    try:
        first = await post_steadily(intake.url, reports[:10], rate=50)
        assert len(first.accepted) == 10, first.statuses

        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, before[1]))  # "disk full" from now on
        answers = []
        async with httpx.AsyncClient(timeout=30) as http:
            for report in reports[10:20]:
                answers.append(await http.post(f"{intake.url}/v1/reports", json=report, headers=auth("t-anna")))
        statuses = [r.status_code for r in answers]
        print("while full:", statuses, answers[0].headers, answers[0].text)
        assert 202 not in statuses, "a report was accepted although it could not be recorded"
        assert 500 not in statuses, f"500 on a full disk: {answers[statuses.index(500)].text}"
        for r in answers:
            assert r.status_code in (503, 507), r.text
            assert r.headers["content-type"].startswith("application/problem+json"), r.headers
            assert r.headers.get("retry-after"), r.headers
            assert r.json().get("detail"), r.text
        assert intake.proc.poll() is None, "the intake died on a full disk"

        resource.prlimit(pid, resource.RLIMIT_FSIZE, before)  # space again: the same reports are resent
        rest = await post_steadily(intake.url, reports[10:], rate=50, give_up_after=30)
        assert not rest.unexpected and not rest.gave_up, (rest.statuses, rest.unexpected[:3])
        accepted = {**first.accepted, **rest.accepted}
        assert len(accepted) == 30

        # every report counted exactly once (those refused while full were resent with the same id)
        await wait_counted(system["aggregator"].url, totals_of(accepted.values()), timeout=60)
    except BaseException:
        print(system.logs())
        raise
    finally:
        if intake.proc is not None and intake.proc.poll() is None:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, before)
        system.stop()


@pytest.mark.timeout(90)
async def test_disk_full_refusal_names_the_storage_and_does_not_claim_nothing_was_stored(tmp_path: Path) -> None:
    fifo_log(tmp_path / "intake.log")
    system = start_embedded(tmp_path, ("intake", "aggregator"))
    intake = system["intake"]
    assert intake.proc is not None
    pid = intake.proc.pid
    before = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    try:
        reports = make_reports(4, weeks(1), seed=5)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, before[1]))
        async with httpx.AsyncClient(timeout=30) as http:
            answers = [await http.post(f"{intake.url}/v1/reports", json=r, headers=auth("t-anna")) for r in reports]
        assert [a.status_code for a in answers] == [503] * 4, [a.text for a in answers]
        # evidence: the refused reports are in the stream all the same; the aggregator counts them
        counted = True
        try:
            await wait_counted(system["aggregator"].url, totals_of(reports), timeout=15)
        except AssertionError:
            counted = False
        detail = answers[0].json()["detail"]
        print(f"counted although refused: {counted}; detail: {detail}")
        assert "bus" not in detail.lower(), f"the bus was up; the disk was full: {detail}"
        if counted:
            assert "nothing was stored" not in detail, detail
    finally:
        if intake.proc is not None and intake.proc.poll() is None:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, before)
        system.stop()
