"""Role × endpoint matrix of the intake: 401 without a valid token, 403 outside the role, 2xx inside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from est_intake.forfeitures.pii import generate_key
from est_shared.natsserver import NatsServer

from tests.intake.support import report, running, settings_for
from tests.security.support import TOKENS, forfeiture_org, protocol

WHO = ["reporter", "key_function", "police", "social_services", "admin", "no token", "bad token"]
PERSON = {"reporter": "anna", "key_function": "bo", "police": "petra", "social_services": "sara", "admin": "admin"}

Call = Callable[[httpx.AsyncClient, dict[str, str], str], Any]

# endpoint -> (expected status per caller in WHO order)
EXPECTED: dict[str, list[int]] = {
    "POST /v1/forfeitures": [403, 403, 202, 403, 403, 401, 401],
    "GET /v1/forfeitures/{id}": [403, 403, 200, 200, 403, 401, 401],
    "GET /v1/admin/forfeiture-access-log": [403, 403, 403, 403, 200, 401, 401],
    "GET /v1/admin/forfeitures/encryption": [403, 403, 403, 403, 200, 401, 401],
    "POST /v1/admin/forfeitures/reencrypt": [403, 403, 403, 403, 200, 401, 401],
    "GET /v1/admin/org": [403, 403, 403, 403, 200, 401, 401],
    "GET /v1/admin/org/document": [403, 403, 403, 403, 200, 401, 401],
    "PUT /v1/admin/org?dry_run=true": [403, 403, 403, 403, 200, 401, 401],
    "POST /v1/admin/people/{id}/tokens": [403, 403, 403, 403, 201, 401, 401],
    "GET /v1/admin/people/{id}/tokens": [403, 403, 403, 403, 200, 401, 401],
    "DELETE /v1/admin/people/{id}/tokens/{token_id}": [403, 403, 403, 403, 404, 401, 401],
    "POST /v1/me/tokens": [201, 201, 201, 201, 201, 401, 401],
    "GET /v1/me/tokens": [200, 200, 200, 200, 200, 401, 401],
    "POST /v1/reports": [202, 202, 403, 403, 202, 401, 401],
    "GET /v1/me": [200, 200, 200, 200, 200, 401, 401],
    "GET /v1/me/reports": [200, 200, 200, 200, 200, 401, 401],
    # the reporter's own report: withdrawn by its sender only (others are told there is no such report of theirs)
    "POST /v1/reports/{id}/withdraw": [202, 404, 403, 403, 404, 401, 401],
}


def headers_for(who: str) -> dict[str, str]:
    if who == "no token":
        return {}
    if who == "bad token":
        return {"Authorization": "Bearer not-a-token"}
    return {"Authorization": f"Bearer {TOKENS[PERSON[who]]}"}


async def test_role_matrix_of_the_intake(tmp_path: Path, fresh_nats: NatsServer) -> None:
    settings = settings_for(tmp_path, fresh_nats.url, forfeiture_org(), pii_key=generate_key())
    async with running(settings) as (client, _app):
        existing = protocol()
        r = await client.post("/v1/forfeitures", json=existing, headers=headers_for("police"))
        assert r.status_code == 202, r.text
        pid = existing["protocol_id"]
        annas = report()
        assert (await client.post("/v1/reports", json=annas, headers=headers_for("reporter"))).status_code == 202
        calls: dict[str, Callable[[dict[str, str]], Any]] = {
            "POST /v1/forfeitures": lambda h: client.post("/v1/forfeitures", json=protocol(), headers=h),
            "GET /v1/forfeitures/{id}": lambda h: client.get(f"/v1/forfeitures/{pid}",
                                                             params={"purpose": "uppföljningssamtal"}, headers=h),
            "GET /v1/admin/forfeiture-access-log": lambda h: client.get("/v1/admin/forfeiture-access-log", headers=h),
            "GET /v1/admin/forfeitures/encryption": lambda h: client.get("/v1/admin/forfeitures/encryption",
                                                                         headers=h),
            "POST /v1/admin/forfeitures/reencrypt": lambda h: client.post("/v1/admin/forfeitures/reencrypt",
                                                                          headers=h),
            "GET /v1/admin/org": lambda h: client.get("/v1/admin/org", headers=h),
            "GET /v1/admin/org/document": lambda h: client.get("/v1/admin/org/document", headers=h),
            "PUT /v1/admin/org?dry_run=true": lambda h: client.put("/v1/admin/org", params={"dry_run": "true"},
                                                                   json=forfeiture_org(), headers=h),
            "POST /v1/admin/people/{id}/tokens": lambda h: client.post("/v1/admin/people/anna/tokens",
                                                                       json={"name": "x"}, headers=h),
            "GET /v1/admin/people/{id}/tokens": lambda h: client.get("/v1/admin/people/anna/tokens", headers=h),
            "DELETE /v1/admin/people/{id}/tokens/{token_id}": lambda h: client.delete(
                "/v1/admin/people/anna/tokens/tok-unknown", headers=h),
            "POST /v1/me/tokens": lambda h: client.post("/v1/me/tokens", json={"name": "x"}, headers=h),
            "GET /v1/me/tokens": lambda h: client.get("/v1/me/tokens", headers=h),
            "POST /v1/reports": lambda h: client.post("/v1/reports", json=report(), headers=h),
            "GET /v1/me": lambda h: client.get("/v1/me", headers=h),
            "GET /v1/me/reports": lambda h: client.get("/v1/me/reports", headers=h),
            "POST /v1/reports/{id}/withdraw": lambda h: client.post(f"/v1/reports/{annas['report_id']}/withdraw",
                                                                    headers=h),
        }
        got: dict[str, list[int]] = {}
        for endpoint, call in calls.items():
            got[endpoint] = []
            for who in WHO:
                resp = await call(headers_for(who))
                got[endpoint].append(resp.status_code)
                if resp.status_code >= 400:
                    assert resp.headers["content-type"].startswith("application/problem+json"), (endpoint, who)
                if resp.status_code == 401:
                    assert "WWW-Authenticate" in resp.headers
        assert got == EXPECTED, "\n".join(f"{e}: got {got[e]} expected {EXPECTED[e]}" for e in EXPECTED
                                          if got[e] != EXPECTED[e])
