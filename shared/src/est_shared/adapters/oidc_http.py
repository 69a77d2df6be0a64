"""The OpenID provider's documents over HTTP (discovery document, JWKS) for ``est_shared.oidc``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from est_shared.oidc import ProviderUnavailable

log = logging.getLogger("est.oidc")

MAX_DOCUMENT_BYTES = 1_000_000
TIMEOUT = 5.0


async def fetch_json(url: str) -> Mapping[str, Any]:
    """GET a JSON object (no redirects followed, at most a megabyte, 5 s); ``ProviderUnavailable`` otherwise."""
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http, \
                http.stream("GET", url, headers={"Accept": "application/json"}) as r:
            if r.status_code != 200:
                raise ProviderUnavailable(f"{url} answered {r.status_code}")
            body = b""
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ProviderUnavailable(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes")
    except httpx.HTTPError as exc:
        log.warning("the OpenID provider could not be reached", extra={"url": url, "error": type(exc).__name__})
        raise ProviderUnavailable(f"{url}: {type(exc).__name__}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise ProviderUnavailable(f"{url} did not send JSON") from None
    if not isinstance(doc, dict):
        raise ProviderUnavailable(f"{url} did not send a JSON object")
    return doc
