"""The outbound allow list (COPLANE_OUTBOUND_ALLOW): networks and host names that channels may
send to even where the outgoing-URL policy (coplane.alerts.urls) would refuse them.

Parsing lives here, below everything else, because `Settings` validates the list at start-up
and the alert checks read it at each send: both must agree on one parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

ALLOW_ENV = "COPLANE_OUTBOUND_ALLOW"

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True)
class Allow:
    """What COPLANE_OUTBOUND_ALLOW lets through: networks, and names whatever they resolve to."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    def allows_host(self, host: str) -> bool:
        return normal_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        plain = unmapped(address)
        return any(plain in network or address in network for network in self.networks)


@lru_cache(maxsize=8)
def parse_allow(text: str) -> Allow:
    """The allow list from its comma-separated text; ValueError naming a malformed entry."""
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ip_network(entry, strict=False))
            continue
        except ValueError:
            if "/" in entry or ":" in entry:
                raise ValueError(f"{entry!r} is not a network such as 10.0.0.0/8") from None
        name = normal_host(entry)
        labels = name.split(".")
        if not all(label and label.replace("-", "").isalnum() for label in labels):
            raise ValueError(f"{entry!r} is neither a network nor a host name") from None
        hosts.add(name)
    return Allow(tuple(networks), frozenset(hosts))


def unmapped(address: IPAddress) -> IPAddress:
    """The IPv4 address behind an IPv4-mapped IPv6 one (::ffff:127.0.0.1), else itself."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normal_host(host: str) -> str:
    """A host name as compared: without brackets or a trailing dot, lower case."""
    return host.strip("[]").rstrip(".").lower()
