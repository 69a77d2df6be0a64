"""Where webhooks may go: the egress policy, and an HTTP client that connects only to addresses it checked.

A webhook makes the notifier send a request to an address its owner chooses. Without a policy the
notifier would reach what only it can reach: itself (the intake, aggregator, web and NATS monitor
ports), the internal network and the cloud provider's metadata service, and the ledger would tell the
owner what answered. So:

- a target whose address is loopback, private (RFC 1918, shared 100.64/10, IPv6 ULA), link-local,
  multicast, unspecified, a cloud metadata address or otherwise not a public internet address is
  refused, in every spelling of the address (``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1``,
  ``[::ffff:127.0.0.1]``, IPv4 inside NAT64 and 6to4 addresses), as is ``localhost`` and any name that
  resolves to such an address, or to an address of the notifier's own host name;
- a name is refused if any of its addresses is refused (a name with one public and one internal
  address would otherwise reach the internal one on some attempts);
- ``EST_NOTIFIER_WEBHOOK_ALLOW`` lists CIDR ranges and host names an operator allows although they are
  internal (a receiver in the same data centre, a test on one machine);
- the check is made when a subscription is created or changed and again for every connection the
  client opens, and the connection goes to exactly the address that was checked (a name that resolved
  to a public address at subscription time and to 127.0.0.1 later, DNS rebinding, is refused then).
  The URL's host stays in the ``Host`` header and in TLS (SNI and certificate check).

The client follows no redirects and ignores proxy environment variables and ``.netrc`` (a proxy would
resolve the name itself, past the check); it trusts the CAs of ``SSL_CERT_FILE`` when set, else certifi's.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from est_notifier.subscriptions.domain import Invalid, webhook_url_problem

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: how names are looked up (the system's resolver unless a test gives one)."""

REASONS: dict[str, tuple[str, str]] = {
    "loopback": ("the address points at the notifier's own machine (loopback)",
                 "adressen pekar på notifierns egen maskin (loopback)"),
    "private": ("the address points into the internal network (a private range)",
                "adressen pekar in i det interna nätet (ett privat adressområde)"),
    "link_local": ("the address is link-local", "adressen är länklokal"),
    "metadata": ("the address is a cloud provider's metadata service", "adressen är molnleverantörens metadatatjänst"),
    "multicast": ("the address is a multicast address", "adressen är en multicastadress"),
    "unspecified": ("the address is unspecified (0.0.0.0 or ::)", "adressen är ospecificerad (0.0.0.0 eller ::)"),
    "reserved": ("the address is not a public internet address (a reserved range)",
                 "adressen är ingen publik internetadress (ett reserverat område)"),
    "invalid_host": ("the host is neither a valid name nor a valid address",
                     "värden är varken ett giltigt namn eller en giltig adress"),
    "url": ("the URL's form is not allowed", "adressens form är inte tillåten"),
}
"""Why a target is refused: what the owner is told (never whether anything listens there)."""

METADATA: tuple[IPNetwork, ...] = tuple(ip_network(n) for n in (
    "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean …
    "fd00:ec2::254/128",   # AWS over IPv6
    "100.100.100.200/32",  # Alibaba Cloud
    "168.63.129.16/32",    # Azure's wire server: a public address that only answers inside Azure
))
PRIVATE: tuple[IPNetwork, ...] = tuple(ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10"))
THIS_NETWORK = ip_network("0.0.0.0/8")
NAT64 = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))
LOCAL_NAME_ADDRESSES: tuple[IPAddress, ...] = (IPv4Address("127.0.0.1"), IPv6Address("::1"))
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*", re.IGNORECASE)
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}")


class TargetRefused(Invalid):
    """A webhook target the egress policy does not allow (422 at subscription time, ``refused`` at sending)."""

    def __init__(self, reason: str, *, allowable: bool | None = None) -> None:
        en, sv = REASONS[reason]
        if allowable if allowable is not None else reason not in ("invalid_host", "url"):
            en += ". An operator can allow it with EST_NOTIFIER_WEBHOOK_ALLOW"
            sv += ". En driftansvarig kan tillåta det med EST_NOTIFIER_WEBHOOK_ALLOW"
        super().__init__(f"The webhook target is refused: {en}.", f"Webhookens mål nekas: {sv}.",
                         field="channel.url")
        self.reason = reason


