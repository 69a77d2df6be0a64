"""Failed sign-ins are counted in the session database, so two replicas of the web front end behind one
address count the same tries: a client gets ``EST_WEB_SIGN_IN_MAX_FAILURES`` in all, not per replica. The
intake is a stand-in on a real port that knows one token (the web front end only asks it ``/v1/me``)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from est_shared.testing import serve
from est_web.app import create_app
from est_web.settings import WebSettings
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from tests.web.stand_ins import intake_knowing_one_token

WINDOW = 3


@pytest.mark.postgres
async def test_two_replicas_count_the_same_failed_sign_ins(postgres_url: str, tmp_path: Path) -> None:
    key = SecretStr(Fernet.generate_key().decode())
    async with AsyncExitStack() as stack:
        intake = await stack.enter_async_context(serve(intake_knowing_one_token()))
        replicas = []
        for name in ("a", "b"):
            app = create_app(WebSettings(intake_url=intake, log_level="WARNING", data_dir=tmp_path / name,
                                         session_database_url=postgres_url, session_key=key,
                                         sign_in_max_failures=3, sign_in_window_seconds=WINDOW))
            replicas.append(await stack.enter_async_context(serve(app)))
        a, b = [await stack.enter_async_context(httpx.AsyncClient(base_url=u, timeout=10)) for u in replicas]

        # the failures land on both replicas, as a load balancer spreads them
        assert (await a.post("/session", json={"token": "guess-1"})).status_code == 401
        assert (await b.post("/session", json={"token": "guess-2"})).status_code == 401
        assert (await a.post("/session", json={"token": "guess-3"})).status_code == 401
        for replica in (a, b):
            throttled = await replica.post("/session", json={"token": "t-ok"})
            assert throttled.status_code == 429, throttled.text
            assert 1 <= int(throttled.headers["retry-after"]) <= WINDOW + 1
            assert "set-cookie" not in throttled.headers
            assert "Försök igen" in throttled.json()["detail"] or "försök igen" in throttled.json()["detail"]

        # once the window has passed, the right token signs in on either replica
        await asyncio.sleep(WINDOW + 0.5)
        ok = await b.post("/session", json={"token": "t-ok"})
        assert ok.status_code == 200 and ok.json()["me"]["name"] == "Olle Ok"

    # the table keeps no client address as written
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            clients = (await conn.exec_driver_sql("SELECT client FROM web_sign_in_failures")).scalars().all()
    finally:
        await engine.dispose()
    assert clients and all(len(c) == 64 and "127.0.0.1" not in c for c in clients)
