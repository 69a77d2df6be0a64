"""Stand-ins on real ports for the web front end's tests that need no whole system."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def intake_knowing_one_token() -> Starlette:
    """An intake that knows the token ``t-ok`` (Olle Ok, a reporter): the web front end only asks it ``/v1/me``."""
    async def me(request: Request) -> JSONResponse:
        if request.headers.get("authorization") == "Bearer t-ok":
            return JSONResponse({"person_id": "ok", "name": "Olle Ok", "roles": ["reporter"]})
        return JSONResponse({"title": "Unauthorized", "status": 401}, status_code=401)

    return Starlette(routes=[Route("/v1/me", me)])
