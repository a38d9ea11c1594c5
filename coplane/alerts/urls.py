"""The outgoing-URL policy: where alert channels may send (no loopback, link-local or metadata).

A channel's URL comes from the config file, so a careless or hostile file could otherwise make
coplane POST to its own host, to link-local services or to a cloud metadata service (SSRF). A
URL is refused when its scheme is not http or https, when its host is `localhost` or a
`*.localhost` name (RFC 6761), or when the host is, or resolves to (any of its addresses), a
loopback, unspecified, link-local or cloud-metadata address, IPv4-mapped IPv6 forms included.
Private networks (10/8, 172.16/12, 192.168/16, fc00::/7) stay allowed: companies run their
alert receivers there.

`COPLANE_OUTBOUND_ALLOW` lists CIDRs and host names allowed anyway, such as
`127.0.0.1/32,alerts.internal`. It is read from the environment at each check (parsed once per
value), so the server, `coplane slas check` and `coplane alerts test` all apply the same list
without it being passed around; `Settings` declares the same variable and validates it, so a
malformed list stops `coplane server` at start.

Checks happen twice: when the config is loaded (`config_refusal`, literal addresses and
localhost names only, with no DNS), and right before each request (`check_url`), since DNS can
change after load. httpx channels also connect only to the addresses they checked
(`checked_addresses`, used by coplane.alerts.http's network backend), which closes the gap
between a check and the connection (DNS rebinding); they follow no redirects. Slack's SDK opens
its own connections (urllib): there the URL is checked before each call, but a name whose DNS
answer changes between that check and the SDK's own lookup, or a redirect urllib follows, is
not caught. Behind an HTTP proxy the proxy resolves the name; only the check before the request
applies.
"""

from __future__ import annotations

import os
import socket
from ipaddress import ip_address
from urllib.parse import unquote, urlsplit

from coplane.alerts.notifier import IntegrationError
from coplane.security.outbound import (
    ALLOW_ENV,
    Allow,
    IPAddress,
    parse_allow,
)
from coplane.security.outbound import normal_host as _normal
from coplane.security.outbound import unmapped as _unmapped

SCHEMES = ("http", "https")

# Metadata services: AWS, GCP and Azure answer at 169.254.169.254 (link-local anyway; named
# here for a clearer message), AWS's IPv6 endpoint is fd00:ec2::254
# (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html)
# and Alibaba Cloud's 100.100.100.200.
METADATA = frozenset(ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))


class RefusedURL(IntegrationError):
    """A URL the policy refuses: permanent, as only the config or the allow list can fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def current_allow() -> Allow:
    """The allow list COPLANE_OUTBOUND_ALLOW holds now."""
    try:
        return parse_allow(os.environ.get(ALLOW_ENV, ""))
    except ValueError as exc:
        raise ValueError(f"{ALLOW_ENV}: {exc}") from None


def refused_kind(address: IPAddress) -> str | None:
    """Why coplane must not connect to `address` ('loopback', ...), or None when it may."""
    plain = _unmapped(address)
    if plain in METADATA:
        return "cloud metadata"
    if plain.is_loopback:
        return "loopback"
    if plain.is_unspecified:
        return "unspecified"
    if plain.is_link_local:
        return "link-local"
    return None


def config_refusal(url: str) -> str | None:
    """Why the config must not name `url` (seen without DNS), or None."""
    return _refusal(url, resolve=False)


def check_url(url: str) -> None:
    """Raise RefusedURL (a permanent IntegrationError) when `url` may not be sent to now.

    A name that does not resolve passes: the request then fails as unreachable by itself.
    """
    message = _refusal(url, resolve=True)
    if message is not None:
        raise RefusedURL(message)


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order, once each is allowed.

    Connecting to exactly these is what makes the check hold at connection time. A refused one
    raises RefusedURL; a failed lookup raises OSError.
    """
    allow = current_allow()
    refusal = _name_refusal(host, allow)
    if refusal is not None:
        raise RefusedURL(refusal)
    addresses = _resolve(host, port, numeric=False)
    if not allow.allows_host(host):
        for address in addresses:
            refusal = _address_refusal(host, address, allow)
            if refusal is not None:
                raise RefusedURL(refusal)
    return [str(a) for a in addresses]


def _refusal(url: str, *, resolve: bool) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return f"refused: not a URL: {exc}"
    if parts.scheme not in SCHEMES:
        given = f"{parts.scheme}: URLs" if parts.scheme else "URLs without a scheme"
        return f"refused: {given} are not sent to; use http:// or https://"
    if not host:
        return "refused: the URL names no host"
    host = unquote(host)  # a zone id is spelt %25 in a URL: fe80::1%25eth0
    allow = current_allow()
    refusal = _name_refusal(host, allow)
    if refusal is not None or allow.allows_host(host):
        return refusal
    try:
        addresses = _resolve(host, port, numeric=True)  # a literal address in any spelling
    except OSError:
        if not resolve:
            return None
        try:
            addresses = _resolve(host, port, numeric=False)
        except OSError:
            return None
    for address in addresses:
        refusal = _address_refusal(host, address, allow)
        if refusal is not None:
            return refusal
    return None


def _name_refusal(host: str, allow: Allow) -> str | None:
    name = _normal(host)
    if (name == "localhost" or name.endswith(".localhost")) and not allow.allows_host(name):
        return f"refused: {name} names this host (loopback); allow it with {ALLOW_ENV}"
    return None


def _address_refusal(host: str, address: IPAddress, allow: Allow) -> str | None:
    kind = refused_kind(address)
    if kind is None or allow.allows_address(address):
        return None
    if _literal(host) == address:
        article = "an" if kind[0] in "aeiou" else "a"
        return f"refused: {_normal(host)} is {article} {kind} address; allow it with {ALLOW_ENV}"
    return f"refused: {_normal(host)} resolves to {address} ({kind}); allow it with {ALLOW_ENV}"


def _resolve(host: str, port: int, *, numeric: bool) -> list[IPAddress]:
    """Every address of `host`; with `numeric`, only a literal (127.1, 0x7f000001, ::1, ...)."""
    flags = socket.AI_NUMERICHOST if numeric else 0
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=flags)
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        address = ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def _literal(host: str) -> IPAddress | None:
    """The address `host` spells in the usual notation, if it is one."""
    try:
        return ip_address(_normal(host).split("%")[0])
    except ValueError:
        return None
