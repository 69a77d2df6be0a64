"""Property-based fuzzing of every service's OpenAPI with schemathesis: no input gives a 5xx.

The intake (forfeiture routes included), the aggregator, the notifier and the analysis run for real in
this test's event loop (uvicorn, one NATS server of the test's own, SQLite), with an organisation of
reporters, key functions, police, social services, a steering group and an administrator. schemathesis
generates valid and invalid requests for every documented operation and sends them, in a worker thread,
with each of those people's tokens and with an invalid one. Of the intake, only the forfeiture routes: the
others are fuzzed by ``tests/intake/test_intake_fuzz.py``.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from est_aggregator.app import Settings as AggregatorSettings
from est_aggregator.app import create_app as aggregator_app
from est_analysis.app import Settings as AnalysisSettings
from est_analysis.app import create_app as analysis_app
from est_intake.app import create_app as intake_app
from est_intake.forfeitures.pii import generate_key
from est_intake.org.domain import build_snapshot
from est_notifier.app import Settings as NotifierSettings
from est_notifier.app import create_app as notifier_app
from est_shared.natsserver import NatsServer
from est_shared.testing import serve
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from tests.intake.support import settings_for
from tests.security.support import TOKENS, forfeiture_org

EXAMPLES = 8
CALLERS = {"reporter": TOKENS["anna"], "key_function": TOKENS["bo"], "styrgrupp": TOKENS["lena"],
           "police": TOKENS["petra"], "social_services": TOKENS["sara"], "admin": TOKENS["admin"],
           "invalid": "not-a-token"}
ONLY = {"intake": ("/v1/forfeitures", "/v1/admin/forfeiture")}  # the rest: tests/intake/test_intake_fuzz.py


def _fuzz(name: str, base: str) -> tuple[int, list[str]]:
    """Every operation of one service with every caller; the 5xx answers found (blocking: run in a thread)."""
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    session = requests.Session()
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if name in ONLY and not op.path.startswith(ONLY[name]):
            continue
        tested += 1
        strategy = st.one_of(op.as_strategy(schemathesis.GenerationMode.POSITIVE),
                             op.as_strategy(schemathesis.GenerationMode.NEGATIVE))

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=strategy, who=st.sampled_from(sorted(CALLERS)))
        def run(case: schemathesis.Case, who: str) -> None:
            headers = {"Authorization": f"Bearer {CALLERS[who]}"}
            try:
                response = case.call(base_url=base, session=session, headers=headers, timeout=20)
            except requests.RequestException as exc:  # a dropped connection is as bad as a 5xx
                failures.append(f"{name}: {case.method.upper()} {case.path} as {who} -> {exc.__class__.__name__}")
                return
            if response.status_code >= 500 and response.status_code != 501:
                failures.append(f"{name}: {case.method.upper()} {case.path} as {who} -> {response.status_code}: "
                                f"{response.text[:300]}\n  {case.as_curl_command(headers=headers)[:600]}")

        run()
    return tested, failures


@pytest.mark.timeout(900)
async def test_no_service_answers_5xx_to_anything_its_openapi_admits(tmp_path: Path, fresh_nats: NatsServer) -> None:
    org_doc = forfeiture_org()
    (tmp_path / "intake").mkdir()
    intake = intake_app(settings_for(tmp_path / "intake", fresh_nats.url, org_doc, pii_key=generate_key()))
    common: dict[str, Any] = {"nats_url": fresh_nats.url, "log_level": "WARNING"}
    others = {
        "aggregator": aggregator_app(AggregatorSettings(**common, data_dir=tmp_path / "aggregator",
                                                         auto_publish_interval=0, outbox_interval=0.1)),
        "notifier": notifier_app(NotifierSettings(**common, data_dir=tmp_path / "notifier", reminders_enabled=False)),
        "analysis": analysis_app(AnalysisSettings(**common, data_dir=tmp_path / "analysis", auto_compile=False,
                                                  browser="none", outbox_interval_seconds=0.1)),
    }
    snapshot, _ = build_snapshot(org_doc, None)
    results: dict[str, tuple[int, list[str]]] = {}
    async with AsyncExitStack() as stack:
        bases = {"intake": await stack.enter_async_context(serve(intake))}
        for name, app in others.items():
            bases[name] = await stack.enter_async_context(serve(app))
            await app.state.runtime.apply_org(snapshot)
        for name, base in bases.items():
            results[name] = await asyncio.to_thread(_fuzz, name, base)
    minimum = {"intake": 4, "aggregator": 5, "notifier": 5, "analysis": 8}
    for name, (tested, _) in results.items():
        assert tested >= minimum[name], f"{name}: only {tested} operations in its OpenAPI"
    failures = [f for _, found in results.values() for f in found]
    assert not failures, "\n".join(failures[:15])
