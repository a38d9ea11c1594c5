"""Who may do what, checked before any route runs when COPLANE_AUTH=keys.

Each request needs a scope, from its method and path: sending events (`POST /api/events`,
the OpenLineage endpoints, pings, run logs), holding concurrency slots (acquire, renew,
release) and a flow's own pause (record, poll) need `ingest`; resuming a paused run, like
acknowledging or resolving an incident, needs `act` (editors); reading the API or the UI
needs `read`; changing anything (SLAs, incidents, keys, the UI's forms) needs `admin`, which
may also do everything else. The key comes as `Authorization: Bearer <key>` or, for the UI,
in the cookie the login page sets. `/api/health`, the login page and static files are open.

A ping whose URL carries a monitor's ping key (`/ping/cpk_.../{slug}`) needs no API key: the
ping route checks the ping key. It is still rate-limited, per ping key, like an API key's
ingest requests; the key found is left in the request's state so the route need not look it
up again.
"""

from __future__ import annotations

import hmac
import html
import json
import math
import re
import time
from typing import Protocol
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from coplane.auth.keys import Key, check_key
from coplane.auth.users import User, session_user
from coplane.store import Store
from coplane.store.ping_keys import PING_KEY_PREFIX, PingKey, check_ping_key


class Principal(Protocol):
    """Who is asking: an API key or a logged-in user."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    def allows(self, needed: str) -> bool: ...


KEY_COOKIE = "coplane_key"
# the web UI's double-submit cookie (coplane.web.csrf), and the header an API call sends it in
CSRF_COOKIE = "coplane_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_COOKIE = "coplane_session"
OPEN_PATHS = ("/api/health", "/login", "/logout", "/static/", "/favicon")
INGEST_PATHS = ("/api/events", "/api/v1/lineage", "/ping/", "/api/logs")
LEASE_PATHS = "/api/concurrency/"
RUN_PATHS = ("/api/runs/", "/runs/")
LEASE_ACTIONS = ("/acquire", "/renew", "/release")
# POSTs that change nothing: a backtest only simulates, so reading is enough
READ_POSTS = ("/api/slas/backtest", "/backtest", "/api/automations/backtest")
# Operating what is deployed (starting or cancelling a run, pausing or resuming a schedule) is
# an editor's act, like acknowledging an incident; declaring deployments stays an admin's.
ACT_POSTS = re.compile(
    r"^(/api)?/deployments/[^/]+/(runs?|pause|resume)$|^(/api/runs|/flow-runs)/[^/]+/cancel$"
)
API_PATHS = ("/api/", "/openapi.json", "/docs", "/redoc")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# pings carrying a ping key: no slug may start with the key's prefix
PING_KEY_PATHS = "/ping/" + PING_KEY_PREFIX
PING_KEY_STATE = "ping_key"  # the request state's name for the ping key the middleware found


def needed_scope(method: str, path: str) -> str | None:
    """The scope a request needs; None for the open paths."""
    if path.startswith(OPEN_PATHS) or path.startswith(PING_KEY_PATHS):
        return None  # a key-form ping is checked by its route, against the monitor's key
    if path.startswith(("/api/keys", "/api/secrets")) or (
        path.startswith("/api/monitors/") and path.endswith("/ping-key")
    ):
        return "admin"  # even listing keys or secrets: their names are for admins
    if path.startswith("/api/connections/") and path.endswith("/resolved"):
        return "admin"  # a connection with its secrets in clear, for the flows that load it
    if path.startswith("/ping/") or (method == "POST" and path.startswith(INGEST_PATHS)):
        return "ingest"
    if method == "POST" and path.startswith(LEASE_PATHS) and path.endswith(LEASE_ACTIONS):
        return "ingest"  # flows hold concurrency slots with the key they report with
    if path.startswith("/api/runs/") and path.endswith("/pause"):
        return "ingest"  # the paused flow records its pause and polls it with its own key
    if method == "POST" and path.startswith(RUN_PATHS) and path.endswith("/resume"):
        return "act"  # resuming a paused run: editors (and admins), like acknowledging
    if method == "POST" and path.endswith(("/ack", "/resolve")) and "/incidents/" in path:
        return "act"  # acknowledging and resolving: editors (and admins)
    if method == "POST" and ACT_POSTS.match(path):
        return "act"
    if method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and path in READ_POSTS):
        return "read"
    return "admin"


class TokenBucket:
    """Requests a key may send: `rate` a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self) -> float:
        """0 when a request may go now; else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RequireKeys:
    """ASGI middleware: 401 without a live key, 403 when its scopes fall short; UI pages send
    a browser without a key to the login page instead. Ingest requests are rate-limited per
    key (a token bucket per key in each server process; 0 turns the limit off)."""

    def __init__(self, app: ASGIApp, store: Store | None = None, ingest_rate: float = 0.0) -> None:
        self.app = app
        self.store = store  # None: the app's own, from app.state once it has started
        self.ingest_rate = ingest_rate
        self.buckets: dict[str, TokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(PING_KEY_PATHS):
            await self._ping_with_key(scope, receive, send, path)
            return
        needed = needed_scope(scope["method"], path)
        if needed is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        api = path.startswith(API_PATHS) or path.startswith(INGEST_PATHS)
        authorization = headers.get("authorization")
        secret = _bearer(authorization or "")
        if authorization is not None and not secret:
            # a login proxy's Basic credential, say: never coplane's, and the cookie the
            # browser sent along is not to be taken in its place
            scheme = authorization.partition(" ")[0] or "(empty)"
            message = f"Authorization: {scheme[:20]} is not a coplane credential: send Bearer <key>"
            await _refuse(send, 401, message, api)
            return
        cookies = cookie_parser(headers.get("cookie", ""))
        session = "" if secret else cookies.get(SESSION_COOKIE, "")
        from_cookie = False
        if not secret and not session:
            secret = cookies.get(KEY_COOKIE, "")
            from_cookie = bool(secret)
        key: Principal | None = None
        if session:
            key = await self._session(scope, session)
            from_cookie = True
        elif secret:
            key = await self._check(scope, secret)
        if key is None:
            if not api and scope["method"] == "GET":
                target = path + (
                    "?" + scope["query_string"].decode() if scope["query_string"] else ""
                )
                await _redirect(send, "/login?next=" + quote(target, safe=""))
                return
            why = "the key is unknown or revoked" if secret else "no API key was sent"
            await _refuse(send, 401, f"{why}: send Authorization: Bearer <key>", api)
            return
        if not key.allows(needed):
            what = f"the scopes of {key.name} ({', '.join(key.scopes)}) do not include {needed}"
            await _refuse(send, 403, what, api and not from_cookie)
            return
        if (
            from_cookie
            and scope["method"] not in SAFE_METHODS
            and path.startswith("/api/")
            and not _csrf_header_matches(headers, cookies)
        ):
            # a browser attaches the cookie by itself; only a page of this server knows the token
            message = (
                f"a change under /api with the login cookie needs the {CSRF_HEADER} header "
                "carrying the page's CSRF token; scripts send Authorization: Bearer <key>"
            )
            await _refuse(send, 403, message, api, loc=["header", CSRF_HEADER.lower()])
            return
        if needed == "ingest" and self.ingest_rate > 0:
            wait = self._take(key.id)
            if wait:
                await _too_many(send, wait, self.ingest_rate)
                return
        scope.setdefault("state", {})["key"] = key
        await self.app(scope, receive, send)

    def _take(self, bucket_id: str) -> float:
        """0 when this key may send an ingest request now; else the seconds until it may."""
        bucket = self.buckets.get(bucket_id)
        if bucket is None:
            bucket = self.buckets[bucket_id] = TokenBucket(self.ingest_rate, 2 * self.ingest_rate)
        return bucket.take()

    async def _ping_with_key(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Let a key-form ping through to its route, rate-limited per live ping key."""
        if self.ingest_rate > 0:
            secret = path.removeprefix("/ping/").partition("/")[0]
            store = self.store or scope["app"].state.store

            def look_up() -> PingKey | None:
                with store.connect() as conn:
                    return check_ping_key(conn, secret)

            found = await run_in_threadpool(look_up)
            # an unknown key gets no bucket (the route answers 404), so made-up keys cost
            # no memory here
            if found is not None:
                wait = self._take("ping:" + found.id)
                if wait:
                    await _too_many(send, wait, self.ingest_rate, ["path", "ping_key"])
                    return
            scope.setdefault("state", {})[PING_KEY_STATE] = found
        await self.app(scope, receive, send)

    async def _session(self, scope: Scope, token: str) -> User | None:
        store = self.store or scope["app"].state.store

        def look_up() -> User | None:
            with store.connect() as conn:
                return session_user(conn, token)

        return await run_in_threadpool(look_up)

    async def _check(self, scope: Scope, secret: str) -> Key | None:
        store = self.store or scope["app"].state.store

        def look_up() -> Key | None:
            with store.connect() as conn:
                return check_key(conn, secret)

        return await run_in_threadpool(look_up)


