"""The official OpenLineage Python client, over real HTTP, against a real `coplane server`.

What an orchestrator sends through `openlineage-python` must show up in the API as runs with
their tasks, assets with their producer and checks, and lineage; and it must survive retries
and a restart of the server.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import requests
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    data_quality_assertions_dataset,
    error_message_run,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
)
from openlineage.client.transport.http import HttpCompression, HttpConfig, HttpTransport

from tests.conftest import LiveServer

NAMESPACE = "prod-airflow"
DAG = "sales_daily"
DAG_ID = f"{NAMESPACE}/{DAG}"
EXTRACT_ID = f"{NAMESPACE}/{DAG}.extract"
TRANSFORM_ID = f"{NAMESPACE}/{DAG}.transform"
LOAD_ID = f"{NAMESPACE}/{DAG}.load"

ORDERS = ("postgres://db", "public.orders")
RAW_ORDERS = ("s3://lake", "raw/orders")
STAGED_ORDERS = ("s3://lake", "staged/orders")
SALES = ("snowflake://acct", "analytics.sales")
ORDERS_ID, RAW_ORDERS_ID, STAGED_ORDERS_ID, SALES_ID = (
    f"{ns}/{name}" for ns, name in (ORDERS, RAW_ORDERS, STAGED_ORDERS, SALES)
)

# The DAG's schedule slot (yesterday 02:00 UTC); every event time is some seconds after it.
# Recent on purpose: the server drops raw events past its retention (90 days) when it starts.
SCHEDULED = (datetime.now(UTC) - timedelta(days=1)).replace(
    hour=2, minute=0, second=0, microsecond=0
)
LOADED_ROWS = 1520
TRANSFORM_ERROR = "KeyError: 'currency' in transform_orders (orders row 1887)"

MakeClient = Callable[..., OpenLineageClient]


def at(seconds: float) -> datetime:
    """A moment `seconds` after the DAG's scheduled time."""
    return SCHEDULED + timedelta(seconds=seconds)


def job(job_id: str) -> Job:
    """The OpenLineage job whose coplane resource id is `job_id` (`<namespace>/<name>`)."""
    namespace, name = job_id.split("/", 1)
    return Job(namespace=namespace, name=name)


def run_event(
    state: RunState,
    job_id: str,
    run_id: str,
    moment: datetime,
    *,
    facets: dict[str, RunFacet] | None = None,
    inputs: Sequence[InputDataset] = (),
    outputs: Sequence[OutputDataset] = (),
) -> RunEvent:
    """One RunEvent as the client builds it (the client's own producer URL)."""
    return RunEvent(
        eventType=state,
        eventTime=moment.isoformat(),
        run=Run(runId=run_id, facets=dict(facets or {})),
        job=job(job_id),
        inputs=list(inputs),
        outputs=list(outputs),
    )


def parent_facets(dag_run_id: str) -> dict[str, RunFacet]:
    """The `parent` facet a task event carries: the DAG job and the DAG run."""
    return {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=dag_run_id),
            job=parent_run.Job(namespace=NAMESPACE, name=DAG),
        )
    }


def nominal_facets() -> dict[str, RunFacet]:
    """The `nominalTime` facet of the DAG run: its schedule slot."""
    return {
        "nominalTime": nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=SCHEDULED.isoformat(),
            nominalEndTime=(SCHEDULED + timedelta(days=1)).isoformat(),
        )
    }


def error_facet(message: str) -> dict[str, RunFacet]:
    """The `errorMessage` facet of a failed task."""
    return {
        "errorMessage": error_message_run.ErrorMessageRunFacet(
            message=message,
            programmingLanguage="python",
            stackTrace=f'Traceback (most recent call last):\n  File "dags/sales.py"\n{message}',
        )
    }


def input_dataset(dataset: tuple[str, str], **input_facets: Any) -> InputDataset:
    namespace, name = dataset
    return InputDataset(namespace=namespace, name=name, inputFacets=input_facets)


def output_dataset(dataset: tuple[str, str], **output_facets: Any) -> OutputDataset:
    namespace, name = dataset
    return OutputDataset(namespace=namespace, name=name, outputFacets=output_facets)


def quality_assertions() -> data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet:
    """`not_null(id)` passed and `unique(id)` failed."""
    assertion = data_quality_assertions_dataset.Assertion
    return data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(
        assertions=[
            assertion(assertion="not_null", success=True, column="id"),
            assertion(assertion="unique", success=False, column="id"),
        ]
    )


def single_run(job_id: str, run_id: str, output: tuple[str, str]) -> list[RunEvent]:
    """START then COMPLETE of a job that writes `output`."""
    return [
        run_event(RunState.START, job_id, run_id, at(1)),
        run_event(RunState.COMPLETE, job_id, run_id, at(42), outputs=[output_dataset(output)]),
    ]


