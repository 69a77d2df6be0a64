"""The web front end's documented routes (the sign-in session's) fuzzed with schemathesis: valid and invalid
requests, with and without a session cookie, give problem answers, never a 5xx. The intake is a stand-in on
a real port that knows one token (the web front end only asks it ``/v1/me``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import hypothesis
import requests
import schemathesis
from est_shared.testing import serve
from est_web.app import create_app
from est_web.settings import WebSettings
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from tests.web.stand_ins import intake_knowing_one_token


def _fuzz(base: str, cookie: str) -> tuple[int, list[str]]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    session = requests.Session()
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if not op.path.startswith("/session"):
            continue
        tested += 1
        strategy = st.one_of(op.as_strategy(schemathesis.GenerationMode.POSITIVE),
                             op.as_strategy(schemathesis.GenerationMode.NEGATIVE))

        @hypothesis.settings(max_examples=10, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=strategy, signed_in=st.booleans())
        def run(case: schemathesis.Case, signed_in: bool) -> None:
            headers = {"Cookie": f"est_session={cookie}"} if signed_in else {}
            response = case.call(base_url=base, session=session, headers=headers, timeout=20)
            if response.status_code >= 500:
                failures.append(f"{case.method.upper()} {case.path} -> {response.status_code}: {response.text[:300]}")
            elif response.status_code >= 400:
                kind = response.headers.get("content-type") or [""]
                kind = kind[0] if isinstance(kind, list) else kind
                assert kind.startswith("application/problem+json"), (case.method, case.path, response.text)

        run()
    return tested, failures


async def test_the_session_routes_answer_every_input_without_a_5xx(tmp_path: Path) -> None:
    async with serve(intake_knowing_one_token()) as intake_url:
        web = create_app(WebSettings(intake_url=intake_url, log_level="WARNING", data_dir=tmp_path,
                                     sign_in_max_failures=1000))
        async with serve(web) as base:
            async with httpx.AsyncClient(base_url=base) as http:
                r = await http.post("/session", json={"token": "t-ok"})
                assert r.status_code == 200 and r.json()["me"]["name"] == "Olle Ok"
                cookie = r.cookies["est_session"]
            tested, failures = await asyncio.to_thread(_fuzz, base, cookie)
    assert tested == 8, "GET/POST /session, sign-out, methods, GET/POST /session/demo, /session/oidc, its callback"
    assert not failures, "\n".join(failures)
