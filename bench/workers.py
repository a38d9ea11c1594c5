"""Workers: how soon a requested or scheduled run starts, and how fast two workers drain a queue.

python bench/workers.py [--database URL] [--runs 1000] [--latency-runs 30] [--skip-latency]
[--skip-throughput]

1. Start latency: a real `coplane server` (its own worker, idle) and a flow that writes the
   time it began. For requested runs, the time from the POST to the flow's first line; for an
   interval schedule, from each run's due time to the flow's first line. p50 / p99 / max.
2. Throughput: a server with no worker of its own over PostgreSQL (`--database`), `--runs`
   queued runs, then two `coplane worker` processes (4 runs at once each): runs/s until all
   completed, whether any ran twice, and the per-run overhead (claim to the flow's first line,
   which is mostly the subprocess starting Python and importing coplane's client).
Prints figures; asserts only that no run ran twice or was missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import LiveServer  # noqa: E402

FLOW = """
import os
import time
from pathlib import Path


def mark(out: str) -> None:
    Path(out, os.environ["COPLANE_FLOW_RUN_ID"]).write_text(repr(time.time()))
"""


def _quantiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {ordered[-1] * 1000:.0f} ms over {len(ordered)} runs")  # fmt: skip


def _deploy(server: LiveServer, code: Path, name: str, out: Path, **fields: Any) -> None:
    body = {"name": name, "entrypoint": "flows.py:mark", "working_dir": str(code),
            "parameters": {"out": str(out)}, **fields}  # fmt: skip
    resp = httpx.put(f"{server.url}/api/deployments/{name}", json=body, timeout=60)
    resp.raise_for_status()


def _wait(path: Path, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return float(path.read_text())
        time.sleep(0.005)
    raise TimeoutError(f"{path} never appeared")


def latency(database: str, folder: Path, runs: int) -> None:
    code, out = folder / "code", folder / "out"
    code.mkdir()
    out.mkdir()
    (code / "flows.py").write_text(FLOW)
    server = LiveServer(database, folder / "server.log")
    server.start()
    try:
        _deploy(server, code, "now", out)
        waits = []
        for _ in range(runs):
            time.sleep(0.5)  # an idle worker between runs
            sent = time.time()
            resp = httpx.post(f"{server.url}/api/deployments/now/runs", json={}, timeout=30)
            run_id = resp.json()["id"]
            waits.append(_wait(out / run_id) - sent)
        print(f"requested run -> flow begins: {_quantiles(waits)}")

        _deploy(server, code, "tick", out, schedules=[{"interval": "2s"}])
        time.sleep(2 * max(10, runs // 3) + 3)
        params: dict[str, str | int] = {"deployment": "tick", "limit": 1000}
        rows = httpx.get(f"{server.url}/api/flow-runs", params=params).json()
        lags = []
        for r in rows["flow_runs"]:
            mark = out / r["id"]
            if r["state"] == "completed" and mark.exists():
                lags.append(float(mark.read_text()) - datetime.fromisoformat(r["due"]).timestamp())
        print(f"scheduled run due -> flow begins: {_quantiles(lags)}")
    finally:
        server.stop()


def _reset(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def throughput(database: str, folder: Path, runs: int) -> None:
    code, out = folder / "code2", folder / "out2"
    code.mkdir()
    out.mkdir()
    (code / "flows.py").write_text(FLOW)
    server = LiveServer(database, folder / "server2.log", env={"COPLANE_WORKER": "false"})
    server.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        _deploy(server, code, "many", out)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ids = [client.post("/api/deployments/many/runs", json={}).json()["id"]
                   for _ in range(runs)]  # fmt: skip
        env = {**os.environ, "COPLANE_DATABASE_URL": database}
        started = time.monotonic()
        for i in range(2):
            with (folder / f"worker-{i}.log").open("ab") as log:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "coplane", "worker", "--server", server.url,
                     "--max-runs", "4", "--name", f"bench-{i}"],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                ))  # fmt: skip
        while True:
            done = sum(1 for i in ids if (out / i).exists())
            if done == len(ids):
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        # the orchestration states catch up a poll after the last flow wrote its mark
        time.sleep(1.5)
        params: dict[str, str | int] = {"deployment": "many", "limit": 1000}
        rows = httpx.get(f"{server.url}/api/flow-runs", params=params).json()["flow_runs"]
        by_worker: dict[str, int] = {}
        overheads = []
        for r in rows:
            by_worker[r["worker"]] = by_worker.get(r["worker"], 0) + 1
            if r["claimed"]:
                began = float((out / r["id"]).read_text())
                overheads.append(began - datetime.fromisoformat(r["claimed"]).timestamp())
        marks = sorted(p.name for p in out.iterdir())
        assert marks == sorted(ids), "a run was missed or ran twice"
        print(f"{runs} runs, 2 workers x 4 slots: {elapsed:.1f} s, {runs / elapsed:.1f} runs/s; "
              f"per worker {sorted(by_worker.values())}; none ran twice")  # fmt: skip
        print(f"claim -> flow begins (subprocess start): {_quantiles(overheads)}")
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=60)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "postgresql://127.0.0.1:5432/coplane_bench"
    parser.add_argument(
        "--database", default=os.environ.get("COPLANE_BENCH_DATABASE_URL", default),
        help="a PostgreSQL database the throughput part may empty",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coplane-bench-workers-") as tmp:
        folder = Path(tmp)
        if not args.skip_latency:
            latency(f"sqlite:///{folder / 'latency.sqlite'}", folder, args.latency_runs)
        if not args.skip_throughput:
            _reset(args.database)
            throughput(args.database, folder, args.runs)


if __name__ == "__main__":
    main()
