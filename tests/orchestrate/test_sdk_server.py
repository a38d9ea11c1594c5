"""Flows reporting to a real server (SQLite and PostgreSQL): runs, outages, SLAs, run logs."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coplane import DaskTaskRunner, flow, get_run_logger, task
from coplane.orchestrate import reporter as reporting
from coplane.orchestrate.context import get_run_context
from coplane.orchestrate.reporter import HttpReporter
from tests.conftest import LiveServer
from tests.fake_http import Reply, Request, fake_service

pytestmark = pytest.mark.slow


@pytest.fixture
def report_to(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[[str], HttpReporter]]:
    """Point this process's flows at a server; the reporter is made from the environment."""

    def point(url: str) -> HttpReporter:
        reporting.reset_reporter()
        monkeypatch.setenv("COPLANE_URL", url)
        monkeypatch.setenv("COPLANE_SPOOL_DIR", str(tmp_path / "spool"))
        made = reporting.get_reporter()
        assert isinstance(made, HttpReporter)
        return made

    yield point
    reporting.reset_reporter()


def _get(server: LiveServer, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _wait(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"no {what} within {seconds} s")


@task(retries=1)
def step(i: int) -> int:
    ctx = get_run_context()
    if i == 3 and ctx is not None and ctx.try_number == 1:
        raise ConnectionError("first try of 3 fails")
    return i


@flow
def stored_flow(n: int) -> list[int]:
    return [step(i) for i in range(n)]


def test_flow_and_task_runs_are_stored_as_runs(
    live_server: LiveServer, report_to: Callable[[str], HttpReporter]
) -> None:
    reporter = report_to(live_server.url)
    assert stored_flow(5) == [0, 1, 2, 3, 4]
    assert reporter.flush()
    [flow_run] = _get(live_server, "/api/runs", pipeline="sdk.stored_flow")["runs"]
    assert flow_run["state"] == "completed" and flow_run["source"] == "sdk"
    detail = _get(live_server, f"/api/runs/{flow_run['id']}")
    tasks = detail["tasks"]
    assert len(tasks) == 6  # five task runs, one of them tried twice
    assert sorted(t["state"] for t in tasks) == ["completed"] * 5 + ["retrying"]
    assert {t["parent_run"] for t in tasks} == {flow_run["id"]}
    assert {t["pipeline"] for t in tasks} == {"sdk.stored_flow.step"}
    [retried] = [t for t in tasks if t["state"] == "retrying"]
    assert retried["error"] == "first try of 3 fails"
    pipeline = _get(live_server, "/api/pipelines/sdk.stored_flow")
    assert pipeline["id"] == "sdk.stored_flow"


def test_a_flow_run_while_the_server_is_down_completes_and_arrives_later_once(
    live_server: LiveServer, report_to: Callable[[str], HttpReporter]
) -> None:
    live_server.stop()
    reporter = report_to(live_server.url)
    assert stored_flow(4) == [0, 1, 2, 3]  # nothing to report to: the flow does not care
    assert reporter.flush(30)  # handed to the spool
    spool = Path(os.environ["COPLANE_SPOOL_DIR"])
    assert list(spool.glob("*.jsonl"))
    live_server.start()

    assert stored_flow(2) == [0, 1]  # the next send delivers the spool first
    assert reporter.flush(30)
    runs = _get(live_server, "/api/runs", pipeline="sdk.stored_flow")["runs"]
    assert len(runs) == 2 and {r["state"] for r in runs} == {"completed"}
    events = _get(live_server, "/api/events", resource="sdk.stored_flow", limit=1000)["events"]
    ends = [e for e in events if e["event"] == "run.completed"]
    assert len(ends) == 2  # each flow run's end, stored once
    assert len({e["id"] for e in events}) == len(events)
    assert not list(spool.glob("*.jsonl"))
    # a replay of the same events (another process flushing an old copy) stores nothing
    again = httpx.post(f"{live_server.url}/api/events", json=events, timeout=30).json()
    assert again == {"accepted": 0, "duplicates": len(events)}


@pytest.fixture
def fresh_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    config = tmp_path / "coplane.yaml"
    config.write_text(
        "slas:\n"
        "  - name: sales_fresh\n"
        "    kind: freshness\n"
        "    target: warehouse.sales_daily\n"
        "    max_age: 1h\n"
    )
    server = LiveServer(db_url, tmp_path / "server.log", config=config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@task(outputs=["warehouse.sales_daily"], inputs=["s3.raw.sales"])
def build_sales() -> int:
    return 1


@flow
def sales_refresh() -> int:
    return build_sales()


def test_a_flow_output_satisfies_the_freshness_sla_of_its_asset(
    fresh_server: LiveServer, report_to: Callable[[str], HttpReporter]
) -> None:
    before = _get(fresh_server, "/api/slas/sales_fresh")["status"]
    assert before != "ok"
    reporter = report_to(fresh_server.url)
    sales_refresh()
    assert reporter.flush()
    asset = _get(fresh_server, "/api/assets/warehouse.sales_daily")
    assert asset["producer"] == "sdk.sales_refresh.build_sales"
    _wait(lambda: _get(fresh_server, "/api/slas/sales_fresh")["status"] == "ok", "ok status")
    lineage = _get(fresh_server, "/api/lineage", node="sdk.sales_refresh.build_sales")
    edges = {(e["source"], e["target"]) for e in lineage["edges"]}
    assert ("s3.raw.sales", "sdk.sales_refresh.build_sales") in edges
    assert ("sdk.sales_refresh.build_sales", "warehouse.sales_daily") in edges


@flow(log_prints=True)
def noisy() -> None:
    print("from the flow")
    for i in range(3):
        get_run_logger().info("line %d", i)


def _stub(logs_status: int, posted: list[dict[str, Any]]) -> Callable[[Request], Reply]:
    def respond(request: Request) -> Reply:
        if request.path == "/api/events":
            body = request.body
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            n = len(json.loads(body))
            return Reply(202, {"accepted": n, "duplicates": 0})
        if request.path == "/api/logs":
            posted.append(request.json())
            return Reply(logs_status, {"accepted": 1} if logs_status < 300 else {"detail": "no"})
        return Reply(404, {"detail": "Not Found"})

    return respond


def test_logs_are_posted_in_batches_to_the_logs_endpoint(
    report_to: Callable[[str], HttpReporter],
) -> None:
    posted: list[dict[str, Any]] = []
    with fake_service(_stub(202, posted)) as stub:
        reporter = report_to(stub.url)
        noisy()
        assert reporter.flush()
        log_requests = [r for r in stub.requests if r.path == "/api/logs"]
    assert log_requests and all(r.method == "POST" for r in log_requests)
    assert log_requests[0].headers["content-type"] == "application/json"
    records = [record for body in posted for record in body["logs"]]
    assert [r["message"] for r in records] == ["from the flow", "line 0", "line 1", "line 2"]
    assert set(records[0]) == {"run_id", "task_run_id", "timestamp", "level", "logger",
                               "message"}  # fmt: skip
    assert reporter.sent_logs == 4


def test_a_server_without_the_logs_endpoint_gets_no_more_logs_and_the_flow_completes(
    report_to: Callable[[str], HttpReporter],
) -> None:
    posted: list[dict[str, Any]] = []
    with fake_service(_stub(404, posted)) as stub:
        reporter = report_to(stub.url)
        noisy()
        assert reporter.flush()
        noisy()
        assert reporter.flush()
        log_posts = [r for r in stub.requests if r.path == "/api/logs"]
        event_posts = [r for r in stub.requests if r.path == "/api/events"]
    assert len(log_posts) == 1  # the first 404 turned log shipping off
    assert len(event_posts) >= 2  # events still went
    assert reporter.sent_logs == 0


@task
def square(x: int) -> int:
    return x * x


def test_dask_worker_processes_report_their_task_runs_to_the_server(
    live_server: LiveServer, report_to: Callable[[str], HttpReporter]
) -> None:
    reporter = report_to(live_server.url)  # the workers inherit COPLANE_URL from here
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "processes": True,
                                            "threads_per_worker": 1,
                                            "dashboard_address": None})  # fmt: skip

    @flow(name="on_workers", task_runner=runner)
    def on_workers(n: int) -> int:
        return sum(f.result() for f in square.map(range(n)))

    assert on_workers(12) == sum(i * i for i in range(12))
    assert reporter.flush()
    [flow_run] = _get(live_server, "/api/runs", pipeline="sdk.on_workers")["runs"]
    # stored by the time the flow's own end is: the workers flushed before the cluster closed
    tasks = _get(live_server, f"/api/runs/{flow_run['id']}")["tasks"]
    assert len(tasks) == 12 and {t["state"] for t in tasks} == {"completed"}
    events = _get(live_server, "/api/events", resource="sdk.on_workers.square", limit=1000)
    ends = [e for e in events["events"] if e["event"] == "run.completed"]
    assert len(ends) == 12  # each task run's end, once
    assert all(t["started"] and t["duration_s"] is not None for t in tasks)


def test_a_task_with_a_concurrency_limit_holds_a_slot_per_try(
    live_server: LiveServer, report_to: Callable[[str], HttpReporter]
) -> None:
    report_to(live_server.url)
    created = httpx.put(f"{live_server.url}/api/concurrency/warehouse", json={"limit": 1})
    assert created.status_code in (200, 201), created.text
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    @task(concurrency="warehouse")
    def load(i: int) -> int:
        began = time.monotonic()
        time.sleep(0.2)
        with lock:
            spans.append((began, time.monotonic()))
        return i

    @flow
    def loads() -> list[int]:
        return [f.result() for f in load.map(range(4))]

    assert loads() == [0, 1, 2, 3]
    spans.sort()
    # a limit of one: no two task runs overlapped, though the runner would run them at once
    assert all(end <= later for (_, end), (later, _) in itertools.pairwise(spans))
    limit = httpx.get(f"{live_server.url}/api/concurrency").json()["limits"][0]
    assert limit["holders"] == [], "every slot was given back"


def test_a_task_naming_no_limit_is_refused_when_declared() -> None:
    with pytest.raises(ValueError, match="concurrency names a limit"):
        task(concurrency="")(lambda: None)