class CrossSiteGuard:
    """ASGI middleware, whatever COPLANE_AUTH is: a request that would change something
    (any method but GET, HEAD and OPTIONS) and that a browser sent from a page of another
    origin is refused with 403.

    Browsers attach cookies on their own, and a page anywhere can make one POST a form to
    this server: to a loopback coplane with COPLANE_AUTH=none, or with a user's session
    (SameSite does not separate sibling subdomains, which may also overwrite the CSRF
    cookie). Browsers tell where a request comes from in `Sec-Fetch-Site`; older ones only
    in `Origin`, compared here with the host asked for and with COPLANE_PUBLIC_URL. A request
    with neither header is no browser's. With COPLANE_AUTH=keys, one with a Bearer key
    carries its own credential, which no page can add cross-origin without CORS (coplane
    allows none); any other Authorization (a login proxy's Basic, added to every request of
    the browser behind it) is ambient like a cookie, so it exempts nothing. Pings stay open: a
    ping URL is its own credential, meant to be hit from anywhere.
    """

    def __init__(self, app: ASGIApp, public_url: str | None = None, keys: bool = False) -> None:
        self.app = app
        self.public_origin = _origin_of(public_url) if public_url else None
        self.keys = keys  # only then does a Bearer key authenticate the request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and not scope["path"].startswith("/ping/")
        ):
            headers = Headers(scope=scope)
            with_key = self.keys and bool(_bearer(headers.get("authorization", "")))
            why = None if with_key else self._cross_site(headers)
            if why:
                path: str = scope["path"]
                api = path.startswith(API_PATHS) or path.startswith(INGEST_PATHS)
                message = (
                    f"refused a cross-site request ({why}): a page on another site may not "
                    "change anything here; send Authorization: Bearer <key> from scripts"
                )
                await _refuse(send, 403, message, api, loc=["header", "origin"])
                return
        await self.app(scope, receive, send)

    def _cross_site(self, headers: Headers) -> str | None:
        """Why the request came from another origin, or None when it did not (or no browser
        said)."""
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site in ("same-origin", "none"):  # "none": typed or bookmarked by the user
            return None
        if fetch_site is not None:
            return f"Sec-Fetch-Site: {fetch_site}"
        origin = headers.get("origin")
        if origin is None:
            return None
        host = headers.get("host", "")
        if origin != "null" and (
            origin.partition("://")[2] == host or _origin_of(origin) == self.public_origin
        ):
            return None
        return f"Origin: {origin}"


