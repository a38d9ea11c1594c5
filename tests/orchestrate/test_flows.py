"""`@flow`: a flow run and its task runs as `run.*` events, subflows, errors, run logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import coplane
from coplane import flow, get_run_logger, task
from coplane.orchestrate import reporter as reporting
from coplane.orchestrate.context import get_run_context
from coplane.orchestrate.events import run_id, task_run_event
from coplane.orchestrate.reporter import NullReporter
from tests.orchestrate.sdk import collected, fold, names


@task
def double(x: int) -> int:
    return 2 * x


@task(tags=["etl", "daily"])
def explode(message: str) -> None:
    raise ValueError(message)


@flow(tags=["nightly"])
def pipeline(n: int) -> int:
    total = 0
    for i in range(n):
        total += double(i)
    return total


def test_a_flow_run_reports_itself_and_each_task_run_as_a_child_run() -> None:
    with collected() as reported:
        assert pipeline(3) == 6
    events = reported.events
    assert names(events, "sdk.pipeline") == ["run.started", "run.completed"]
    assert names(events, "sdk.pipeline.double") == ["run.started", "run.completed"] * 3
    started = events[0]
    assert started["payload"]["parameters"] == {"n": "3"}
    assert started["resource"]["labels"] == {"tags": "nightly"}
    assert {"role": "source", "id": "sdk"} in started["related"]
    assert events[-1]["payload"]["result"] == "6"
    assert events[-1]["payload"]["duration_s"] >= 0

    derived = fold(events)
    flow_run = next(r for r in derived.runs.values() if r.pipeline == "sdk.pipeline")
    tasks = [r for r in derived.runs.values() if r.pipeline == "sdk.pipeline.double"]
    assert flow_run.state == "completed" and flow_run.source == "sdk"
    assert len(tasks) == 3
    assert {t.parent_run for t in tasks} == {flow_run.id}
    assert all(t.state == "completed" for t in tasks)
    assert derived.resources["sdk.pipeline.double"].parent == "sdk.pipeline"
    assert derived.resources["sdk.pipeline.double"].kind == "task"
    first_task = next(e for e in events if e["resource"]["id"] == "sdk.pipeline.double")
    assert first_task["payload"]["parameters"] == {"x": "0"}


def test_event_ids_grow_with_time_and_name_one_event_only() -> None:
    """The server stores SDK events under ids that sort by time (fewer index pages touched
    per batch) yet are the same for the same event, so a resend is stored once."""
    with collected() as reported:
        pipeline(50)
    events = reported.events
    ids = [uuid.UUID(e["id"]) for e in events]
    assert {i.version for i in ids} == {7} and len(set(ids)) == len(ids)
    millis = [uuid.UUID(e["id"]).int >> 80 for e in sorted(events, key=lambda e: e["occurred"])]
    assert millis == sorted(millis)
    again = task_run_event_of(events[1])
    assert again["id"] == events[1]["id"]
    later = task_run_event_of({**events[1], "occurred": "2030-01-01T00:00:00+00:00"})
    assert later["id"] != events[1]["id"]


def task_run_event_of(event: dict[str, Any]) -> dict[str, Any]:
    """The same task event built again from what it says."""
    related = {r["role"]: r["id"] for r in event["related"]}
    return task_run_event(
        event["event"],
        flow_pipeline=related["parent"],
        flow_run_key=related["parent_run"],
        resource=event["resource"]["id"],
        task_name=event["resource"]["name"],
        run_key=related["run"],
        payload=event["payload"],
        labels={},
        occurred=event["occurred"],
    )


def test_a_task_error_fails_both_runs_with_its_traceback_and_reaches_the_caller() -> None:
    @flow
    def breaks() -> None:
        explode("the disk is full")

    with collected() as reported, pytest.raises(ValueError, match="the disk is full"):
        breaks()
    failed = [e for e in reported.events if e["event"] == "run.failed"]
    assert [e["resource"]["id"] for e in failed] == ["sdk.breaks.explode", "sdk.breaks"]
    error = failed[0]["payload"]["error"]
    assert error["message"] == "the disk is full" and error["type"] == "ValueError"
    assert "raise ValueError(message)" in error["traceback"]
    assert failed[0]["resource"]["labels"] == {"tags": "daily,etl"}
    derived = fold(reported.events)
    assert {r.state for r in derived.runs.values()} == {"failed"}
    assert {r.error for r in derived.runs.values()} == {"the disk is full"}


def test_a_flow_that_catches_a_task_error_completes() -> None:
    @flow
    def forgiving() -> str:
        try:
            explode("once")
        except ValueError:
            return "recovered"
        return "not reached"

    with collected() as reported:
        assert forgiving() == "recovered"
    assert names(reported.events, "sdk.forgiving") == ["run.started", "run.completed"]
    assert names(reported.events, "sdk.forgiving.explode") == ["run.started", "run.failed"]


def test_a_subflow_is_a_child_run_of_its_caller() -> None:
    @flow
    def child(x: int) -> int:
        return double(x)

    @flow
    def parent() -> int:
        return child(1) + child(2)

    with collected() as reported:
        assert parent() == 6
    derived = fold(reported.events)
    [parent_run] = [r for r in derived.runs.values() if r.pipeline == "sdk.parent"]
    children = [r for r in derived.runs.values() if r.pipeline == "sdk.child"]
    assert len(children) == 2 and {c.parent_run for c in children} == {parent_run.id}
    grandchildren = [r for r in derived.runs.values() if r.pipeline == "sdk.child.double"]
    assert {g.parent_run for g in grandchildren} == {c.id for c in children}


def test_the_run_context_names_the_stored_run_ids() -> None:
    seen: dict[str, Any] = {}

    @task
    def look() -> None:
        ctx = get_run_context()
        assert ctx is not None
        seen["task"] = (ctx.flow_run_id, ctx.pipeline_id, ctx.task_run_id)

    @flow
    def looking() -> None:
        ctx = get_run_context()
        assert ctx is not None and ctx.task_run_id is None
        seen["flow"] = (ctx.flow_run_id, ctx.pipeline_id, ctx.run_key)
        look()

    with collected() as reported:
        looking()
    flow_run_id, pipeline_id, run_key = seen["flow"]
    assert pipeline_id == "sdk.looking"
    assert flow_run_id == run_id("sdk.looking", run_key)
    derived = fold(reported.events)
    assert flow_run_id in derived.runs
    assert seen["task"][:2] == (flow_run_id, pipeline_id)
    assert seen["task"][2] in derived.runs
    assert derived.runs[seen["task"][2]].pipeline == "sdk.looking.look"
    assert get_run_context() is None


def test_without_a_server_a_flow_runs_the_same_and_reports_nothing(tmp_path: Path) -> None:
    script = tmp_path / "quiet.py"
    script.write_text(textwrap.dedent("""
        from coplane import flow, task
        from coplane.orchestrate.reporter import get_reporter

        @task
        def one() -> int:
            return 1

        @flow(log_prints=True)
        def quiet() -> int:
            print("printed")
            return one() + one()

        assert quiet() == 2
        print(type(get_reporter()).__name__)
    """))
    env = {k: v for k, v in os.environ.items() if k != "COPLANE_URL"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    assert out.stdout.split() == ["printed", "NullReporter"]
    assert out.stderr == ""


def test_log_prints_and_the_run_logger_give_records_of_the_run() -> None:
    @task(log_prints=True)
    def chatty(x: int) -> int:
        print("working on", x)
        get_run_logger().warning("x is %d", x)
        return x

    @flow(log_prints=True)
    def talk() -> None:
        print("flow says hi")
        get_run_logger().info("flow logged")
        chatty(7)

    with collected() as reported:
        talk()
        print("outside any run")
    ctx_ids = {e["resource"]["id"]: e for e in reported.events if e["event"] == "run.started"}
    flow_run = fold(reported.events)
    task_run_id = next(r.id for r in flow_run.runs.values() if r.pipeline == "sdk.talk.chatty")
    flow_run_id = next(r.id for r in flow_run.runs.values() if r.pipeline == "sdk.talk")
    assert "sdk.talk" in ctx_ids
    shipped = [(r["run_id"], r["task_run_id"], r["level"], r["message"]) for r in reported.logs]
    assert shipped == [
        (flow_run_id, None, "INFO", "flow says hi"),
        (flow_run_id, None, "INFO", "flow logged"),
        (flow_run_id, task_run_id, "INFO", "working on 7"),
        (flow_run_id, task_run_id, "WARNING", "x is 7"),
    ]
    record = reported.logs[0]
    assert record["logger"] == "coplane.runs"
    assert record["timestamp"].endswith("+00:00")
    assert all("outside" not in r["message"] for r in reported.logs)
    # logs never travel inside events
    assert all("flow says hi" not in str(e) for e in reported.events)


def test_prints_are_not_logged_without_log_prints(caplog: pytest.LogCaptureFixture) -> None:
    @flow
    def silent() -> None:
        print("just output")

    with collected() as reported:
        silent()
    assert reported.logs == []
    assert not [r for r in caplog.records if r.name == "coplane.runs"]


def test_the_null_reporter_is_used_without_coplane_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COPLANE_URL", raising=False)
    reporting.reset_reporter()
    try:
        assert isinstance(reporting.get_reporter(), NullReporter)
        assert pipeline(2) == 2
    finally:
        reporting.reset_reporter()


def test_a_task_called_outside_a_flow_is_a_plain_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with collected() as reported:
        assert double(4) == 8
    assert reported.events == []


def test_importing_coplane_does_not_load_the_sdk() -> None:
    # collectors import coplane; the SDK (and Dask, fsspec) load on first use of a name
    probe = ("import sys, coplane; "
             "print(sorted(m for m in ('coplane.orchestrate', 'distributed', 'fsspec') "
             "if m in sys.modules)); coplane.flow; print('coplane.orchestrate' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
    with pytest.raises(AttributeError, match="no attribute 'flows'"):
        coplane.__getattr__("flows")


def _run_keys(events: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for e in events for r in e["related"] if r["role"] == "run"}


def test_a_flow_a_worker_started_takes_its_run_key_and_causes_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @flow(name="nightly")
    def nightly() -> int:
        return 1

    monkeypatch.setenv("COPLANE_FLOW", "sdk.nightly")
    monkeypatch.setenv("COPLANE_FLOW_RUN_KEY", "claimed-key")
    monkeypatch.setenv("COPLANE_RELATED", '[{"role": "cause", "id": "automation:reload"}]')
    with collected() as first:
        nightly()
    assert _run_keys(first.events) == {"claimed-key"}
    causes = {r["id"] for e in first.events for r in e["related"] if r["role"] == "cause"}
    assert causes == {"automation:reload"}  # so the automation's own run never triggers it
    with collected() as second:  # a second call in the process is a run of its own
        nightly()
    assert _run_keys(second.events).isdisjoint({"claimed-key"})


@pytest.mark.parametrize("related", ["not json", '{"role": "cause"}', '[{"id": "x"}]'])
def test_causes_a_flow_cannot_read_are_left_out(
    monkeypatch: pytest.MonkeyPatch, related: str
) -> None:
    @flow(name="nightly")
    def nightly() -> int:
        return 1

    monkeypatch.setenv("COPLANE_FLOW", "sdk.nightly")
    monkeypatch.setenv("COPLANE_FLOW_RUN_KEY", "claimed-key")
    monkeypatch.setenv("COPLANE_RELATED", related)
    with collected() as reported:
        nightly()
    assert _run_keys(reported.events) == {"claimed-key"}
    assert not [r for e in reported.events for r in e["related"] if r["role"] == "cause"]


def test_another_flows_run_key_is_not_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    @flow(name="other")
    def other() -> int:
        return 1

    monkeypatch.setenv("COPLANE_FLOW", "sdk.nightly")
    monkeypatch.setenv("COPLANE_FLOW_RUN_KEY", "claimed-key")
    with collected() as reported:
        other()
    assert "claimed-key" not in _run_keys(reported.events)
    assert os.environ["COPLANE_FLOW_RUN_KEY"] == "claimed-key"  # left for the flow it names
