"""The HTTP server every service and the web gateway run in: uvicorn, with bounds on what one client holds.

uvicorn (pinned in uv.lock) closes a keep-alive connection that stays idle after a response
(``timeout_keep_alive``) and, with its h11 parser only, bounds the size of a request head. It does
not bound how long a request head may take to arrive (a new connection may send nothing, or one
header byte a second, for ever), the size of a head with httptools (the parser it takes when
installed, as it is here), or how many connections one client address keeps open. The protocol
``edge_protocol`` builds is uvicorn's HTTP/1.1 protocol with those three bounds:

- the request head (request line and headers) must be complete within ``header_timeout`` seconds
  of the connection, or of the first byte of a later request on it; otherwise the connection is
  closed, with 408 if part of a head came and silently if nothing did (a browser's spare socket);
- a head larger than ``max_head_bytes`` gets 431 and the connection is closed (with h11, h11's own
  bound on an incomplete head answers 400);
- a client address that already has ``connections_per_client`` open connections gets 429 on the
  next one, which is closed at once. Trusted proxies (an ingress, the web gateway) are not
  counted: their connections carry many clients. uvicorn believes their ``X-Forwarded-For`` and
  ``X-Forwarded-Proto`` (``forwarded_allow_ips``), and only theirs.

A connection closed after an answer while its request was not all read (a 413 before a large body,
a 431) is closed the way a browser can read that answer: the answer goes out, then the write side
closes and what the client still sends is read and dropped, until the client closes (at most
``LINGER_SECONDS`` and ``LINGER_BYTES``). Closed at once, the kernel would answer the unread bytes
with a reset, which can destroy the answer before the client reads it. Requests uvicorn's parser
refuses get problem+json like every other error. ``est run`` and the test helper
``est_shared.testing.serve`` take their uvicorn options from ``server_options``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, cast

import h11
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from est_shared.settings import ServiceSettings

MAX_HEAD_BYTES = 64 * 1024
"""The largest request head (request line and headers) accepted; tokens and paths need far less."""
LINGER_SECONDS = 2.0
LINGER_BYTES = 4_000_000


@dataclass(frozen=True)
class ServerLimits:
    """What one client may hold of the server (see the module docstring)."""

    header_timeout: float = 10.0
    connections_per_client: int = 100
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    max_head_bytes: int = MAX_HEAD_BYTES

    @classmethod
    def of(cls, settings: ServiceSettings) -> ServerLimits:
        """The limits a service's settings ask for (``EST_HTTP_*``)."""
        proxies = tuple(p.strip() for p in settings.http_trusted_proxies.split(",") if p.strip())
        return cls(header_timeout=settings.http_header_timeout,
                   connections_per_client=settings.http_connections_per_client, trusted_proxies=proxies)


