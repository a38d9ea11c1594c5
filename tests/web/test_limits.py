"""A real server reads bodies only up to each route's cap, and not forever: before any login."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coplane.web.limits import API_MAX_BYTES, FORM_MAX_BYTES, body_limit
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("limits")
    live = LiveServer(
        f"sqlite:///{folder / 'c.sqlite'}",
        folder / "server.log",
        env={"COPLANE_AUTH": "keys", "COPLANE_BODY_TIMEOUT": "1"},
    )
    live.start()
    yield live
    live.stop()


def raw_request(server: LiveServer, head: str, body: bytes = b"") -> bytes:
    """Send `head` and `body` on a raw connection, then read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("path", ["/login", "/logout"])
def test_a_large_form_is_refused_unread(server: LiveServer, path: str) -> None:
    declared = httpx.post(server.url + path, content=b"x" * (FORM_MAX_BYTES + 1), timeout=30)
    assert declared.status_code == 413
    assert f"larger than the limit of {FORM_MAX_BYTES} bytes" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b"x" * 4096

    streamed = httpx.post(server.url + path, content=chunks(), timeout=30)
    assert streamed.status_code == 413


def test_api_bodies_have_their_own_cap(server: LiveServer) -> None:
    big = httpx.post(server.url + "/api/slas", content=b"x" * (API_MAX_BYTES + 1), timeout=30)
    assert big.status_code == 413
    assert body_limit("/api/events") > API_MAX_BYTES > body_limit("/login")


def test_a_slow_body_is_cut_off(server: LiveServer) -> None:
    head = (
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n"
    )
    answer = raw_request(server, head, b"csrf_token=")  # and then nothing more
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"COPLANE_BODY_TIMEOUT" in answer
    # the server is still there for everyone else
    assert httpx.get(server.url + "/api/health", timeout=10).status_code == 200


def test_a_small_login_still_works(server: LiveServer, tmp_path: Path) -> None:
    page = httpx.get(server.url + "/login", timeout=10)
    assert page.status_code == 200
    wrong = httpx.post(
        server.url + "/login",
        data={"csrf_token": page.cookies["coplane_csrf"], "key": "cpl_wrong"},
        cookies=page.cookies,
        timeout=10,
    )
    assert wrong.status_code == 401  # read and answered: an unknown key
