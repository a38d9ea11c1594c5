"""How much of a request body the server reads, and for how long: a cap per route, a deadline
for the whole body, both applied before authentication and before any route reads it.

Without them a POST to /login was read whole (a 256 MiB body took the server from 98 to
610 MiB), and a client sending its body a byte at a time held a connection forever.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coplane.http.body import MAX_BODY_BYTES

KIB = 1024
FORM_MAX_BYTES = 64 * KIB  # the UI's forms: a login, a CSRF token, a backtest's fields
API_MAX_BYTES = 1024 * KIB  # SLAs, keys, secrets (a value is at most 64 KiB), backtests
# the bulk ingest routes (events, OpenLineage, run logs) take the documented 16 MiB; pings keep
# only their log's tail
BULK_PATHS = ("/api/events", "/api/v1/lineage", "/api/logs", "/ping/")


def body_limit(path: str) -> int:
    """The most bytes a request to `path` may send (as sent: gzip is checked again unpacked)."""
    if path.startswith(BULK_PATHS):
        return MAX_BODY_BYTES
    if path.startswith("/api/"):
        return API_MAX_BYTES
    return FORM_MAX_BYTES


class LimitBodies:
    """ASGI middleware: 413 past the route's cap (from Content-Length at once, else as soon as
    the bytes read pass it), 408 when the whole body has not arrived within `timeout` seconds.

    Past a limit the route is told the client went away (what a route reading the body
    expects to be told), and whatever it does next is not sent.
    """

    def __init__(self, app: ASGIApp, timeout: float = 30.0) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, _too_large(limit))
            return
        deadline = time.monotonic() + self.timeout
        read = 0
        done = started = answered = False

        async def refuse(status: int, message: str) -> Message:
            nonlocal answered
            if not started:
                await _answer(send, status, message, close=True)
            answered = True
            return {"type": "http.disconnect"}

        async def limited_receive() -> Message:
            nonlocal read, done
            if answered:
                return {"type": "http.disconnect"}
            if done:  # past the body: a disconnect, which may come at any time
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                why = f"the request body did not arrive within {self.timeout:g} s"
                return await refuse(408, why + " (COPLANE_BODY_TIMEOUT)")
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > limit:
                    return await refuse(413, _too_large(limit))
                done = not message.get("more_body", False)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except Exception:
            if not answered:  # the route's own failure, not the disconnect it was told of
                raise


def _too_large(limit: int) -> str:
    size = f"{limit // (KIB * KIB)} MiB" if limit % (KIB * KIB) == 0 else f"{limit // KIB} KiB"
    return f"request body is larger than the limit of {limit} bytes ({size}) for this path"


async def _answer(send: Send, status: int, message: str, close: bool = False) -> None:
    body = json.dumps({"detail": message, "errors": [{"loc": ["body"], "msg": message}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is not read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