def _trusted(proxies: tuple[str, ...]) -> Callable[[str], bool]:
    """A predicate: is this client address one of the trusted proxies (addresses or networks, ``*`` = all)?"""
    if "*" in proxies:
        return lambda host: True
    networks = [ipaddress.ip_network(p, strict=False) for p in proxies]

    def trusted(host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a Unix socket or another transport without an IP address
            return True
        return any(address in net for net in networks)

    return trusted


def problem_bytes(status: int, title: str, detail: str, *headers: str) -> bytes:
    """A complete HTTP/1.1 problem+json answer that closes the connection, for the protocol to write itself."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail},
                      ensure_ascii=False).encode()
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "content-type: application/problem+json",
            f"content-length: {len(body)}", "connection: close", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


TIMED_OUT = problem_bytes(408, "Request head too slow", "Begärans huvud kom inte fram i tid. / "
                          "The request head did not arrive in time.")
HEAD_TOO_LARGE = problem_bytes(431, "Request head too large", "Begärans huvud (sökväg och rubriker) är för "
                               "stort. / The request head (path and headers) is too large.")
TOO_MANY = problem_bytes(429, "Too many connections", "För många öppna anslutningar från din adress; försök igen "
                         "om en stund. / Too many open connections from your address; try again shortly.",
                         "retry-after: 5")
NOT_HTTP = problem_bytes(400, "Invalid request", "Begäran är inte giltig HTTP. / The request is not valid HTTP.")


class _LingeringTransport:
    """The connection's transport, whose ``close`` lingers when the request was not all read (module docstring)."""

    def __init__(self, raw: asyncio.Transport, protocol: _Bounded) -> None:
        self.raw, self.protocol = raw, protocol
        self.lingering = False
        self.dropped = 0
        self._timer: asyncio.TimerHandle | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def is_closing(self) -> bool:
        return self.lingering or self.raw.is_closing()

    def write(self, data: bytes) -> None:
        if not self.lingering:  # the write side is closed: nothing more goes out
            self.raw.write(data)

    def close(self) -> None:
        cycle = self.protocol.cycle
        if cycle is not None and cycle.more_body:  # answered before its body was all read
            self.linger()
        else:
            self.hard_close()

    def linger(self) -> None:
        if self.lingering or self.raw.is_closing():
            return
        if not self.raw.can_write_eof():  # TLS cannot half-close
            self.raw.close()
            return
        self.lingering = True
        self.raw.write_eof()  # after what is still buffered: the answer
        self.raw.resume_reading()  # uvicorn may have paused reading a large body
        self._timer = self.protocol.loop.call_later(LINGER_SECONDS, self.hard_close)

    def drop(self, data: bytes) -> None:
        """Read and forget what comes while lingering."""
        self.dropped += len(data)
        if self.dropped > LINGER_BYTES:
            self.hard_close()

    def hard_close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.raw.close()


class _Bounded:
    """The bounds, mixed into one of uvicorn's HTTP/1.1 protocols (``edge_protocol``).

    The parser-specific subclass calls ``_head_begun``, ``_head_grew`` and ``_head_done``.
    """

    limits: ClassVar[ServerLimits]
    open_by_client: ClassVar[Counter[str]]
    is_trusted: ClassVar[Callable[[str], bool]]
    transport: asyncio.Transport
    client: tuple[str, int] | None
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self.transport = _LingeringTransport(cast(asyncio.Transport, transport), self)  # type: ignore[assignment]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_size = 0
        self._head_overflow = False
        self._counted: str | None = None
        host = self.client[0] if self.client else None
        cap = self.limits.connections_per_client
        if cap and host is not None and not type(self).is_trusted(host):
            if self.open_by_client[host] >= cap:
                self._refuse(TOO_MANY)
                return
            self.open_by_client[host] += 1
            self._counted = host
        self._head_begun()  # a new connection must bring a head in time, as must each later request

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        self.transport.hard_close()  # type: ignore[attr-defined]
        if self._counted is not None:
            left = self.open_by_client[self._counted] - 1
            if left > 0:
                self.open_by_client[self._counted] = left
            else:
                del self.open_by_client[self._counted]
            self._counted = None
        super().connection_lost(exc)  # type: ignore[misc]

    def send_400_response(self, msg: str) -> None:
        self._refuse(HEAD_TOO_LARGE if self._head_overflow else NOT_HTTP)

    # --- called by the parser-specific subclass --------------------------------------------
    def _head_begun(self, *, fresh: bool = True) -> None:
        if fresh:
            self._head_size = 0
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _head_grew(self, size: int) -> bool:
        """Count head bytes; False once the head is too large."""
        self._head_size += size
        if self._head_size > self.limits.max_head_bytes:
            self._head_overflow = True
            return False
        return True

    def _head_done(self) -> None:
        self._stop_head_timer()

    # --- internals -------------------------------------------------------------------------
    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # a request is being answered: the head that is late is a pipelined one, closed with it
        if self._head_size:
            self._refuse(TIMED_OUT)
        else:
            self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        self._stop_head_timer()
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.linger()  # type: ignore[attr-defined]

    def _lingering(self, data: bytes) -> bool:
        """True (and the data dropped) once the connection lingers before its close."""
        if self.transport.lingering:  # type: ignore[attr-defined]
            self.transport.drop(data)  # type: ignore[attr-defined]
            return True
        return False


def edge_protocol(limits: ServerLimits, http: str = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol class (``httptools``, the default, or ``h11``) with the bounds.

    Each call makes a class of its own, with its own count of connections per client: one per server.
    """
    http = "httptools" if http == "auto" else http
    attrs = {"limits": limits, "open_by_client": Counter(),
             "is_trusted": staticmethod(_trusted(limits.trusted_proxies))}
    if http == "httptools":
        return type("EdgeHttpToolsProtocol", (_HttpToolsHooks,), attrs)
    if http == "h11":
        return type("EdgeH11Protocol", (_H11Hooks,), attrs)
    raise ValueError(f"unknown HTTP protocol {http!r}")


def server_options(limits: ServerLimits, http: str = "auto") -> dict[str, Any]:
    """The uvicorn options that carry the limits (for ``uvicorn.run`` or ``uvicorn.Config``)."""
    return {"http": edge_protocol(limits, http), "h11_max_incomplete_event_size": limits.max_head_bytes,
            "proxy_headers": True, "forwarded_allow_ips": list(limits.trusted_proxies)}


class _HttpToolsHooks(_Bounded, HttpToolsProtocol):
    """httptools tells where a head begins and ends through its callbacks."""

    def data_received(self, data: bytes) -> None:
        if not self._lingering(data):
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun()

    def on_url(self, url: bytes) -> None:
        if not self._head_grew(len(url)):
            # stops the parser; uvicorn answers with send_400_response
            raise httptools.HttpParserError("request head too large")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_grew(len(name) + len(value) + 4):
            raise httptools.HttpParserError("request head too large")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done()
        super().on_headers_complete()


class _H11Hooks(_Bounded, H11Protocol):
    """h11 bounds the head's size itself; its state says whether a head is still awaited."""

    def data_received(self, data: bytes) -> None:
        if self._lingering(data):
            return
        waiting = self.conn.their_state is h11.IDLE
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is not h11.IDLE:
            self._head_done()
        elif waiting and data:
            self._head_size += len(data)
            self._head_begun(fresh=False)