def _origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lowercased, without a default port."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _csrf_header_matches(headers: Headers, cookies: dict[str, str]) -> bool:
    """The CSRF header equals the CSRF cookie (compared in constant time), and both are set."""
    sent = headers.get(CSRF_HEADER, "")
    cookie = cookies.get(CSRF_COOKIE, "")
    return bool(sent and cookie) and hmac.compare_digest(sent.encode(), cookie.encode())


def _bearer(value: str) -> str:
    kind, _, token = value.partition(" ")
    return token.strip() if kind.lower() == "bearer" else ""


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", location.encode()), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _too_many(send: Send, wait: float, rate: float, loc: list[str] | None = None) -> None:
    message = (
        f"this key sent more than {rate:g} ingest requests a second: retry after "
        f"{math.ceil(wait)} s (COPLANE_INGEST_RATE_LIMIT)"
    )
    await _send(
        send,
        429,
        _api_error(message, loc),
        b"application/json",
        [(b"retry-after", str(math.ceil(wait)).encode())],
    )


def _api_error(message: str, loc: list[str] | None = None) -> bytes:
    """The API's error body, naming the Authorization header (or `loc`)."""
    error = {"loc": loc or ["header", "authorization"], "msg": message}
    return json.dumps({"detail": message, "errors": [error]}).encode()


async def _send(
    send: Send, status: int, body: bytes, kind: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse(
    send: Send, status: int, message: str, api: bool, loc: list[str] | None = None
) -> None:
    """The API's error shape for API clients; a short page for browsers."""
    if api:
        body, kind = _api_error(message, loc), b"application/json"
    else:
        body = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<title>Not allowed · coplane</title><link rel="stylesheet" href="/static/style.css">'
            '</head><body><main id="main"><h1>Not allowed</h1><p class="message" role="alert">'
            f'{html.escape(message)}.</p><p><a href="/login">Log in with another key</a> · '
            '<a href="/">Health</a></p></main></body></html>'
        ).encode()
        kind = b"text/html; charset=utf-8"
    extra = [(b"www-authenticate", b'Bearer realm="coplane"')] if status == 401 else []
    await _send(send, status, body, kind, extra)
