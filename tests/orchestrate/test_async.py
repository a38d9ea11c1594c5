"""`async def` flows and tasks: the same runs and events as sync ones, on one event loop that
keeps running through retries, timeouts, concurrency slots and pauses."""

from __future__ import annotations

import asyncio
import itertools
import pickle
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest
from pydantic import BaseModel

from coplane import (
    DaskTaskRunner,
    ThreadPoolTaskRunner,
    apause_flow_run,
    flow,
    get_run_logger,
    task,
)
from coplane.client import CoplaneClient
from coplane.events.derive import Derived, run_uuid
from coplane.orchestrate.engine import TaskTimeoutError
from coplane.orchestrate.runners import TaskRunner
from coplane.orchestrate.tasks import AsyncTask, Task
from tests.conftest import LiveServer
from tests.factories import event_dict
from tests.orchestrate.sdk import collected, fold, names
from tests.orchestrate.support import deploy, run, start_run, wait_state


@task
async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@task
def increment(x: int) -> int:
    return x + 1


class Ticker:
    """A coroutine beside the flow's that counts its turns: proof that the loop was free."""

    def __init__(self) -> None:
        self.ticks = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            self.ticks += 1
            await asyncio.sleep(0.005)


async def beside(ticker: Ticker, work: Awaitable[Any]) -> Any:
    """`work`'s result, with the ticker running until it ends."""
    ticking = asyncio.create_task(ticker.run())
    try:
        return await work
    finally:
        ticker.stop.set()
        await ticking


