"""Workers against real servers: runs end in the right state, a cancel stops the process, a
killed worker's run becomes `crashed` and is retried, and two workers never share a run."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.orchestrate.support import (
    deploy,
    flow_run,
    run,
    start_run,
    start_worker,
    wait_for,
    wait_state,
    write_flows,
)


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    s = LiveServer(db_url, tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def bare_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A server without its own worker, crashing runs 2 s after their worker's last beat."""
    env = {"COPLANE_WORKER": "false", "COPLANE_WORKER_HEARTBEAT_TIMEOUT": "2"}
    s = LiveServer(db_url, tmp_path / "server.log", env=env)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie has exited; only its parent has not collected it yet
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


@pytest.mark.slow
def test_a_failing_flow_fails_with_its_traceback(server: LiveServer, tmp_path: Path) -> None:
    deploy(server, write_flows(tmp_path / "code"), "boom", "boom")
    run_id = start_run(server, "boom")
    run = wait_state(server, run_id, "completed", "failed")
    assert flow_run(server, run_id)["state"] == "failed"
    run = wait_for(lambda: (r := httpx.get(f"{server.url}/api/runs/{run_id}").json())["state"]
                   == "failed" and r)  # fmt: skip
    assert run["error"] == "RuntimeError: the warehouse is away"
    failed = [e for e in run["events"] if e["event"] == "run.failed"]
    assert "Traceback" in failed[0]["payload"]["error"]["traceback"]
    states = [e["event"] for e in run["events"]]
    assert states[:2] == ["run.scheduled", "run.pending"] and "run.started" in states


