"""submit, map, wait and as_completed on the thread pool and on a real Dask LocalCluster."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from coplane import (
    DaskTaskRunner,
    ThreadPoolTaskRunner,
    as_completed,
    flow,
    task,
    unmapped,
    wait,
)
from coplane.orchestrate.engine import UpstreamFailed
from coplane.orchestrate.runners import TaskRunner
from tests.orchestrate.sdk import collected, fold


@task
def inc(x: int, by: int = 1) -> int:
    return x + by


@task
def total(values: list[int]) -> int:
    return sum(values)


@task
def fails(x: int) -> int:
    raise ValueError(f"bad {x}")


@task
def pid() -> int:
    return os.getpid()


@task
def late() -> None:
    time.sleep(0.2)


RUNNERS: dict[str, Callable[[], TaskRunner]] = {
    "threads": lambda: ThreadPoolTaskRunner(max_workers=4),
    "dask": lambda: DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "processes": False, "dashboard_address": None}
    ),
}


@pytest.fixture(params=list(RUNNERS))
def runner(request: pytest.FixtureRequest) -> TaskRunner:
    return RUNNERS[request.param]()


def fan_out(runner: TaskRunner) -> Any:
    @flow(name="fan_out", task_runner=runner)
    def fanning(n: int) -> tuple[list[int], int, int]:
        futures = inc.map(range(n), by=unmapped(10))
        summed = total.submit(futures)  # futures inside a list are resolved first
        chained = inc.submit(inc.submit(1))
        return [f.result() for f in futures], summed.result(), chained.result()

    return fanning


def test_map_and_submit_pass_data_and_report_every_task_run(runner: TaskRunner) -> None:
    with collected() as reported:
        values, summed, chained = fan_out(runner)(20)
    assert values == [i + 10 for i in range(20)]
    assert summed == sum(values) and chained == 3
    derived = fold(reported.events)
    [flow_run] = [r for r in derived.runs.values() if r.pipeline == "sdk.fan_out"]
    tasks = [r for r in derived.runs.values() if r.pipeline != "sdk.fan_out"]
    assert len(tasks) == 20 + 1 + 2
    assert all(t.state == "completed" and t.parent_run == flow_run.id for t in tasks)
    assert flow_run.state == "completed"
    # map numbers its runs in order: call n got element n-1
    started = {e["related"][0]["id"]: e for e in reported.events
               if e["event"] == "run.started" and e["resource"]["id"] == "sdk.fan_out.inc"}
    by_call = {key.split("/")[1]: e["payload"]["parameters"]["x"] for key, e in started.items()}
    assert all(by_call[f"inc-{i + 1}"] == str(i) for i in range(20))


def test_the_events_are_the_same_on_both_runners() -> None:
    def shape(make: str) -> list[tuple[str, str, str]]:
        with collected() as reported:
            fan_out(RUNNERS[make]())(5)
        # run keys without the flow run's own (a new UUID each run)
        return sorted((e["event"], e["resource"]["id"], e["related"][0]["id"].partition("/")[2])
                      for e in reported.events)  # fmt: skip

    threads, dask = shape("threads"), shape("dask")
    assert threads == dask


def test_a_failed_upstream_fails_its_dependents_without_running_them(
    runner: TaskRunner,
) -> None:
    @flow(name="upstream", task_runner=runner)
    def upstream() -> tuple[Any, Any]:
        bad = fails.submit(1)
        after = inc.submit(bad)
        waited = inc.submit(5, wait_for=[bad])
        return after, waited

    with collected() as reported:
        after, waited = upstream()
    with pytest.raises(UpstreamFailed, match="bad 1"):
        after.result()
    with pytest.raises(UpstreamFailed):
        waited.result()
    assert after.state == "failed"
    inc_events = [e for e in reported.events if e["resource"]["id"] == "sdk.upstream.inc"]
    assert [e["event"] for e in inc_events] == ["run.failed", "run.failed"]
    assert all(e["payload"]["upstream_failed"] for e in inc_events)
    # the flow itself did not look at the failures: it completed
    assert [e["event"] for e in reported.events if e["resource"]["id"] == "sdk.upstream"] == [
        "run.started", "run.completed"]  # fmt: skip


GATE = threading.Event()


@task
def slow() -> str:
    GATE.wait(30)
    return "slow"


@task
def quick() -> str:
    return "quick"


def test_wait_and_as_completed(runner: TaskRunner) -> None:
    GATE.clear()

    @flow(name="ordering", task_runner=runner)
    def ordering() -> list[str]:
        held = slow.submit()
        fast = quick.submit()
        assert fast.wait()  # so that what follows does not depend on how busy the machine is
        done, not_done = wait([held, fast], timeout=0.2)
        assert done == {fast} and not_done == {held}
        order = []
        for i, future in enumerate(as_completed([held, fast])):
            order.append(future.result())
            if i == 0:
                GATE.set()
        return order

    with collected():
        assert ordering() == ["quick", "slow"]


def test_submit_outside_a_flow_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"inc\.submit\(\) is called inside a flow"):
        inc.submit(1)

    @flow
    def uneven() -> None:
        inc.map([1, 2], [3])

    with collected(), pytest.raises(ValueError, match="differ in length"):
        uneven()


def test_the_flow_waits_for_every_submitted_task_run(runner: TaskRunner) -> None:
    @flow(name="leaves_early", task_runner=runner)
    def leaves_early() -> None:
        late.submit()  # never waited for by the flow's code

    with collected() as reported:
        leaves_early()
    assert [e["event"] for e in reported.events][-2:] == ["run.completed", "run.completed"]
    assert reported.events[-1]["resource"]["id"] == "sdk.leaves_early"


@pytest.mark.slow
def test_task_runs_on_real_worker_processes_report_the_same(tmp_path: Any) -> None:
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": True,
                                            "threads_per_worker": 1,
                                            "dashboard_address": None})  # fmt: skip

    @flow(name="processes", task_runner=runner)
    def on_processes() -> tuple[list[int], set[int]]:
        values = [f.result() for f in inc.map(range(6))]
        pids = {f.result() for f in [pid.submit() for _ in range(8)]}
        return values, pids

    with collected() as reported:
        values, pids = on_processes()
    assert values == [1, 2, 3, 4, 5, 6]
    assert os.getpid() not in pids  # they ran elsewhere
    # the workers had no server to report to: their events came back with the results
    derived = fold(reported.events)
    tasks = [r for r in derived.runs.values() if r.pipeline != "sdk.processes"]
    assert len(tasks) == 14 and all(t.state == "completed" for t in tasks)
