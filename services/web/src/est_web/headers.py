"""The security headers of the web front end: on the app's pages, on the gateway's API answers, on reports.

- The app (``/app/``, ``/sw.js``) runs only its own files: no inline script, no ``eval``, no inline
  style element or attribute (Preact sets styles through the CSSOM, which a policy does not block),
  no other origin, no framing (``frame-ancestors 'none'``).
- API answers are data, never pages: a policy that lets nothing run or load, ``nosniff``, and
  ``no-store`` unless the service chose its caching (answers carry names and protocols).
- An HTML answer of a service (the strategic report) is never shown with the app's origin: the
  gateway sends it as a download (``attachment``), sandboxed (an opaque origin, no script) with
  only its own inline styles allowed, should a browser render it anyway.
- Every answer: ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, and
  ``Strict-Transport-Security`` when the request came over HTTPS (directly, or as a trusted proxy
  says with ``X-Forwarded-Proto``) or ``EST_WEB_HTTPS`` says the public address is HTTPS.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

APP_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
           "font-src 'self'; manifest-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; "
           "form-action 'self'; frame-ancestors 'none'")
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; sandbox"


def upstream_html(headers: MutableHeaders) -> None:
    """Make a service's HTML answer a sandboxed download (see the module docstring)."""
    headers["content-security-policy"] = REPORT_CSP
    disposition = headers.get("content-disposition", "")
    _, _, params = disposition.partition(";")
    headers["content-disposition"] = f"attachment;{params}" if params.strip() else "attachment"


class SecurityHeaders:
    """ASGI middleware: the headers of the module docstring on every answer of the web front end."""

    def __init__(self, app: ASGIApp, *, https: bool, hsts_max_age: int) -> None:
        self.app = app
        self.always_https = https
        self.hsts = f"max-age={hsts_max_age}" if hsts_max_age > 0 else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope["path"].startswith("/api/")
        hsts = self.hsts if (self.always_https or scope.get("scheme") == "https") else ""

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", API_CSP if api else APP_CSP)
                headers["x-content-type-options"] = "nosniff"
                headers["referrer-policy"] = "no-referrer"
                if api:
                    headers.setdefault("cache-control", "no-store")
                else:
                    headers["cross-origin-opener-policy"] = "same-origin"
                if hsts:
                    headers["strict-transport-security"] = hsts
            await send(message)

        await self.app(scope, receive, send_with_headers)
