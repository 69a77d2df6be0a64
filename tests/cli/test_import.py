"""``est import``: historical reports from CSV or JSON Lines through a running intake's validation.

The command runs as users run it (a subprocess) against a real intake on a real NATS server.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
from est_cli.importer import DEFAULT_NAMESPACE, IMPORT_NAMESPACE, import_namespace, report_uuid
from est_intake.app import create_app
from est_shared.natsserver import NatsServer
from est_shared.periods import Period, current_period
from est_shared.testing import serve

from tests.intake.support import TOKENS, auth, make_org, settings_for

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def intake(tmp_path: Path, nats_url: str, area: str = "aimp") -> AsyncIterator[str]:
    """A running intake with the test organisation (municipality m<area>, area <area>); yields its URL.

    Give it a NATS server of the test's own: on a shared one, the organisation versions other tests' intakes
    made are newer than this one's start-up file, which is then (rightly) not applied over them."""
    app = create_app(settings_for(tmp_path, nats_url, make_org(muni=f"m{area}", area=area, other=f"b{area}")))
    async with serve(app) as base:
        yield base


async def est_import(base: str, path: Path, *options: str) -> tuple[int, dict[str, Any], str]:
    """Run ``est import`` against an intake: (exit code, the summary it prints, its stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "est_cli.main", "import", str(path), "--url", base, "--token", TOKENS["admin"],
        *options, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out.decode().strip().splitlines()[-1]), err.decode()


def errors_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.with_name(path.name + ".errors.jsonl").read_text().splitlines()]


def week_ago(weeks: int) -> tuple[Period, str]:
    """A past week and a time inside it (before its deadline)."""
    week = current_period("weekly", datetime.now(UTC), "Europe/Stockholm").shift(-weeks)
    return week, datetime.combine(week.start + timedelta(days=2), datetime.min.time(), UTC).isoformat()


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


async def stored_ids(url: str, subject: str) -> list[str]:
    """The event ids stored on a subject of EST_REPORTS, oldest first."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("EST_REPORTS")
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("EST_REPORTS", seq)
            if msg.subject == subject:
                out.append(json.loads(msg.data)["id"])
        return out
    finally:
        await nc.close()


async def test_est_import_csv_and_jsonl_twice(tmp_path: Path, fresh_nats: NatsServer) -> None:
    week, at = week_ago(6)
    csv_file = write_csv(tmp_path / "history.csv",
                         ["report_id", "area_id", "period", "reporter_id", "submitted_at", "klotter", "skadegorelse",
                          "note"],
                         [["imp-c1", "aimp", week.id, "anna", at, "2", "1", "lugnt"],
                          ["imp-c2", "aimp", week.id, "anna", at, "1", "", ""],
                          ["imp-c3", "aimp", week.id, "ghost", at, "1", "0", ""],  # unknown reporter
                          ["imp-c4", "aimp", week.id, "anna", at, "x", "0", ""],  # unreadable value
                          ["imp-c5", "aimp", week.id, "anna", at, "7", "0", ""]])  # level out of range
    jsonl = tmp_path / "history.jsonl"
    lines = [json.dumps({"report_id": "imp-j1", "area_id": "aimp", "period": week.id, "reporter_id": "anna",
                         "submitted_at": at, "answers": {"klotter": {"value": 1}}}),
             "{broken",
             json.dumps({"report_id": "imp-j2", "area_id": "aimp", "reporter_id": "anna", "submitted_at": at,
                         "nothing_to_report": True})]
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")

    async with intake(tmp_path, fresh_nats.url) as base:
        code, result, err = await est_import(base, csv_file)
        assert code == 1, err
        assert result["rows"] == 5 and result["accepted"] == 2 and result["already"] == 0
        assert result["rejected"] == 3
        written = errors_of(csv_file)
        assert [(e["row"], e["report_id"]) for e in written] == [(4, "imp-c3"), (5, None), (6, "imp-c5")]
        assert "ghost" in written[0]["problem"] and written[0]["status"] == 422
        assert "'x'" in written[1]["problem"]
        assert "answers.klotter.value" in written[2]["problem"]
        assert "row 4" in err and "imp-c3" in err  # the file's own ids, not the UUIDs sent

        code, again, _ = await est_import(base, csv_file)  # safe to run twice
        assert code == 1 and again["accepted"] == 2 and again["already"] == 2 and again["rejected"] == 3

        code, result, err = await est_import(base, jsonl)
        assert code == 1 and result["accepted"] == 2 and result["rejected"] == 1, err
        written = errors_of(jsonl)
        assert [e["row"] for e in written] == [2] and "JSON" in written[0]["problem"]

        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.post("/v1/admin/import", headers=auth("admin"), json={"reports": [
                {"report_id": report_uuid("imp-c1", import_namespace()), "area_id": "aimp", "period": week.id,
                 "reporter_id": "anna", "submitted_at": at,
                 "answers": {"klotter": {"value": 2}, "skadegorelse": {"value": 1}}, "note": "lugnt"}]})
            assert r.json()["results"][0]["replayed"] is True  # the row went in as UUIDv5 of its own id


