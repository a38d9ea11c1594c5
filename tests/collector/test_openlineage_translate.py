"""OpenLineage RunEvents, DatasetEvents and JobEvents become the coplane events users see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coplane.collector.openlineage import translate_openlineage
from coplane.events.model import Event, EventDecodeError, decode_events, encode_json
from coplane.events.names import (
    ROLE_INPUT,
    ROLE_OUTPUT,
    ROLE_PARENT,
    ROLE_PARENT_RUN,
    ROLE_PRODUCER,
    ROLE_RUN,
    ROLE_SOURCE,
)

# What Airflow 3.3.2 with the OpenLineage provider 2.20.3 really sent for one `dags test`.
SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "airflow-3.3-openlineage-events.jsonl"
RUN_ID = "3f1b6c2a-9d4e-4f8a-b1c7-5e2d8a9f0b13"
PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.20.0/client/python"
DAG_RUN_ID = "01a209e1-abfd-71b2-ad6f-056e55404340"
AIRFLOW_RUN_ID = "manual__2026-11-23T19:28:35.686677+00:00"  # the DAG run's run_id


def run_event(
    event_type: str | None = "START",
    *,
    run_id: str = RUN_ID,
    event_time: str = "2024-05-01T10:00:00+00:00",
    namespace: str = "warehouse",
    name: str = "nightly",
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    run_facets: object = None,
    job_facets: object = None,
    producer: str = PRODUCER,
) -> dict[str, Any]:
    """An OpenLineage RunEvent as a producer would send it."""
    event: dict[str, Any] = {
        "eventTime": event_time,
        "run": {"runId": run_id, "facets": run_facets if run_facets is not None else {}},
        "job": {
            "namespace": namespace,
            "name": name,
            "facets": job_facets if job_facets is not None else {},
        },
        "inputs": inputs or [],
        "outputs": outputs or [],
        "producer": producer,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    if event_type is not None:
        event["eventType"] = event_type
    return event


def dataset(name: str, namespace: str = "postgres://db:5432", **facets: Any) -> dict[str, Any]:
    """An OpenLineage dataset; keyword arguments become its facet containers."""
    return {"namespace": namespace, "name": name, **facets}


def only(events: list[Event], name: str) -> list[Event]:
    """The events called `name`."""
    return [e for e in events if e.event == name]


def load_samples() -> list[dict[str, Any]]:
    """The five events a real Airflow 3.3 sent."""
    if not SAMPLES.is_file():
        pytest.fail(f"sample OpenLineage events not found at {SAMPLES}")
    return [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]


def test_airflow_task_events_are_tasks_under_their_dag() -> None:
    samples = load_samples()
    assert len(samples) == 5
    translated = [translate_openlineage(s) for s in samples]
    task_events = [events[0] for events in translated[:4]]

    # named as coplane's Airflow plugin names them, so that their reports merge
    assert [(e.event, e.resource.id) for e in task_events] == [
        ("run.started", "airflow.feas.feas_ok_dag.a"),
        ("run.completed", "airflow.feas.feas_ok_dag.a"),
        ("run.started", "airflow.feas.feas_ok_dag.b"),
        ("run.completed", "airflow.feas.feas_ok_dag.b"),
    ]
    for e in task_events:
        assert e.resource.kind == "task"
        parent = e.first_related(ROLE_PARENT)
        assert parent is not None
        assert (parent.id, parent.kind, parent.name) == (
            "airflow.feas.feas_ok_dag",
            "pipeline",
            "feas_ok_dag",
        )
        parent_run = e.first_related(ROLE_PARENT_RUN)
        assert parent_run is not None
        assert parent_run.id == AIRFLOW_RUN_ID  # the DAG run's run_id, as the plugin keys it
        source = e.first_related(ROLE_SOURCE)
        assert source is not None
        assert source.id == "airflow"

    first = task_events[0]
    run = first.first_related(ROLE_RUN)
    assert run is not None
    assert run.id == f"{AIRFLOW_RUN_ID}/a/1"  # run_id/task_id/try_number
    assert first.resource.name == "feas_ok_dag.a"
    assert first.resource.labels == {
        "namespace": "feas",
        "owners": "airflow",
        "job_type": "TASK",
        "integration": "AIRFLOW",
    }
    assert first.payload["airflow"] == {
        "dag_id": "feas_ok_dag",
        "run_id": "manual__2026-11-23T19:28:35.686677+00:00",
        "task_id": "a",
        "try_number": 1,
    }
    assert first.payload["nominal_start"] == "2026-11-23T19:28:34.301611+00:00"
    assert first.payload["nominal_end"] == "2026-11-23T19:28:34.301611+00:00"
    assert first.payload["openlineage_event_type"] == "START"
    assert first.payload["producer"] == samples[0]["producer"]


def test_airflow_dag_completion_is_a_pipeline_run() -> None:
    samples = load_samples()
    events = translate_openlineage(samples[4])

    assert len(events) == 1
    dag = events[0]
    assert dag.event == "run.completed"
    assert dag.resource.id == "airflow.feas.feas_ok_dag"
    assert dag.resource.kind == "pipeline"
    assert dag.resource.labels["job_type"] == "DAG"
    assert dag.related_with(ROLE_PARENT) == []
    assert dag.related_with(ROLE_PARENT_RUN) == []
    assert [r.id for r in dag.related_with(ROLE_RUN)] == [AIRFLOW_RUN_ID]
    assert [r.id for r in dag.related_with(ROLE_SOURCE)] == ["airflow"]
    assert dag.payload["airflow"] == {
        "dag_id": "feas_ok_dag",
        "run_id": "manual__2026-11-23T19:28:35.686677+00:00",
    }
    assert dag.occurred.isoformat() == "2026-11-23T19:28:45.255960+00:00"


def test_translated_events_survive_the_native_event_decoder() -> None:
    events = [e for s in load_samples() for e in translate_openlineage(s)]
    events += translate_openlineage(
        run_event(
            "COMPLETE",
            inputs=[dataset("raw.orders")],
            outputs=[dataset("mart.orders", outputFacets={"outputStatistics": {"rowCount": 3}})],
        )
    )

    assert decode_events(encode_json(events)) == events


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        ("START", "run.started"),
        ("RUNNING", "run.running"),
        ("COMPLETE", "run.completed"),
        ("FAIL", "run.failed"),
        ("ABORT", "run.cancelled"),
        ("OTHER", "run.updated"),
        (None, "run.updated"),
    ],
)
def test_event_type_maps_to_event_name(event_type: str | None, expected: str) -> None:
    events = translate_openlineage(run_event(event_type))

    assert [e.event for e in events] == [expected]
    main = events[0]
    assert main.resource.id == "warehouse/nightly"
    assert main.resource.kind == "pipeline"
    assert main.occurred.isoformat() == "2024-05-01T10:00:00+00:00"
    assert [(r.role, r.id) for r in main.related] == [
        (ROLE_RUN, RUN_ID),
        (ROLE_SOURCE, "openlineage"),
    ]
    if event_type is None:
        assert "openlineage_event_type" not in main.payload
    else:
        assert main.payload["openlineage_event_type"] == event_type


def test_same_event_twice_gives_same_ids() -> None:
    sent = run_event(
        "COMPLETE",
        outputs=[dataset("a"), dataset("b")],
        inputs=[
            dataset(
                "c",
                inputFacets={
                    "dataQualityAssertions": {"assertions": [{"assertion": "x", "success": True}]}
                },
            )
        ],
    )

    first = translate_openlineage(sent)
    second = translate_openlineage(json.loads(json.dumps(sent)))

    assert first == second
    ids = [e.id for e in first]
    assert None not in ids
    assert len(set(ids)) == len(ids) == 4


def test_ids_differ_when_the_event_differs() -> None:
    base = translate_openlineage(run_event("START"))[0].id

    later = translate_openlineage(run_event("START", event_time="2024-05-01T10:00:01+00:00"))
    completed = translate_openlineage(run_event("COMPLETE"))
    other_run = translate_openlineage(
        run_event("START", run_id="9f1b6c2a-9d4e-4f8a-b1c7-5e2d8a9f0b13")
    )

    assert len({base, later[0].id, completed[0].id, other_run[0].id}) == 4


def test_same_instant_in_another_offset_gives_same_id() -> None:
    utc = translate_openlineage(run_event("START", event_time="2024-05-01T10:00:00+00:00"))
    paris = translate_openlineage(run_event("START", event_time="2024-05-01T12:00:00+02:00"))

    assert utc[0].id == paris[0].id


def test_complete_with_outputs_updates_each_asset() -> None:
    events = translate_openlineage(
        run_event(
            "COMPLETE",
            inputs=[dataset("raw.orders")],
            outputs=[
                dataset(
                    "mart.orders",
                    outputFacets={"outputStatistics": {"rowCount": 120, "size": 4096}},
                ),
                dataset("mart.customers", outputFacets={"outputStatistics": {"rowCount": 7}}),
            ],
        )
    )

    main = events[0]
    assert [(r.role, r.id) for r in main.related] == [
        (ROLE_RUN, RUN_ID),
        (ROLE_INPUT, "postgres://db:5432/raw.orders"),
        (ROLE_OUTPUT, "postgres://db:5432/mart.orders"),
        (ROLE_OUTPUT, "postgres://db:5432/mart.customers"),
        (ROLE_SOURCE, "openlineage"),
    ]
    assert all(r.kind == "asset" for r in main.related_with(ROLE_OUTPUT))

    updated = only(events, "asset.updated")
    assert [e.resource.id for e in updated] == [
        "postgres://db:5432/mart.orders",
        "postgres://db:5432/mart.customers",
    ]
    orders, customers = updated
    assert orders.resource.kind == "asset"
    assert orders.resource.name == "mart.orders"
    assert orders.resource.labels == {"namespace": "postgres://db:5432"}
    assert orders.occurred == main.occurred
    assert orders.payload == {"producer": PRODUCER, "row_count": 120, "bytes": 4096}
    assert customers.payload == {"producer": PRODUCER, "row_count": 7}
    producer = orders.first_related(ROLE_PRODUCER)
    assert producer is not None
    assert (producer.id, producer.kind) == ("warehouse/nightly", "pipeline")
    assert [r.id for r in orders.related_with(ROLE_RUN)] == [RUN_ID]
    assert [r.id for r in orders.related_with(ROLE_SOURCE)] == ["openlineage"]


@pytest.mark.parametrize("event_type", ["START", "RUNNING", "FAIL", "ABORT", "OTHER"])
def test_only_complete_updates_assets(event_type: str) -> None:
    events = translate_openlineage(run_event(event_type, outputs=[dataset("mart.orders")]))

    assert only(events, "asset.updated") == []
    assert [r.id for r in events[0].related_with(ROLE_OUTPUT)] == ["postgres://db:5432/mart.orders"]


def test_task_producer_kind_follows_the_parent_facet() -> None:
    parent = {
        "parent": {
            "job": {"namespace": "warehouse", "name": "dag"},
            "run": {"runId": DAG_RUN_ID.upper()},
        }
    }
    events = translate_openlineage(
        run_event("COMPLETE", name="dag.load", run_facets=parent, outputs=[dataset("t")])
    )

    assert events[0].resource.kind == "task"
    # The parent's runId is normalised, so it matches the DAG run's own run id.
    assert [r.id for r in events[0].related_with(ROLE_PARENT_RUN)] == [DAG_RUN_ID]
    producer = only(events, "asset.updated")[0].first_related(ROLE_PRODUCER)
    assert producer is not None
    assert (producer.id, producer.kind) == ("warehouse/dag.load", "task")


def test_parent_facet_naming_the_job_itself_is_not_a_parent() -> None:
    facets = {
        "parent": {
            "job": {"namespace": "warehouse", "name": "nightly"},
            "run": {"runId": DAG_RUN_ID},
        }
    }
    main = translate_openlineage(run_event("START", run_facets=facets))[0]

    assert main.resource.kind == "pipeline"
    assert main.related_with(ROLE_PARENT) == []
    assert main.related_with(ROLE_PARENT_RUN) == []


def test_data_quality_assertions_become_checks() -> None:
    assertions = {
        "dataQualityAssertions": {
            "assertions": [
                {"assertion": "not_null", "success": True, "column": "id"},
                {"assertion": "row_count_above_zero", "success": False},
            ]
        }
    }
    events = translate_openlineage(
        run_event(
            "RUNNING",
            inputs=[dataset("raw.orders", inputFacets=assertions)],
            outputs=[dataset("mart.orders", facets=assertions)],
        )
    )

    passed = only(events, "check.passed")
    failed = only(events, "check.failed")
    assert [e.resource.id for e in passed] == [
        "postgres://db:5432/raw.orders",
        "postgres://db:5432/mart.orders",
    ]
    assert [e.resource.id for e in failed] == [
        "postgres://db:5432/raw.orders",
        "postgres://db:5432/mart.orders",
    ]
    assert passed[0].payload == {"check": "not_null", "column": "id", "success": True}
    assert failed[0].payload == {"check": "row_count_above_zero", "success": False}
    assert passed[0].resource.kind == "asset"
    assert [(r.role, r.id) for r in failed[0].related] == [
        (ROLE_RUN, RUN_ID),
        (ROLE_PRODUCER, "warehouse/nightly"),
        (ROLE_SOURCE, "openlineage"),
    ]
    assert len({e.id for e in events}) == len(events) == 5


def test_error_message_facet_is_in_the_failed_run_payload() -> None:
    facets = {
        "errorMessage": {
            "message": "division by zero",
            "programmingLanguage": "python",
            "stackTrace": "Traceback ...\nZeroDivisionError",
        }
    }
    main = translate_openlineage(run_event("FAIL", run_facets=facets))[0]

    assert main.event == "run.failed"
    assert main.payload["error"] == {
        "message": "division by zero",
        "programming_language": "python",
        "stack_trace": "Traceback ...\nZeroDivisionError",
    }


@pytest.mark.parametrize(
    ("producer", "source"),
    [
        ("https://github.com/apache/airflow/tree/providers-openlineage/2.20.3", "airflow"),
        ("https://github.com/OpenLineage/OpenLineage/tree/1.20.0/integration/dbt", "dbt"),
        ("https://github.com/OpenLineage/OpenLineage/tree/1.20.0/integration/spark", "spark"),
        ("https://github.com/dagster-io/dagster/tree/master/python_modules", "dagster"),
        ("https://example.com/my-own-producer", "openlineage"),
    ],
)
def test_source_comes_from_the_producer(producer: str, source: str) -> None:
    main = translate_openlineage(run_event("START", producer=producer))[0]

    assert [r.id for r in main.related_with(ROLE_SOURCE)] == [source]


def test_dataset_event_declares_an_asset() -> None:
    events = translate_openlineage(
        {
            "eventTime": "2024-05-01T10:00:00Z",
            "dataset": {"namespace": "s3://bucket", "name": "exports/orders", "facets": {}},
            "producer": PRODUCER,
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent",
        }
    )

    assert len(events) == 1
    declared = events[0]
    assert declared.event == "asset.declared"
    assert declared.resource.id == "s3://bucket/exports/orders"
    assert declared.resource.kind == "asset"
    assert declared.resource.labels == {"namespace": "s3://bucket"}
    assert [(r.role, r.id) for r in declared.related] == [(ROLE_SOURCE, "openlineage")]
    assert declared.payload == {"producer": PRODUCER}
    assert declared.id is not None


def test_job_event_declares_a_job_with_its_lineage() -> None:
    events = translate_openlineage(
        {
            "eventTime": "2024-05-01T10:00:00Z",
            "job": {
                "namespace": "warehouse",
                "name": "build_mart",
                "facets": {"ownership": {"owners": [{"name": "ana"}, {"name": "bo"}]}},
            },
            "inputs": [dataset("raw.orders")],
            "outputs": [dataset("mart.orders")],
            "producer": PRODUCER,
        }
    )

    assert len(events) == 1
    declared = events[0]
    assert declared.event == "job.declared"
    assert declared.resource.id == "warehouse/build_mart"
    assert declared.resource.kind == "pipeline"
    assert declared.resource.labels == {"namespace": "warehouse", "owners": "ana,bo"}
    assert [(r.role, r.id) for r in declared.related] == [
        (ROLE_INPUT, "postgres://db:5432/raw.orders"),
        (ROLE_OUTPUT, "postgres://db:5432/mart.orders"),
        (ROLE_SOURCE, "openlineage"),
    ]
    assert declared.payload == {"producer": PRODUCER}


def _without_job_name() -> dict[str, Any]:
    event = run_event("START")
    del event["job"]["name"]
    return event


def _without_event_time() -> dict[str, Any]:
    event = run_event("START")
    del event["eventTime"]
    return event


@pytest.mark.parametrize(
    ("sent", "loc"),
    [
        (run_event("START", event_time="2024-05-01T10:00:00"), ["eventTime"]),
        (run_event("START", event_time="yesterday"), ["eventTime"]),
        (run_event("START", event_time="0001-01-01T00:00:00Z"), ["eventTime"]),
        (_without_event_time(), ["eventTime"]),
        (_without_job_name(), ["job", "name"]),
        (run_event("START", name=""), ["job", "name"]),
        (run_event("START", run_id="not-a-uuid"), ["run", "runId"]),
        (run_event("BOGUS"), ["eventType"]),
        (run_event("START", outputs=[{"namespace": "db"}]), ["outputs", 0, "name"]),
        ({**run_event("START"), "job": None}, ["job"]),
        ([run_event("START")], []),
        ("an event", []),
        (None, []),
        ({"eventTime": "2024-05-01T10:00:00Z", "producer": PRODUCER}, []),
    ],
)
def test_invalid_events_name_the_bad_field(sent: object, loc: list[str | int]) -> None:
    with pytest.raises(EventDecodeError) as info:
        translate_openlineage(sent)

    assert info.value.loc == loc
    assert info.value.unreadable is False
    assert info.value.message


def test_missing_name_error_says_which_field() -> None:
    with pytest.raises(EventDecodeError, match="`name`"):
        translate_openlineage(_without_job_name())


def test_overlong_resource_id_is_refused() -> None:
    with pytest.raises(EventDecodeError) as info:
        translate_openlineage(run_event("START", name="x" * 1000))

    assert info.value.loc == ["job", "name"]


def test_overlong_asset_id_is_refused_naming_the_dataset(client: TestClient) -> None:
    with pytest.raises(EventDecodeError) as info:
        translate_openlineage(run_event("START", outputs=[dataset("/" + "x" * 1000, "file")]))
    assert info.value.loc == ["outputs", 0, "name"]
    too_long = run_event("START", outputs=[dataset("/" + "x" * 1000, "file")])
    r = client.post("/api/v1/lineage/batch", json=[too_long, run_event("START")])
    assert r.json()["failed_events"][0]["index"] == 0
    assert r.json()["failed_events"][0]["reason"].startswith("outputs.0.name:")
    assert r.json()["summary"]["successful"] == 1


def test_malformed_facets_are_ignored() -> None:
    run_facets = {
        "parent": "x",
        "errorMessage": 5,
        "nominalTime": [],
        "airflow": {"dag": 3, "dagRun": {"run_id": 7}, "taskInstance": {"try_number": "1"}},
        "airflowDagRun": None,
    }
    job_facets = {"ownership": {"owners": "ana"}, "jobType": ["TASK"]}
    events = translate_openlineage(
        run_event(
            "COMPLETE",
            run_facets=run_facets,
            job_facets=job_facets,
            inputs=[dataset("a", inputFacets={"dataQualityAssertions": {"assertions": [5, {}]}})],
            outputs=[
                dataset("b", outputFacets={"outputStatistics": {"rowCount": "many"}}),
                dataset("c", outputFacets="nope", facets=[1]),
            ],
        )
    )

    main = events[0]
    assert main.event == "run.completed"
    assert main.resource.kind == "pipeline"
    assert main.resource.labels == {"namespace": "warehouse"}
    assert set(main.payload) == {"producer", "openlineage_event_type"}
    assert [e.payload for e in only(events, "asset.updated")] == [
        {"producer": PRODUCER},
        {"producer": PRODUCER},
    ]
    assert only(events, "check.passed") == only(events, "check.failed") == []


def test_facet_containers_of_the_wrong_shape_are_ignored() -> None:
    events = translate_openlineage(run_event("FAIL", run_facets="x", job_facets=[1, 2]))

    assert [e.event for e in events] == ["run.failed"]
    assert events[0].resource.labels == {"namespace": "warehouse"}


def test_unknown_fields_and_facets_are_accepted() -> None:
    sent = run_event(
        "START",
        run_facets={"somethingNew": {"_producer": "x", "deep": {"a": [1, 2]}}},
        job_facets={"sql": {"query": "select 1"}},
    )
    sent["futureField"] = {"anything": True}
    sent["run"]["extra"] = 1

    events = translate_openlineage(sent)

    assert [e.event for e in events] == ["run.started"]


def test_a_mapped_airflow_task_try_is_keyed_by_map_index_and_try() -> None:
    facets = {
        "airflow": {
            "dag": {"dag_id": "loads"},
            "dagRun": {"dag_id": "loads", "run_id": "scheduled__2026-11-24"},
            "task": {"task_id": "copy"},
            "taskInstance": {"try_number": 3, "map_index": 2},
        }
    }
    [event] = translate_openlineage(
        run_event("FAIL", namespace="prod", name="loads.copy", run_facets=facets)
    )
    assert event.resource.id == "airflow.prod.loads.copy"
    assert [r.id for r in event.related_with(ROLE_RUN)] == ["scheduled__2026-11-24/copy/2/3"]
    assert [r.id for r in event.related_with(ROLE_PARENT)] == ["airflow.prod.loads"]
    assert [r.id for r in event.related_with(ROLE_PARENT_RUN)] == ["scheduled__2026-11-24"]


# What openlineage-dbt 1.54.0's `dbt-ol build` (dbt-core 1.11, dbt-duckdb) really sent for
# the project of tests/integrations/test_dbt.py, trimmed to eight events and fewer facets.
DBT_SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "dbt-ol-events.jsonl"
INVOCATION = "ec91fa38-c62e-41d7-8e52-605b0759f35e"


def load_dbt_samples() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DBT_SAMPLES.read_text().splitlines() if line.strip()]


def test_dbt_ol_events_are_named_as_coplane_dbt_ingest_names_them() -> None:
    samples = load_dbt_samples()
    assert len(samples) == 8
    translated = [translate_openlineage(s) for s in samples]
    main = [events[0] for events in translated if events and events[0].event.startswith("run.")]
    assert [(e.event, e.resource.id, e.resource.kind) for e in main] == [
        ("run.started", "dbt.shop", "pipeline"),
        ("run.started", "dbt.shop.model.shop.orders", "task"),
        ("run.completed", "dbt.shop.model.shop.orders", "task"),
        ("run.failed", "dbt.shop.model.shop.broken", "task"),
        ("run.failed", "dbt.shop", "pipeline"),
    ]
    invocation, orders = main[0], main[2]
    assert [r.id for r in invocation.related_with(ROLE_RUN)] == [INVOCATION]
    assert invocation.related_with(ROLE_PARENT) == []
    assert invocation.resource.name == "shop"
    assert invocation.payload["invocation_id"] == INVOCATION
    assert invocation.payload["dbt_version"] == "1.11.16"
    assert [r.id for r in orders.related_with(ROLE_RUN)] == [f"{INVOCATION}:model.shop.orders"]
    assert [r.id for r in orders.related_with(ROLE_PARENT)] == ["dbt.shop"]
    assert [r.id for r in orders.related_with(ROLE_PARENT_RUN)] == [INVOCATION]
    assert [r.id for r in orders.related_with(ROLE_SOURCE)] == ["dbt"]
    assert orders.resource.name == "orders"
    assert orders.payload["unique_id"] == "model.shop.orders"
    # relations are assets `<adapter>://<database>.<schema>.<identifier>`, the path of the
    # duckdb file in the OpenLineage namespace left out
    assert [r.id for r in orders.related_with(ROLE_INPUT)] == [
        "duckdb://dev.main.stg_orders",
        "duckdb://dev.landing.customers",
    ]
    assert [r.id for r in orders.related_with(ROLE_OUTPUT)] == ["duckdb://dev.main.orders"]
    [updated] = only(translated[2], "asset.updated")
    assert updated.resource.id == "duckdb://dev.main.orders"
    producer = updated.first_related(ROLE_PRODUCER)
    assert producer is not None and producer.id == "dbt.shop.model.shop.orders"
    everything = [e for events in translated for e in events]
    assert decode_events(encode_json(everything)) == everything


def test_dbt_ol_test_jobs_are_only_checks_of_the_invocation() -> None:
    samples = load_dbt_samples()
    assert translate_openlineage(samples[3]) == []  # the START of the stg_orders tests
    checks = translate_openlineage(samples[4])
    assert [(e.event, e.resource.id, e.payload["check"]) for e in checks] == [
        (
            "check.failed",
            "duckdb://dev.main.stg_orders",
            "accepted_values_stg_orders_status__placed",
        ),
        ("check.passed", "duckdb://dev.main.stg_orders", "not_null_stg_orders_id"),
        ("check.passed", "duckdb://dev.main.stg_orders", "unique_stg_orders_id"),
    ]
    warned = checks[0]
    assert [r.id for r in warned.related_with(ROLE_RUN)] == [INVOCATION]
    assert [r.id for r in warned.related_with(ROLE_PRODUCER)] == ["dbt.shop"]
    assert {k: warned.payload[k] for k in ("test", "severity", "failures", "column_name")} == {
        "test": "accepted_values",
        "severity": "warn",
        "failures": 1,
        "column_name": "status",
    }
    assert warned.payload["model"] == "model.shop.stg_orders"
    # a singular test's own job repeats what the model's tests job said: nothing more
    assert translate_openlineage(samples[5]) == []


def test_non_dbt_producers_keep_openlineage_names_with_dbt_like_facets() -> None:
    facets = {"dbt_run": {"invocation_id": "x", "project_name": "p"}}
    [event] = translate_openlineage(
        run_event("START", run_facets=facets, inputs=[dataset("db.s.t")])
    )
    assert event.resource.id == "warehouse/nightly"
    assert [r.id for r in event.related_with(ROLE_INPUT)] == ["postgres://db:5432/db.s.t"]
    # a dbt producer without an invocation_id is translated as any producer
    dbt = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/integration/dbt"
    [plain] = translate_openlineage(run_event("START", producer=dbt))
    assert plain.resource.id == "warehouse/nightly"


def as_sent_without_dbt_node(sample: dict[str, Any], project_name: bool) -> dict[str, Any]:
    """A recorded dbt-ol 1.54 event as dbt-ol releases without the `dbt_node` job facet
    (1.40 among them) send it: the same job names, jobType and parent facet, no `dbt_node`;
    `project_name` left out of `dbt_run` too for releases that did not send it. Written from
    the recording and those releases' event schema, since they do not run here."""
    event: dict[str, Any] = json.loads(json.dumps(sample))
    event["job"]["facets"].pop("dbt_node", None)
    if not project_name:
        event["run"]["facets"]["dbt_run"].pop("project_name", None)
    return event


