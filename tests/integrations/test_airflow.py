"""The Airflow collectors against a real Airflow 3: the listener plugin and the REST poller.

Airflow lives in a virtualenv of its own (made on first use, reused while its requirements
stay the same), with coplane installed into it in editable mode, so that Airflow finds the
plugin through the `airflow.plugins` entry point as a user's Airflow would. One DAG, run
once per module with `airflow dags test` (the tasks run in-process, the listener sends to a
real coplane server): a task that fails its first try and succeeds on its retry, a task
downstream of it, a task that fails, and one downstream of that, which ends
`upstream_failed`. The poller then reads the same run from a real `airflow api-server` over
the same metadata database. Last, a real scheduler (LocalExecutor) runs the DAG once more,
triggered through the REST API: DAG run hooks in the scheduler, task hooks in the tasks' own
processes, which talk to the API server's execution API.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from coplane.integrations.airflow.listener import event_id
from tests.conftest import LiveServer, free_port, sqlite_server
from tests.venvs import program_venv

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Airflow pins many dependencies of its own (SQLAlchemy, ...): it gets a virtualenv of its
# own (tests/venvs.py), as in a real deployment, with coplane installed into it.
AIRFLOW_REQUIREMENTS = (
    "apache-airflow==3.1.*",
    "apache-airflow-providers-openlineage",
    "apache-airflow-client==3.1.*",  # the client's version follows the server's
)
INSTANCE = "test"  # from [openlineage] namespace: the plugin's default instance
DAG_ID = "coplane_demo"
PIPELINE = f"airflow.{INSTANCE}.{DAG_ID}"
USERNAME, PASSWORD = "admin", "s3cret"
VIEWER, VIEWER_PASSWORD = "coplane", "v13wer"  # the poller's own user, role viewer
ORDERS = "file:///data/orders.csv"  # after_flaky's outlet, as the DAG declares it

DAG_FILE = """
    from __future__ import annotations

    from datetime import datetime, timedelta
    from pathlib import Path

    from airflow.sdk import DAG, Asset, task

    HERE = Path(__file__).parent

    with DAG(
        "coplane_demo",
        start_date=datetime(2024, 1, 1),
        schedule=None,
        catchup=False,
        tags=["demo", "coplane"],
        default_args={"owner": "data-team"},
    ):

        @task(retries=1, retry_delay=timedelta(seconds=0))
        def flaky(**context) -> None:
            tried = HERE / f"flaky-{context['run_id']}.tried"
            if not tried.exists():
                tried.write_text("1")
                raise RuntimeError("first try fails")

        @task(outlets=[Asset("file:///data/orders.csv")])
        def after_flaky() -> None:
            pass

        @task
        def broken() -> None:
            raise ValueError("boom")

        @task
        def after_broken() -> None:
            pass

        flaky() >> after_flaky()
        broken() >> after_broken()
