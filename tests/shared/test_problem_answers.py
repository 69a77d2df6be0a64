"""Problem answers: what a request path may put into an error body."""

from __future__ import annotations

import httpx
from est_shared.http import Problem, install_problem_handlers
from fastapi import FastAPI


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/v1/areas/{area_id}")
    async def area(area_id: str) -> dict[str, str]:
        raise Problem(404, "Not Found", "Okänt område. / Unknown area.")

    return app


async def test_a_path_that_looks_like_personal_data_is_not_echoed_in_the_problem() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        hostile = await client.get("/v1/areas/Testa%20Testsson%2020100515-2382")
        plain = await client.get("/v1/areas/araby")
        unknown_route = await client.get("/v1/ring-070-123-45-67")
    assert hostile.status_code == 404
    assert "20100515" not in hostile.text and "Testsson" not in hostile.text
    assert "instance" not in hostile.json()
    assert plain.json()["instance"] == "/v1/areas/araby"
    assert unknown_route.status_code == 404 and "070" not in unknown_route.text


async def test_a_very_long_path_is_not_echoed_in_the_problem() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/v1/areas/" + "a" * 1000)
    assert r.status_code == 404 and "instance" not in r.json()


async def test_a_detail_that_would_echo_personal_data_is_withheld() -> None:
    """Every service's problems pass through one place: an id a caller typed is never repeated if it looks
    like a personal identity number, phone number or e-mail address."""
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/v1/areas/{area_id}")
    async def area(area_id: str) -> dict[str, str]:
        raise Problem(404, "Area not found", f"Området {area_id} finns inte. / No area {area_id}.",
                      errors=[{"field": "area_id", "message": f"unknown area {area_id}"}])

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        hostile = await client.get("/v1/areas/20100515-2382")
        plain = await client.get("/v1/areas/araby")
    assert hostile.status_code == 404 and "20100515" not in hostile.text
    assert "personuppgift" in hostile.json()["detail"] and "personal data" in hostile.json()["detail"]
    assert "araby" in plain.json()["detail"] and plain.json()["errors"][0]["message"] == "unknown area araby"


async def test_every_kind_of_domain_error_has_one_status_and_says_it_in_swedish_first() -> None:
    from est_shared import errors
    from est_shared.http import STATUS

    app = FastAPI()
    install_problem_handlers(app)
    kinds = [errors.Malformed, errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.Conflict,
             errors.TooLarge, errors.Invalid, errors.Unavailable]

    @app.get("/v1/{index}")
    async def fail(index: int) -> None:
        cls = kinds[index]
        raise cls("Det gick inte.", "It did not work.", errors=[{"field": "x", "message": "fel"}],
                  retry_after=7 if cls is errors.Unavailable else None)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for i, cls in enumerate(kinds):
            r = await client.get(f"/v1/{i}")
            assert r.status_code == STATUS[cls.kind]
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == "Det gick inte. / It did not work."
            assert r.json()["errors"] == [{"field": "x", "message": "fel"}]
    assert sorted(STATUS.values()) == [400, 401, 403, 404, 409, 413, 422, 503]


async def test_a_gate_refuses_until_it_opens_and_then_lets_every_waiter_through() -> None:
    import asyncio

    import pytest
    from est_shared.db import Gate
    from est_shared.errors import Unavailable

    gate = Gate("tabellerna", "the tables")
    with pytest.raises(Unavailable) as refused:
        gate.require()
    assert refused.value.retry_after and "tabellerna" in refused.value.detail
    waiters = [asyncio.create_task(gate.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    gate.open()
    await asyncio.wait_for(asyncio.gather(*waiters), 1)
    gate.require()
    await gate.wait()


def test_a_settable_clock_stops_runs_and_moves_on() -> None:
    from datetime import UTC, datetime, timedelta

    from est_shared.clock import SettableClock, utcnow

    clock = SettableClock()
    assert abs(clock.now() - utcnow()) < timedelta(seconds=1)
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    clock.set(at)
    clock.advance(90)
    assert clock.now() == at + timedelta(seconds=90)
    clock.set(None)
    clock.advance(timedelta(hours=1))
    assert abs(clock.now() - (utcnow() + timedelta(hours=1))) < timedelta(seconds=1)
