"""Task options: retries with backoff and `retry_on`, timeouts, run names, tags, assets."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import pytest

from coplane import exponential_backoff, flow, task
from coplane.orchestrate.engine import TaskTimeoutError
from coplane.orchestrate.retries import RetryPolicy
from tests.orchestrate.sdk import collected, fold, names


class Flaky:
    """Fails with `error` the first `failures` calls."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"try {self.calls} failed")
        return "ok"


def _times(events: list[dict[str, Any]], resource: str, name: str) -> list[datetime]:
    return [datetime.fromisoformat(e["occurred"]) for e in events
            if e["resource"]["id"] == resource and e["event"] == name]  # fmt: skip


def test_retries_wait_the_backoff_and_each_try_is_a_child_run() -> None:
    flaky = Flaky(2)

    @task(retries=3, retry_delay=[0.1, 0.3])
    def fetch() -> str:
        return flaky()

    @flow
    def retrying() -> str:
        return fetch()

    with collected() as reported:
        assert retrying() == "ok"
    assert flaky.calls == 3
    resource = "sdk.retrying.fetch"
    assert names(reported.events, resource) == [
        "run.started", "run.retrying", "run.started", "run.retrying", "run.started",
        "run.completed",
    ]  # fmt: skip
    retried = [e for e in reported.events if e["event"] == "run.retrying"]
    assert [e["payload"]["try_number"] for e in retried] == [1, 2]
    assert [e["payload"]["retry_in_s"] for e in retried] == [0.1, 0.3]
    assert retried[0]["payload"]["error"]["message"] == "try 1 failed"
    # each wait is at least its delay: the next try starts after it
    ends = _times(reported.events, resource, "run.retrying")
    starts = _times(reported.events, resource, "run.started")
    assert (starts[1] - ends[0]).total_seconds() >= 0.1
    assert (starts[2] - ends[1]).total_seconds() >= 0.3
    tries = sorted((r for r in fold(reported.events).runs.values() if r.pipeline == resource),
                   key=lambda r: r.run_key)  # fmt: skip
    assert [t.state for t in tries] == ["retrying", "retrying", "completed"]
    assert [t.run_key.rsplit("/", 1)[1] for t in tries] == ["1", "2", "3"]


def test_retries_run_out_and_the_last_try_fails() -> None:
    flaky = Flaky(5)

    @task(retries=2)
    def fetch() -> str:
        return flaky()

    @flow
    def gives_up() -> str:
        return fetch()

    with collected() as reported, pytest.raises(ConnectionError, match="try 3 failed"):
        gives_up()
    assert flaky.calls == 3
    assert names(reported.events, "sdk.gives_up.fetch")[-1] == "run.failed"


def test_retry_on_retries_only_the_named_errors() -> None:
    transient, permanent = Flaky(1, ConnectionError), Flaky(1, KeyError)

    @task(retries=3, retry_on=[ConnectionError, TimeoutError])
    def network() -> str:
        return transient()

    @task(retries=3, retry_on=ConnectionError)
    def lookup() -> str:
        return permanent()

    @flow
    def selective() -> None:
        assert network() == "ok"
        lookup()

    with collected() as reported, pytest.raises(KeyError):
        selective()
    assert transient.calls == 2 and permanent.calls == 1
    assert names(reported.events, "sdk.selective.lookup") == ["run.started", "run.failed"]


def test_exponential_backoff_with_jitter_gives_growing_delays() -> None:
    assert exponential_backoff(2)(4) == [2, 4, 8, 16]
    policy = RetryPolicy.build(3, exponential_backoff(1), 0.5, None)
    assert policy.delays == (1.0, 2.0, 4.0)
    for try_number, base in [(1, 1.0), (2, 2.0), (3, 4.0)]:
        delay = policy.delay(try_number)
        assert base <= delay <= base * 1.5
    # past the list, the last delay repeats
    assert RetryPolicy.build(4, 5, None, None).delay(4) == 5.0


