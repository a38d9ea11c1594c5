"""HTTP for channels that speak plain HTTP: checked connections, answers as IntegrationErrors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from coplane.alerts.notifier import IntegrationError
from coplane.alerts.urls import check_url, checked_addresses
from coplane.client import retry_after

TIMEOUT = httpx.Timeout(10.0, connect=5.0)  # a slow channel must not hold the dispatcher
LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=5)  # one host per client


class CheckedBackend(httpcore.NetworkBackend):
    """Opens TCP connections only to addresses the outgoing-URL policy allows.

    The host is resolved and checked here, and the socket is opened to the checked address,
    so a DNS answer that changes after the check cannot redirect the connection. TLS still
    verifies the certificate against the host name: httpcore passes that as server_hostname.
    """

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = checked_addresses(host, port)
        except OSError as exc:  # the name did not resolve: unreachable, as httpcore says it
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        failure: Exception = httpcore.ConnectError(f"{host}: no address")
        for address in addresses:  # in the resolver's order, as socket.create_connection
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure


class CheckedTransport(httpx.HTTPTransport):
    """httpx's own transport, its connection pool built on CheckedBackend."""

    def __init__(self) -> None:
        super().__init__()
        # HTTPTransport takes no network backend (httpx 0.28), so its pool is replaced by an
        # httpcore pool that has one; requests and responses are converted as before.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=LIMITS.max_connections,
            max_keepalive_connections=LIMITS.max_keepalive_connections,
            keepalive_expiry=LIMITS.keepalive_expiry,
            network_backend=CheckedBackend(),
        )


def channel_client(**options: Any) -> httpx.Client:
    """An httpx client for one channel: coplane's timeout, connections checked by the policy,
    and no redirects followed (a redirect would take the channel's credentials along to a
    place nobody configured)."""
    return httpx.Client(
        transport=CheckedTransport(), timeout=TIMEOUT, follow_redirects=False, **options
    )


# An error code as services put them in an answer (Slack's `channel_not_found`, a webhook's
# `invalid_token`): one short word. Anything else in an answer is not echoed.
ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
HOST = re.compile(r"[a-z0-9.\-:]{1,253}")  # a host name or address, as urlsplit gives it


def error_code(value: str) -> str:
    """`value` when it is one error code, else "": what of an answer a stored error may hold."""
    value = value.strip()
    return value if ERROR_CODE.fullmatch(value) else ""


def status_text(status: int) -> str:
    """`403 Forbidden`: the status and its standard phrase, never the one the server sent."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def check_response(response: httpx.Response, service: str) -> None:
    """Raise IntegrationError for a response that is not a success.

    A redirect is a permanent failure: no channel follows one.

    429, 408 and 5xx are transient (retried, after Retry-After when given); other 4xx mean
    the request or the credentials are wrong and repeating it cannot help, so they are
    permanent. A 403 carrying Retry-After or `x-ratelimit-remaining: 0` is GitHub's rate limit
    (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api), which
    is transient.
    """
    status = response.status_code
    if 300 <= status < 400:
        # the host it points to helps fix the config; the rest of its URL is not echoed
        target = urlsplit(response.headers.get("location", "")).hostname or ""
        to = f" to {target}" if HOST.fullmatch(target) else ""
        raise IntegrationError(
            f"{service} answered {status_text(status)}{to}: redirects are not followed; "
            "configure the address it redirects to",
            permanent=True,
        )
    if status < 400:
        return
    # the status and at most an error code: an answer's body may hold anything, such as a
    # page of an internal service, and the stored error is shown to readers
    code = error_code(response.text[:100]) if len(response.content) <= 100 else ""
    message = f"{service} answered {status_text(status)}" + (f": {code}" if code else "")
    wait = retry_after(response.headers)
    rate_limited = status == 429 or (
        status == 403 and (wait is not None or response.headers.get("x-ratelimit-remaining") == "0")
    )
    if rate_limited and wait is None and response.headers.get("x-ratelimit-reset"):
        try:
            reset = float(response.headers["x-ratelimit-reset"])
            wait = max(0.0, reset - datetime.now(UTC).timestamp())
        except ValueError:
            wait = None
    transient = rate_limited or status == 408 or status >= 500
    raise IntegrationError(message, permanent=not transient, retry_after=wait)


def request(
    client: httpx.Client, method: str, url: str, service: str, **kwargs: object
) -> httpx.Response:
    """Send one request; a network failure or a failing status becomes an IntegrationError.

    A URL the outgoing-URL policy refuses is a permanent IntegrationError, raised before
    anything is sent (also for clients not made by `channel_client`, and behind a proxy).
    """
    check_url(str(client.build_request(method, url).url))
    try:
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        raise IntegrationError(f"{service} could not be reached: {exc}") from exc
    check_response(response, service)
    return response
