"""Derivation is a join over events: order and repetition never change the result."""

from __future__ import annotations

import itertools
import uuid

from coplane.events.derive import RUN_NAMESPACE, derive, run_uuid
from tests.factories import at, event_dict, events

PIPE = "airflow.prod.sales"


def _run_events() -> list[dict[str, object]]:
    return [
        event_dict("run.scheduled", PIPE, minutes=-5, run="r1"),
        event_dict("run.started", PIPE, minutes=0, run="r1"),
        event_dict("run.heartbeat", PIPE, minutes=3, run="r1"),
        event_dict("run.failed", PIPE, minutes=7, run="r1", payload={"error": "boom"}),
    ]


def test_any_order_gives_the_same_run() -> None:
    results = set()
    for order in itertools.permutations(_run_events()):
        run = derive(events(*order)).runs[run_uuid(PIPE, "r1")]
        results.add((run.state, run.scheduled, run.started, run.ended, run.error))
    assert results == {("failed", at(-5), at(0), at(7), "boom")}


def test_completed_before_started_gives_both_times() -> None:
    d = derive(
        events(
            event_dict("run.completed", PIPE, minutes=9, run="r1"),
            event_dict("run.started", PIPE, minutes=1, run="r1"),
        )
    )
    run = d.runs[run_uuid(PIPE, "r1")]
    assert (run.state, run.started, run.ended) == ("completed", at(1), at(9))


def test_task_implies_its_pipeline_run_is_running() -> None:
    d = derive(
        events(
            event_dict(
                "run.started",
                f"{PIPE}.extract",
                minutes=2,
                run="t1",
                related=[{"role": "parent", "id": PIPE}, {"role": "parent_run", "id": "r1"}],
            )
        )
    )
    parent = d.runs[run_uuid(PIPE, "r1")]
    task = d.runs[run_uuid(f"{PIPE}.extract", "t1")]
    assert task.parent_run == parent.id
    assert (parent.state, parent.started) == ("running", at(2))
    assert d.resources[f"{PIPE}.extract"].kind == "task"
    assert d.resources[f"{PIPE}.extract"].parent == PIPE


def test_inputs_and_outputs_become_edges() -> None:
    d = derive(
        events(
            event_dict(
                "run.completed",
                PIPE,
                run="r1",
                related=[
                    {"role": "input", "id": "raw.orders"},
                    {"role": "output", "id": "wh.sales"},
                ],
            )
        )
    )
    assert set(d.edges) == {("raw.orders", PIPE), (PIPE, "wh.sales")}
    assert d.resources["raw.orders"].kind == "asset"


def test_latest_asset_update_and_check_win() -> None:
    producer = [{"role": "producer", "id": PIPE}]
    d = derive(
        events(
            event_dict("asset.updated", "wh.sales", minutes=5, related=producer, run="r2"),
            event_dict("asset.updated", "wh.sales", minutes=1, related=producer, run="r1"),
            event_dict(
                "check.failed", "wh.sales", minutes=6, payload={"check": "not_null", "column": "id"}
            ),
            event_dict(
                "check.passed", "wh.sales", minutes=2, payload={"check": "not_null", "column": "id"}
            ),
        )
    )
    asset = d.assets["wh.sales"]
    assert (asset.updated, asset.producer, asset.run_id) == (at(5), PIPE, run_uuid(PIPE, "r2"))
    check = d.checks[("wh.sales", "not_null(id)")]
    assert (check.passed, check.at) == (False, at(6))
    assert ("wh.sales", PIPE) not in d.edges and (PIPE, "wh.sales") in d.edges


def test_run_ids_are_uuid5_of_pipeline_and_key() -> None:
    for pipeline, key in [("airflow.prod.sales", "manual__2026-11-24"), ("ü/∂", ""), ("a", "b\nc")]:
        expected = uuid.uuid5(RUN_NAMESPACE, f"{pipeline}\n{key}")
        assert run_uuid(pipeline, key) == str(expected)


def test_a_terminal_event_may_say_when_the_run_started() -> None:
    started = at(2).isoformat()
    d = derive(events(
        event_dict("run.completed", PIPE, minutes=4, run="r1", payload={"started": started}),
        event_dict("run.failed", PIPE, minutes=5, run="r2", payload={"started": "not a time"}),
    ))  # fmt: skip
    one = d.runs[run_uuid(PIPE, "r1")]
    assert (one.state, one.started, one.ended) == ("completed", at(2), at(4))
    assert d.runs[run_uuid(PIPE, "r2")].started is None  # an unreadable time is ignored
