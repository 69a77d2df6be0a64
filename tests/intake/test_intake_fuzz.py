"""Property-based fuzzing of the intake's OpenAPI with schemathesis: no input gives a 5xx.

The app runs for real (uvicorn in a thread, a NATS server of the test's own, SQLite); schemathesis
generates valid and invalid requests for every operation and sends them with a reporter's token, an
admin's token and an invalid one; the organisation apply comes last. Every other route of every service,
forfeitures included, is fuzzed by ``tests/security/test_fuzz_services.py``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import requests
import schemathesis
import uvicorn
from est_intake.app import create_app
from est_shared.natsserver import NatsServer
from est_shared.testing import free_port
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st

from tests.intake.support import TOKENS, make_org, settings_for

EXAMPLES = 25
SKIP_PREFIXES = ("/v1/forfeitures", "/v1/admin/forfeiture")  # fuzzed in tests/security/test_fuzz_services.py


@pytest.fixture
def intake_url(tmp_path: Path, fresh_nats: NatsServer) -> Iterator[str]:
    """The intake served by uvicorn on its own event loop in a thread (schemathesis calls are blocking)."""
    app = create_app(settings_for(tmp_path, fresh_nats.url, make_org()))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if server.started:
            break
        if not thread.is_alive():
            raise RuntimeError("the intake did not start")
        threading.Event().wait(0.05)
    yield url
    server.should_exit = True
    thread.join(20)


def test_openapi_fuzz_never_answers_5xx(intake_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{intake_url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    # the organisation apply last: a random valid organisation replaces the one the tokens come from
    operations.sort(key=lambda op: (op.method.upper() == "PUT" and op.path == "/v1/admin/org", op.path))
    tokens = {"reporter": TOKENS["anna"], "admin": TOKENS["admin"], "invalid": "not-a-token"}
    failures: list[str] = []
    session = requests.Session()
    tested = 0
    for op in operations:
        if op.path.startswith(SKIP_PREFIXES):
            continue
        tested += 1
        strategy = st.one_of(op.as_strategy(schemathesis.GenerationMode.POSITIVE),
                             op.as_strategy(schemathesis.GenerationMode.NEGATIVE))

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis.given(case=strategy, who=st.sampled_from(sorted(tokens)))
        def run(case: schemathesis.Case, who: str) -> None:
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            response = case.call(base_url=intake_url, session=session, headers=headers, timeout=15)
            if response.status_code >= 500:
                failures.append(f"{case.method.upper()} {case.path} as {who} -> {response.status_code}: "
                                f"{response.text[:300]}\n  {case.as_curl_command(headers=headers)[:600]}")

        run()
    assert tested >= 8
    assert not failures, "\n".join(failures[:10])
