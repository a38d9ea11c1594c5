"""A real page on another origin, in real headless Chromium, behind a login proxy that adds
`Authorization: Basic` to every request of its browser, changes nothing in a real coplane:
neither an open loopback server nor one with a user's session."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from coplane.auth.users import create_user, start_session
from coplane.store import open_store
from tests.conftest import LiveServer, free_port
from tests.factories import event_dict

pytestmark = pytest.mark.slow

BASIC = "Basic " + "YWxpY2U6c2VjcmV0"  # alice:secret, as a login proxy adds it


class Proxy:
    """A login proxy on loopback: every request goes on to coplane with its Basic credential."""

    def __init__(self, upstream: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Authorization"] = BASIC
                headers["Host"] = f"127.0.0.1:{proxy.port}"
                answer = httpx.request(
                    self.command,
                    upstream + self.path,
                    headers=headers,
                    content=self.rfile.read(length),
                    timeout=10,
                )
                self.send_response(answer.status_code)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Attacker:
    """Another origin of the same site (another port: SameSite cookies still go along), whose
    page posts an event to coplane through the proxy as a simple request (no preflight)."""

    def __init__(self, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        body = json.dumps(event_dict("run.failed", "etl.forged", run="f1", kind="pipeline"))
        page = (
            "<!doctype html><title>hi</title><script>"
            f"fetch({target + '/api/events'!r}, {{method: 'POST', mode: 'no-cors', "
            "credentials: 'include', headers: {'Content-Type': 'text/plain'}, "
            f"body: JSON.stringify({body})}})"
            ".then(() => document.title = 'sent', () => document.title = 'sent');"
            "</script>"
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()




def visit_attacker(browser: Browser, server: LiveServer, session: str | None = None) -> None:
    """The browser behind the proxy opens the attacker's page and lets its script run."""
    proxy = Proxy(server.url)
    attacker = Attacker(proxy.url)
    context = browser.new_context()
    try:
        if session is not None:
            context.add_cookies(
                [{"name": "coplane_session", "value": session, "url": proxy.url + "/"}]
            )
        page = context.new_page()
        page.goto(attacker.url)
        page.wait_for_function("document.title === 'sent'", timeout=10_000)
    finally:
        context.close()
        attacker.close()
        proxy.close()


def forged(server: LiveServer, headers: dict[str, str] | None = None) -> list[object]:
    found = httpx.get(
        f"{server.url}/api/events?resource=etl.forged", headers=headers or {}, timeout=10
    )
    assert found.status_code == 200, found.text
    events: list[object] = found.json()["events"]
    return events


def test_an_open_server_behind_a_login_proxy(browser: Browser, tmp_path: Path) -> None:
    server = LiveServer(f"sqlite:///{tmp_path / 'coplane.sqlite'}", tmp_path / "server.log")
    server.start()
    try:
        visit_attacker(browser, server)
        assert forged(server) == []
    finally:
        server.stop()


def test_a_users_session_behind_a_login_proxy(browser: Browser, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coplane.sqlite'}"
    server = LiveServer(url, tmp_path / "server.log", env={"COPLANE_AUTH": "keys"})
    server.start()
    store = open_store(url)
    try:
        with store.connect() as conn:
            session = start_session(conn, create_user(conn, "ada", "a long passphrase", "admin"))
        visit_attacker(browser, server, session)
        assert forged(server, {"Cookie": f"coplane_session={session}"}) == []
    finally:
        store.close()
        server.stop()
