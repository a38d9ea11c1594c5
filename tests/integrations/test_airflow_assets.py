"""One Airflow asset has one id, whether the plugin or the OpenLineage provider reports it.

The provider's datasets are what its `translate_airflow_asset` makes of an asset URI (the
common-io provider's `convert_asset_to_openlineage` for `file`: namespace `file`, or
`file://<host>`, and the path as the name); the recorded Airflow 3.3 task event
(tests/fixtures/airflow-3.3-openlineage-events.jsonl) is given that dataset as output.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coplane.collector.openlineage import translate_openlineage
from coplane.integrations.airflow import naming
from coplane.integrations.airflow.listener import asset_events, task_event

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "airflow-3.3-openlineage-events.jsonl"
URI = "file:///data/orders.csv"
RUN_ID = "manual__2026-11-23T19:28:35.686677+00:00"
TASK = "airflow.feas.feas_ok_dag.a"


@pytest.mark.parametrize(
    ("namespace", "name", "uri"),
    [
        ("file", "/data/orders.csv", URI),
        ("file://etl-host", "/data/orders.csv", "file://etl-host/data/orders.csv"),
        ("s3://lake", "raw/orders.csv", "s3://lake/raw/orders.csv"),
        ("gs://lake", "raw/orders.csv", "gs://lake/raw/orders.csv"),
    ],
)
def test_an_openlineage_dataset_is_the_asset_its_uri_names(
    namespace: str, name: str, uri: str
) -> None:
    assert naming.dataset_asset_id(namespace, name) == naming.asset_id(uri) == uri


def test_other_datasets_keep_namespace_and_name() -> None:
    assert naming.dataset_asset_id("postgres://db:5432", "shop.public.orders") == (
        "postgres://db:5432/shop.public.orders"
    )


def provider_complete(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    lines = SAMPLES.read_text().splitlines()
    event: dict[str, Any] = copy.deepcopy(json.loads(lines[1]))  # task a's COMPLETE
    event["outputs"] = outputs
    return event


def test_the_providers_file_dataset_is_the_assets_uri() -> None:
    events = translate_openlineage(
        provider_complete([{"namespace": "file", "name": "/data/orders.csv"}])
    )
    [updated] = [e for e in events if e.event == "asset.updated"]
    assert updated.resource.id == URI
    assert [r.id for r in events[0].related if r.role == "output"] == [URI]


def test_the_plugin_reports_a_tasks_assets_lineage_and_updates(client: TestClient) -> None:
    at = datetime(2026, 11, 23, 19, 28, 41, tzinfo=UTC)
    common: dict[str, Any] = {"dag_id": "feas_ok_dag", "run_id": RUN_ID, "task_id": "a"}
    sent = [
        task_event(
            "feas", "run.completed", **common, try_number=1, map_index=-1, occurred=at,
            labels={}, inlets=["s3://lake/raw/orders.csv"], outlets=[URI, URI],
        ),
        *asset_events(
            "feas", **common, try_number=1, map_index=-1, outlets=[URI, URI], occurred=at
        ),
    ]  # fmt: skip
    assert len(sent) == 2  # an outlet listed twice is updated once
    response = client.post("/api/events", json=sent)
    assert response.status_code == 202, response.text
    asset = client.get(f"/api/assets/{URI}").json()
    assert asset["producer"] == TASK
    lineage = client.get("/api/lineage", params={"node": TASK}).json()
    edges = {(e["source"], e["target"]) for e in lineage["edges"]}
    assert {("s3://lake/raw/orders.csv", TASK), (TASK, URI)} <= edges
    # the provider's report of the same update names the same asset
    provider = provider_complete([{"namespace": "file", "name": "/data/orders.csv"}])
    assert client.post("/api/v1/lineage", json=provider).status_code == 201
    ids = {a["id"] for a in client.get("/api/assets").json()["assets"]}
    assert URI in ids and "file//data/orders.csv" not in ids
