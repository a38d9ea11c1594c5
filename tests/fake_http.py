"""A local HTTP server standing in for one outside API (Slack, PagerDuty, Jira, GitHub, a webhook).

The real client library is pointed at it. Each request is recorded; `respond` answers it (a
test's own function checking the documented request shape); `script` queues answers that
are given first, one per request, to play outages and rate limits.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    answered: int = 0  # the status the fake answered with

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Reply:
    """An answer: status, a JSON (or raw bytes) body and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FakeService:
    """The server; use as a context manager, or `start()`/`stop()`."""

    def __init__(self, respond: Callable[[Request], Reply]) -> None:
        self.respond = respond
        self.requests: list[Request] = []
        self._scripted: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before `respond` again."""
        with self._lock:
            self._scripted.extend(replies)

    def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeService:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with fake._lock:
                    fake.requests.append(request)
                    scripted = fake._scripted.popleft() if fake._scripted else None
                try:
                    reply = scripted or fake.respond(request)
                except AssertionError as exc:  # a request that breaks the documented shape
                    reply = Reply(400, {"fake_error": f"bad request shape: {exc}"})
                request.answered = reply.status
                raw = (
                    reply.body
                    if isinstance(reply.body, bytes)
                    else json.dumps(reply.body if reply.body is not None else {}).encode()
                )
                self.send_response(reply.status)
                if "content-type" not in {k.lower() for k in reply.headers}:
                    self.send_header("content-type", "application/json; charset=utf-8")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def close(self) -> None:
        self.stop()


@contextmanager
def fake_service(respond: Callable[[Request], Reply]) -> Iterator[FakeService]:
    """A started FakeService, stopped afterwards."""
    with FakeService(respond) as service:
        yield service
