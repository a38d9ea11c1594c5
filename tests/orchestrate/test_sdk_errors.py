"""Bad declarations, bad user callbacks and broken surroundings: clear errors, or a flow that
runs on regardless."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from coplane import ThreadPoolTaskRunner, exponential_backoff, flow, get_run_logger, task
from coplane.client import CoplaneClient
from coplane.orchestrate.context import RunContext
from coplane.orchestrate.reporter import HttpReporter
from coplane.orchestrate.runners import runner_or_default
from tests.fake_http import Reply, Request, fake_service
from tests.orchestrate.sdk import collected, reporter_in_place


def test_decorating_something_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="@task decorates a function, not int"):
        task(3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="@flow decorates a function, not str"):
        flow("nightly")  # type: ignore[call-overload]


def test_bad_runner_options_are_refused() -> None:
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        ThreadPoolTaskRunner(max_workers=0)
    with pytest.raises(TypeError, match="is not a task runner"):
        runner_or_default(lambda: "threads")  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="base must be at least 0"):
        exponential_backoff(-1)

    @flow
    def plain() -> None:
        return None

    with pytest.raises(TypeError, match="unknown option log_print"):
        plain.with_options(log_print=True)


def test_map_needs_something_to_map_over() -> None:
    @task
    def single(x: int) -> int:
        return x

    @flow
    def mapping() -> None:
        single.map(5)

    with collected(), pytest.raises(ValueError, match=r"single\.map\(\): no iterable"):
        mapping()


def test_a_run_name_template_that_cannot_be_filled_falls_back_to_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @task(task_run_name="load-{tabel}")
    def load(table: str) -> str:
        return table

    @flow
    def loading() -> str:
        return load("sales")

    with collected() as reported:
        assert loading() == "sales"
    names = {e["payload"]["task_run_name"] for e in reported.events
             if e["resource"]["id"] == "sdk.loading.load"}  # fmt: skip
    assert names == {"load-1"}
    assert "task_run_name 'load-{tabel}' cannot be rendered" in caplog.text


def test_a_cache_key_fn_returning_a_non_string_fails_the_call_clearly(tmp_path: Path) -> None:
    def numeric(ctx: RunContext, parameters: dict[str, Any]) -> str | None:
        return 42  # type: ignore[return-value]

    @task(cache_key_fn=numeric, result_storage=str(tmp_path))
    def keyed() -> int:
        return 1

    @flow
    def keying() -> int:
        return keyed()

    with collected(), pytest.raises(TypeError, match="cache_key_fn returned 42"):
        keying()


def test_a_corrupt_stored_result_is_computed_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    @task(cache=True, result_storage=str(tmp_path))
    def compute() -> int:
        calls.append(1)
        return 7

    @flow
    def computing() -> int:
        return compute()

    with collected():
        assert computing() == 7
        [stored] = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
        stored.write_bytes(b'{"serializer": "pickle"}\nnot a pickle')
        assert computing() == 7
    assert len(calls) == 2
    assert "cached result unreadable" in caplog.text


def test_a_bad_server_url_is_logged_and_the_flow_runs(tmp_path: Path) -> None:
    script = tmp_path / "bad_url.py"
    script.write_text(textwrap.dedent("""
        from coplane import flow, task
        from coplane.orchestrate.reporter import get_reporter

        @task
        def one() -> int:
            return 1

        @flow
        def unbothered() -> int:
            return one()

        assert unbothered() == 1
        get_reporter().flush(2)
        print("done")
    """))
    env = {**os.environ, "COPLANE_URL": "ftp://coplane.internal"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout.split() == ["done"]
    assert "cannot make a client" in out.stderr and "ftp://coplane.internal" in out.stderr


def test_the_logs_endpoint_failing_drops_logs_with_a_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    def respond(request: Request) -> Reply:
        if request.path == "/api/logs":
            return Reply(503, {"detail": "the database is down"})
        return Reply(202, {"accepted": 1, "duplicates": 0})

    @flow
    def logging_flow() -> None:
        get_run_logger().info("kept locally only")

    caplog.set_level(logging.WARNING, "coplane.orchestrate.reporter")
    with fake_service(respond) as stub:
        shipper = HttpReporter(lambda: CoplaneClient(stub.url, spool_dir=tmp_path))
        with reporter_in_place(shipper):
            logging_flow()
            assert shipper.flush()
            logging_flow()  # a 503 is not a 404: logs are still tried
            assert shipper.flush()
        log_posts = [r for r in stub.requests if r.path == "/api/logs"]
    assert len(log_posts) == 4  # each batch tried twice (503 is transient)
    assert shipper.sent_logs == 0
    assert "1 log records dropped: answered 503" in caplog.text
