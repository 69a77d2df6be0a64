"""No personal data in logs, metrics, problem bodies, stream messages, dead letters or the database file.

Protocols and reports go through every path (accepted, replayed, conflicting, refused, read, refused
reads, dead-lettered, deleted after retention) against real NATS; then everything the system logged,
exported, published or stored in clear is searched for the names and personal identity numbers.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from est_intake.app import create_app
from est_intake.forfeitures.pii import generate_key
from est_shared.bus import PoisonEvent, add_consumer, make_broker
from est_shared.events import CloudEvent, ForfeitureRecorded
from est_shared.natsserver import NatsServer
from est_shared.observability import BusMetrics, JsonFormatter
from est_shared.subjects import REPORTS
from est_shared.testing import serve
from prometheus_client import CollectorRegistry

from tests.intake.support import report, settings_for
from tests.security.support import all_stream_messages, auth, born_years_ago, forfeiture_org, pnr, protocol

NAME = "Zlatana Läckmark"
NAME_ADULT = "Oskar Hemligsson"
OFFICER = "kommissarie Hemlig-7788"
SOURCE_DETAILS = "köpt av grannen Bertil Langarsson"


class Capture(logging.Handler):
    """Keeps every record, formatted as the service would write it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.fmt = JsonFormatter("intake")

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.fmt.format(record))
        self.lines.append(repr(record.args))


def variants(number: str) -> list[str]:
    """The forms a personal identity number could leak in."""
    digits = number.replace("-", "").replace("+", "")
    return [number, digits, digits[-10:], f"{digits[-10:-4]}-{digits[-4:]}"]


def find_leaks(where: str, text: str, secrets: list[str]) -> list[str]:
    low = text.lower()
    return [f"{where}: {s!r}" for s in secrets if s.lower() in low]


