"""`coplane cron wrap` around real commands, reporting to a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coplane.client import PING_BODY_MAX
from tests.conftest import LiveServer, free_port, sqlite_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real `coplane server` on SQLite for the module; each test has its own slug."""
    with sqlite_server(tmp_path_factory.mktemp("cron-server")) as live:
        yield live


def new_slug() -> str:
    return f"job-{uuid.uuid4().hex[:8]}"


def wrap_args(slug: str, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable, "-m", "coplane", "cron", "wrap", "--slug", slug, "--create", *options,
        "--", *command,
    ]  # fmt: skip


def env_for(url: str) -> dict[str, str]:
    return {**os.environ, "COPLANE_URL": url}


def wrap(url: str, slug: str, *command: str, options: tuple[str, ...] = ()) -> Any:
    return subprocess.run(
        wrap_args(slug, *command, options=options),
        env=env_for(url),
        capture_output=True,
        timeout=60,
    )


def the_run(server: LiveServer, slug: str) -> dict[str, Any]:
    """The one run of `cron.<slug>`, with its events."""
    runs = httpx.get(f"{server.url}/api/runs", params={"pipeline": f"cron.{slug}"}).json()
    [run] = runs["runs"]
    detail: dict[str, Any] = httpx.get(f"{server.url}/api/runs/{run['id']}").json()
    return detail


def test_success_passes_output_through_and_completes_the_run(server: LiveServer) -> None:
    slug = new_slug()
    done = wrap(server.url, slug, "sh", "-c", "echo hello; echo oops >&2")
    assert done.returncode == 0
    assert done.stdout == b"hello\n"
    assert done.stderr == b"oops\n"  # nothing of the wrapper's own
    run = the_run(server, slug)
    assert run["state"] == "completed" and run["pipeline"] == f"cron.{slug}"
    start, end = run["events"]
    assert (start["event"], end["event"]) == ("run.started", "run.completed")
    assert start["payload"]["rid"] == end["payload"]["rid"] == run["run_key"]
    assert end["payload"]["exit_code"] == 0
    assert "hello\n" in end["payload"]["log"] and "oops\n" in end["payload"]["log"]


def test_failure_passes_the_exit_code_through(server: LiveServer) -> None:
    slug = new_slug()
    done = wrap(server.url, slug, "sh", "-c", "echo boom; exit 3")
    assert done.returncode == 3
    assert done.stdout == b"boom\n"
    run = the_run(server, slug)
    assert run["state"] == "failed"
    assert run["error"] == "exit code 3\nboom"


def test_timeout_kills_the_command_and_exits_124(server: LiveServer) -> None:
    slug = new_slug()
    began = time.monotonic()
    done = wrap(server.url, slug, "sleep", "30", options=("--timeout", "1"))
    assert done.returncode == 124
    assert time.monotonic() - began < 15
    assert b"longer than 1 s" in done.stderr
    run = the_run(server, slug)
    assert run["state"] == "failed" and run["error"].startswith("exit code 124")


def test_sigterm_to_the_wrapper_reaches_the_command(server: LiveServer, tmp_path: Path) -> None:
    slug = new_slug()
    pidfile = tmp_path / "pid"
    command = ("sh", "-c", f"echo $$ > {pidfile}; exec sleep 30")
    wrapper = subprocess.Popen(
        wrap_args(slug, *command),
        env=env_for(server.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline, "the command did not start"
            time.sleep(0.05)
        child = int(pidfile.read_text())
        wrapper.send_signal(signal.SIGTERM)
        _, stderr = wrapper.communicate(timeout=15)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
    assert wrapper.returncode == 128 + signal.SIGTERM
    assert b"killed by SIGTERM" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    run = the_run(server, slug)
    assert run["state"] == "failed" and run["error"].startswith("exit code 143")


def test_a_command_that_is_not_found_exits_127(server: LiveServer) -> None:
    slug = new_slug()
    done = wrap(server.url, slug, "coplane-no-such-command", "--flag")
    assert done.returncode == 127
    assert b"coplane-no-such-command" in done.stderr
    run = the_run(server, slug)
    assert run["state"] == "failed" and run["error"].startswith("exit code 127")
    assert "coplane-no-such-command" in run["error"]


def test_a_command_that_is_not_executable_exits_126(server: LiveServer, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\necho hi\n")  # not chmod +x
    done = wrap(server.url, new_slug(), str(script))
    assert done.returncode == 126
    assert str(script).encode() in done.stderr


def test_an_unreachable_server_does_not_stop_the_command() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = wrap(url, new_slug(), "sh", "-c", "echo hi; exit 5")
    assert done.returncode == 5
    assert done.stdout == b"hi\n"
    [warning] = done.stderr.decode().splitlines()  # one line, however many pings failed
    assert "warning" in warning and url in warning


def test_only_the_last_100_kb_of_output_is_sent(server: LiveServer) -> None:
    slug = new_slug()
    program = "import sys; sys.stdout.write('x' * 150000 + '\\n'); sys.stderr.write('END\\n')"
    done = wrap(server.url, slug, sys.executable, "-c", program)
    assert done.returncode == 0
    assert len(done.stdout) == 150_001 and done.stderr == b"END\n"  # passed through whole
    [_, end] = the_run(server, slug)["events"]
    log = end["payload"]["log"]
    assert len(log) == PING_BODY_MAX and log.endswith("x\nEND\n")
