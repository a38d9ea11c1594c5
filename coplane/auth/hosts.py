"""Which names this server answers to: a request whose Host is any other is refused before routing.

DNS rebinding points a name the attacker owns at 127.0.0.1 once a page of theirs is loaded:
the browser then sends that page's requests, same-origin as far as it knows, to the open
loopback server, with `Host: attacker.example` and a matching `Origin`. The cross-site guard
cannot tell such a request from the UI's own; its Host can. So whatever COPLANE_AUTH is, only
loopback names and addresses, the listen address, the host of COPLANE_PUBLIC_URL and those in
COPLANE_ALLOWED_HOSTS are answered; the rest get 400 naming the header.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from coplane.security.hosts import host_name, parse_allowed_hosts

LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """The names a request's Host may carry."""

    def __init__(self, names: Iterable[str]) -> None:
        names = list(names)
        self.exact = frozenset(n for n in names if not n.startswith("*."))
        self.suffixes = tuple(n[1:] for n in names if n.startswith("*."))  # ".example.com"

    @classmethod
    def of(cls, listen: str, public_url: str | None, allowed: str) -> HostPolicy:
        """Loopback, the listen address unless it is every address, PUBLIC_URL's host and the
        allowed hosts."""
        names = list(parse_allowed_hosts(allowed))
        listen_name = host_name(listen)
        try:
            every = ipaddress.ip_address(listen_name).is_unspecified
        except ValueError:
            every = False
        if listen_name and not every:
            names.append(listen_name)
        if public_url:
            names.append((urlsplit(public_url.strip()).hostname or "").lower().removesuffix("."))
        return cls(n for n in names if n)

    def allows(self, host: str) -> bool:
        name = host_name(host)
        if not name:
            return False
        return _is_loopback(name) or name in self.exact or name.endswith(self.suffixes)


class CheckHost:
    """ASGI middleware: 400 for a request whose Host header the policy does not allow."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host")
            if host is None or not self.policy.allows(host):
                await _refuse(send, host)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, host: str | None) -> None:
    shown = "no Host header" if host is None else f"Host {json.dumps(host[:100])}"
    message = (
        f"{shown} is not a name of this server: add it to COPLANE_ALLOWED_HOSTS "
        "or set COPLANE_PUBLIC_URL to the address users reach coplane at"
    )
    error = {"loc": ["header", "host"], "msg": message}
    body = json.dumps({"detail": message, "errors": [error]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})
