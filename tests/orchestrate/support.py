"""Helpers for the orchestrate tests: a folder of flows, deploying it, waiting on runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer

FLOWS = '''
import os
import time
from pathlib import Path


def hello(name: str, n: int = 1) -> None:
    print(f"hello {name} x{n}", flush=True)
    Path("out").mkdir(exist_ok=True)
    Path("out", os.environ["COPLANE_FLOW_RUN_ID"]).write_text(f"{name} {n}")


def slow(seconds: float = 60) -> None:
    Path("started").mkdir(exist_ok=True)
    Path("started", os.environ["COPLANE_FLOW_RUN_ID"]).write_text(str(os.getpid()))
    time.sleep(seconds)


def boom() -> None:
    raise RuntimeError("the warehouse is away")


def once_slow(marker: str) -> None:
    """Slow on the first attempt (the marker is absent), quick on a retry."""
    if not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        time.sleep(120)


def record(log: str) -> None:
    # O_APPEND: concurrent runs' lines never interleave within one
    with open(log, "a") as f:
        f.write(os.environ["COPLANE_FLOW_RUN_ID"] + "\\n")
'''


def write_flows(folder: Path) -> Path:
    """A folder with flows.py (the flows above); returned as an absolute path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flows.py").write_text(FLOWS)
    return folder.resolve()


def deploy(server: LiveServer, folder: Path, name: str, func: str, **fields: Any) -> Any:
    """PUT a deployment of `flows.py:func` in `folder`; its JSON (asserting 200)."""
    body = {"name": name, "entrypoint": f"flows.py:{func}", "working_dir": str(folder), **fields}
    resp = httpx.put(f"{server.url}/api/deployments/{name}", json=body, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def start_run(server: LiveServer, name: str, **parameters: Any) -> str:
    """Ask for a run of deployment `name` now; its id."""
    resp = httpx.post(
        f"{server.url}/api/deployments/{name}/runs", json={"parameters": parameters}, timeout=30
    )
    assert resp.status_code == 201, resp.text
    run_id: str = resp.json()["id"]
    return run_id


def flow_run(server: LiveServer, run_id: str) -> Any:
    return httpx.get(f"{server.url}/api/flow-runs/{run_id}", timeout=10).json()


def run(server: LiveServer, run_id: str) -> Any:
    return httpx.get(f"{server.url}/api/runs/{run_id}", timeout=10).json()


def wait_for(what: Callable[[], Any], timeout: float = 30, every: float = 0.1) -> Any:
    """Poll `what` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = what()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s (last: {last!r})")


def wait_state(server: LiveServer, run_id: str, *states: str, timeout: float = 30) -> Any:
    """The run (its `runs` view) once its orchestration state is one of `states`."""
    wait_for(lambda: flow_run(server, run_id)["state"] in states, timeout)
    return run(server, run_id)


def start_worker(server: LiveServer, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A `coplane worker` process on the server's database, reporting to it."""
    env = {**os.environ, "COPLANE_DATABASE_URL": server.database_url, **server.env}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "coplane", "worker", "--server", server.url, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
