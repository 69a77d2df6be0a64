"""The webhook transport: an HTTP client that connects only to addresses the egress policy checked.

The policy itself (which addresses are refused, the operator's allow list) is plain rules in
``est_notifier.subscriptions.egress``. Here a name is resolved, every address judged, and the connection
goes to exactly an address that was checked (DNS pinning): a name that resolved to a public address at
subscription time and to 127.0.0.1 later (DNS rebinding) is refused then. The URL's host stays in the
``Host`` header and in TLS (SNI and certificate check).

The client follows no redirects and ignores proxy environment variables and ``.netrc`` (a proxy would
resolve the name itself, past the check); it trusts the CAs of ``SSL_CERT_FILE`` when set, else certifi's.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from est_notifier.deliveries.domain import AttemptResult, classify_status, retry_after_seconds
from est_notifier.subscriptions.domain import webhook_url_problem
from est_notifier.subscriptions.egress import (
    HOST_NAME,
    REASONS,
    AllowList,
    InvalidHost,
    IPAddress,
    TargetRefused,
    address_refusal,
    is_local_name,
    literal_address,
    normalise_name,
)

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: how names are looked up (the system's resolver unless a test gives one)."""
LOCAL_NAME_ADDRESSES: tuple[IPAddress, ...] = (IPv4Address("127.0.0.1"), IPv6Address("::1"))


# --- resolving and connecting ----------------------------------------------------------------

async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of a name from the system's resolver, off the event loop (asyncio runs it in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass
class Egress:
    """The egress policy of webhooks with the resolver it checks names with."""

    allow: AllowList = field(default_factory=AllowList)
    resolver: Resolver = system_resolver
    resolve_timeout: float = 5.0
    _own: tuple[frozenset[str], tuple[IPAddress, ...]] | None = field(default=None, init=False, repr=False)

    async def vet(self, url: str) -> None:
        """Check a subscription's target; raises TargetRefused. A name that does not resolve now is let
        through (the receiver may not exist yet): every connection checks it again."""
        await self._addresses(url_host(url), 0, strict=False)

    async def checked_addresses(self, host: str, port: int) -> list[str]:
        """The addresses a connection to ``host`` may use, every one checked; raises TargetRefused, or
        httpcore.ConnectError when the name does not resolve (a transient failure: retried)."""
        return await self._addresses(host, port, strict=True)

    async def _addresses(self, host: str, port: int, *, strict: bool) -> list[str]:
        try:
            literal = literal_address(host)
        except InvalidHost:
            raise TargetRefused("invalid_host") from None
        by_name = self.allow.allows_host(host)
        own_names, own = await self.own_host()
        if literal is not None:
            self._judge([literal], by_name, own)
            return [str(literal)]
        name = normalise_name(host)
        if not HOST_NAME.fullmatch(name):
            raise TargetRefused("invalid_host")
        try:
            found = await asyncio.wait_for(self.resolver(name, port), self.resolve_timeout)
            addresses = [ip_address(a.split("%", 1)[0]) for a in found]
        except (OSError, TimeoutError, ValueError):
            addresses = []
        if not addresses and (is_local_name(name) or name in own_names):
            addresses = list(LOCAL_NAME_ADDRESSES)  # this machine, whether or not a resolver knows the name
        if not addresses:
            if strict:
                raise httpcore.ConnectError("the host name could not be resolved")
            return []
        self._judge(addresses, by_name, own)
        return list(dict.fromkeys(str(a) for a in addresses))

    def _judge(self, addresses: list[IPAddress], by_name: bool, own: tuple[IPAddress, ...]) -> None:
        if by_name:
            return
        for addr in addresses:
            reason = address_refusal(addr, self.allow, own=own)
            if reason is not None:
                raise TargetRefused(reason)

    async def own_host(self) -> tuple[frozenset[str], tuple[IPAddress, ...]]:
        """The machine's own host names and their addresses (looked up once, off the event loop): a webhook
        to them would reach this machine's services on a public or container address."""
        if self._own is None:
            names = await asyncio.to_thread(_own_names)
            found: set[IPAddress] = set()
            for name in names:
                try:
                    found.update(ip_address(a.split("%", 1)[0]) for a in
                                 await asyncio.wait_for(system_resolver(name, 0), self.resolve_timeout))
                except (OSError, TimeoutError, ValueError):
                    continue
            self._own = (names, tuple(sorted(found, key=lambda a: (a.version, int(a)))))
        return self._own

    def client(self, *, timeout: float) -> httpx.AsyncClient:
        """An HTTP client for webhooks: every connection checked and pinned, no redirects, no proxies."""
        return httpx.AsyncClient(transport=GuardedTransport(self), timeout=timeout, follow_redirects=False,
                                 trust_env=False)