class InvalidHost(ValueError):
    """A host that looks like a numeric address but is none (``08.0.0.1``, ``1.2.3.4.5``)."""


# --- the policy (plain rules) -----------------------------------------------------------------

def normalise_name(host: str) -> str:
    """A host name as compared: lower case, without brackets and the root's trailing dot."""
    return host.strip("[]").rstrip(".").lower()


def is_local_name(name: str) -> bool:
    """``localhost`` and its subdomains always mean this machine (RFC 6761), whatever a resolver says."""
    return name == "localhost" or name.endswith(".localhost")


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in any spelling ``getaddrinfo`` accepts; None for a name.

    IPv4 also in the old BSD forms (``127.1``, ``0x7f000001``, ``2130706433``, octal ``0177.0.0.1``);
    raises InvalidHost for an all-numeric host that is no address.
    """
    name = normalise_name(host)
    try:
        return ip_address(name)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(name):
        try:
            return IPv4Address(socket.inet_aton(name))
        except OSError:
            raise InvalidHost(name) from None
    return None


def embedded_ipv4(addr: IPAddress) -> IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 IPv6 address (what it reaches in the end)."""
    if isinstance(addr, IPv4Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if any(addr in net for net in NAT64):
        return IPv4Address(int(addr) & 0xFFFFFFFF)
    if 1 < int(addr) <= 0xFFFFFFFF:  # IPv4-compatible ::a.b.c.d (deprecated, still routable by some stacks)
        return IPv4Address(int(addr))
    return None


def _category(addr: IPAddress) -> str | None:
    if any(addr in net for net in METADATA):
        return "metadata"
    if addr.is_unspecified or addr in THIS_NETWORK:
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link_local"
    if addr.is_multicast:
        return "multicast"
    if any(addr in net for net in PRIVATE):
        return "private"
    if addr.is_reserved or not addr.is_global:
        return "reserved"
    return None


@dataclass(frozen=True)
class AllowList:
    """What an operator allows although it is internal: CIDR ranges and exact host names."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """``127.0.0.1/32,10.20.0.0/16,hooks.intern.example``; a single address is its own /32 or /128.

        Raises ValueError naming the entry that is neither a range nor a host name.
        """
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            try:
                networks.append(ip_network(item.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = normalise_name(item)
            if not _HOST_NAME.fullmatch(name) or _NUMERIC_HOST.fullmatch(name):
                raise ValueError(f"EST_NOTIFIER_WEBHOOK_ALLOW: {item!r} is neither a CIDR range nor a host name")
            hosts.add(name)
        return cls(networks=tuple(networks), hosts=frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        return normalise_name(host) in self.hosts

    def allows_address(self, addr: IPAddress) -> bool:
        inner = embedded_ipv4(addr)
        return any(a in net for a in (addr, inner) if a is not None for net in self.networks
                   if a.version == net.version)


NO_ALLOW = AllowList()
"""The default: nothing internal is allowed."""


def address_refusal(addr: IPAddress, allow: AllowList, *, own: Iterable[IPAddress] = ()) -> str | None:
    """Why a connection to ``addr`` is refused (a key of REASONS), or None if it may go there.

    An IPv6 address that carries an IPv4 address is judged by both; ``own`` are the addresses of the
    notifier's own host name, refused like loopback.
    """
    if allow.allows_address(addr):
        return None
    inner = embedded_ipv4(addr)
    if addr in own or (inner is not None and inner in own):
        return "loopback"
    for a in (inner, addr):  # named after what it reaches in the end
        if a is not None and (reason := _category(a)) is not None:
            return reason
    return None


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
        if not _HOST_NAME.fullmatch(name):
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
