"""Where webhooks may go: the egress policy (plain rules).

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

The client that keeps to this policy on every connection is ``est_notifier.adapters.webhook``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from est_notifier.subscriptions.domain import InvalidField

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
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
NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*", re.IGNORECASE)
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_NAME = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}")


class TargetRefused(InvalidField):
    """A webhook target the egress policy does not allow (refused when subscribing, ``refused`` when sending)."""

    def __init__(self, reason: str, *, allowable: bool | None = None) -> None:
        en, sv = REASONS[reason]
        if allowable if allowable is not None else reason not in ("invalid_host", "url"):
            en += ". An operator can allow it with EST_NOTIFIER_WEBHOOK_ALLOW"
            sv += ". En driftansvarig kan tillåta det med EST_NOTIFIER_WEBHOOK_ALLOW"
        super().__init__(f"Webhookens mål nekas: {sv}.", f"The webhook target is refused: {en}.",
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
    if NUMERIC_HOST.fullmatch(name):
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
            if not HOST_NAME.fullmatch(name) or NUMERIC_HOST.fullmatch(name):
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
