"""Host names as this server compares them, and the COPLANE_ALLOWED_HOSTS list.

Parsing lives here, below everything else, because `Settings` checks the list at start-up and
the host check (coplane.auth.hosts) reads it for every request: both use one parser.
"""

from __future__ import annotations


def host_name(value: str) -> str:
    """The name or address of a Host header, without its port, lowercased, without a final dot.

    An IPv6 address comes in brackets (`[::1]:4200`); anything unreadable becomes "".
    """
    value = value.strip().lower()
    if value.startswith("["):
        address, bracket, _ = value[1:].partition("]")
        return address if bracket else ""
    name = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
    return name.removesuffix(".")


def parse_allowed_hosts(value: str) -> tuple[str, ...]:
    """COPLANE_ALLOWED_HOSTS: comma-separated names or addresses, `*.example.com` for any
    subdomain of example.com; ValueError naming a part that is none of those."""
    hosts: list[str] = []
    for part in filter(None, (p.strip().lower() for p in value.split(","))):
        name = part.removeprefix("*.")
        if (
            not name
            or "*" in name
            or any(c in name for c in "/@ ")
            or host_name(name) != name.strip("[]")
        ):
            raise ValueError(f"{part!r} is not a host name, an address or *.domain (no port)")
        hosts.append("*." + name if part.startswith("*.") else name.strip("[]"))
    return tuple(hosts)
