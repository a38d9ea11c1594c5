"""`coplane cron wrap --ping-key` against a real server that requires API keys."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from coplane.auth.keys import create_key
from coplane.store import Conn, open_store
from coplane.store.ping_keys import create_ping_key
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


@contextmanager
def database(url: str) -> Iterator[Conn]:
    """A connection to the server's database, for making keys as the CLI would."""
    store = open_store(url, pool_size=1)
    try:
        with store.connect() as conn:
            yield conn
    finally:
        store.close()


class KeyedServer:
    """A real `coplane server` with COPLANE_AUTH=keys, and a way to make keys in its database."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.url = live.url
        with database(live.database_url) as conn:
            self.admin = {"Authorization": f"Bearer {create_key(conn, 'ops', ['admin'])[1]}"}

    def ping_key(self, slug: str) -> str:
        with database(self.live.database_url) as conn:
            return create_ping_key(conn, slug)[1]

    def runs(self, slug: str) -> list[dict[str, Any]]:
        got = httpx.get(
            f"{self.url}/api/runs", params={"pipeline": f"cron.{slug}"}, headers=self.admin
        )
        assert got.status_code == 200, got.text
        runs: list[dict[str, Any]] = got.json()["runs"]
        return runs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedServer]:
    folder = tmp_path_factory.mktemp("cron-keys-server")
    live = LiveServer(
        f"sqlite:///{folder / 'coplane.sqlite'}",
        folder / "server.log",
        env={"COPLANE_AUTH": "keys"},
    )
    live.start()
    try:
        yield KeyedServer(live)
    finally:
        live.stop()


def wrap(url: str, slug: str, *command: str, options: tuple[str, ...] = (), **env: str) -> Any:
    args = [
        sys.executable, "-m", "coplane", "cron", "wrap", "--slug", slug, "--create", *options,
        "--", *command,
    ]  # fmt: skip
    environ = {
        k: v for k, v in os.environ.items() if k not in ("COPLANE_API_KEY", "COPLANE_PING_KEY")
    }
    return subprocess.run(
        args, env={**environ, "COPLANE_URL": url, **env}, capture_output=True, timeout=60
    )


def new_slug() -> str:
    return f"job-{uuid.uuid4().hex[:8]}"


def test_wrap_with_a_ping_key_reports_without_an_api_key(server: KeyedServer) -> None:
    slug = new_slug()
    key = server.ping_key(slug)
    done = wrap(server.url, slug, "sh", "-c", "echo copied; exit 4", options=("--ping-key", key))
    assert done.returncode == 4 and done.stdout == b"copied\n"
    assert done.stderr == b""  # both pings were taken
    [run] = server.runs(slug)
    assert run["state"] == "failed" and run["error"] == "exit code 4\ncopied"


def test_wrap_reads_the_ping_key_from_the_environment(server: KeyedServer) -> None:
    slug = new_slug()
    done = wrap(server.url, slug, "true", COPLANE_PING_KEY=server.ping_key(slug))
    assert done.returncode == 0 and done.stderr == b""
    [run] = server.runs(slug)
    assert run["state"] == "completed"


def test_wrap_with_another_monitors_key_warns_and_passes_the_exit_code(
    server: KeyedServer,
) -> None:
    slug = new_slug()
    key = server.ping_key("some-other-job")
    done = wrap(server.url, slug, "sh", "-c", "echo hi; exit 2", options=("--ping-key", key))
    assert done.returncode == 2 and done.stdout == b"hi\n"
    [warning] = done.stderr.decode().splitlines()
    assert "not reported" in warning and "404" in warning
    assert key not in warning and key[:12] in warning  # cron mails this line: no full key
    assert server.runs(slug) == []


def test_without_a_key_the_wrapper_is_refused_by_a_server_requiring_keys(
    server: KeyedServer,
) -> None:
    slug = new_slug()
    done = wrap(server.url, slug, "true")
    assert done.returncode == 0
    assert "401" in done.stderr.decode()
    assert server.runs(slug) == []


def test_a_malformed_ping_key_is_refused_before_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = wrap(
        "http://127.0.0.1:9", new_slug(), "touch", str(marker), options=("--ping-key", "s3cret")
    )
    assert done.returncode == 2 and b"--ping-key" in done.stderr
    assert b"s3cret" not in done.stderr and not marker.exists()