def test_a_task_over_its_timeout_fails_with_a_timeout_error() -> None:
    release = threading.Event()

    @task(timeout=0.2)
    def stuck() -> str:
        release.wait(30)
        return "late"

    @flow
    def waits() -> str:
        return stuck()

    with collected() as reported, pytest.raises(TaskTimeoutError, match=r"after 0\.2 s"):
        waits()
    release.set()  # the abandoned thread ends now; its result is discarded
    [failed] = [e for e in reported.events if e["event"] == "run.failed"
                and e["resource"]["id"] == "sdk.waits.stuck"]  # fmt: skip
    assert failed["payload"]["error"]["type"] == "TaskTimeoutError"


def test_a_timed_out_try_is_retried() -> None:
    calls = []

    @task(timeout=0.2, retries=1)
    def slow_once() -> str:
        calls.append(1)
        if len(calls) == 1:
            threading.Event().wait(1)
        return "ok"

    @flow
    def patient() -> str:
        return slow_once()

    with collected():
        assert patient() == "ok"
    assert len(calls) == 2


def test_run_names_tags_and_assets_are_reported() -> None:
    @task(name="load", task_run_name="load-{table}", tags=["warehouse"],
          inputs=["s3.raw.sales"], outputs=["warehouse.sales"])  # fmt: skip
    def load_table(table: str) -> int:
        return 42

    @flow(flow_run_name="nightly-{day}")
    def nightly(day: str) -> int:
        return load_table("sales")

    with collected() as reported:
        nightly("2026-12-04")
    flow_started = reported.events[0]
    assert flow_started["payload"]["flow_run_name"] == "nightly-2026-12-04"
    task_events = [e for e in reported.events if e["resource"]["id"] == "sdk.nightly.load"]
    assert {e["payload"]["task_run_name"] for e in task_events} == {"load-sales"}
    assert task_events[0]["resource"]["labels"] == {"tags": "warehouse"}
    [updated] = [e for e in reported.events if e["event"] == "asset.updated"]
    assert updated["resource"]["id"] == "warehouse.sales"
    derived = fold(reported.events)
    assert derived.assets["warehouse.sales"].producer == "sdk.nightly.load"
    task_run = next(r for r in derived.runs.values() if r.pipeline == "sdk.nightly.load")
    assert derived.assets["warehouse.sales"].run_id == task_run.id
    assert set(derived.edges) == {("s3.raw.sales", "sdk.nightly.load"),
                                  ("sdk.nightly.load", "warehouse.sales")}  # fmt: skip


def test_a_failed_task_run_updates_no_asset() -> None:
    @task(outputs=["warehouse.sales"])
    def load() -> None:
        raise RuntimeError("no")

    @flow
    def failing() -> None:
        load()

    with collected() as reported, pytest.raises(RuntimeError):
        failing()
    assert not [e for e in reported.events if e["event"] == "asset.updated"]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"retry_delay": [1, -2]}, "retry_delay"),
        ({"retry_delay": "soon"}, "retry_delay"),
        ({"retry_jitter_factor": -1}, "retry_jitter_factor"),
        ({"retry_on": [ValueError, "KeyError"]}, "retry_on"),
        ({"timeout": 0}, "timeout"),
        ({"cache_expiration": -5}, "cache_expiration"),
        ({"outputs": [""]}, "outputs"),
        ({"inputs": [3]}, "inputs"),
        ({"result_serializer": "yaml"}, "result_serializer"),
    ],
)
def test_a_bad_option_is_refused_when_the_task_is_declared(
    options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        task(**options)(lambda: None)


def test_with_options_refuses_an_unknown_option() -> None:
    @task
    def plain() -> None:
        return None

    assert plain.with_options(retries=2).spec.retry.retries == 2
    with pytest.raises(TypeError, match="retires"):
        plain.with_options(retires=2)
