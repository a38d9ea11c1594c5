"""Every endpoint's happy path and documented errors, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coplane.http.body import MAX_BODY_BYTES, MAX_EVENTS
from tests.factories import event_dict

PIPE = "airflow.prod.sales"


def post(client: TestClient, body: Any, **headers: str) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/events", content=raw, headers=headers)


def stored(client: TestClient) -> int:
    return len(client.get("/api/events", params={"limit": 1000}).json()["events"])


def assert_error(response: Any, status: int, loc: list[Any] | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)
    if loc is not None:
        assert body["errors"][0]["loc"] == loc


def test_health(client: TestClient, db_url: str) -> None:
    body = client.get("/api/health").json()
    assert body["status"] == "ok"
    assert body["database"] == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
    assert body["timescaledb"] is False
    assert body["version"]


def test_post_one_event_and_read_it_back(client: TestClient) -> None:
    e = event_dict("run.started", PIPE, run="r1", payload={"try_number": 1})
    r = post(client, e)
    assert r.status_code == 202
    assert r.json() == {"accepted": 1, "duplicates": 0}
    [got] = client.get("/api/events").json()["events"]
    assert got["id"] == e["id"]
    assert got["event"] == "run.started"
    assert got["resource"] == {"id": PIPE}
    assert got["related"] == [{"id": "r1", "role": "run"}]
    assert got["payload"] == {"try_number": 1}
    assert got["received"].endswith("+00:00")


def test_duplicates_are_counted(client: TestClient) -> None:
    batch = [event_dict("run.started", PIPE, run=f"r{i}") for i in range(3)]
    assert post(client, batch).json() == {"accepted": 3, "duplicates": 0}
    assert post(client, batch).json() == {"accepted": 0, "duplicates": 3}
    assert stored(client) == 3


def test_gzip_body(client: TestClient) -> None:
    raw = gzip.compress(json.dumps([event_dict("run.started", PIPE, run="r1")]).encode())
    assert post(client, raw, **{"Content-Encoding": "gzip"}).status_code == 202
    assert stored(client) == 1


def test_empty_array_accepts_nothing(client: TestClient) -> None:
    assert post(client, []).json() == {"accepted": 0, "duplicates": 0}


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        (b'{"occurred": ', 400, ["body"]),
        (b"", 400, ["body"]),
        (b"42", 422, ["body"]),
        (
            [{"occurred": "2026-11-02T08:00:00", "event": "x", "resource": {"id": "r"}}],
            422,
            ["body", 0, "occurred"],
        ),
        (
            [{"occurred": "2026-11-02T08:00:00Z", "event": 3, "resource": {"id": "r"}}],
            422,
            ["body", 0, "event"],
        ),
        (
            [{"occurred": "2026-11-02T08:00:00Z", "resource": {"id": "r"}}],
            422,
            ["body", 0, "event"],
        ),
        (
            [{"occurred": "2026-11-02T08:00:00Z", "event": "x", "resource": {"id": ""}}],
            422,
            ["body", 0, "resource", "id"],
        ),
    ],
)
def test_bad_bodies_name_the_problem(
    client: TestClient, body: Any, status: int, loc: list[Any]
) -> None:
    assert_error(post(client, body), status, loc)
    assert stored(client) == 0
    # the server still serves
    assert post(client, [event_dict("run.started", PIPE, run="r1")]).status_code == 202


def test_one_bad_event_rejects_the_whole_batch(client: TestClient) -> None:
    good = event_dict("run.started", PIPE, run="r1")
    bad = {**event_dict("run.started", PIPE, run="r2"), "occurred": "2026-11-02 08:00"}
    r = post(client, [good, good, bad])
    assert_error(r, 422, ["body", 2, "occurred"])
    assert "occurred" in r.json()["detail"]
    assert stored(client) == 0
    # the server still serves, and the good events can be resent
    assert post(client, [good]).status_code == 202


def test_batch_over_the_event_limit_is_413(client: TestClient) -> None:
    e = event_dict("run.started", PIPE, run="r")
    r = post(client, [e] * (MAX_EVENTS + 1))
    assert_error(r, 413)
    assert str(MAX_EVENTS) in r.json()["detail"]
    assert stored(client) == 0


def test_body_over_the_size_limit_is_413(client: TestClient) -> None:
    big = event_dict("run.started", PIPE, run="r", payload={"log": "x" * (MAX_BODY_BYTES + 1)})
    r = post(client, [big])
    assert_error(r, 413)
    assert "16 MiB" in r.json()["detail"]


def test_gzip_bomb_is_413_not_inflated(client: TestClient) -> None:
    bomb = gzip.compress(b"[" + b" " * (MAX_BODY_BYTES + 10) + b"]")
    assert len(bomb) < 100_000
    assert_error(post(client, bomb, **{"Content-Encoding": "gzip"}), 413)


def test_unknown_content_encoding_is_415(client: TestClient) -> None:
    r = post(client, [event_dict("run.started", PIPE)], **{"Content-Encoding": "br"})
    assert_error(r, 415, ["header", "content-encoding"])
    assert stored(client) == 0


def test_corrupt_gzip_is_400(client: TestClient) -> None:
    raw = gzip.compress(json.dumps([event_dict("run.started", PIPE)]).encode())
    assert_error(post(client, raw[:-12], **{"Content-Encoding": "gzip"}), 400, ["body"])
    assert_error(post(client, b"not gzip at all", **{"Content-Encoding": "gzip"}), 400, ["body"])
    assert stored(client) == 0


def test_events_filters_and_cursor(client: TestClient) -> None:
    post(
        client,
        [
            event_dict("run.started", PIPE, minutes=1, run="r1"),
            event_dict("run.completed", PIPE, minutes=2, run="r1"),
            event_dict(
                "asset.updated", "wh.sales", minutes=3, related=[{"role": "producer", "id": PIPE}]
            ),
        ],
    )

    def names(**q: str) -> list[str]:
        return [e["event"] for e in client.get("/api/events", params=q).json()["events"]]

    assert names() == ["asset.updated", "run.completed", "run.started"]
    assert names(event="run.*") == ["run.completed", "run.started"]
    assert names(resource="wh.sales") == ["asset.updated"]
    assert names(related=PIPE) == ["asset.updated"]
    assert names(since="2026-11-02T08:02:00Z") == ["asset.updated", "run.completed"]
    assert names(until="2026-11-02T08:02:00+00:00") == ["run.started"]
    page = client.get("/api/events", params={"limit": 2}).json()
    assert len(page["events"]) == 2 and page["next"]
    rest = client.get("/api/events", params={"limit": 2, "cursor": page["next"]}).json()
    assert [e["event"] for e in rest["events"]] == ["run.started"] and rest["next"] is None


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"since": "2026-11-02T08:00:00"}, ["query", "since"]),
        ({"limit": "0"}, ["query", "limit"]),
        ({"limit": "100000"}, ["query", "limit"]),
        ({"cursor": "garbage"}, ["query", "cursor"]),
    ],
)
def test_events_query_errors(client: TestClient, params: dict[str, str], loc: list[str]) -> None:
    assert_error(client.get("/api/events", params=params), 422, loc)


def _dag_run(client: TestClient) -> None:
    dag = [{"role": "parent", "id": PIPE}, {"role": "parent_run", "id": "r1"}]
    post(
        client,
        [
            event_dict(
                "run.started",
                PIPE,
                minutes=0,
                run="r1",
                related=[{"role": "input", "id": "raw.orders"}],
            ),
            event_dict("run.started", f"{PIPE}.extract", minutes=1, run="t1", related=dag),
            event_dict("run.completed", f"{PIPE}.extract", minutes=3, run="t1", related=dag),
            event_dict("run.started", f"{PIPE}.load", minutes=3, run="t2", related=dag),
            event_dict(
                "run.failed",
                f"{PIPE}.load",
                minutes=4,
                run="t2",
                related=dag,
                payload={"error": {"message": "table locked"}},
            ),
            event_dict(
                "run.failed",
                PIPE,
                minutes=5,
                run="r1",
                related=[{"role": "output", "id": "wh.sales"}],
            ),
            event_dict("run.started", PIPE, minutes=60, run="r2"),
            event_dict("run.completed", PIPE, minutes=70, run="r2"),
            event_dict(
                "asset.updated",
                "wh.sales",
                minutes=70,
                run="r2",
                related=[{"role": "producer", "id": PIPE}],
                payload={"row_count": 10},
            ),
            event_dict(
                "check.failed",
                "wh.sales",
                minutes=71,
                payload={"check": "not_null", "column": "id", "message": "3 nulls"},
            ),
        ],
    )


def test_runs_list_and_detail(client: TestClient) -> None:
    _dag_run(client)
    runs = client.get("/api/runs", params={"pipeline": PIPE}).json()["runs"]
    assert [(r["run_key"], r["state"]) for r in runs] == [("r2", "completed"), ("r1", "failed")]
    r1 = runs[1]
    assert r1["duration_s"] == 300.0 and r1["source"] == "airflow" and r1["parent_run"] is None
    detail = client.get(f"/api/runs/{r1['id']}").json()
    assert [(t["pipeline"], t["state"]) for t in detail["tasks"]] == [
        (f"{PIPE}.extract", "completed"),
        (f"{PIPE}.load", "failed"),
    ]
    assert detail["tasks"][1]["error"] == "table locked"
    assert all(t["parent_run"] == r1["id"] for t in detail["tasks"])
    assert [e["event"] for e in detail["events"]] == ["run.started", "run.failed"]
    failed = client.get("/api/runs", params={"state": "failed"}).json()["runs"]
    assert {r["pipeline"] for r in failed} == {PIPE, f"{PIPE}.load"}
    page = client.get("/api/runs", params={"limit": 1, "pipeline": PIPE}).json()
    nxt = client.get("/api/runs", params={"limit": 1, "pipeline": PIPE, "cursor": page["next"]})
    assert nxt.json()["runs"][0]["run_key"] == "r1"


def test_run_errors(client: TestClient) -> None:
    assert_error(client.get(f"/api/runs/{uuid.uuid4()}"), 404)
    assert_error(client.get("/api/runs/not-a-uuid"), 422, ["path", "run_id"])
    assert_error(client.get("/api/runs", params={"state": "exploded"}), 422, ["query", "state"])


def test_pipelines(client: TestClient) -> None:
    _dag_run(client)
    [p] = client.get("/api/pipelines").json()["pipelines"]
    assert p["id"] == PIPE and p["kind"] == "pipeline"
    assert p["last_run"]["run_key"] == "r2"
    assert p["success_rate"] == 0.5
    assert p["p50_duration_s"] == 600.0 and p["p95_duration_s"] == 600.0
    tasks = client.get("/api/pipelines", params={"kind": "task"}).json()["pipelines"]
    assert [t["id"] for t in tasks] == [f"{PIPE}.extract", f"{PIPE}.load"]
    one = client.get(f"/api/pipelines/{PIPE}").json()
    assert one["tasks"] == [f"{PIPE}.extract", f"{PIPE}.load"]
    assert one["inputs"] == ["raw.orders"] and one["outputs"] == ["wh.sales"]
    assert_error(client.get("/api/pipelines/nope"), 404)
    assert_error(client.get("/api/pipelines/wh.sales"), 404)  # an asset is not a pipeline


def test_assets(client: TestClient) -> None:
    _dag_run(client)
    assets = {a["id"]: a for a in client.get("/api/assets").json()["assets"]}
    assert set(assets) == {"raw.orders", "wh.sales"}
    sales = client.get("/api/assets/wh.sales").json()
    assert sales["last_updated"] == "2026-11-02T09:10:00+00:00"
    assert sales["producer"] == PIPE
    assert sales["checks"] == [
        {
            "name": "not_null(id)",
            "status": "failed",
            "at": "2026-11-02T09:11:00+00:00",
            "message": "3 nulls",
        }
    ]
    assert assets["raw.orders"]["last_updated"] is None
    assert_error(client.get(f"/api/assets/{PIPE}"), 404)


def test_assets_with_slashes_in_ids(client: TestClient) -> None:
    post(client, [event_dict("asset.updated", "s3://lake/raw/orders")])
    assert client.get("/api/assets/s3://lake/raw/orders").json()["id"] == "s3://lake/raw/orders"


def test_lineage(client: TestClient) -> None:
    _dag_run(client)
    g = client.get("/api/lineage", params={"node": PIPE}).json()
    assert {(e["source"], e["target"]) for e in g["edges"]} == {
        ("raw.orders", PIPE),
        (PIPE, "wh.sales"),
    }
    nodes = {n["id"]: n for n in g["nodes"]}
    assert nodes[PIPE]["status"] == "ok" and nodes[PIPE]["kind"] == "pipeline"
    assert nodes["wh.sales"]["status"] == "failing_checks"
    assert nodes["raw.orders"]["status"] == "unknown"
    down = client.get(
        "/api/lineage", params={"node": "raw.orders", "direction": "downstream", "depth": 1}
    ).json()
    assert {n["id"] for n in down["nodes"]} == {"raw.orders", PIPE}
    up = client.get("/api/lineage", params={"node": "raw.orders", "direction": "upstream"}).json()
    assert up["edges"] == []
    whole = client.get("/api/lineage").json()
    assert len(whole["edges"]) == 2
    assert_error(client.get("/api/lineage", params={"node": "nope"}), 404)
    assert_error(client.get("/api/lineage", params={"node": PIPE, "depth": 0}), 422)
    assert_error(client.get("/api/lineage", params={"direction": "sideways"}), 422)


def test_unknown_route_uses_the_error_body(client: TestClient) -> None:
    assert_error(client.get("/api/nothing-here"), 404)


def test_openlineage_single_and_errors(client: TestClient) -> None:
    run_id = str(uuid.uuid4())
    ev = {
        "eventTime": "2026-11-02T08:00:00Z",
        "eventType": "START",
        "producer": "https://x/dbt",
        "run": {"runId": run_id},
        "job": {"namespace": "dbt", "name": "model.orders"},
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    assert client.post("/api/v1/lineage", json=ev).status_code == 201
    assert client.post("/api/v1/lineage", json=ev).json() == {"accepted": 0, "duplicates": 1}
    [run] = client.get("/api/runs").json()["runs"]
    assert (run["pipeline"], run["state"], run["source"]) == ("dbt/model.orders", "running", "dbt")
    assert_error(client.post("/api/v1/lineage", content=b"{nope"), 400, ["body"])
    assert_error(
        client.post("/api/v1/lineage", json={**ev, "eventTime": "2026-11-02T08:00:00"}),
        422,
        ["body", "eventTime"],
    )
    assert_error(
        client.post("/api/v1/lineage", json={**ev, "run": {"runId": "x"}}),
        422,
        ["body", "run", "runId"],
    )
    gz = gzip.compress(
        json.dumps({**ev, "eventType": "COMPLETE", "eventTime": "2026-11-02T08:05:00Z"}).encode()
    )
    r = client.post("/api/v1/lineage", content=gz, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 201
    [run] = client.get("/api/runs").json()["runs"]
    assert run["state"] == "completed" and run["duration_s"] == 300.0
    assert_error(
        client.post("/api/v1/lineage", content=gz[:20], headers={"Content-Encoding": "gzip"}), 400
    )
    nul = {**ev, "job": {"namespace": "dbt", "name": "model\u0000orders"}}
    assert_error(client.post("/api/v1/lineage", json=nul), 422, ["body", "job", "name"])


def test_openlineage_batch(client: TestClient) -> None:
    def ev(i: int, **over: Any) -> dict[str, Any]:
        return {
            "eventTime": f"2026-11-02T08:0{i}:00Z",
            "eventType": "START",
            "producer": "p",
            "run": {"runId": str(uuid.uuid4())},
            "job": {"namespace": "ns", "name": f"job{i}"},
            **over,
        }

    r = client.post("/api/v1/lineage/batch", json=[ev(1), ev(2, eventTime="soon"), ev(3)])
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "partial_success"
    assert body["summary"] == {"received": 3, "successful": 2, "failed": 1}
    [failure] = body["failed_events"]
    assert failure["index"] == 1 and failure["retriable"] is False
    assert "eventTime" in failure["reason"]
    assert len(client.get("/api/runs").json()["runs"]) == 2
    all_bad = client.post("/api/v1/lineage/batch", json=[ev(4, run={})]).json()
    assert all_bad["status"] == "failure"
    assert_error(client.post("/api/v1/lineage/batch", json={"not": "an array"}), 422)
    assert_error(client.post("/api/v1/lineage/batch", content=b"[1,"), 400)
    assert client.post("/api/v1/lineage/batch", json=[]).json()["status"] == "success"
    nul = client.post("/api/v1/lineage/batch", json=[ev(5, producer="p\u0000")]).json()
    assert nul["status"] == "failure" and "U+0000" in nul["failed_events"][0]["reason"]


def test_a_payload_over_the_limit_is_a_422_and_keeps_nothing(client: TestClient) -> None:
    good = event_dict("run.started", "p")
    deep: Any = {}
    for _ in range(40):
        deep = {"x": deep}
    bad = {**event_dict("run.started", "q"), "payload": deep}
    resp = client.post("/api/events", json=[good, bad])
    assert_error(resp, 422, ["body", 1, "payload"])
    assert "the limit is 32" in resp.json()["errors"][0]["msg"]
    assert client.get("/api/events").json()["events"] == []  # the batch is refused whole


def test_openapi_documents_the_error_body_for_422(client: TestClient) -> None:
    # FastAPI documented 422 as its own `detail: [...]` body (found by tests/fuzz)
    schema = client.get("/openapi.json").json()
    invalid = schema["paths"]["/api/pipelines"]["get"]["responses"]["422"]
    assert invalid["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail", "errors"]
    assert_error(client.get("/api/pipelines", params={"limit": 0}), 422, ["query", "limit"])


def test_a_time_with_an_offset_beyond_postgresqls_range_is_stored_in_utc(
    client: TestClient,
) -> None:
    event = {**event_dict("run.started", "p"), "occurred": "2026-11-02T23:30:00+16:00"}
    assert client.post("/api/events", json=event).status_code == 202
    [stored] = client.get("/api/events").json()["events"]
    assert stored["occurred"] == "2026-11-02T07:30:00+00:00"
