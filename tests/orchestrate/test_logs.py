"""`POST /api/logs` and `GET /api/runs/{id}/logs`: batches validated whole, bounded, and shown
on the run's page, refreshing while the run goes on."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from coplane.jobs.scheduler import run_job
from coplane.orchestrate.api import MAX_LOGS, MAX_MESSAGE_CHARS
from coplane.settings import Settings
from coplane.store import Store
from tests.factories import at, event_dict


def _log(run_id: str, message: str, minute: float = 0, **extra: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "task_run_id": None,
        "timestamp": at(minute).isoformat(),
        "level": "INFO",
        "logger": "coplane.flow",
        "message": message,
        **extra,
    }


def _run(client: TestClient, state: str = "run.started") -> str:
    sent = client.post("/api/events", json=[event_dict(state, "sdk.flow.etl", run="r1")])
    assert sent.status_code == 202
    runs = client.get("/api/runs", params={"pipeline": "sdk.flow.etl"}).json()["runs"]
    return str(runs[0]["id"])


def test_lines_sent_are_read_back_in_order(client: TestClient) -> None:
    run_id = str(uuid.uuid4())
    task = "load-orders-3"  # the SDK's own id of a task run: any text
    sent = client.post(
        "/api/logs",
        json={"logs": [_log(run_id, "second", 2, task_run_id=task), _log(run_id, "first", 1)]},
    )
    assert sent.status_code == 202 and sent.json() == {"accepted": 2}
    got = client.get(f"/api/runs/{run_id}/logs").json()
    assert [(x["message"], x["task_run_id"]) for x in got["logs"]] == [
        ("first", None),
        ("second", task),
    ]
    assert got["next"] is None
    assert got["logs"][0]["timestamp"] == at(1).isoformat()
    page = client.get(f"/api/runs/{run_id}/logs", params={"limit": 1}).json()
    assert len(page["logs"]) == 1 and page["next"]
    rest = client.get(f"/api/runs/{run_id}/logs", params={"cursor": page["next"]}).json()
    assert [x["message"] for x in rest["logs"]] == ["second"]


def test_an_invalid_line_refuses_the_batch_naming_the_field(client: TestClient) -> None:
    run_id = str(uuid.uuid4())
    bad = _log(run_id, "no zone")
    bad["timestamp"] = "2026-11-02T08:00:00"
    answer = client.post("/api/logs", json={"logs": [_log(run_id, "fine"), bad]})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["body", "logs", 1, "timestamp"]
    assert "logs.1.timestamp" in answer.json()["detail"]
    wrong_id = client.post("/api/logs", json={"logs": [_log("not-a-uuid", "x")]})
    assert wrong_id.status_code == 422
    assert wrong_id.json()["errors"][0]["loc"] == ["body", "logs", 0, "run_id"]
    no_task = client.post("/api/logs", json={"logs": [_log(run_id, "x", task_run_id="")]})
    assert no_task.status_code == 422
    assert no_task.json()["errors"][0]["loc"] == ["body", "logs", 0, "task_run_id"]
    assert client.get(f"/api/runs/{run_id}/logs").json()["logs"] == []


def test_unreadable_misshapen_and_oversized_bodies(client: TestClient) -> None:
    assert client.post("/api/logs", content=b"{nope").status_code == 400
    shape = client.post("/api/logs", json=[_log(str(uuid.uuid4()), "x")])
    assert shape.status_code == 422 and shape.json()["errors"][0]["loc"] == ["body", "logs"]
    many = {"logs": [_log(str(uuid.uuid4()), "x")] * (MAX_LOGS + 1)}
    too_many = client.post("/api/logs", json=many)
    assert too_many.status_code == 413 and str(MAX_LOGS) in too_many.json()["detail"]
    bad_cursor = client.get(f"/api/runs/{uuid.uuid4()}/logs", params={"cursor": "zz"})
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["errors"][0]["loc"] == ["query", "cursor"]


def test_a_huge_message_is_cut_and_nul_is_shown(client: TestClient) -> None:
    run_id = str(uuid.uuid4())
    sent = client.post(
        "/api/logs",
        json={"logs": [_log(run_id, "a" * (MAX_MESSAGE_CHARS + 10)), _log(run_id, "x\x00y", 1)]},
    )
    assert sent.status_code == 202
    long, nul = client.get(f"/api/runs/{run_id}/logs").json()["logs"]
    assert len(long["message"]) == MAX_MESSAGE_CHARS and long["message"].endswith("[truncated]")
    assert nul["message"] == "x\ufffdy"


def test_logs_are_never_events(client: TestClient) -> None:
    run_id = _run(client)
    client.post("/api/logs", json={"logs": [_log(run_id, "hello from the flow")]})
    events = client.get("/api/events").json()["events"]
    assert all("hello from the flow" not in str(e) for e in events)


def test_run_page_shows_logs_and_refreshes_while_running(client: TestClient) -> None:
    run_id = _run(client)
    client.post("/api/logs", json={"logs": [_log(run_id, "loading 42 rows", 1)]})
    page = client.get("/pipelines/sdk.flow.etl", params={"run": run_id})
    assert page.status_code == 200
    assert "loading 42 rows" in page.text
    assert f'hx-get="/runs/{run_id}/logs" hx-trigger="every 2s"' in page.text
    client.post("/api/logs", json={"logs": [_log(run_id, "done loading", 2)]})
    partial = client.get(f"/runs/{run_id}/logs", headers={"HX-Request": "true"})
    assert partial.text.index("loading 42 rows") < partial.text.index("done loading")
    assert "<html" not in partial.text
    client.post(
        "/api/events", json=[event_dict("run.completed", "sdk.flow.etl", run="r1", minutes=3)]
    )
    finished = client.get(f"/runs/{run_id}/logs")
    assert "every 2s" not in finished.text and "done loading" in finished.text
    assert client.get("/runs/not-a-run/logs").status_code == 404


def test_retention_job_drops_old_lines(store: Store, client: TestClient, db_url: str) -> None:
    run_id = str(uuid.uuid4())
    client.post("/api/logs", json={"logs": [_log(run_id, "ancient")]})  # at(0) is in 2026-11
    settings = Settings(database_url=db_url, logs_retention_days=1)
    assert run_job("maintain-logs", store, settings) == 1
    assert client.get(f"/api/runs/{run_id}/logs").json()["logs"] == []