async def test_no_personal_data_leaks_anywhere(tmp_path: Path, fresh_nats: NatsServer) -> None:
    minor, adult = pnr(born_years_ago(16), serial="551"), pnr(born_years_ago(34), serial="662")
    bad_check = pnr(born_years_ago(15), serial="773")
    bad_check = bad_check[:-1] + str((int(bad_check[-1]) + 3) % 10)
    in_note = pnr(date(1990, 4, 12), serial="884", long=False)
    coordination = pnr(born_years_ago(17), serial="995", coordination=True)
    secrets = [NAME, NAME_ADULT, OFFICER, SOURCE_DETAILS, "Langarsson", "Hemlig-7788"]
    for number in (minor, adult, bad_check, in_note, coordination):
        secrets += variants(number)

    settings = settings_for(tmp_path, fresh_nats.url, forfeiture_org(), pii_key=generate_key(),
                            forfeiture_upkeep_interval=0.05).model_copy(update={"log_level": "DEBUG"})
    app = create_app(settings)
    capture = Capture()
    logging.getLogger().addHandler(capture)  # after create_app: the service sets up logging there
    levels = {"est": logging.DEBUG, "faststream": logging.DEBUG, "uvicorn": logging.DEBUG, "nats": logging.DEBUG,
              "aiosqlite": logging.DEBUG, "sqlalchemy.engine": logging.INFO}
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    problems: list[tuple[str, str]] = []
    dead_letter_broker = make_broker([fresh_nats.url])
    try:
        async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=15) as client:

            async def call(method: str, url: str, **kw: Any) -> httpx.Response:
                r = await client.request(method, url, **kw)
                if r.status_code >= 400:
                    problems.append((f"{method} {url} -> {r.status_code}", r.text))
                return r

            body = protocol(name=NAME, number=minor, officer=OFFICER, source_details=SOURCE_DETAILS)
            assert (await call("POST", "/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
            assert (await call("POST", "/v1/forfeitures", json=body, headers=auth("petra"))).status_code == 202
            other = {**body, "person": {"name": NAME_ADULT, "personal_number": minor}}
            assert (await call("POST", "/v1/forfeitures", json=other, headers=auth("petra"))).status_code == 409
            coord = protocol(name=NAME, number=coordination)
            assert (await call("POST", "/v1/forfeitures", json=coord, headers=auth("petra"))).status_code == 202
            for refused in (protocol(name=NAME_ADULT, number=adult), protocol(name=NAME, number=bad_check),
                            protocol(name=NAME, number=minor, items=[]),
                            protocol(name=NAME, number=minor, place=f"hemma hos {minor}"),
                            {**protocol(), "person": {"name": NAME, "personal_number": minor, "extra": minor}}):
                r = await call("POST", "/v1/forfeitures", json=refused, headers=auth("petra"))
                assert r.status_code == 422, r.text
            r = await call("POST", "/v1/forfeitures", json=body, headers=auth("anna"))
            assert r.status_code == 403

            url = f"/v1/forfeitures/{body['protocol_id']}"
            read = await client.get(url, params={"purpose": "uppföljningssamtal"}, headers=auth("sara"))
            assert read.status_code == 200 and read.json()["person"]["name"] == NAME  # the one allowed way
            for headers, params in ((auth("anna"), {"purpose": "nyfiken"}),
                                    (auth("sara"), {"purpose": f"samtal om {minor}"}), (auth("sara"), {}),
                                    ({}, {"purpose": "x"})):
                assert (await call("GET", url, params=params, headers=headers)).status_code >= 400
            for path, headers, params in ((f"/v1/forfeitures/{NAME} {minor}", {}, {"purpose": "x"}),
                                          (f"/v1/forfeitures/{minor}", auth("sara"), {"purpose": "uppföljning"}),
                                          (url, auth("anna"), {"purpose": f"{NAME} {minor}"})):
                assert (await call("GET", path, params=params, headers=headers)).status_code >= 400

            assert (await call("POST", "/v1/reports", json=report(note="lugnt i kväll"),
                               headers=auth("anna"))).status_code == 202
            r = await call("POST", "/v1/reports", json=report(note=f"pojken {in_note} var där"), headers=auth("anna"))
            assert r.status_code == 422, r.text
            r = await call("POST", "/v1/reports", headers=auth("anna"), json=report(
                answers={"klotter": {"value": 1, "note": f"av {in_note}"}}))
            assert r.status_code == 422
            r = await call("POST", "/v1/reports:batch", headers=auth("anna"),
                           json={"reports": [report(note=f"pnr {in_note}")]})
            problems.append(("batch", r.text))
            assert r.json()["results"][0]["status"] == 422

            # a consumer that cannot handle forfeiture events: one poison, one that fails until dead-lettered
            async def refuse(event: CloudEvent[Any]) -> None:
                if event.data.protocol_id == body["protocol_id"]:  # type: ignore[attr-defined]
                    raise PoisonEvent(f"cannot handle {event!r}")
                raise RuntimeError(f"broken handler for {event.model_dump_json()}")

            add_consumer(dead_letter_broker, service="leaktest", stream=REPORTS, subject="est.forfeiture.recorded.>",
                         durable="leaktest", data=ForfeitureRecorded, types=["se.est.forfeiture.recorded"],
                         handle=refuse, metrics=BusMetrics("leaktest", CollectorRegistry()), max_deliver=1)
            await dead_letter_broker.start()
            for _ in range(200):
                if sum(1 for m in await all_stream_messages(fresh_nats.url) if m[0] == "EST_DLQ") >= 2:
                    break
                await asyncio.sleep(0.05)

            deps = app.state.forfeitures
            real = deps.clock
            deps.clock = lambda: real() + timedelta(days=400)
            for _ in range(100):
                if deps.metrics.deleted._value.get() >= 2:
                    break
                await asyncio.sleep(0.05)
            deps.clock = real

            metrics_text = (await client.get("/metrics")).text
            access_log = (await client.get("/v1/admin/forfeiture-access-log", headers=auth("admin"))).text
            messages = await all_stream_messages(fresh_nats.url)
    finally:
        await dead_letter_broker.stop()
        logging.getLogger().removeHandler(capture)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)

    dlq = [m for m in messages if m[0] == "EST_DLQ"]
    assert len(dlq) >= 2 and {m[3].get("EST-DLQ-Reason") for m in dlq} >= {"poison", "max_deliver"}
    assert any(m[1] == "est.forfeiture.recorded.vaxjo" for m in messages)
    assert any("forfeiture protocol recorded" in line for line in capture.lines), "the service logged"
    assert any("INSERT INTO forfeiture_protocols" in line for line in capture.lines), "SQL was logged"
    assert len(problems) >= 12

    leaks: list[str] = []
    for i, line in enumerate(capture.lines):
        leaks += find_leaks(f"log line {i}: {line[:120]}", line, secrets)
    leaks += find_leaks("/metrics", metrics_text, secrets)
    leaks += find_leaks("access log", access_log, secrets)
    for where, text in problems:
        leaks += find_leaks(f"problem body of {where}", text, secrets)
    for stream, subject, data, headers in messages:
        leaks += find_leaks(f"{stream} {subject}", data.decode("utf-8", "replace") + repr(headers), secrets)
    raw_db = (tmp_path / "var" / "intake.db").read_bytes() + b"".join(
        p.read_bytes() for p in (tmp_path / "var").glob("intake.db-*"))
    leaks += find_leaks("intake database file", raw_db.decode("utf-8", "replace"), secrets)
    assert not leaks, "\n".join(leaks[:30])