async def test_a_files_own_ids_are_sent_as_uuids_of_its_namespace(tmp_path: Path, fresh_nats: NatsServer) -> None:
    """Row ids like ``1`` would collide between reporters and sources: each is sent as UUIDv5 of the id
    under the import's namespace, a correction's ``supersedes`` too; a UUID in the file stays as it is."""
    week, at = week_ago(5)
    own = str(uuid.uuid4())
    header = ["report_id", "area_id", "period", "reporter_id", "submitted_at", "skadegorelse", "supersedes"]
    first = write_csv(tmp_path / "first.csv", header, [
        ["1", "ans", week.id, "anna", at, "4", ""],
        ["2", "ans", week.id, "anna", at, "2", ""],
        ["3", "ans", week.id, "anna", at, "3", "1"],  # corrects row 1
        [own, "ans", week.id, "anna", at, "1", ""]])
    other = write_csv(tmp_path / "other.csv", header, [["1", "ans", week.id, "anna", at, "9", ""]])
    ns = import_namespace(DEFAULT_NAMESPACE)
    assert ns == uuid.uuid5(IMPORT_NAMESPACE, "est-import")
    async with intake(tmp_path, fresh_nats.url, "ans") as base:
        code, result, err = await est_import(base, first)
        assert code == 0 and result["accepted"] == 4, err
        subject = "est.report.submitted.mans.ans"
        sent = [str(uuid.uuid5(ns, n)) for n in ("1", "2", "3")] + [own]
        assert sorted(await stored_ids(fresh_nats.url, subject)) == sorted(sent)
        code, again, _ = await est_import(base, first)
        assert code == 0 and again["already"] == 4  # the same UUIDs again: idempotent

        # another source numbering its rows from 1 as well: under the same namespace a clash (409) ...
        code, _, _ = await est_import(base, other)
        assert code == 1 and [e["status"] for e in errors_of(other)] == [409]
        assert errors_of(other)[0]["report_id"] == "1"
        # ... under a namespace of its own, reports of their own
        code, own_ns, err = await est_import(base, other, "--namespace", "embrace-mimp")
        assert code == 0 and own_ns["accepted"] == 1, err
        stored = await stored_ids(fresh_nats.url, subject)
        assert stored[-1] == str(uuid.uuid5(uuid.uuid5(IMPORT_NAMESPACE, "embrace-mimp"), "1"))


async def test_est_import_refuses_counts_beyond_the_bound_and_names_the_field(tmp_path: Path,
                                                                              fresh_nats: NatsServer) -> None:
    week, at = week_ago(4)
    huge = "1" + "0" * 400  # 10**400, a 401-digit count
    rows = write_csv(tmp_path / "counts.csv",
                     ["report_id", "area_id", "period", "reporter_id", "submitted_at", "skadegorelse", "note"],
                     [["a", "aimp", week.id, "anna", at, "10000", ""],
                      ["b", "aimp", week.id, "anna", at, "10001", ""],
                      ["c", "aimp", week.id, "anna", at, huge, ""],
                      ["d", "aimp", week.id, "anna", at, "1", "rad\x00brytning"]])
    jsonl = tmp_path / "counts.jsonl"
    jsonl.write_text(json.dumps({"report_id": "e", "area_id": "aimp", "period": week.id, "reporter_id": "anna",
                                 "submitted_at": at, "answers": {"skadegorelse": {"value": 10**400}}}) + "\n")
    async with intake(tmp_path, fresh_nats.url) as base:
        code, result, err = await est_import(base, rows)
        assert code == 1 and result["accepted"] == 1 and result["rejected"] == 3, err
        written = errors_of(rows)
        assert [(e["report_id"], e["status"]) for e in written] == [("b", 422), ("c", 422), ("d", 422)]
        assert all("answers.skadegorelse.value" in e["problem"] for e in written[:2]), written
        assert "note" in written[2]["problem"] and huge not in err  # not echoed
        code, result, err = await est_import(base, jsonl)
        assert code == 1 and "answers.skadegorelse.value" in errors_of(jsonl)[0]["problem"], err