@pytest.mark.slow
def test_cancel_stops_the_process_and_leaves_the_run_cancelled(
    server: LiveServer, tmp_path: Path
) -> None:
    folder = write_flows(tmp_path / "code")
    deploy(server, folder, "slow", "slow")
    run_id = start_run(server, "slow")
    marker = folder / "started" / run_id
    wait_for(marker.exists)
    pid = int(marker.read_text())
    resp = httpx.post(f"{server.url}/api/runs/{run_id}/cancel")
    assert resp.status_code == 200 and resp.json()["cancel_requested"] is not None
    wait_state(server, run_id, "cancelled", timeout=15)
    wait_for(lambda: not _alive(pid), timeout=10)
    run = wait_for(lambda: (r := httpx.get(f"{server.url}/api/runs/{run_id}").json())["state"]
                   == "cancelled" and r)  # fmt: skip
    assert run["ended"] is not None

    again = httpx.post(f"{server.url}/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]
    unknown = "00000000-0000-4000-8000-000000000000"
    assert httpx.post(f"{server.url}/api/runs/{unknown}/cancel").status_code == 404

    # a run not yet due is cancelled at once, and never starts
    later = httpx.post(
        f"{server.url}/api/deployments/slow/runs", json={"due": "2999-01-01T00:00:00Z"}
    ).json()
    cancelled = httpx.post(f"{server.url}/api/runs/{later['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    assert httpx.get(f"{server.url}/api/runs/{later['id']}").json()["state"] == "cancelled"


@pytest.mark.slow
def test_a_killed_worker_leaves_its_run_crashed_and_it_is_retried(
    bare_server: LiveServer, tmp_path: Path
) -> None:
    folder = write_flows(tmp_path / "code")
    marker = tmp_path / "first-attempt"
    deploy(bare_server, folder, "once", "once_slow", retries=1,
           parameters={"marker": str(marker)})  # fmt: skip
    run_id = start_run(bare_server, "once")
    worker = start_worker(bare_server, tmp_path / "worker-1.log")
    try:
        wait_for(marker.exists)
        child = int(marker.read_text())
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        wait_for(lambda: not _alive(child), timeout=10)  # the flow died with its worker

        crashed = wait_state(bare_server, run_id, "crashed", timeout=20)
        assert "stopped heartbeating" in flow_run(bare_server, run_id)["error"]
        assert wait_for(lambda: httpx.get(f"{bare_server.url}/api/runs/{run_id}").json()
                        ["state"] == "crashed")  # fmt: skip
        assert crashed["id"] == run_id
        retries = httpx.get(f"{bare_server.url}/api/flow-runs", params={"deployment": "once"})
        retry = next(r for r in retries.json()["flow_runs"] if r["retry_of"] == run_id)
        assert retry["attempt"] == 2 and retry["state"] == "scheduled"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    worker = start_worker(bare_server, tmp_path / "worker-2.log")
    try:
        done = wait_state(bare_server, retry["id"], "completed", "failed", timeout=30)
        assert flow_run(bare_server, retry["id"])["state"] == "completed", done
        # the crashed attempt stays crashed; no third attempt was made
        runs = httpx.get(f"{bare_server.url}/api/flow-runs", params={"deployment": "once"})
        assert sorted(r["state"] for r in runs.json()["flow_runs"]) == ["completed", "crashed"]
    finally:
        worker.terminate()
        worker.wait(timeout=30)


@pytest.mark.slow
def test_two_workers_never_run_one_run_twice(bare_server: LiveServer, tmp_path: Path) -> None:
    folder = write_flows(tmp_path / "code")
    log = tmp_path / "ran.log"
    deploy(bare_server, folder, "record", "record", parameters={"log": str(log)})
    ids = {start_run(bare_server, "record") for _ in range(30)}
    workers = [start_worker(bare_server, tmp_path / f"worker-{i}.log", "--max-runs", "3")
               for i in range(2)]  # fmt: skip
    try:
        def all_done() -> bool:
            runs = httpx.get(f"{bare_server.url}/api/flow-runs", params={"limit": 100}).json()
            return all(r["state"] == "completed" for r in runs["flow_runs"])

        wait_for(all_done, timeout=180, every=0.5)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=30)
    ran = log.read_text().split()
    assert sorted(ran) == sorted(ids)  # each once: none twice, none missed
    logs = "".join((tmp_path / f"worker-{i}.log").read_text() for i in range(2))
    assert logs.count("ended with exit status 0") == 30  # what each worker did, in its log
    runs = httpx.get(f"{bare_server.url}/api/flow-runs", params={"limit": 100}).json()
    assert len({r["worker"] for r in runs["flow_runs"]}) == 2  # both took part
    pools = httpx.get(f"{bare_server.url}/api/work-pools").json()["work_pools"]
    assert pools[0]["name"] == "default" and pools[0]["queued"] == 0
    assert {w["status"] for w in pools[0]["workers"]} == {"stopped"}


SDK_FLOWS = '''
from coplane import flow, task


@task
def double(x: int) -> int:
    return 2 * x


@flow(name="doubling")
def doubling(n: int = 3) -> int:
    return sum(double(i) for i in range(n))
'''


@pytest.mark.slow
def test_a_flow_of_the_sdk_reports_onto_the_run_its_worker_claimed(
    server: LiveServer, tmp_path: Path
) -> None:
    folder = tmp_path / "sdk"
    folder.mkdir()
    (folder / "flows.py").write_text(SDK_FLOWS)
    deploy(server, folder.resolve(), "doubling", "doubling")
    run_id = start_run(server, "doubling", n=3)
    wait_state(server, run_id, "completed", "failed")
    done = wait_for(lambda: (r := run(server, run_id))["state"] == "completed" and r)
    # the SDK's own events landed on the worker's run: one run, its task runs its children
    assert done["pipeline"] == "sdk.doubling"
    assert sorted(t["pipeline"] for t in done["tasks"]) == ["sdk.doubling.double"] * 3
    flows = httpx.get(f"{server.url}/api/runs", params={"pipeline": "sdk.doubling"}).json()["runs"]
    assert [r["id"] for r in flows] == [run_id]