@pytest.mark.parametrize("project_name", [True, False])
def test_dbt_ol_without_the_dbt_node_facet_gives_the_same_events(project_name: bool) -> None:
    samples = load_dbt_samples()
    old = [as_sent_without_dbt_node(s, project_name) for s in samples]
    assert "dbt_node" not in json.dumps(old)
    # runs, child runs, checks and lineage alike: test jobs only checks, models tasks
    assert [translate_openlineage(s) for s in old] == [translate_openlineage(s) for s in samples]


@pytest.mark.parametrize(
    ("job_name", "job_type", "resource"),
    [
        ("dev.main.shop.orders", "MODEL", "dbt.shop.model.shop.orders"),  # `dbt run`
        ("dev.snaps.shop.orders_snap.snapshot", "SNAPSHOT", "dbt.shop.snapshot.shop.orders_snap"),
        ("dev.main.shop.test", "MODEL", "dbt.shop.model.shop.test"),  # a model called `test`
        ("dev.shop.shop.orders.build.run", "MODEL", "dbt.shop.model.shop.orders"),
        # a name of another shape is kept as OpenLineage names it, under the invocation's job
        ("orders", "MODEL", "dev/orders"),
    ],
)
def test_dbt_ol_node_names_without_dbt_node(job_name: str, job_type: str, resource: str) -> None:
    sample = as_sent_without_dbt_node(load_dbt_samples()[1], project_name=True)
    sample["job"]["name"] = job_name
    sample["job"]["facets"]["jobType"]["jobType"] = job_type
    main = translate_openlineage(sample)[0]
    assert main.resource.id == resource and main.resource.kind == "task"


def test_dbt_ol_source_tests_without_dbt_node_are_checks_of_the_source() -> None:
    sample = as_sent_without_dbt_node(load_dbt_samples()[4], project_name=True)
    sample["job"]["name"] = "dev.landing.source.shop.landing.customers.build.test"
    checks = translate_openlineage(sample)
    assert checks and {e.event for e in checks} <= {"check.passed", "check.failed"}
    assert {e.payload.get("model") for e in checks} == {"source.shop.landing.customers"}
