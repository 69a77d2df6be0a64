"""HTTP pieces the intake's routers share: the caller, JSON bodies and their problem answers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from est_shared.http import (
    Problem,
    problem_response,
)
from est_shared.org import Principal
from est_shared.runtime import ServiceRuntime
from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from est_intake.reports.domain import MAX_SHOWN, UUID_HINT, UUID_PATTERN


async def current_principal(request: Request) -> Principal:
    """The authenticated caller (bearer token against the intake's own directory), else 401."""
    runtime: ServiceRuntime = request.app.state.runtime
    return await runtime.principal(request)


Caller = Annotated[Principal, Depends(current_principal)]


def field_name(loc: Any, *prefix: str) -> str:
    """A validation error's location as a field name; a long part (a dict key someone sent) is cut short."""
    parts = [*prefix, *(str(x) for x in loc or ())]
    return ".".join(p if len(p) <= MAX_SHOWN else p[:MAX_SHOWN] + "…" for p in parts)


def error_message(error: Any) -> str:
    """A validation error's message; an id that is not a UUID is told so, not shown the pattern."""
    if error.get("type") == "string_pattern_mismatch" and (error.get("ctx") or {}).get("pattern") == UUID_PATTERN:
        return UUID_HINT
    return str(error.get("msg", ""))


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` inlined (for a hand-written OpenAPI request body)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


M = TypeVar("M", bound=BaseModel)


def parse_json_body(model: type[M], raw: bytes) -> M:
    """Validate a JSON body against a model: 400 if it is not JSON, 422 naming the failing fields."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{"field": field_name(e.get("loc"), "body"), "message": error_message(e),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            raise Problem(400, "Malformed JSON", "Begärans innehåll är inte giltig JSON. / "
                          "The request body is not valid JSON.", errors=errors) from None
        raise Problem(422, "Invalid request", "Några fält är ogiltiga; se errors. / "
                      "Some fields are invalid; see errors.", errors=errors) from None


JSON_TYPES = ("application/json", "application/cloudevents+json")


def unsupported_media_type(ctype: str) -> Problem:
    """415 for a body that is not JSON (a form, text, a file), with the media type named."""
    return Problem(415, "Unsupported Media Type",
                   f"Innehållet måste vara JSON (Content-Type: application/json), inte {ctype!r}. / "
                   f"The body must be JSON (Content-Type: application/json), not {ctype!r}.",
                   errors=[{"field": "Content-Type", "message": f"expected application/json, got {ctype}"}])


class JsonBodyRoute(APIRoute):
    """A route whose body is JSON: any other declared media type is 415 before the body is parsed.

    A missing Content-Type is read as JSON (field apps and curl often omit it).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self.methods or "POST" not in self.methods:
            return handler

        async def check(request: Request) -> Response:
            raw = request.headers.get("content-type")
            if raw is not None:
                ctype = raw.split(";", 1)[0].strip().lower()
                if ctype not in JSON_TYPES and not ctype.endswith("+json"):
                    exc = unsupported_media_type(ctype)
                    return problem_response(exc.status, exc.title, exc.detail, errors=exc.errors,
                                            instance=request.url.path)
            return await handler(request)

        return check


