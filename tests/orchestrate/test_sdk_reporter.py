"""The reporter's batching: a run whose start and end are sent together is one event."""

from __future__ import annotations

from datetime import datetime

from coplane import flow, task
from coplane.orchestrate.reporter import coalesce
from tests.orchestrate.sdk import collected, fold


@task
def one(x: int) -> int:
    return x


@flow
def short(n: int) -> int:
    return sum(one(i) for i in range(n))


def test_a_start_and_end_sent_together_become_one_event_with_the_same_run() -> None:
    with collected() as reported:
        short(3)
    separate = fold(reported.events)
    merged_events = coalesce([dict(e) for e in reported.events])
    assert len(merged_events) == 4  # the flow run's and three task runs' ends
    assert {e["event"] for e in merged_events} == {"run.completed"}
    merged = fold(merged_events)
    for run_id, run in separate.runs.items():
        other = merged.runs[run_id]
        assert (other.state, other.started, other.ended, other.parent_run) == (
            run.state, run.started, run.ended, run.parent_run)  # fmt: skip
    task_end = next(e for e in merged_events if e["resource"]["id"] == "sdk.short.one")
    # the start's payload travels with the end: the parameters are not lost
    assert task_end["payload"]["parameters"] == {"x": "0"}
    assert datetime.fromisoformat(task_end["payload"]["started"]) <= datetime.fromisoformat(
        task_end["occurred"])  # fmt: skip


def test_a_start_sent_earlier_is_left_alone() -> None:
    with collected() as reported:
        short(1)
    starts = [e for e in reported.events if e["event"] == "run.started"]
    ends = [e for e in reported.events if e["event"] != "run.started"]
    assert coalesce(starts) == starts
    assert coalesce(ends) == ends
    assert all("started" not in e["payload"] for e in ends)
