"""Sign-in sessions at the gateway, against the whole system started with ``est up``: the browser gets only an
opaque HttpOnly cookie, the gateway adds the credential when it forwards, state-changing requests on the
cookie need the CSRF token and the app's own origin, sessions end when idle, at their absolute expiry and at
sign-out, and failed sign-ins are throttled."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import System, e2e_org, start_system

IDLE, ABSOLUTE = 4, 10


@pytest.fixture
def short_system(tmp_path: Path) -> Iterator[System]:
    org = tmp_path / "org.yaml"
    org.write_text(yaml.safe_dump(e2e_org(), allow_unicode=True), encoding="utf-8")
    s = start_system(tmp_path / "var", org, extra_env={
        "EST_WEB_SESSION_IDLE_SECONDS": str(IDLE), "EST_WEB_SESSION_ABSOLUTE_SECONDS": str(ABSOLUTE),
        "EST_WEB_SIGN_IN_MAX_FAILURES": "3", "EST_WEB_SIGN_IN_WINDOW_SECONDS": "60"})
    yield s
    s.stop()


def _sign_in(web: str, token: str, **headers: str) -> httpx.Client:
    http = httpx.Client(base_url=web, timeout=30)
    r = http.post("/session", json={"token": token}, headers=headers)
    assert r.status_code == 200, r.text
    return http


def _report(period: str) -> dict[str, object]:
    return {"report_id": str(uuid.uuid4()), "area_id": "araby", "period": period, "checklist": "est-standard@1",
            "answers": {"klotter": {"value": 1}}, "nothing_to_report": False, "note": "", "supersedes": None}


def test_a_session_is_an_opaque_cookie_and_the_gateway_adds_the_credential(short_system: System) -> None:
    web = short_system.urls["web"]
    assert httpx.get(f"{web}/session").status_code == 401
    assert httpx.get(f"{web}/api/intake/v1/me").status_code == 401
    assert httpx.get(f"{web}/session/demo").status_code == 404, "no demo sign-in without the demo"
    assert httpx.post(f"{web}/session/demo", json={"person_id": "lena"}).status_code == 404

    bad = httpx.post(f"{web}/session", json={"token": "not-a-token"})
    assert bad.status_code == 401 and bad.headers["content-type"].startswith("application/problem+json")
    assert "set-cookie" not in bad.headers

    lena = _sign_in(web, "t-lena")
    cookie = lena.cookies.jar
    [c] = list(cookie)
    assert c.name == "est_session" and c.path == "/" and not c.secure
    assert "t-lena" not in c.value and len(c.value) >= 40
    raw = next(v for k, v in lena.post("/session", json={"token": "t-lena"}).headers.multi_items()
               if k == "set-cookie")
    assert "HttpOnly" in raw and "SameSite=strict" in raw and "Path=/" in raw and "Secure" not in raw

    who = lena.get("/session")
    assert who.status_code == 200 and who.json()["me"]["name"] == "Lena Lind"
    csrf = who.json()["csrf_token"]
    assert lena.get("/api/intake/v1/me").json()["name"] == "Lena Lind", "the gateway adds the session's token"

    # behind an HTTPS proxy (trusted: loopback) the cookie is Secure
    https = httpx.post(f"{web}/session", json={"token": "t-lena"}, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in https.headers["set-cookie"]

    # the credential is sealed at rest
    store = (short_system.data_dir / "web-sessions.db").read_bytes()
    assert b"t-lena" not in store

    # state-changing requests on the cookie need the CSRF token and the app's origin
    anna = _sign_in(web, "t-anna")
    anna_csrf = anna.get("/session").json()["csrf_token"]
    week = anna.get("/api/intake/v1/checklists/current")
    assert week.status_code == 200
    period = time.strftime("%G-W%V")
    refused = anna.post("/api/intake/v1/reports", json=_report(period))
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert anna.post("/api/intake/v1/reports", json=_report(period),
                     headers={"X-CSRF-Token": csrf}).status_code == 403, "another session's token does not do"
    assert anna.post("/api/intake/v1/reports", json=_report(period),
                     headers={"X-CSRF-Token": anna_csrf, "Origin": "https://evil.example"}).status_code == 403
    ok = anna.post("/api/intake/v1/reports", json=_report(period), headers={"X-CSRF-Token": anna_csrf,
                                                                           "Origin": web})
    assert ok.status_code == 202, ok.text
    # a client with its own Authorization header passes as before, without cookie or CSRF token
    assert httpx.post(f"{web}/api/intake/v1/reports", json=_report(period),
                      headers={"Authorization": "Bearer t-anna"}).status_code == 202

    # sign-out needs the CSRF token, deletes the session and clears the cookie
    assert lena.post("/session/sign-out").status_code == 403
    old = lena.cookies.get("est_session")
    out = lena.post("/session/sign-out", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204 and 'est_session=""' in out.headers["set-cookie"]
    stale = httpx.Client(base_url=web, cookies={"est_session": old or ""})
    assert stale.get("/session").status_code == 401
    assert stale.get("/api/intake/v1/me").status_code == 401, "the old cookie is useless"

    # idle expiry: a session unused longer than the idle time is gone
    idle = _sign_in(web, "t-lena")
    time.sleep(IDLE + 1)
    assert idle.get("/session").status_code == 401
    # absolute expiry: used all the time, it still ends
    busy = _sign_in(web, "t-lena")
    started = time.monotonic()
    while time.monotonic() - started < ABSOLUTE - 1:
        assert busy.get("/session").status_code == 200
        time.sleep(1)
    time.sleep(2)
    assert busy.get("/session").status_code == 401
    assert busy.get("/api/intake/v1/me").status_code == 401

    # failed sign-ins are throttled per client
    for _ in range(2):  # with the bad token at the start: three
        assert httpx.post(f"{web}/session", json={"token": "guess"}).status_code == 401
    throttled = httpx.post(f"{web}/session", json={"token": "t-lena"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert "set-cookie" not in throttled.headers

