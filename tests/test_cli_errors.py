"""What the CLI says when something is wrong: each refusal names the option or setting to fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coplane.cli import app
from tests.conftest import LiveServer, free_port

runner = CliRunner()


def run_server(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`coplane server` as a user starts it; it is expected to exit by itself."""
    return subprocess.run(
        [sys.executable, "-m", "coplane", "server", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_server_on_a_busy_port_names_port_and_never_says_it_listens(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_server(
            {"COPLANE_DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite'}"}, "--port", str(port)
        )
    assert done.returncode == 2
    assert f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
    assert "listening" not in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.postgresql
def test_server_with_a_wrong_postgresql_port_says_so_in_one_line() -> None:
    closed_port = free_port()  # nothing listens on it
    url = f"postgresql://coplane:hunter2@127.0.0.1:{closed_port}/coplane"
    done = run_server({"COPLANE_DATABASE_URL": url}, "--port", str(free_port()))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: COPLANE_DATABASE_URL: cannot connect to")
    assert f"port {closed_port} failed: Connection refused" in line
    assert "hunter2" not in done.stderr + done.stdout
    assert "listening" not in done.stdout


@pytest.mark.postgresql
def test_server_with_a_wrong_database_name_gives_the_servers_answer(pg_url: str) -> None:
    url = pg_url.rsplit("/", 1)[0] + "/no_such_coplane_db"
    done = run_server({"COPLANE_DATABASE_URL": url}, "--port", str(free_port()))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "COPLANE_DATABASE_URL" in line
    assert 'database "no_such_coplane_db" does not exist' in line


def test_cron_wrap_to_an_unknown_slug_suggests_create(live_server: LiveServer) -> None:
    wrap = ["cron", "wrap", "--slug", "nightly_export", "--server", live_server.url]
    done = runner.invoke(app, [*wrap, "--", "true"])
    assert done.exit_code == 0  # the command's own exit code, whatever the server said
    assert "404" in done.stderr and "add --create" in done.stderr
    created = runner.invoke(app, [*wrap, "--create", "--", "true"])
    assert created.exit_code == 0 and created.stderr == ""


@pytest.fixture
def keys_server(tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(
        f"sqlite:///{tmp_path / 'c.sqlite'}", tmp_path / "server.log", env={"COPLANE_AUTH": "keys"}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    "args",
    [
        ["slas", "list"],
        ["incidents", "list"],
        ["emit", "run.started", "cron.nightly_export"],
        ["cron", "wrap", "--slug", "nightly_export", "--create", "--", "true"],
    ],
)
def test_a_command_without_a_key_names_coplane_api_key(
    keys_server: LiveServer, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COPLANE_API_KEY", raising=False)
    monkeypatch.setenv("COPLANE_URL", keys_server.url)
    done = runner.invoke(app, args)
    assert "401" in done.stderr
    assert "set COPLANE_API_KEY" in done.stderr
    # a key that is sent but wrong is a different problem: no advice to set it
    monkeypatch.setenv("COPLANE_API_KEY", "cpl_wrong")
    assert "set COPLANE_API_KEY" not in runner.invoke(app, args).stderr
