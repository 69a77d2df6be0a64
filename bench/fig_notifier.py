"""Notifier figure: signed webhook deliveries per second against plain httpx POSTs of the same bytes.

Both hit the same local receiver (uvicorn in its own process, answering 204). The baseline is an
``httpx.AsyncClient`` with as many concurrent POSTs as the notifier's worker attempts at once
(``EST_NOTIFIER_WORKER_BATCH``, default 20), sending the very payloads and headers the notifier sends.
The notifier's figure runs from the first published event to the last delivery arriving: fan-out from
JetStream, freezing, signing, the per-attempt ledger in SQLite (``notifier``) or PostgreSQL
(``notifier-pg``) and the POSTs.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
from est_notifier.deliveries.domain import sign
from est_shared.bus import encode, ensure_streams, publish_event
from est_shared.events import (
    Completeness,
    ItemSummary,
    OrgChanged,
    PictureData,
    PicturePublished,
    new_event,
)
from est_shared.org import Actor, Area, Municipality, OrgSnapshot, Person, hash_token
from est_shared.subjects import ORG_CHANGED, picture_published

from bench.common import ROOT, Env, Row, free_port, metric_sum, pg_database, record

CONCURRENCY = 20  # the notifier's default worker_batch: deliveries attempted at once
SUBSCRIPTIONS = 5


# --- the receiver (run as `uvicorn bench.fig_notifier:receiver_app`) ------------------------------

_count = 0


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A minimal ASGI endpoint: POST counts and answers 204; GET /count tells; DELETE /count resets."""
    global _count
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    body = b""
    status = 204
    if scope["method"] == "POST":
        _count += 1
    elif scope["method"] == "GET":
        status, body = 200, str(_count).encode()
    elif scope["method"] == "DELETE":
        _count = 0
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def start_receiver(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.fig_notifier:receiver_app",
                                 "--port", str(port), "--log-level", "warning", "--no-access-log"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/count", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("receiver did not start")


# --- the organisation and the events ----------------------------------------------------------

def snapshot(receiver: str, areas: int = 50) -> OrgSnapshot:
    ids = [f"a{i}" for i in range(areas)]
    return OrgSnapshot(
        version=1,
        municipalities={"bench": Municipality(id="bench", name="Benchkommun", area_ids=ids)},
        areas={a: Area(id=a, name=f"Område {a}", municipality_id="bench") for a in ids},
        actors={"kommunen": Actor(id="kommunen", name="Kommunen", kind="municipality")},
        people={"adm": Person(id="adm", name="Admin", actor="kommunen", roles=["admin", "key_function"], areas=ids,
                              municipalities=["bench"], token_sha256=hash_token("bench-admin"))},
        subscriptions=[{"id": f"bench-{i}", "owner": "adm", "name": f"Bench {i}", "events": ["picture.published"],
                        "scope": {"municipality_id": "bench"},
                        "channel": {"type": "webhook", "url": f"{receiver}/hook/{i}", "secret": f"s{i}"}}
                       for i in range(SUBSCRIPTIONS)],
    )


def pictures(n: int, areas: int = 50) -> list[Any]:
    tag = uuid.uuid4().hex[:6]
    out = []
    for i in range(n):
        area = f"a{i % areas}"
        pic = PictureData(
            municipality_id="bench", area_id=area, area_name=f"Område {area}", period="2026-W40", status="published",
            version=i // areas + 1, reports=4,
            items={"klotter": ItemSummary(item="klotter", answer="level", label_sv="Klotter", label_en="Graffiti",
                                          value=2, reports=2, previous=1, trend="up", flag="rising"),
                   "skadegorelse": ItemSummary(item="skadegorelse", answer="count", label_sv="Skadegörelse",
                                               label_en="Vandalism", value=3, reports=2, trend="flat")},
            completeness=Completeness(expected=4, received=4, on_time=4, rate=1.0),
            first_analysis={"sv": "Klottret ökar vid centrum.", "en": "Graffiti is rising near the centre."})
        out.append(new_event(type="se.est.picture.published", source="/bench", data=PicturePublished(picture=pic),
                             subject=area, id=f"bench-picture:{tag}:{i}"))
    return out


async def publish_all(url: str, snap: OrgSnapshot, events: list[Any]) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=4000)
    await ensure_streams(js)
    await publish_event(js, ORG_CHANGED, new_event(type="se.est.org.changed", source="/bench", id=f"org:{uuid.uuid4()}",
                                                   data=OrgChanged(version=snap.version,
                                                                   snapshot=snap.model_dump(mode="json"))))
    for e in events:
        await js.publish_async(picture_published("bench", e.data.picture.area_id), encode(e),
                               headers={"Nats-Msg-Id": e.id})
    await js.publish_async_completed()
    await nc.close()