def get_json(api: httpx.Client, path: str, **params: str | int) -> dict[str, Any]:
    """GET `path` and return its JSON body, failing on anything but 200."""
    response = api.get(path, params=params)
    assert response.status_code == 200, f"GET {path} {params}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


def all_pages(api: httpx.Client, path: str, key: str, **params: str | int) -> list[dict[str, Any]]:
    """Every item of a paged listing, following `next` cursors to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        page = get_json(api, path, **params, **({"cursor": cursor} if cursor else {}))
        items.extend(page[key])
        cursor = page["next"]
        if cursor is None:
            return items
    pytest.fail(f"GET {path} {params} kept returning a `next` cursor")


def one_run(api: httpx.Client, pipeline: str) -> dict[str, Any]:
    """The only run of `pipeline`."""
    runs = all_pages(api, "/api/runs", "runs", pipeline=pipeline)
    assert len(runs) == 1, f"expected one run of {pipeline}, got {runs}"
    return runs[0]


def asset(api: httpx.Client, asset_id: str) -> dict[str, Any]:
    return get_json(api, f"/api/assets/{quote(asset_id, safe='')}")


def moment(value: str | None) -> datetime:
    """An API time as an aware datetime (any offset), failing when it is absent."""
    assert value is not None, "expected a time, got null"
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} has no offset"
    return parsed


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    """Plain HTTP to the live server, for reading back what was sent."""
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def openlineage(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[MakeClient]:
    """Make OpenLineage clients that send over HTTP to the live server, and nothing else.

    The client also reads OPENLINEAGE_* variables and an `openlineage.yml` from
    OPENLINEAGE_CONFIG, the working directory or ~/.openlineage: those are all cleared or
    pointed at a config file of our own, so no user setup changes what is sent.
    """
    for name in list(os.environ):
        if name.startswith("OPENLINEAGE"):
            monkeypatch.delenv(name)
    config = tmp_path / "openlineage.yml"
    # JSON is YAML. These are the defaults, spelled out: no environment facet, no git facet.
    config.write_text(
        json.dumps(
            {"facets": {"environment_variables": [], "source_code_location": {"disabled": True}}}
        )
    )
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    clients: list[OpenLineageClient] = []

    def make(
        compression: HttpCompression | None = None, session: requests.Session | None = None
    ) -> OpenLineageClient:
        transport = HttpTransport(
            HttpConfig(url=live_server.url, timeout=30, compression=compression, session=session)
        )
        client = OpenLineageClient(transport=transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def dag_run_events(dag_run: str, tasks: dict[str, str]) -> list[RunEvent]:
    """A DAG run as an orchestrator reports it: extract, transform (fails), load, DAG fails.

    `tasks` maps the task resource ids to their OpenLineage run ids.
    """
    extract, transform, load = (tasks[t] for t in (EXTRACT_ID, TRANSFORM_ID, LOAD_ID))
    parent = parent_facets(dag_run)
    return [
        run_event(RunState.START, DAG_ID, dag_run, at(5), facets=nominal_facets()),
        run_event(
            RunState.START, EXTRACT_ID, extract, at(9), facets=parent,
            inputs=[input_dataset(ORDERS)], outputs=[output_dataset(RAW_ORDERS)],
        ),
        run_event(
            RunState.COMPLETE, EXTRACT_ID, extract, at(71), facets=parent,
            inputs=[input_dataset(ORDERS)], outputs=[output_dataset(RAW_ORDERS)],
        ),
        run_event(
            RunState.START, TRANSFORM_ID, transform, at(75), facets=parent,
            inputs=[input_dataset(RAW_ORDERS)], outputs=[output_dataset(STAGED_ORDERS)],
        ),
        run_event(
            RunState.FAIL, TRANSFORM_ID, transform, at(130),
            facets={**parent, **error_facet(TRANSFORM_ERROR)},
            inputs=[input_dataset(RAW_ORDERS)], outputs=[output_dataset(STAGED_ORDERS)],
        ),
        run_event(
            RunState.START, LOAD_ID, load, at(134), facets=parent,
            inputs=[input_dataset(RAW_ORDERS)], outputs=[output_dataset(SALES)],
        ),
        run_event(
            RunState.COMPLETE, LOAD_ID, load, at(250), facets=parent,
            inputs=[input_dataset(RAW_ORDERS, dataQualityAssertions=quality_assertions())],
            outputs=[
                output_dataset(
                    SALES,
                    outputStatistics=output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                        rowCount=LOADED_ROWS, size=88_400
                    ),
                )
            ],
        ),
        run_event(RunState.FAIL, DAG_ID, dag_run, at(253), facets=nominal_facets()),
    ]  # fmt: skip


def test_dag_with_tasks_through_http_transport(openlineage: MakeClient, api: httpx.Client) -> None:
    client = openlineage()
    dag_run = str(uuid.uuid4())
    tasks = {task: str(uuid.uuid4()) for task in (EXTRACT_ID, TRANSFORM_ID, LOAD_ID)}
    for event in dag_run_events(dag_run, tasks):
        client.emit(event)

    # The DAG run: one run, failed as the DAG's last event said, from its START to its FAIL.
    run = one_run(api, DAG_ID)
    assert run["state"] == "failed"
    assert run["run_key"] == dag_run
    assert run["source"] == "openlineage"
    assert run["parent_run"] is None
    assert moment(run["started"]) == at(5)
    assert moment(run["ended"]) == at(253)
    assert run["duration_s"] == pytest.approx(248)
    assert moment(run["nominal_start"]) == SCHEDULED

    # Its tasks, in the order they started, each linked to the DAG run.
    detail = get_json(api, f"/api/runs/{run['id']}")
    assert detail["id"] == run["id"]
    got_tasks = [(t["pipeline"], t["run_key"], t["state"]) for t in detail["tasks"]]
    assert got_tasks == [
        (EXTRACT_ID, tasks[EXTRACT_ID], "completed"),
        (TRANSFORM_ID, tasks[TRANSFORM_ID], "failed"),
        (LOAD_ID, tasks[LOAD_ID], "completed"),
    ]
    assert [t["parent_run"] for t in detail["tasks"]] == [run["id"]] * 3
    by_task = {t["pipeline"]: t for t in detail["tasks"]}
    assert by_task[TRANSFORM_ID]["error"] == TRANSFORM_ERROR
    assert by_task[EXTRACT_ID]["error"] is None
    assert moment(by_task[LOAD_ID]["started"]) == at(134)
    assert moment(by_task[LOAD_ID]["ended"]) == at(250)
    assert by_task[LOAD_ID]["duration_s"] == pytest.approx(116)

    # The loaded table: updated when load completed, by load.
    sales = asset(api, SALES_ID)
    assert moment(sales["last_updated"]) == at(250)
    assert sales["producer"] == LOAD_ID
    assert sales["last_update_run"] == by_task[LOAD_ID]["id"]
    # transform declared an output but failed: that table was never updated.
    assert asset(api, STAGED_ORDERS_ID)["last_updated"] is None

    # The checks load ran on its input.
    raw = asset(api, RAW_ORDERS_ID)
    assert {c["name"]: c["status"] for c in raw["checks"]} == {
        "not_null(id)": "passed",
        "unique(id)": "failed",
    }
    assert moment(raw["last_updated"]) == at(71)
    assert raw["producer"] == EXTRACT_ID

    # Lineage upstream of load: orders -> extract -> raw/orders -> load, and nothing downstream.
    lineage = get_json(api, "/api/lineage", node=LOAD_ID, depth=3, direction="upstream")
    edges = {(e["source"], e["target"]) for e in lineage["edges"]}
    assert {
        (ORDERS_ID, EXTRACT_ID),
        (EXTRACT_ID, RAW_ORDERS_ID),
        (RAW_ORDERS_ID, LOAD_ID),
    } <= edges
    nodes = {n["id"]: n for n in lineage["nodes"]}
    assert {ORDERS_ID, EXTRACT_ID, RAW_ORDERS_ID, LOAD_ID} <= nodes.keys()
    assert SALES_ID not in nodes
    assert nodes[RAW_ORDERS_ID]["status"] == "failing_checks"

    # One event per assertion, on the dataset it checked.
    checks = get_json(api, "/api/events", event="check.*")["events"]
    assert sorted(
        (e["event"], e["resource"]["id"], e["payload"]["check"], e["payload"]["column"])
        for e in checks
    ) == [
        ("check.failed", RAW_ORDERS_ID, "unique", "id"),
        ("check.passed", RAW_ORDERS_ID, "not_null", "id"),
    ]

    # Asset updates come from the outputs of COMPLETE events only.
    updates = get_json(api, "/api/events", event="asset.updated")["events"]
    assert sorted(e["resource"]["id"] for e in updates) == [RAW_ORDERS_ID, SALES_ID]
    sales_update = next(e for e in updates if e["resource"]["id"] == SALES_ID)
    assert sales_update["payload"]["row_count"] == LOADED_ROWS
    assert moment(sales_update["occurred"]) == at(250)


def test_gzip_compression(openlineage: MakeClient, api: httpx.Client) -> None:
    sent: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *_, **__: sent.append(response.request))
    client = openlineage(HttpCompression.GZIP, session)
    run_id = str(uuid.uuid4())
    for event in single_run(DAG_ID, run_id, SALES):
        client.emit(event)

    # What went over the wire really was gzip...
    assert [r.headers.get("Content-Encoding") for r in sent] == ["gzip", "gzip"]
    bodies = [r.body for r in sent]
    assert all(isinstance(b, bytes) for b in bodies)
    sent_types = [
        json.loads(gzip.decompress(b))["eventType"] for b in bodies if isinstance(b, bytes)
    ]
    assert sent_types == ["START", "COMPLETE"]
    # ...and the server inflated it: the run is there, completed.
    run = one_run(api, DAG_ID)
    assert (run["run_key"], run["state"]) == (run_id, "completed")
    assert moment(run["started"]) == at(1)
    assert moment(run["ended"]) == at(42)
    assert asset(api, SALES_ID)["producer"] == DAG_ID


def test_repeated_events_are_idempotent(openlineage: MakeClient, api: httpx.Client) -> None:
    client = openlineage()
    run_id = str(uuid.uuid4())
    sent = [
        *single_run(DAG_ID, run_id, SALES),
        run_event(
            RunState.OTHER, DAG_ID, run_id, at(43),
            inputs=[input_dataset(SALES, dataQualityAssertions=quality_assertions())],
        ),
    ]  # fmt: skip
    for event in sent:
        client.emit(event)
    first_run = one_run(api, DAG_ID)
    first_events = all_pages(api, "/api/events", "events", limit=100)
    # START, COMPLETE, OTHER, one asset.updated and two checks.
    assert len(first_events) == 6
    assert len(all_pages(api, "/api/events", "events", resource=DAG_ID)) == 3

    for event in sent:  # a producer's retry of every event, the very same objects
        client.emit(event)

    assert one_run(api, DAG_ID) == first_run
    assert first_run["state"] == "completed"
    assert len(all_pages(api, "/api/events", "events", resource=DAG_ID)) == 3
    again = all_pages(api, "/api/events", "events", limit=100)
    assert sorted(e["id"] for e in again) == sorted(e["id"] for e in first_events)


def native_batch(pipeline: str, runs: int) -> list[dict[str, Any]]:
    """run.started + run.completed (every tenth run.failed) for `runs` runs, with our own ids.

    One run every ten minutes, all of them before the DAG's schedule slot.
    """
    events: list[dict[str, Any]] = []
    for i in range(runs):
        start = at(-600 * (runs - i))
        failed = i % 10 == 9
        for name, when, payload in (
            ("run.started", start, {}),
            (
                "run.failed" if failed else "run.completed",
                start + timedelta(seconds=30 + i),
                {"error": f"exit code {i}"} if failed else {},
            ),
        ):
            events.append(
                {
                    "id": str(uuid.uuid4()),
                    "occurred": when.isoformat(),
                    "event": name,
                    "resource": {"id": pipeline, "kind": "pipeline"},
                    "related": [{"role": "run", "id": f"run-{i:03d}"}],
                    "payload": payload,
                }
            )
    return events


def test_restart_keeps_accepted_events(live_server: LiveServer, openlineage: MakeClient) -> None:
    cron = "cron.nightly-export"
    batch = native_batch(cron, 250)
    run_id = str(uuid.uuid4())
    with httpx.Client(base_url=live_server.url, timeout=60) as api:
        response = api.post("/api/events", json=batch)
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": 500, "duplicates": 0}
        client = openlineage()
        for event in single_run(DAG_ID, run_id, SALES):
            client.emit(event)
        client.close()
        events_before = all_pages(api, "/api/events", "events", limit=200)
        runs_before = all_pages(api, "/api/runs", "runs", limit=100)

    # Every native event, plus START, COMPLETE and the asset.updated of the OpenLineage run.
    assert {e["id"] for e in batch} <= {e["id"] for e in events_before}
    assert len(events_before) == 503
    assert len(runs_before) == 251

    live_server.stop()
    live_server.start()

    with httpx.Client(base_url=live_server.url, timeout=60) as api:
        events_after = all_pages(api, "/api/events", "events", limit=200)
        assert sorted(e["id"] for e in events_after) == sorted(e["id"] for e in events_before)
        assert len(all_pages(api, "/api/events", "events", resource=cron, limit=1000)) == 500
        assert all_pages(api, "/api/runs", "runs", limit=100) == runs_before
        failed = all_pages(api, "/api/runs", "runs", pipeline=cron, state="failed")
        assert len(failed) == 25
        assert one_run(api, DAG_ID)["state"] == "completed"
        # The ids were kept too: resending the batch stores nothing twice.
        response = api.post("/api/events", json=batch)
        assert response.status_code == 202, response.text
        assert response.json() == {"accepted": 0, "duplicates": 500}
