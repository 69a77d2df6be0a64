"""Robustness of report intake: the bus going away under load, non-JSON bodies, and `est import`."""

from __future__ import annotations

import asyncio
import collections
import csv
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats
from est_cli.importer import import_namespace, report_uuid
from est_intake.app import create_app
from est_shared.natsserver import NatsServer
from est_shared.periods import current_period
from est_shared.testing import serve

from tests.intake.support import TOKENS, auth, make_org, report, running, settings_for

ROOT = Path(__file__).resolve().parents[2]


async def stream_ids(url: str, subject: str) -> collections.Counter[str]:
    """How often each event id (Nats-Msg-Id) is stored on a subject of EST_REPORTS."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("EST_REPORTS")
        counts: collections.Counter[str] = collections.Counter()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg("EST_REPORTS", seq)
            except nats.js.errors.NotFoundError:
                continue
            if msg.subject == subject:
                counts[json.loads(msg.data)["id"]] += 1
        return counts
    finally:
        await nc.close()


async def test_bus_down_mid_load_every_202_stored_once(tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, make_org())
    bodies = [report() for _ in range(240)]
    first: dict[str, int] = {}
    async with running(settings) as (client, _app):
        queue: asyncio.Queue[dict] = asyncio.Queue()
        enough = asyncio.Event()
        for b in bodies:
            queue.put_nowait(b)

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                r = await client.post("/v1/reports", json=body, headers=auth("anna"))
                assert r.status_code in (202, 503), r.text
                if r.status_code == 503:
                    assert r.headers["Retry-After"] and r.headers["content-type"].startswith(
                        "application/problem+json")
                first[body["report_id"]] = r.status_code
                if len(first) >= 40:
                    enough.set()
                await asyncio.sleep(0.01)

        async def outage() -> None:
            await enough.wait()
            await asyncio.to_thread(fresh_nats.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(fresh_nats.start)

        await asyncio.gather(outage(), *(worker() for _ in range(12)))
        statuses = collections.Counter(first.values())
        assert statuses[202] >= 40 and statuses[503] >= 1, statuses

        # clients retry what got 503 (same id, same content) until it is accepted
        for body in bodies:
            for _ in range(100):
                if first[body["report_id"]] == 202:
                    break
                r = await client.post("/v1/reports", json=body, headers=auth("anna"))
                assert r.status_code in (202, 503), r.text
                if r.status_code == 202:
                    first[body["report_id"]] = 202
                    break
                await asyncio.sleep(0.2)
        assert set(first.values()) == {202}
        answers = [await client.post("/v1/reports", json=b, headers=auth("anna")) for b in bodies[:5]]
        assert {a.status_code for a in answers} == {202}

    counts = await stream_ids(fresh_nats.url, "est.report.submitted.vaxjo.araby")
    assert set(counts) == {b["report_id"] for b in bodies}
    assert set(counts.values()) == {1}, [k for k, v in counts.items() if v != 1]


async def test_non_json_bodies_get_415(tmp_path: Path, nats_url: str) -> None:
    org = make_org(muni="m415", area="a415", other="b415")
    async with running(settings_for(tmp_path, nats_url, org)) as (client, _app):
        form = await client.post("/v1/reports", data={"report_id": "x", "area_id": "a415"}, headers=auth("anna"))
        assert form.status_code == 415, form.text
        assert form.headers["content-type"].startswith("application/problem+json")
        problem = form.json()
        assert "application/x-www-form-urlencoded" in problem["detail"]
        assert "måste vara JSON" in problem["detail"] and "must be JSON" in problem["detail"]
        text = await client.post("/v1/reports", content=json.dumps(report("a415")),
                                 headers={**auth("anna"), "Content-Type": "text/plain"})
        assert text.status_code == 415 and "text/plain" in text.json()["detail"]
        batch = await client.post("/v1/reports:batch", content=b"reports=1",
                                  headers={**auth("anna"), "Content-Type": "application/x-www-form-urlencoded"})
        assert batch.status_code == 415
        ok = await client.post("/v1/reports", content=json.dumps(report("a415")),
                               headers={**auth("anna"), "Content-Type": "application/json; charset=utf-8"})
        assert ok.status_code == 202, ok.text
        docs = (await client.get("/openapi.json")).json()
        post = docs["paths"]["/v1/reports"]["post"]
        assert "415" in post["responses"]
        assert "answers" in post["requestBody"]["content"]["application/json"]["schema"]["properties"]


async def test_est_import_csv_and_jsonl_twice(tmp_path: Path, nats_url: str) -> None:
    org = make_org(muni="mimp", area="aimp", other="bimp")
    week = current_period("weekly", datetime.now(UTC), "Europe/Stockholm").shift(-6)
    at = datetime.combine(week.start + timedelta(days=2), datetime.min.time(), UTC).isoformat()
    csv_file = tmp_path / "history.csv"
    with csv_file.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["report_id", "area_id", "period", "reporter_id", "submitted_at", "klotter", "skadegorelse",
                    "note"])
        w.writerow(["imp-c1", "aimp", week.id, "anna", at, "2", "1", "lugnt"])
        w.writerow(["imp-c2", "aimp", week.id, "anna", at, "1", "", ""])
        w.writerow(["imp-c3", "aimp", week.id, "ghost", at, "1", "0", ""])  # unknown reporter
        w.writerow(["imp-c4", "aimp", week.id, "anna", at, "x", "0", ""])  # unreadable value
        w.writerow(["imp-c5", "aimp", week.id, "anna", at, "7", "0", ""])  # level out of range
    jsonl = tmp_path / "history.jsonl"
    lines = [json.dumps({"report_id": "imp-j1", "area_id": "aimp", "period": week.id, "reporter_id": "anna",
                         "submitted_at": at, "answers": {"klotter": {"value": 1}}}),
             "{broken",
             json.dumps({"report_id": "imp-j2", "area_id": "aimp", "reporter_id": "anna", "submitted_at": at,
                         "nothing_to_report": True})]
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")

    app = create_app(settings_for(tmp_path, nats_url, org))
    async with serve(app) as base:

        async def est_import(path: Path) -> tuple[int, dict, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "est_cli.main", "import", str(path), "--url", base, "--token",
                TOKENS["admin"], cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode is not None
            return proc.returncode, json.loads(out.decode().strip().splitlines()[-1]), err.decode()

        code, result, err = await est_import(csv_file)
        assert code == 1, err
        assert result["rows"] == 5 and result["accepted"] == 2 and result["already"] == 0
        assert result["rejected"] == 3
        written = [json.loads(x) for x in (tmp_path / "history.csv.errors.jsonl").read_text().splitlines()]
        assert [(e["row"], e["report_id"]) for e in written] == [(4, "imp-c3"), (5, None), (6, "imp-c5")]
        assert "ghost" in written[0]["problem"] and written[0]["status"] == 422
        assert "'x'" in written[1]["problem"]
        assert "answers.klotter.value" in written[2]["problem"]
        assert "row 4" in err and "imp-c3" in err

        code, again, _ = await est_import(csv_file)  # safe to run twice
        assert code == 1 and again["accepted"] == 2 and again["already"] == 2 and again["rejected"] == 3

        code, result, err = await est_import(jsonl)
        assert code == 1 and result["accepted"] == 2 and result["rejected"] == 1, err
        written = [json.loads(x) for x in (tmp_path / "history.jsonl.errors.jsonl").read_text().splitlines()]
        assert [e["row"] for e in written] == [2] and "JSON" in written[0]["problem"]

        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.post("/v1/admin/import", headers=auth("admin"), json={"reports": [
                {"report_id": report_uuid("imp-c1", import_namespace()), "area_id": "aimp", "period": week.id, "reporter_id": "anna",
                 "submitted_at": at, "answers": {"klotter": {"value": 2}, "skadegorelse": {"value": 1}},
                 "note": "lugnt"}]})
            assert r.json()["results"][0]["replayed"] is True