async def baseline(receiver: str, events: list[Any]) -> float:
    """Plain httpx POSTs of the same signed bytes, CONCURRENCY at a time; returns POSTs/s."""
    jobs = []
    for i in range(SUBSCRIPTIONS):
        for e in events:
            body = encode(e)
            did = str(uuid.uuid4())
            jobs.append((f"{receiver}/hook/{i}", body, {
                "Content-Type": "application/cloudevents+json", "X-EST-Signature": sign(f"s{i}", body),
                "X-EST-Delivery": did, "Idempotency-Key": did}))
    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    async with httpx.AsyncClient(timeout=10) as client:
        async def worker() -> None:
            while not queue.empty():
                url, body, headers = queue.get_nowait()
                r = await client.post(url, content=body, headers=headers)
                assert r.status_code == 204

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return len(jobs) / (time.perf_counter() - t0)


def received(receiver: str) -> int:
    return int(httpx.get(f"{receiver}/count", timeout=10).text)


def fig_notifier(base: Path, quick: bool, db: str = "sqlite") -> None:
    n = 400 if quick else 2_000
    env = Env(base, f"notifier-{db}")
    rx, receiver = start_receiver(env.dir / "receiver.log")
    try:
        events = pictures(n)
        raw = asyncio.run(baseline(receiver, events))
        httpx.delete(f"{receiver}/count", timeout=10)
        extra = {"EST_NOTIFIER_DATABASE_URL": asyncio.run(pg_database())} if db == "postgresql" else {}
        notifier = env.service("notifier", **extra, EST_NOTIFIER_REMINDERS_ENABLED="false",
                               EST_NOTIFIER_WORKER_BATCH=str(CONCURRENCY),
                               EST_NOTIFIER_WEBHOOK_ALLOW="127.0.0.1/32")  # the receiver is on loopback
        snap = snapshot(receiver)
        total = n * SUBSCRIPTIONS
        # the organisation first (declared subscriptions), then the events
        asyncio.run(publish_all(env.nats.url, snap, []))
        deadline = time.monotonic() + 60
        while True:
            subs = httpx.get(f"{notifier.url}/v1/subscriptions", headers={"Authorization": "Bearer bench-admin"},
                             timeout=10)
            if subs.status_code == 200 and len(subs.json()) == SUBSCRIPTIONS:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"declared subscriptions not applied: {subs.status_code} {subs.text[:200]}")
            time.sleep(0.2)
        t0 = time.perf_counter()
        asyncio.run(publish_all(env.nats.url, snap.model_copy(update={"version": 2}), events))
        fanned = None
        while received(receiver) < total:
            if fanned is None and metric_sum(notifier.url, "est_notifier_fanout_deliveries_total") >= total:
                fanned = time.perf_counter() - t0
            if time.perf_counter() - t0 > 600:
                raise TimeoutError("notifier did not deliver in time")
            time.sleep(0.05)
        rate = total / (time.perf_counter() - t0)
        while metric_sum(notifier.url, "est_notifier_deliveries_total", outcome="delivered") < total:
            if time.perf_counter() - t0 > 660:
                raise TimeoutError("ledger not complete")
            time.sleep(0.1)
        ledger = httpx.get(f"{notifier.url}/v1/deliveries", params={"limit": 1000},
                           headers={"Authorization": "Bearer bench-admin"}, timeout=10).json()
        assert all(d["status"] == "delivered" for d in ledger), json.dumps(ledger)[:500]
        print(f"  ({total} deliveries in {total / rate:.1f} s, all made by fan-out after {fanned or 0:.1f} s; "
              f"baseline {total / raw:.1f} s)", flush=True)
        record(Row(f"notifier signed webhook deliveries ({db})", rate, "deliveries/s", raw,
                   f"httpx AsyncClient POSTs of the same bytes, {CONCURRENCY} concurrent", "≥ 0.5×", rate / raw >= 0.5))
        memory = "notifier peak resident memory" + (" (postgresql)" if db == "postgresql" else "")
        record(Row(memory, notifier.rss_mb(), "MB", None, "", "< 200 MB",
                   notifier.rss_mb() < 200))
    finally:
        env.close()
        rx.terminate()
        rx.wait(10)


FIGURES = {"notifier": fig_notifier, "notifier-pg": lambda b, q: fig_notifier(b, q, "postgresql")}
