"""The `coplane` command as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from coplane.cli import app
from tests.conftest import LiveServer, default_port, free_port

runner = CliRunner()


def test_server_with_no_settings_uses_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPLANE_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    with default_port(), socket_free(4200):
        proc = subprocess.Popen(
            [sys.executable, "-m", "coplane", "server"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            health = wait_healthy("http://127.0.0.1:4200")
            assert health["database"] == "sqlite"
            assert (tmp_path / "data" / "coplane" / "coplane.sqlite").is_file()
        finally:
            proc.terminate()
            output = proc.communicate(timeout=15)[0].decode()
    assert "http://127.0.0.1:4200" in output


class socket_free:
    """Fail clearly, rather than hang, when the default port is taken by something else."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __enter__(self) -> None:
        try:
            httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
        except httpx.HTTPError:
            return
        pytest.fail(f"port {self.port} is in use: stop whatever listens there to run this test")

    def __exit__(self, *exc: object) -> None:
        return None


def wait_healthy(url: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/api/health", timeout=1)
            if r.status_code == 200:
                body: dict[str, object] = r.json()
                return body
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not become healthy")


def test_db_upgrade_applies_then_reports_up_to_date(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", db_url)
    first = runner.invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["db", "upgrade"])
    assert second.exit_code == 0
    assert "up to date" in second.output


def test_bad_database_url_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", "mysql://nope")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "COPLANE_DATABASE_URL" in result.output


def test_emit_sends_an_event(live_server: LiveServer) -> None:
    result = runner.invoke(
        app,
        [
            "emit",
            "run.completed",
            "cron.nightly_export",
            "--related",
            "run=2026-11-24",
            "--payload",
            '{"rows": 3}',
            "--server",
            live_server.url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"accepted":1' in result.output
    [event] = httpx.get(f"{live_server.url}/api/events").json()["events"]
    assert event["event"] == "run.completed"
    assert event["related"] == [{"id": "2026-11-24", "role": "run"}]
    assert event["payload"] == {"rows": 3}
    [run] = httpx.get(f"{live_server.url}/api/runs").json()["runs"]
    assert (run["pipeline"], run["state"]) == ("cron.nightly_export", "completed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--related", "run"], "ROLE=ID"),
        (["--payload", "{oops"], "--payload"),
        (["--occurred", "2026-11-24T08:00:00"], "occurred"),
    ],
)
def test_emit_refuses_bad_input_before_sending(args: list[str], message: str) -> None:
    port = free_port()  # nothing listens: a request would fail differently
    result = runner.invoke(
        app, ["emit", "run.started", "p", *args, "--server", f"http://127.0.0.1:{port}"]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_emit_reports_an_unreachable_server() -> None:
    port = free_port()
    result = runner.invoke(
        app, ["emit", "run.started", "p", "--server", f"http://127.0.0.1:{port}"]
    )
    assert result.exit_code == 1
    assert "cannot reach" in result.output


def test_jobs_run(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COPLANE_DATABASE_URL", db_url)
    ok = runner.invoke(app, ["jobs", "run", "maintain-events"])
    assert ok.exit_code == 0, ok.output
    assert "MaintenanceReport" in ok.output
    unknown = runner.invoke(app, ["jobs", "run", "nope"])
    assert unknown.exit_code == 2
    assert "maintain-events" in unknown.output


def test_server_refuses_a_bad_config_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "coplane.yaml"
    bad.write_text(
        "slas:\n  - name: x\n    kind: freshness\n    target: t\n    deadline: '61 9 * * *'\n"
    )
    result = runner.invoke(app, ["server", "--config", str(bad), "--port", str(free_port())])
    assert result.exit_code == 2
    assert f"{bad}:5: slas[0].deadline" in result.output


def test_printed_database_urls_hide_passwords() -> None:
    from coplane.cli.server import _without_password

    assert _without_password("postgresql://app:s3cret@db:5432/coplane") == (
        "postgresql://app:***@db:5432/coplane"
    )
    assert _without_password("postgresql://db:5432/coplane") == "postgresql://db:5432/coplane"
    assert _without_password("sqlite:////tmp/c.sqlite") == "sqlite:////tmp/c.sqlite"


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "coplane.internal"])
def test_server_refuses_to_listen_beyond_loopback_without_the_flag(host: str) -> None:
    result = runner.invoke(app, ["server", "--host", host, "--port", str(free_port())])
    assert result.exit_code == 2
    assert f"refusing to listen on {host}" in result.output
    assert "--insecure-no-auth" in result.output


def test_server_beyond_loopback_with_the_flag_starts_and_says_it_is_open(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "COPLANE_DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "coplane", "server", "--host", "0.0.0.0", "--port", str(port),
         "--insecure-no-auth"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0].decode()
    assert "open access" in output


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    from coplane.cli.server import is_loopback

    assert is_loopback(host) is loopback
