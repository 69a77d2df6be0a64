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
