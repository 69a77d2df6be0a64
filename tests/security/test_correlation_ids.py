"""A client's ``X-Correlation-ID`` is written to every log line, to the events and to the forfeiture access
log: only a plain token of 8-64 characters of ``A-Za-z0-9._-`` that looks like nothing personal is taken;
anything else (10 KB, a personal identity number, markup, spaces, CR) is replaced by a fresh id, which is
the one echoed, and never reaches the logs (the service's real log output, captured), the stream or the
access log."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx
from est_intake.app import create_app
from est_intake.forfeitures.pii import generate_key
from est_shared import http
from est_shared.http import accepted_correlation_id, new_correlation_id
from est_shared.natsserver import NatsServer
from est_shared.testing import serve

from tests.intake.support import settings_for
from tests.security.support import all_stream_messages, auth, forfeiture_org, protocol
from tests.security.test_no_personal_data_leaks import Capture
from tests.support import raw_exchange

FRESH = re.compile(r"[a-p]{32}")
HOSTILE = ["x" * 10_000, "20100515-2382", "201005152382", "<script>alert(1)</script>", "short",
           "a b c d e f g h", "tab\tseparated-value", "ok" * 40, "ünïcode-correlation"]
GOOD = "field-app.7f3a_9c2e-01"


async def test_a_hostile_correlation_id_is_replaced_and_never_reaches_logs_events_or_the_access_log(
        tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, forfeiture_org(), pii_key=generate_key())
    app = create_app(settings.model_copy(update={"log_level": "DEBUG"}))
    capture = Capture()
    logging.getLogger().addHandler(capture)  # after create_app: the service sets up logging there
    echoed: dict[str, str] = {}  # value sent -> id echoed for the protocol's POST
    read_ids: dict[str, str] = {}  # and for its read (a request of its own, so an id of its own)
    try:
        async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=15) as client:
            for value in [*HOSTILE, GOOD]:
                body = protocol()
                r = await client.post("/v1/forfeitures", json=body,
                                      headers={**auth("petra"), "X-Correlation-ID": value.encode()})
                assert r.status_code == 202, r.text
                echoed[value] = r.headers["x-correlation-id"]
                read = await client.get(f"/v1/forfeitures/{body['protocol_id']}", params={"purpose": "uppföljning"},
                                        headers={**auth("sara"), "X-Correlation-ID": value.encode()})
                assert read.status_code == 200
                read_ids[value] = read.headers["x-correlation-id"]

            # a CR inside the value never gets past the parser
            status, _, answer = await raw_exchange(int(base.rsplit(":", 1)[1]), (
                f"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-anna\r\n"
                f"X-Correlation-ID: abcdefgh\rinjected-{HOSTILE[1]}\r\nConnection: close\r\n\r\n").encode())
            assert status == 400 and b"injected" not in answer

            access_log = (await client.get("/v1/admin/forfeiture-access-log", headers=auth("admin"))).text
        streams = await all_stream_messages(fresh_nats.url)
    finally:
        logging.getLogger().removeHandler(capture)

    assert echoed[GOOD] == read_ids[GOOD] == GOOD, "a plain token is kept"
    for value in HOSTILE:
        assert FRESH.fullmatch(echoed[value]) and FRESH.fullmatch(read_ids[value]), (value[:40], echoed[value])
    fresh = [*(echoed[v] for v in HOSTILE), *(read_ids[v] for v in HOSTILE)]
    assert len(set(fresh)) == len(fresh), "each request got an id of its own"

    logs = "\n".join(capture.lines)
    stored = [json.loads(data).get("correlationid") for _, _, data, _ in streams if data.startswith(b"{")]
    assert any(f'"correlation_id": "{GOOD}"' in line for line in capture.lines), "request log lines carry the id"
    assert GOOD in stored and GOOD in access_log
    for value in [*HOSTILE, "injected", "2010051523"]:
        if value in ("short", "ok" * 40):  # plain words; too short or too long, and replaced all the same
            assert f'"correlation_id": "{value}"' not in logs and value not in stored
            assert f'"{value}"' not in access_log
            continue
        assert value not in logs, f"{value[:40]!r} reached the logs"
        assert value not in stored and value not in access_log, f"{value[:40]!r} reached an event or the access log"
    for value in HOSTILE:
        assert echoed[value] in stored and read_ids[value] in access_log, "the fresh id is the one used everywhere"


def test_a_fresh_correlation_id_is_taken_as_it_is_by_the_next_service() -> None:
    ids = []
    for _ in range(2_000):  # as many processes (each makes a random prefix), ten requests each
        http._new_prefix()
        ids += [new_correlation_id() for _ in range(10)]
    assert len(set(ids)) == len(ids)
    assert all(accepted_correlation_id(i) == i for i in ids), "a fresh id never looks like personal data"
    assert accepted_correlation_id("3f2b5a1e-9c4d-4e8f-a1b2-c3d4e5f60718"), "a client's uuid is kept"
