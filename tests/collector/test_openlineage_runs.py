"""One OpenLineage runId is one coplane run, whatever each of its events carries or omits.

Built from what Airflow 3.3.2 with the OpenLineage provider 2.20.3 really sent
(tests/fixtures/airflow-3.3-openlineage-events.jsonl). That provider puts the `airflowDagRun`
facet (dag_id, run_id) on the DAG run's COMPLETE too; older provider releases send it on the
START only and the COMPLETE with `airflowState` alone (the provider's `dag_success`
before the facet was added there): those COMPLETEs are the recorded one with
`airflowDagRun` removed. The DAG run's START is not in the recording (`dags test` sends
none); it is the recorded COMPLETE as the provider's `dag_started` sends it: `START`, the
`airflowDagRun` facet, no `airflowState`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from coplane.integrations.airflow.listener import task_event
from tests.conftest import LiveServer

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "airflow-3.3-openlineage-events.jsonl"
DAG = "airflow.feas.feas_ok_dag"  # as the plugin and the poller name it
TASK_A = "airflow.feas.feas_ok_dag.a"
AIRFLOW_RUN_ID = "manual__2026-11-23T19:28:35.686677+00:00"


def recorded() -> list[dict[str, Any]]:
    """The five events Airflow 3.3 sent: task a START, COMPLETE; b START, COMPLETE; DAG COMPLETE."""
    return [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]


def dag_start() -> dict[str, Any]:
    """The DAG run's START as the provider's `dag_started` sends it."""
    event = copy.deepcopy(recorded()[4])
    event["eventType"] = "START"
    event["eventTime"] = "2026-11-23T19:28:34.400000+00:00"
    del event["run"]["facets"]["airflowState"]
    return event


def dag_end(event_type: str = "COMPLETE") -> dict[str, Any]:
    """The DAG run's end as older provider releases send it: `airflowState`, no run_id."""
    event = copy.deepcopy(recorded()[4])
    event["eventType"] = event_type
    del event["run"]["facets"]["airflowDagRun"]
    if event_type == "FAIL":
        event["run"]["facets"]["airflowState"]["dagRunState"] = "failed"
    return event


def task_end_without_facets(index: int = 1) -> dict[str, Any]:
    """A task's COMPLETE that carries no `airflow` facet (and so no dag_id or run_id)."""
    event = copy.deepcopy(recorded()[index])
    del event["run"]["facets"]["airflow"]
    return event


def get(client: TestClient | LiveServer, path: str, **params: str) -> Any:
    if isinstance(client, LiveServer):
        with httpx.Client(base_url=client.url, timeout=10) as http:
            response = http.get(path, params=params)
            assert response.status_code == 200, response.text
            return response.json()
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def runs_of(client: TestClient | LiveServer, pipeline: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = get(client, "/api/runs", pipeline=pipeline)["runs"]
    return runs


def pipelines(client: TestClient | LiveServer) -> set[str]:
    return {p["id"] for p in get(client, "/api/pipelines")["pipelines"]}


def send(client: TestClient, *events: dict[str, Any]) -> None:
    for event in events:
        response = client.post("/api/v1/lineage", json=event)
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("event_type", "state"),
    [("COMPLETE", "completed"), ("FAIL", "failed"), ("ABORT", "cancelled")],
)
def test_a_dag_run_end_without_its_run_id_ends_the_run_its_start_began(
    client: TestClient, event_type: str, state: str
) -> None:
    send(client, dag_start(), dag_end(event_type))
    [run] = runs_of(client, DAG)
    assert run["state"] == state and run["run_key"] == AIRFLOW_RUN_ID
    assert run["ended"] is not None
    assert "feas/feas_ok_dag" not in pipelines(client)  # no phantom pipeline


def test_the_same_end_sent_in_one_batch_with_its_start_ends_it(client: TestClient) -> None:
    response = client.post("/api/v1/lineage/batch", json=[dag_end(), dag_start()])
    assert response.status_code == 200 and response.json()["status"] == "success"
    [run] = runs_of(client, DAG)
    assert run["state"] == "completed" and run["run_key"] == AIRFLOW_RUN_ID
    assert "feas/feas_ok_dag" not in pipelines(client)


def test_a_task_end_without_the_airflow_facet_ends_its_try(client: TestClient) -> None:
    start, _, _, _, _ = recorded()
    send(client, start, task_end_without_facets())
    [task] = runs_of(client, TASK_A)
    assert task["state"] == "completed"
    assert task["run_key"] == f"{AIRFLOW_RUN_ID}/a/1"
    assert "feas/feas_ok_dag.a" not in pipelines(client)


