"""The flow SDK's cost per task, against Prefect 3 on the same machine in the same run.

In one run:
1. a `coplane server` (a scratch SQLite or PostgreSQL database) on loopback;
2. coplane, in this process: a flow of 1,000 trivial tasks called one after another,
   reporting to that server. Per-task overhead = (flow time - the same 1,000 plain calls)
   / 1,000. Then the time from the flow's return until `GET /api/runs/{id}` shows every task
   run completed;
3. 10,000 mapped tasks (`task.map`) on the thread pool, then on a 2-worker `LocalCluster`
   (worker processes), each with the same visibility figure;
4. Prefect 3 in a virtualenv of its own (made on first use under
   ~/.cache/coplane-bench/prefect; its server needs fastapi<0.155), its server on loopback:
   the same 1,000-task flow, its per-task overhead, and the time until its server has
   recorded every task run as completed.

Target: coplane's per-task overhead at most 1/10 of Prefect's; every task run visible
within 1 s of the flow's return. `--skip-prefect` measures coplane alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.ingest import BenchError, Server, free_port, scratch_database

PREFECT_VENV = Path.home() / ".cache" / "coplane-bench" / "prefect"
PREFECT_REQUIREMENTS = ["prefect>=3,<4", "fastapi<0.155"]
VISIBLE_TARGET_S = 1.0
OVERHEAD_RATIO_TARGET = 0.1


def noop(i: int) -> int:
    return i


def plain_calls(n: int) -> float:
    """Seconds for n plain calls of the task's function: what a flow costs beyond."""
    started = time.perf_counter()
    for i in range(n):
        noop(i)
    return time.perf_counter() - started


# --- coplane -------------------------------------------------------------------------------


def _wait_visible(
    base_url: str, flow: str, flow_run_id: str, tasks: int, timeout: float = 300
) -> float:
    """Seconds until the flow run is stored completed, and with it every task run.

    The flow run's `run.completed` is emitted after every task run has ended and (on Dask)
    after the workers have flushed, and one reporter sends in order: once the server has
    it, it has them. Polling that one run keeps the poll from loading the server; the
    task runs are then counted once, untimed.
    """
    started = time.perf_counter()
    with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as c:
        while True:
            if time.perf_counter() - started > timeout:
                raise BenchError(f"{flow_run_id} not stored completed within {timeout} s")
            runs = c.get("/api/runs", params={"pipeline": flow, "limit": 1}).json()["runs"]
            if runs and runs[0]["id"] == flow_run_id and runs[0]["state"] == "completed":
                visible = time.perf_counter() - started
                break
            time.sleep(0.01)
        run = c.get(f"/api/runs/{flow_run_id}").json()
    done = sum(1 for t in run["tasks"] if t["state"] == "completed")
    if done != tasks:
        raise BenchError(f"{flow}: {done} of {tasks} task runs stored completed")
    return visible


def run_coplane(base_url: str, tasks: int, mapped: int, dask: bool = True) -> dict[str, float]:
    """coplane's figures, in this process (the SDK reads COPLANE_URL set by the caller)."""
    from distributed import LocalCluster

    from coplane import DaskTaskRunner, ThreadPoolTaskRunner, flow, task, wait
    from coplane.orchestrate.context import get_run_context
    from coplane.orchestrate.reporter import get_reporter

    trivial = task(noop)

    def run_id() -> str:
        ctx = get_run_context()
        assert ctx is not None
        return ctx.flow_run_id

    @flow(name="bench_sequential")
    def sequential(n: int) -> str:
        for i in range(n):
            trivial(i)
        return run_id()

    def mapped_flow(runner: Any, name: str) -> Callable[[int], str]:
        @flow(name=name, task_runner=runner)
        def fan_out(n: int) -> str:
            wait(trivial.map(range(n)))
            return run_id()

        return fan_out

    figures: dict[str, float] = {}
    sequential(10)  # warm-up: imports, the reporter's thread and connection
    get_reporter().flush()
    baseline = plain_calls(tasks)
    started = time.perf_counter()
    flow_run = sequential(tasks)
    flow_s = time.perf_counter() - started
    figures["coplane_flow_s"] = flow_s
    figures["coplane_overhead_us"] = (flow_s - baseline) / tasks * 1e6
    figures["coplane_visible_s"] = _wait_visible(base_url, "sdk.bench_sequential", flow_run, tasks)

    threads = mapped_flow(ThreadPoolTaskRunner(), "bench_map_threads")
    started = time.perf_counter()
    flow_run = threads(mapped)
    figures["map_threads_s"] = time.perf_counter() - started
    figures["map_threads_visible_s"] = _wait_visible(
        base_url, "sdk.bench_map_threads", flow_run, mapped
    )

    if not dask:
        return figures
    started = time.perf_counter()
    cluster: Any = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,  # type: ignore[no-untyped-call]
                                dashboard_address=None)  # fmt: skip
    figures["dask_cluster_start_s"] = time.perf_counter() - started
    try:
        on_dask = mapped_flow(DaskTaskRunner(address=cluster.scheduler_address), "bench_map_dask")
        started = time.perf_counter()
        flow_run = on_dask(mapped)
        figures["map_dask_s"] = time.perf_counter() - started
        figures["map_dask_visible_s"] = _wait_visible(
            base_url, "sdk.bench_map_dask", flow_run, mapped
        )
    finally:
        cluster.close()
    return figures


# --- Prefect -------------------------------------------------------------------------------