def _own_names() -> frozenset[str]:
    """The machine's host name and fully qualified name (``getfqdn`` may ask DNS: run it in a thread)."""
    names = {normalise_name(socket.gethostname())}
    try:
        names.add(normalise_name(socket.getfqdn()))
    except OSError:
        pass
    return frozenset(n for n in names if n)


def url_host(url: str) -> str:
    """The host of a URL as httpx parses it (and so as the connection sees it); raises TargetRefused."""
    if webhook_url_problem(url) is not None:
        raise TargetRefused("url")
    try:
        return httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError):
        pass
    try:  # httpx refuses some spellings getaddrinfo takes (0177.0.0.1): name what they point at if it can
        literal = literal_address(urlsplit(url).hostname or "")
    except InvalidHost:
        literal = None
    reason = address_refusal(literal, AllowList()) if literal is not None else None
    raise TargetRefused(reason or "invalid_host", allowable=False)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the egress policy checked, to exactly those addresses."""

    def __init__(self, egress: Egress, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.egress = egress
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self.egress.checked_addresses(host, port):
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:  # the next address may answer
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's defaults


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the pool rebuilt on ``GuardedBackend`` (httpx 0.28 takes no network backend)."""

    def __init__(self, egress: Egress, *, limits: httpx.Limits = LIMITS) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=limits.max_connections,  # SSL_CERT_FILE counts
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(egress))


# --- sending -----------------------------------------------------------------------------------

class WebhookSender:
    """POSTs the frozen CloudEvent bytes with the frozen signature and id headers, only where the egress
    policy allows ( every connection checked and pinned, no redirects)."""

    def __init__(self, *, egress: Egress, timeout: float) -> None:
        self.client = egress.client(timeout=timeout)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, delivery: dict[str, Any], attempt: int) -> AttemptResult:
        target = delivery["target"]
        headers = dict(target["headers"])
        headers["X-EST-Attempt"] = str(attempt)
        headers["User-Agent"] = "est-lagesbild-notifier/0.1"
        try:
            url_host(target["url"])  # a stored URL of a form no longer accepted (user-info, CR/LF) is not sent
            resp = await self.client.post(target["url"], content=delivery["payload"], headers=headers)
        except TargetRefused as exc:  # nothing was sent: the ledger must not tell what listens there
            return AttemptResult("refused", error=f"refused: {REASONS[exc.reason][0]} (EST_NOTIFIER_WEBHOOK_ALLOW)",
                                 reason=exc.reason)
        except httpx.TimeoutException as exc:
            return AttemptResult("retry", error=f"timeout: {exc.__class__.__name__}")
        except (httpx.TransportError, OSError) as exc:
            return AttemptResult("retry", error=f"connection: {exc.__class__.__name__}: {str(exc)[:200]}")
        except httpx.HTTPError as exc:  # invalid URL and the like: no retry helps
            return AttemptResult("failed", error=f"{exc.__class__.__name__}: {str(exc)[:200]}")
        outcome = classify_status(resp.status_code)
        retry_after = retry_after_seconds(resp.headers.get("retry-after")) if outcome == "retry" else None
        error = None if outcome == "delivered" else f"HTTP {resp.status_code}"
        return AttemptResult(outcome, code=resp.status_code, error=error, retry_after=retry_after)