def shape(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Each event's name, resource and run key without the flow run's own (a new UUID)."""
    return sorted((e["event"], e["resource"]["id"], e["related"][0]["id"].partition("/")[2])
                  for e in events)  # fmt: skip


def task_runs(derived: Derived, pipeline: str) -> list[Any]:
    return sorted((r for r in derived.runs.values() if r.pipeline == pipeline),
                  key=lambda r: r.run_key)  # fmt: skip


def test_the_decorators_decide_async_once_and_keep_it_through_with_options() -> None:
    assert isinstance(double, AsyncTask) and double.spec.is_async
    assert type(increment) is Task and not increment.spec.is_async
    renamed = double.with_options(name="twice")
    assert isinstance(renamed, AsyncTask) and renamed.spec.is_async

    @task
    async def local(x: int) -> int:  # pickled by value, as a closure shipping it would
        return x

    copied = pickle.loads(cloudpickle.dumps(local))
    assert isinstance(copied, AsyncTask) and copied.spec.is_async


def test_an_async_flow_reports_what_the_same_sync_flow_does() -> None:
    @task
    def sync_double(x: int) -> int:
        return 2 * x

    @flow(name="shaped")
    def shaped_sync(n: int) -> int:
        return increment(sum(sync_double(i) for i in range(n)))

    @flow(name="shaped")
    async def shaped_async(n: int) -> int:
        return increment(sum([await twice(i) for i in range(n)]))

    twice = double.with_options(name="sync_double")
    with collected() as sync_reported:
        assert shaped_sync(3) == 7
    with collected() as async_reported:
        assert asyncio.run(shaped_async(3)) == 7
    assert shape(async_reported.events) == shape(sync_reported.events)
    derived = fold(async_reported.events)
    [flow_run] = task_runs(derived, "sdk.shaped")
    tasks = [r for r in derived.runs.values() if r.pipeline != "sdk.shaped"]
    assert flow_run.state == "completed" and len(tasks) == 4
    assert all(t.state == "completed" and t.parent_run == flow_run.id for t in tasks)


def test_gathered_task_runs_each_have_the_flow_as_parent_and_their_own_logs() -> None:
    @task(task_run_name="fetch-{i}")
    async def fetch(i: int) -> int:
        # later calls finish first, so the runs interleave on the loop
        await asyncio.sleep(0.001 * (50 - i))
        get_run_logger().info("fetched %d", i)
        print(f"printed {i}")
        await asyncio.sleep(0)
        return i

    @flow(log_prints=True)
    async def fan_in(n: int) -> int:
        values = await asyncio.gather(*(fetch(i) for i in range(n)))
        get_run_logger().info("all fetched")
        return sum(values)

    with collected() as reported:
        assert asyncio.run(fan_in(50)) == sum(range(50))
    derived = fold(reported.events)
    [flow_run] = task_runs(derived, "sdk.fan_in")
    fetches = task_runs(derived, "sdk.fan_in.fetch")
    assert len(fetches) == 50
    assert all(r.state == "completed" and r.parent_run == flow_run.id for r in fetches)
    # numbered in the order the calls were written, whichever ended first
    started = [e for e in reported.events if e["event"] == "run.started"
               and e["resource"]["id"] == "sdk.fan_in.fetch"]  # fmt: skip
    assert {e["related"][0]["id"].split("/")[1]: e["payload"]["task_run_name"]
            for e in started} == {f"fetch-{i + 1}": f"fetch-{i}" for i in range(50)}  # fmt: skip
    task_run_ids = {e["payload"]["task_run_name"]: run_uuid(
        "sdk.fan_in.fetch", e["related"][0]["id"]) for e in started}  # fmt: skip
    for i in range(50):
        own = [log["message"] for log in reported.logs
               if log["task_run_id"] == task_run_ids[f"fetch-{i}"]]  # fmt: skip
        assert own == [f"fetched {i}", f"printed {i}"]
    flow_logs = [log for log in reported.logs if log["task_run_id"] is None]
    assert [log["message"] for log in flow_logs] == ["all fetched"]
    assert {log["run_id"] for log in reported.logs} == {flow_run.id}


def test_retries_wait_on_the_loop_while_other_coroutines_run() -> None:
    ticker = Ticker()
    ticks_at_try: list[int] = []

    @task(retries=3, retry_delay=0.05, retry_on=ConnectionError)
    async def fetch() -> str:
        ticks_at_try.append(ticker.ticks)
        if len(ticks_at_try) < 3:
            raise ConnectionError(f"try {len(ticks_at_try)} failed")
        return "ok"

    @flow
    async def retrying() -> str:
        return await fetch()

    with collected() as reported:
        assert asyncio.run(beside(ticker, retrying())) == "ok"
    assert len(ticks_at_try) == 3
    # the ticker went on between the tries: each retry delay left the loop free
    assert ticks_at_try[0] < ticks_at_try[1] < ticks_at_try[2]
    assert names(reported.events, "sdk.retrying.fetch") == [
        "run.started", "run.retrying", "run.started", "run.retrying", "run.started",
        "run.completed",
    ]  # fmt: skip
    retried = [e["payload"] for e in reported.events if e["event"] == "run.retrying"]
    assert [p["retry_in_s"] for p in retried] == [0.05, 0.05]
    assert [t.state for t in task_runs(fold(reported.events), "sdk.retrying.fetch")] == [
        "retrying", "retrying", "completed",
    ]  # fmt: skip


def test_an_error_retry_on_does_not_name_fails_at_once() -> None:
    tries: list[int] = []

    @task(retries=3, retry_on=ConnectionError)
    async def parse() -> None:
        tries.append(1)
        raise ValueError("not a number")

    @flow
    async def parsing() -> None:
        await parse()

    with collected() as reported, pytest.raises(ValueError, match="not a number"):
        asyncio.run(parsing())
    assert len(tries) == 1
    assert names(reported.events, "sdk.parsing.parse") == ["run.started", "run.failed"]
    assert names(reported.events, "sdk.parsing") == ["run.started", "run.failed"]


def test_a_timeout_cancels_the_coroutine_and_its_finally_runs() -> None:
    cleaned: list[int] = []

    @task(timeout=0.05, retries=1)
    async def hang() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(1)

    @flow
    async def hanging() -> None:
        await hang()

    with collected() as reported, pytest.raises(TaskTimeoutError, match=r"timed out after 0\.05 s"):
        asyncio.run(hanging())
    assert cleaned == [1, 1]  # each try was cancelled, not left running
    assert names(reported.events, "sdk.hanging.hang") == [
        "run.started", "run.retrying", "run.started", "run.failed",
    ]  # fmt: skip


def test_a_tasks_own_timeout_error_is_not_taken_for_its_timeout() -> None:
    @task(timeout=30)
    async def asks() -> None:
        raise TimeoutError("the upstream API timed out")

    @flow
    async def asking() -> None:
        await asks()

    with collected(), pytest.raises(TimeoutError, match="upstream API") as raised:
        asyncio.run(asking())
    assert not isinstance(raised.value, TaskTimeoutError)


def test_the_second_call_with_the_same_inputs_hits_the_cache(tmp_path: Path) -> None:
    calls: list[int] = []

    @task(cache=True, result_storage=str(tmp_path))
    async def expensive(x: int) -> int:
        calls.append(x)
        return x * 10

    @flow
    async def cached_twice() -> list[int]:
        return [await expensive(4), await expensive(4), await expensive(5)]

    with collected() as reported:
        assert asyncio.run(cached_twice()) == [40, 40, 50]
    assert calls == [4, 5]
    assert names(reported.events, "sdk.cached_twice.expensive") == [
        "run.started", "run.completed", "run.started", "run.cached", "run.started",
        "run.completed",
    ]  # fmt: skip
    states = [r.state for r in task_runs(fold(reported.events), "sdk.cached_twice.expensive")]
    assert sorted(states) == ["cached", "completed", "completed"]


def test_subflows_async_and_sync_are_child_runs_of_the_async_flow() -> None:
    @flow
    async def async_child(x: int) -> int:
        return await double(x)

    @flow
    def sync_child(x: int) -> int:
        return increment(x)

    @flow
    async def parent(x: int) -> int:
        return sync_child(await async_child(x))

    with collected() as reported:
        assert asyncio.run(parent(5)) == 11
    derived = fold(reported.events)
    [parent_run] = task_runs(derived, "sdk.parent")
    [async_run] = task_runs(derived, "sdk.async_child")
    [sync_run] = task_runs(derived, "sdk.sync_child")
    assert async_run.parent_run == parent_run.id and sync_run.parent_run == parent_run.id
    [doubled] = task_runs(derived, "sdk.async_child.double")
    [incremented] = task_runs(derived, "sdk.sync_child.increment")
    assert doubled.parent_run == async_run.id and incremented.parent_run == sync_run.id


def test_a_failing_async_task_fails_the_flow_that_does_not_catch_it() -> None:
    @task
    async def broken() -> None:
        raise RuntimeError("the warehouse is away")

    @flow
    async def careful() -> str:
        try:
            await broken()
        except RuntimeError:
            return "recovered"
        return "no error"

    @flow
    async def careless() -> None:
        await broken()

    with collected() as reported:
        assert asyncio.run(careful()) == "recovered"
        with pytest.raises(RuntimeError, match="warehouse is away"):
            asyncio.run(careless())
    assert names(reported.events, "sdk.careful") == ["run.started", "run.completed"]
    assert names(reported.events, "sdk.careless") == ["run.started", "run.failed"]


def test_outside_a_flow_an_async_task_is_its_plain_coroutine() -> None:
    with collected() as reported:
        assert asyncio.run(double(21)) == 42
    assert reported.events == []


def test_a_call_with_arguments_the_task_does_not_take_fails_its_flow() -> None:
    @flow
    async def miscalled() -> int:
        return await double(1, 2)  # type: ignore[call-arg]

    with collected(), pytest.raises(TypeError, match="too many positional arguments"):
        asyncio.run(miscalled())


def test_an_async_task_in_a_sync_flow_runs_through_asyncio_run_or_a_runner() -> None:
    @flow
    def sync_parent() -> list[int]:
        awaited = asyncio.run(double(1))  # the run context follows into asyncio.run
        return [awaited, double.submit(2).result(), *(f.result() for f in double.map([3, 4]))]

    with collected() as reported:
        assert sync_parent() == [2, 4, 6, 8]
    derived = fold(reported.events)
    [parent_run] = task_runs(derived, "sdk.sync_parent")
    runs = task_runs(derived, "sdk.sync_parent.double")
    assert len(runs) == 4 and all(r.parent_run == parent_run.id for r in runs)


RUNNERS: dict[str, Callable[[], TaskRunner]] = {
    "threads": lambda: ThreadPoolTaskRunner(max_workers=4),
    "dask": lambda: DaskTaskRunner(
        cluster_kwargs={"n_workers": 2, "processes": False, "dashboard_address": None}
    ),
}


@pytest.mark.parametrize("make", list(RUNNERS))
def test_submitted_and_mapped_async_tasks_run_on_the_runner(make: str) -> None:
    @flow(name="on_runner", task_runner=RUNNERS[make]())
    async def on_runner(n: int) -> tuple[list[int], int]:
        mapped = double.map(range(n))
        chained = double.submit(double.submit(1))
        return [f.result() for f in mapped], chained.result()

    with collected() as reported:
        values, chained = asyncio.run(on_runner(6))
    assert values == [2 * i for i in range(6)] and chained == 4
    derived = fold(reported.events)
    [flow_run] = task_runs(derived, "sdk.on_runner")
    runs = task_runs(derived, "sdk.on_runner.double")
    assert len(runs) == 8
    assert all(r.state == "completed" and r.parent_run == flow_run.id for r in runs)


def test_without_a_server_a_concurrency_limit_does_not_hold_the_task_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COPLANE_URL", raising=False)

    @task(concurrency="warehouse")
    async def load(i: int) -> int:
        return i

    @flow
    async def loads() -> list[int]:
        return list(await asyncio.gather(*(load(i) for i in range(3))))

    with collected():
        assert asyncio.run(loads()) == [0, 1, 2]


@pytest.mark.slow
def test_a_concurrency_limit_holds_gathered_runs_one_at_a_time_and_the_loop_runs_on(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = httpx.put(f"{live_server.url}/api/concurrency/warehouse", json={"limit": 1})
    assert created.status_code in (200, 201), created.text
    monkeypatch.setenv("COPLANE_URL", live_server.url)  # where the slots are asked for
    ticker = Ticker()
    spans: list[tuple[int, int]] = []

    @task(concurrency="warehouse")
    async def load(i: int) -> int:
        began = ticker.ticks
        await asyncio.sleep(0.1)
        spans.append((began, ticker.ticks))
        return i

    @flow
    async def loads() -> list[int]:
        return list(await asyncio.gather(*(load(i) for i in range(3))))

    with collected() as reported:
        assert asyncio.run(beside(ticker, loads())) == [0, 1, 2]
    spans.sort()
    # a limit of one: each run began after the one before it ended, though gathered together
    assert all(end <= later for (_, end), (later, _) in itertools.pairwise(spans))
    assert all(end > began for began, end in spans)  # the loop ran while each held its slot
    limit = httpx.get(f"{live_server.url}/api/concurrency").json()["limits"][0]
    assert limit["holders"] == [], "every slot was given back"
    assert len(task_runs(fold(reported.events), "sdk.loads.load")) == 3


class Approval(BaseModel):
    approver: str


@pytest.mark.slow
def test_apause_flow_run_waits_on_the_loop_until_resumed(live_server: LiveServer) -> None:
    pipeline = "sdk.approve"
    run_id = run_uuid(pipeline, "r1")
    started = event_dict("run.started", pipeline, run="r1", related=[{"role": "source",
                                                                      "id": "sdk"}])  # fmt: skip
    httpx.post(f"{live_server.url}/api/events", json=[started]).raise_for_status()
    ticker = Ticker()

    async def resume_once_paused() -> None:
        while True:
            pause = await asyncio.to_thread(
                httpx.get, f"{live_server.url}/api/runs/{run_id}/pause", timeout=10
            )
            if pause.status_code == 200 and pause.json()["state"] == "paused":
                break
            await asyncio.sleep(0.05)
        ticks = ticker.ticks
        await asyncio.sleep(0.1)
        assert ticker.ticks > ticks, "the loop stood still while paused"
        resumed = await asyncio.to_thread(
            httpx.post, f"{live_server.url}/api/runs/{run_id}/resume",
            json={"input": {"approver": "ana"}}, timeout=10,
        )  # fmt: skip
        assert resumed.status_code == 200, resumed.text

    async def both() -> Approval | None:
        with CoplaneClient(live_server.url) as client:
            paused = apause_flow_run(timeout=60, wait_for_input=Approval, run_id=run_id,
                                     pipeline_id=pipeline, client=client, poll_s=0.05)  # fmt: skip
            got, _ = await asyncio.gather(paused, resume_once_paused())
            return got

    assert asyncio.run(beside(ticker, both())) == Approval(approver="ana")


ASYNC_FLOWS = """
import asyncio
from coplane import flow, task

@task
async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x

@flow
async def doubling(n: int) -> int:
    total = sum(await asyncio.gather(*(double(i) for i in range(n))))
    print("total", total)
    return total
"""


@pytest.mark.slow
def test_a_deployment_runs_an_async_flow_and_its_task_runs_land_on_the_run(
    live_server: LiveServer, tmp_path: Path
) -> None:
    folder = tmp_path / "async_flows"
    folder.mkdir()
    (folder / "flows.py").write_text(ASYNC_FLOWS)
    deploy(live_server, folder.resolve(), "doubling", "doubling")
    run_id = start_run(live_server, "doubling", n=3)
    wait_state(live_server, run_id, "completed", "failed", timeout=60)
    done = run(live_server, run_id)
    assert done["state"] == "completed", done
    assert done["pipeline"] == "sdk.doubling"
    assert sorted(t["pipeline"] for t in done["tasks"]) == ["sdk.doubling.double"] * 3


def test_the_run_context_does_not_leak_out_of_an_async_flow() -> None:
    from coplane.orchestrate.context import get_run_context

    seen: list[object] = []

    @flow
    async def contained() -> None:
        seen.append(get_run_context())

    async def outside() -> None:
        await contained()
        seen.append(get_run_context())

    with collected():
        asyncio.run(outside())
    assert seen[0] is not None and seen[1] is None
