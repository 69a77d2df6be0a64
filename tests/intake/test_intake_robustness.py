"""Robustness of report intake: the bus going away under load and non-JSON bodies."""

from __future__ import annotations

import asyncio
import collections
import json
from pathlib import Path

import nats
from est_shared.natsserver import NatsServer

from tests.intake.support import auth, make_org, report, running, settings_for


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


async def test_non_json_bodies_get_415(tmp_path: Path, fresh_nats: NatsServer) -> None:
    # a bus of its own: a start-up file never overrides versions another test's intake made on a shared one
    org = make_org(muni="m415", area="a415", other="b415")
    async with running(settings_for(tmp_path, fresh_nats.url, org)) as (client, _app):
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