"""


def airflow_installed() -> Path:
    """The bin directory of Airflow's virtualenv, with this checkout's coplane installed.

    coplane is installed in editable mode, so that Airflow finds the plugin through the
    `airflow.plugins` entry point; the virtualenv is shared by every clone, so it is
    installed again when the checkout or its pyproject.toml is another one than last time.
    """
    venv = program_venv("airflow", AIRFLOW_REQUIREMENTS)
    marker = venv / "coplane-checkout.txt"
    pyproject = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    wanted = f"{ROOT}\n{pyproject}\n"
    if not marker.is_file() or marker.read_text() != wanted:
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-e", str(ROOT)], check=True, timeout=900)
        marker.write_text(wanted)
    return venv / "bin"


@dataclass
class Airflow:
    bin: Path
    home: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The coplane server the plugin reports to, on SQLite."""
    with sqlite_server(tmp_path_factory.mktemp("airflow-server")) as live:
        yield live


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory, server: LiveServer) -> Airflow:
    """An Airflow home with the DAG and a migrated SQLite database; the DAG run once."""
    home = tmp_path_factory.mktemp("airflow-home")
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(textwrap.dedent(DAG_FILE).lstrip())
    (home / "passwords.json").write_text(json.dumps({USERNAME: PASSWORD, VIEWER: VIEWER_PASSWORD}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "COPLANE"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin,{VIEWER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        # the instance is not set: the plugin takes the OpenLineage namespace
        "AIRFLOW__OPENLINEAGE__NAMESPACE": INSTANCE,
        "AIRFLOW__OPENLINEAGE__DISABLED": "True",  # no OpenLineage transport here
        "AIRFLOW__COPLANE__URL": server.url,
        # one secret for the API server and the scheduler, which signs the tasks' tokens
        "AIRFLOW__API_AUTH__JWT_SECRET": "coplane-test-secret",
        "AIRFLOW__API__SECRET_KEY": "coplane-test-secret",
        "XDG_CACHE_HOME": str(home / "cache"),  # the client's spool
        "XDG_STATE_HOME": str(home / "state"),  # the poller's cursor
    }
    af = Airflow(airflow_installed(), home, env)
    done = af.run("db", "migrate")
    assert done.returncode == 0, done.stdout + done.stderr
    done = af.run("dags", "test", DAG_ID)
    assert done.returncode == 1, done.stdout + done.stderr  # the DAG run fails
    assert "Marking run" in done.stdout + done.stderr
    return af


def get(server: LiveServer, path: str, **params: Any) -> Any:
    response = httpx.get(f"{server.url}{path}", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def the_run(server: LiveServer, run_key: str | None = None) -> dict[str, Any]:
    runs = get(server, "/api/runs", pipeline=PIPELINE)["runs"]
    [run] = [r for r in runs if run_key is None or r["run_key"] == run_key]
    detail: dict[str, Any] = get(server, f"/api/runs/{run['id']}")
    return detail


def tasks_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's task runs by `<task_id>/<try>` (the run key after the DAG's run_id)."""
    return {t["run_key"].removeprefix(f"{run['run_key']}/"): t for t in run["tasks"]}


def event_ids(server: LiveServer) -> set[str]:
    return {e["id"] for e in get(server, "/api/events", limit=1000)["events"]}


def test_the_plugin_reports_the_dag_run_and_each_task_try(
    airflow: Airflow, server: LiveServer
) -> None:
    run = the_run(server)
    assert run["state"] == "failed" and run["source"] == "airflow"
    assert run["run_key"].startswith("manual__")  # the run_id, not the logical date
    assert run["started"] < run["ended"]
    tasks = tasks_of(run)
    # after_broken never ran, so no listener saw it: only the poller reports it
    assert set(tasks) == {"flaky/1", "flaky/2", "after_flaky/1", "broken/1"}
    assert tasks["flaky/1"]["state"] == "retrying"
    assert tasks["flaky/1"]["error"] == "RuntimeError: first try fails"
    assert tasks["flaky/2"]["state"] == "completed" and tasks["flaky/2"]["error"] is None
    assert tasks["after_flaky/1"]["state"] == "completed"
    assert tasks["broken/1"]["state"] == "failed"
    assert tasks["broken/1"]["error"] == "ValueError: boom"
    for key, task in tasks.items():
        assert task["pipeline"] == f"{PIPELINE}.{key.split('/')[0]}"
        assert task["started"] < task["ended"], key
        assert 0 < task["duration_s"] < 60, key
    assert tasks["flaky/1"]["ended"] <= tasks["flaky/2"]["started"]
    # the failed first try says it will be retried; payloads carry the try and operator
    [retried] = get(
        server, "/api/events", event="run.retrying", related=f"{run['run_key']}/flaky/1"
    )["events"]
    assert retried["payload"]["will_retry"] is True
    assert retried["payload"]["try_number"] == 1
    assert retried["payload"]["operator"] == "_PythonDecoratedOperator"
    assert retried["id"] == event_id(DAG_ID, run["run_key"], "run.retrying", "flaky", -1, 1)
    # the DAG's owners and tags are labels of the pipeline
    pipeline = get(server, f"/api/pipelines/{PIPELINE}")
    assert pipeline["labels"]["owners"] == "data-team"
    assert pipeline["labels"]["tags"] == "coplane,demo"


def test_the_plugin_reports_the_assets_a_task_updated(airflow: Airflow, server: LiveServer) -> None:
    asset = get(server, f"/api/assets/{ORDERS}")  # the URI the DAG declares is its id
    assert asset["producer"] == f"{PIPELINE}.after_flaky"
    lineage = get(server, "/api/lineage", node=ORDERS)
    assert {"source": f"{PIPELINE}.after_flaky", "target": ORDERS} in lineage["edges"]


@pytest.fixture(scope="module")
def api_server(airflow: Airflow) -> Iterator[str]:
    """A real `airflow api-server` on loopback, over the database `dags test` wrote."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (airflow.home / "api-server.log").open("wb")
    process = subprocess.Popen(
        [str(airflow.bin / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        env=airflow.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (airflow.home / "api-server.log").read_text()
            try:
                if httpx.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (airflow.home / "api-server.log").read_text()
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def poll(
    airflow: Airflow,
    api_url: str,
    server: LiveServer,
    state: Path,
    user: tuple[str, str] = (USERNAME, PASSWORD),
) -> str:
    """`coplane airflow poll --once`, run by the Airflow venv's coplane (it has the client)."""
    done = subprocess.run(
        [str(airflow.bin / "coplane"), "airflow", "poll", "--url", api_url,
         "--username", user[0], "--password", user[1], "--instance", INSTANCE, "--once",
         "--server", server.url],
        env={**airflow.env, "XDG_STATE_HOME": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def counts(output: str) -> tuple[int, int]:
    """(new, known) events from the poller's summary line."""
    match = re.search(r"\((\d+) new, (\d+) known\)", output)
    assert match, output
    return int(match[1]), int(match[2])


def test_the_poller_adds_only_what_no_listener_saw(
    airflow: Airflow, server: LiveServer, api_server: str
) -> None:
    before = event_ids(server)
    stored_before = len(get(server, "/api/events", limit=1000)["events"])
    runs_before = len(get(server, "/api/runs", limit=1000)["runs"])
    state = airflow.home / "poll-state-1"
    output = poll(airflow, api_server, server, state)
    assert output.startswith("1 DAG runs, 4 task instances"), output
    new, known = counts(output)
    run = the_run(server)
    tasks = tasks_of(run)
    # the upstream_failed task, which never ran; try 0: Airflow never counted a try
    assert tasks["after_broken/0"]["state"] == "cancelled"
    assert tasks["after_broken/0"]["error"] == "upstream_failed"
    # one run more, no duplicate: every other event had the plugin's id already
    assert len(get(server, "/api/runs", limit=1000)["runs"]) == runs_before + 1
    added = event_ids(server) - before
    stored = len(get(server, "/api/events", limit=1000)["events"]) - stored_before
    assert stored == new and known > 0
    # Events are one per (id, occurred, resource) on both backends: a report the listener made
    # that the API gives another time for is stored again, on the same run (counted above).
    assert len(added) <= new
    added_events = [e for e in get(server, "/api/events", limit=1000)["events"] if e["id"] in added]
    # the DAG run's start (`dags test` calls no on_dag_run_running) and the cancelled task
    assert sorted((e["event"], e["resource"]["id"]) for e in added_events) == [
        ("run.cancelled", f"{PIPELINE}.after_broken"),
        ("run.started", PIPELINE),
    ]
    assert run["state"] == "failed" and tasks["flaky/2"]["state"] == "completed"
    # the cursor is kept; the next poll finds the same rows (overlap) and adds nothing
    [cursor] = (state / "coplane").glob("airflow-poll-*.json")
    assert cursor.name == f"airflow-poll-{INSTANCE}.json"
    again = poll(airflow, api_server, server, state)
    assert counts(again)[0] == 0


def test_the_poller_alone_reports_the_same_runs(
    airflow: Airflow, server: LiveServer, api_server: str, tmp_path: Path
) -> None:
    with sqlite_server(tmp_path) as alone:
        # as a user of Airflow's auth manager whose role is viewer: reading is all it does
        poll(airflow, api_server, alone, tmp_path / "state", (VIEWER, VIEWER_PASSWORD))
        from_poller = the_run(alone)
    from_both = the_run(server)

    def summary(run: dict[str, Any]) -> set[tuple[str, str, str, bool]]:
        return {
            (t["pipeline"], t["run_key"], t["state"], t["ended"] is not None) for t in run["tasks"]
        }

    assert from_poller["id"] == from_both["id"]  # derived from pipeline and run key
    assert from_poller["state"] == "failed"
    assert summary(from_poller) == summary(from_both)
    tasks = tasks_of(from_poller)
    assert tasks["flaky/1"]["state"] == "retrying" and tasks["flaky/2"]["state"] == "completed"
    assert tasks["broken/1"]["error"] == "task failed"  # the API does not keep the exception
    assert tasks["after_broken/0"]["error"] == "upstream_failed"


def test_the_poller_refuses_wrong_credentials(
    airflow: Airflow, api_server: str, server: LiveServer, tmp_path: Path
) -> None:
    done = subprocess.run(
        [str(airflow.bin / "coplane"), "airflow", "poll", "--url", api_server,
         "--username", USERNAME, "--password", "wrong", "--once", "--server", server.url],
        env={**airflow.env, "XDG_STATE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{api_server}/auth/token answered 401" in done.stderr
    assert not list(tmp_path.rglob("*.json"))  # no cursor written


SCHEDULED_RUN = "scheduled-1"


@pytest.fixture(scope="module")
def scheduled(airflow: Airflow, api_server: str, server: LiveServer) -> str:
    """A DAG run triggered through the REST API and run by a real scheduler (LocalExecutor).

    Here the DAG run hooks run in the scheduler, and each task in a process of its own that
    talks to the API server's execution API, as in production.
    """
    env = {
        **airflow.env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_server}/execution/",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    logs = airflow.home / "scheduler.log"
    processes = []
    with logs.open("wb") as log:
        try:
            # --skip-serve-logs: no log server on all interfaces
            for args in (["scheduler", "--skip-serve-logs"], ["dag-processor"]):
                processes.append(
                    subprocess.Popen(
                        [str(airflow.bin / "airflow"), *args],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its task processes go with it
                    )
                )
            token = httpx.post(
                f"{api_server}/auth/token",
                json={"username": USERNAME, "password": PASSWORD},
                timeout=10,
            ).json()["access_token"]
            api = httpx.Client(
                base_url=f"{api_server}/api/v2",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            with api:
                answer = api.patch(f"/dags/{DAG_ID}", json={"is_paused": False})
                assert answer.status_code == 200, answer.text
                answer = api.post(
                    f"/dags/{DAG_ID}/dagRuns",
                    json={"dag_run_id": SCHEDULED_RUN, "logical_date": None},
                )
                assert answer.status_code == 200, answer.text
                deadline = time.monotonic() + 120
                while True:
                    state = api.get(f"/dags/{DAG_ID}/dagRuns/{SCHEDULED_RUN}").json()["state"]
                    if state in ("success", "failed"):
                        break
                    assert time.monotonic() < deadline, logs.read_text()[-5000:]
                    time.sleep(0.5)
            assert state == "failed"
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # leftovers of its own session
    # the task processes flushed their queue at exit; the scheduler's thread may still send
    deadline = time.monotonic() + 15
    while True:
        runs = get(server, "/api/runs", pipeline=PIPELINE)["runs"]
        if any(r["run_key"] == SCHEDULED_RUN and r["state"] == "failed" for r in runs):
            return SCHEDULED_RUN
        assert time.monotonic() < deadline, runs
        time.sleep(0.2)


def test_the_plugin_reports_a_run_of_the_scheduler(scheduled: str, server: LiveServer) -> None:
    run = the_run(server, scheduled)
    assert run["state"] == "failed" and run["error"] == "task_failure"  # Airflow's message
    # on_dag_run_running, in the scheduler: the DAG run's own start, with the DAG's labels
    [started] = get(
        server, "/api/events", event="run.started", resource=PIPELINE, related=scheduled
    )["events"]
    assert started["id"] == event_id(DAG_ID, scheduled, "run.started")
    assert started["payload"]["state"] == "running"
    assert started["resource"]["labels"] == {"owners": "data-team", "tags": "coplane,demo"}
    assert run["started"] == started["occurred"]
    tasks = tasks_of(run)
    assert set(tasks) == {"flaky/1", "flaky/2", "after_flaky/1", "broken/1"}
    assert tasks["flaky/1"]["error"] == "RuntimeError: first try fails"
    assert tasks["flaky/2"]["state"] == "completed"
    assert tasks["broken/1"]["error"] == "ValueError: boom"
    for key, task in tasks.items():
        assert task["started"] < task["ended"], key


def test_an_unreachable_server_never_holds_the_task_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listener's sender: a hook returns at once, and the exit flush is bounded."""
    from coplane.integrations.airflow.listener import Sender, task_event

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the client's spool
    sender = Sender(f"http://127.0.0.1:{free_port()}", None)  # nothing listens there
    event = task_event(
        INSTANCE, "run.started", dag_id=DAG_ID, run_id="r1", task_id="t", try_number=1,
        map_index=-1, occurred=None, labels={},
    )  # fmt: skip
    started = time.monotonic()
    sender.put(event)
    assert time.monotonic() - started < 0.1
    assert sender.flush(timeout=15)  # sent nowhere, so spooled for a later send
    assert time.monotonic() - started < 15
    spooled = list((tmp_path / "coplane" / "spool").glob("*.jsonl"))
    assert [json.loads(f.read_text())["id"] for f in spooled] == [event["id"]]


def test_the_poller_maps_each_task_state_as_the_listener_does() -> None:
    """States the real DAG does not reach: a try up for retry now, a skipped task, mapping."""
    from types import SimpleNamespace

    from coplane.integrations.airflow.poller import _jwt_expiry, try_events

    at = datetime(2026, 1, 1, tzinfo=UTC)

    def ti(state: str, try_number: int = 1, map_index: int = -1) -> SimpleNamespace:
        return SimpleNamespace(
            dag_id="d", dag_run_id="r", task_id="t", try_number=try_number, map_index=map_index,
            operator="BashOperator", state=state, start_date=at, end_date=at,
        )  # fmt: skip

    [started, retrying] = try_events("i", ti("up_for_retry"), {}, last=True)
    assert (started["event"], retrying["event"]) == ("run.started", "run.retrying")
    assert retrying["payload"]["will_retry"] is True
    assert retrying["id"] == event_id("d", "r", "run.retrying", "t", -1, 1)
    [_, skipped] = try_events("i", ti("skipped"), {}, last=True)
    assert skipped["event"] == "run.cancelled" and "error" not in skipped["payload"]
    [_, mapped] = try_events("i", ti("success", 2, 3), {}, last=True)
    assert mapped["related"][0] == {"role": "run", "id": "r/t/3/2"}
    assert mapped["resource"]["labels"] == {"operator": "BashOperator"}
    assert try_events("i", ti("queued", 2), {}, last=True) == []  # its start_date is try 1's
    claims = base64.urlsafe_b64encode(json.dumps({"exp": 1234}).encode()).decode().rstrip("=")
    assert _jwt_expiry(f"header.{claims}.signature") == 1234.0
    assert _jwt_expiry("not-a-jwt") is None


def test_openlineage_and_the_plugin_report_one_run(
    airflow: Airflow, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With Airflow's OpenLineage provider sending to coplane as well, a DAG run is still one
    run with one child run per try: both name it by dag_id and run_id."""
    with sqlite_server(tmp_path_factory.mktemp("airflow-openlineage")) as live:
        transport = {"type": "http", "url": live.url, "endpoint": "api/v1/lineage"}
        env = airflow.env | {
            "AIRFLOW__COPLANE__URL": live.url,
            "AIRFLOW__OPENLINEAGE__DISABLED": "False",
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        }
        done = subprocess.run(
            [str(airflow.bin / "airflow"), "dags", "test", DAG_ID],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        runs = get(live, "/api/runs", pipeline=PIPELINE)["runs"]
        assert len(runs) == 1
        run = the_run(live)
        assert set(tasks_of(run)) == {"flaky/1", "flaky/2", "after_flaky/1", "broken/1"}
        events = get(live, "/api/events", limit=1000)["events"]
        producers = {str(e["payload"].get("producer", "coplane-plugin")) for e in events}
        assert any("openlineage" in p for p in producers), producers  # OpenLineage reported
        assert "coplane-plugin" in producers  # and so did the plugin, into the same run
        # whichever of the two reports the retried try last, it is retrying, as Airflow says
        retried = tasks_of(run)["flaky/1"]
        assert retried["state"] == "retrying"
        assert retried["error"] == "RuntimeError: first try fails"
        # the asset both report is one asset, under the URI the DAG declares
        assets = {a["id"] for a in get(live, "/api/assets")["assets"]}
        assert ORDERS in assets and "file//data/orders.csv" not in assets, assets
