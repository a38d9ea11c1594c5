"""Refusals that say what to do: the wrong ingest path, an unknown route, a time without a zone."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from coplane.collector.ingest import MAX_REPORTED
from tests.factories import event_dict

OPENLINEAGE = {
    "eventTime": "2026-11-02T08:00:00Z",
    "eventType": "START",
    "producer": "https://example.com/dbt",
    "run": {"runId": "3f1e7a0c-1111-4111-8111-111111111111"},
    "job": {"namespace": "dbt", "name": "model.orders"},
}


def native(**over: Any) -> dict[str, Any]:
    return {**event_dict("run.started", "cron.nightly_export", run=str(uuid.uuid4())), **over}


def test_an_openlineage_event_sent_to_api_events_is_pointed_to_the_lineage_path(
    client: TestClient,
) -> None:
    for body in (OPENLINEAGE, [OPENLINEAGE]):
        r = client.post("/api/events", json=body)
        assert r.status_code == 422
        assert "/api/v1/lineage" in r.json()["detail"]
        assert r.json()["errors"][0]["loc"] == ["body"]
    # the same body where it belongs is accepted
    assert client.post("/api/v1/lineage", json=OPENLINEAGE).status_code == 201


def test_a_native_event_sent_to_the_lineage_paths_is_pointed_to_api_events(
    client: TestClient,
) -> None:
    r = client.post("/api/v1/lineage", json=native())
    assert r.status_code == 422
    assert "send it to /api/events" in r.json()["detail"]
    batch = client.post("/api/v1/lineage/batch", json=[native()]).json()
    assert "send it to /api/events" in batch["failed_events"][0]["reason"]


def test_a_time_without_a_zone_says_to_add_z_or_an_offset(client: TestClient) -> None:
    r = client.post("/api/events", json=native(occurred="2026-11-02T08:00:00"))
    assert r.status_code == 422
    assert "add Z or an offset" in r.json()["detail"]
    assert r.json()["errors"][0]["loc"] == ["body", "occurred"]
    ol = client.post("/api/v1/lineage", json={**OPENLINEAGE, "eventTime": "2026-11-02T08:00:00"})
    assert "add Z or an offset" in ol.json()["detail"]


def test_a_batch_reports_every_invalid_event_not_only_the_first(client: TestClient) -> None:
    batch = [
        native(),
        native(occurred="2026-11-02T08:00:00"),
        native(),
        native(event=3),
        {k: v for k, v in native().items() if k != "resource"},
        native(occurred="1900-01-01T00:00:00Z"),
    ]
    r = client.post("/api/events", json=batch)
    assert r.status_code == 422
    body = r.json()
    assert [e["loc"] for e in body["errors"]] == [
        ["body", 1, "occurred"],
        ["body", 3, "event"],
        ["body", 4, "resource"],
        ["body", 5, "occurred"],
    ]
    assert "and 3 more invalid events" in body["detail"]
    # nothing of it is stored
    assert client.get("/api/events").json()["events"] == []


def test_a_huge_invalid_batch_lists_a_bounded_number_of_errors(client: TestClient) -> None:
    batch = [native(event=i) for i in range(MAX_REPORTED + 50)]
    body = client.post("/api/events", json=batch).json()
    assert len(body["errors"]) == MAX_REPORTED
    assert f"and {MAX_REPORTED + 49} more invalid events" in body["detail"]
    assert f"the first {MAX_REPORTED}" in body["detail"]


def test_an_unknown_api_path_names_the_path_and_the_nearest_route(client: TestClient) -> None:
    r = client.get("/api/slass")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    detail = r.json()["detail"]
    assert "/api/slass" in detail and "nearest is /api/slas" in detail
    assert r.json()["errors"] == [{"loc": ["path"], "msg": detail}]
    assert "nearest is /api/events" in client.post("/api/event", json=[]).json()["detail"]
    # a route's own 404 keeps its own message
    missing = client.get(f"/api/runs/{uuid.uuid4()}").json()["detail"]
    assert "no route" not in missing