@pytest.fixture
def two_servers(db_url: str, tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two `coplane server` processes over one database, as two replicas."""
    servers = (LiveServer(db_url, tmp_path / "a.log"), LiveServer(db_url, tmp_path / "b.log"))
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def post(server: LiveServer, event: dict[str, Any]) -> None:
    response = httpx.post(f"{server.url}/api/v1/lineage", json=event, timeout=10)
    assert response.status_code == 201, response.text


def test_events_of_one_run_out_of_order_across_two_processes_make_one_run(
    two_servers: tuple[LiveServer, LiveServer],
) -> None:
    a, b = two_servers
    task_start, task_end, _, _, _ = recorded()
    # the task's START reaches one replica, the DAG run's COMPLETE (naming nothing) the other
    # before the DAG run's START, which comes last, to the first replica again
    post(a, task_start)
    post(b, dag_end())
    post(b, task_end)
    post(a, dag_start())
    [run] = runs_of(a, DAG)
    assert run["state"] == "completed" and run["run_key"] == AIRFLOW_RUN_ID
    [task] = runs_of(b, TASK_A)
    assert task["parent_run"] == run["id"]
    assert pipelines(a) == pipelines(b)
    assert "feas/feas_ok_dag" not in pipelines(a)


def labels_of(client: TestClient, resource: str) -> dict[str, str]:
    labels: dict[str, str] = get(client, f"/api/pipelines/{resource}")["labels"]
    return labels


def test_a_facet_left_out_keeps_its_labels_and_a_deleted_one_empties_them(
    client: TestClient,
) -> None:
    start, end, _, _, _ = recorded()
    assert start["job"]["facets"]["ownership"]["owners"] == [{"name": "airflow"}]
    del end["job"]["facets"]["ownership"]
    send(client, start, end)
    assert labels_of(client, TASK_A)["owners"] == "airflow"
    assert labels_of(client, TASK_A)["job_type"] == "TASK"
    later = copy.deepcopy(end)
    later["eventType"] = "OTHER"
    later["eventTime"] = "2026-11-23T19:30:00+00:00"
    later["job"]["facets"] = {"ownership": {"_deleted": True}}
    send(client, later)
    labels = labels_of(client, TASK_A)
    assert labels["owners"] == "" and labels["job_type"] == "TASK"


TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/opt/airflow/dags/feas_ok_dag.py", line 12, in a\n'
    '    raise RuntimeError("first try fails")\n'
    "RuntimeError: first try fails\n"
)


def provider_fail(try_number: int, retries: int = 1) -> dict[str, Any]:
    """Task a's FAIL as the provider sends it (`fail_task`): str(error), the traceback."""
    event = copy.deepcopy(recorded()[1])
    event["eventType"] = "FAIL"
    event["eventTime"] = "2026-11-23T19:28:41.100000+00:00"
    facets = event["run"]["facets"]
    facets["airflow"]["task"]["retries"] = retries
    facets["airflow"]["taskInstance"]["try_number"] = try_number
    if try_number > 1:  # the provider gives each try a runId of its own
        event["run"]["runId"] = "01a209e1-abfd-7f1a-879a-67fe2b5dcb0" + str(try_number)
    facets["errorMessage"] = {
        "message": "first try fails",
        "programmingLanguage": "python",
        "stackTrace": TRACEBACK,
    }
    return event


def test_a_try_airflow_retries_stays_retrying_when_the_provider_reports_last(
    client: TestClient,
) -> None:
    plugin = task_event(
        "feas",
        "run.failed",
        dag_id="feas_ok_dag",
        run_id=AIRFLOW_RUN_ID,
        task_id="a",
        try_number=1,
        map_index=-1,
        occurred=datetime(2026, 11, 23, 19, 28, 41, tzinfo=UTC),
        labels={},
        state="up_for_retry",
        error="RuntimeError: first try fails",
        will_retry=True,
    )
    assert client.post("/api/events", json=plugin).status_code == 202
    send(client, provider_fail(try_number=1))  # 0.1 s after the plugin's report
    [task] = runs_of(client, TASK_A)
    assert task["state"] == "retrying"
    assert task["error"] == "RuntimeError: first try fails"


def test_the_last_try_fails(client: TestClient) -> None:
    send(client, provider_fail(try_number=2))
    [task] = runs_of(client, TASK_A)
    assert task["state"] == "failed" and task["run_key"] == f"{AIRFLOW_RUN_ID}/a/2"
    assert task["error"] == "RuntimeError: first try fails"