PREFECT_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import httpx
    from prefect import flow, task
    from prefect.context import get_run_context

    def noop(i):
        return i

    trivial = task(noop)

    @flow(name="bench_sequential")
    def sequential(n):
        for i in range(n):
            trivial(i)
        return str(get_run_context().flow_run.id)

    n = int(sys.argv[1])
    sequential(10)
    started = time.perf_counter()
    for i in range(n):
        noop(i)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    flow_run = sequential(n)
    flow_s = time.perf_counter() - started
    api = os.environ["PREFECT_API_URL"]
    body = {"flow_runs": {"id": {"any_": [flow_run]}},
            "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    started = time.perf_counter()
    recorded = None
    while time.perf_counter() - started < 900:
        count = httpx.post(f"{api}/task_runs/count", json=body, timeout=30).json()
        if count >= n:
            recorded = time.perf_counter() - started
            break
        time.sleep(0.25)
    print(json.dumps({"flow_s": flow_s, "baseline_s": baseline, "recorded_s": recorded}))
""")


def prefect_python() -> Path:
    """The Prefect virtualenv's python, made (once) with its own pip."""
    python = PREFECT_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"making a Prefect virtualenv in {PREFECT_VENV} (once; a few minutes)", flush=True)
    PREFECT_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(PREFECT_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PREFECT_REQUIREMENTS],
                   check=True)  # fmt: skip
    return python


@contextlib.contextmanager
def prefect_server(python: Path, home: Path) -> Iterator[dict[str, str]]:
    """Prefect's server on loopback; yields the environment its clients need."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "COPLANE_"))}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    log_path = home / "prefect-server.log"
    prefect = python.parent / "prefect"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise BenchError(f"Prefect's server exited:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"Prefect's server not up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_prefect(tasks: int, workdir: Path) -> dict[str, float | None]:
    python = prefect_python()
    home = workdir / "prefect-home"
    home.mkdir()
    script = workdir / "prefect_flow.py"
    script.write_text(PREFECT_SCRIPT)
    with prefect_server(python, home) as env:
        out = subprocess.run([str(python), str(script), str(tasks)], env=env, check=True,
                             capture_output=True, text=True, timeout=1800)  # fmt: skip
    got = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "prefect_flow_s": got["flow_s"],
        "prefect_overhead_us": (got["flow_s"] - got["baseline_s"]) / tasks * 1e6,
        "prefect_recorded_s": got["recorded_s"],
    }


# --- The run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-server", default="postgresql://127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=1_000)
    parser.add_argument("--mapped", type=int, default=10_000)
    parser.add_argument("--skip-prefect", action="store_true")
    parser.add_argument("--skip-dask", action="store_true", help="map on the thread pool only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coplane-bench-flows-") as tmp:
        workdir = Path(tmp)
        with scratch_database(args.backend, args.pg_server, workdir, "flows") as url:
            server = Server(url, workdir / "server.log", {"COPLANE_EVENTS_RETENTION_DAYS": "0"})
            try:
                server.wait_healthy()
                os.environ["COPLANE_URL"] = server.base_url
                os.environ["COPLANE_SPOOL_DIR"] = str(workdir / "spool")
                os.environ.pop("COPLANE_API_KEY", None)
                figures: dict[str, float | None] = dict(
                    run_coplane(server.base_url, args.tasks, args.mapped, not args.skip_dask)
                )
            finally:
                server.stop()
        if not args.skip_prefect:
            figures.update(run_prefect(args.tasks, workdir))
    report(figures, args.tasks, args.mapped, args.backend)


def _fmt(value: float | None, unit: str, scale: float = 1.0) -> str:
    return "—" if value is None else f"{value * scale:,.1f} {unit}"


def report(figures: dict[str, float | None], tasks: int, mapped: int, backend: str) -> None:
    f = figures
    print(f"\nflow SDK on {backend}, {tasks:,} trivial tasks called in sequence")
    print(f"  coplane: flow {_fmt(f['coplane_flow_s'], 'ms', 1e3)}, "
          f"overhead {_fmt(f['coplane_overhead_us'], 'µs')} per task, "
          f"every task run visible {_fmt(f['coplane_visible_s'], 'ms', 1e3)} after return "
          f"(target ≤ {VISIBLE_TARGET_S * 1e3:.0f} ms)")  # fmt: skip
    if "prefect_flow_s" in f:
        print(f"  Prefect: flow {_fmt(f['prefect_flow_s'], 'ms', 1e3)}, "
              f"overhead {_fmt(f['prefect_overhead_us'], 'µs')} per task, "
              f"every task run recorded {_fmt(f['prefect_recorded_s'], 's')} after return")
        ours, theirs = f["coplane_overhead_us"], f["prefect_overhead_us"]
        if ours is not None and theirs:
            ratio = ours / theirs
            met = "met" if ratio <= OVERHEAD_RATIO_TARGET else "MISSED"
            print(f"  coplane / Prefect per-task overhead: {ratio:.4f} "
                  f"(target ≤ {OVERHEAD_RATIO_TARGET}) — {met}")  # fmt: skip
    print(f"\n{mapped:,} mapped tasks")
    runners = [("thread pool", "map_threads"), ("Dask LocalCluster, 2 workers", "map_dask")]
    for label, key in runners:
        if f"{key}_s" not in f:
            continue
        run_s = f[f"{key}_s"]
        per = None if run_s is None else run_s / mapped * 1e6
        print(f"  {label}: {_fmt(run_s, 's')} ({_fmt(per, 'µs')} per task), "
              f"every task run visible {_fmt(f[f'{key}_visible_s'], 'ms', 1e3)} after return")
    if "dask_cluster_start_s" in f:
        print(f"  (the LocalCluster took {_fmt(f['dask_cluster_start_s'], 's')} to start, "
              "not counted)")


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        sys.exit(f"bench failed: {exc}")
