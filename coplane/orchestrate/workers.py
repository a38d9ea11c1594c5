"""The worker: claims due runs of its pool from the store and runs each through its infrastructure.

One thread polls (a claim is one short transaction, so an idle worker starts a requested run
within a poll interval), starts the runs it claims, and heartbeats: its own row, and each run
it holds, at a fraction of the crash timeout. A heartbeat also answers which of its runs were
asked to stop, so a cancel reaches the run within one beat. A worker that dies stops
heartbeating and its runs become `crashed` (`runs.crash_stale_runs`); its subprocesses die
with it (see `infrastructure`).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coplane.orchestrate.deployments import DeploymentError, fetch_git_tree
from coplane.orchestrate.infrastructure import RunHandle, RunSpec, load_infrastructure
from coplane.orchestrate.runs import end_flow_run, mark_claimed, wait_for_queued, wake_workers
from coplane.store import Store
from coplane.store.deployments import read_deployment
from coplane.store.dialects import Row
from coplane.store.errors import NotFound
from coplane.store.flow_runs import (
    beat_flow_runs,
    beat_worker,
    claim_flow_run,
    has_due_flow_run,
    list_stopping_flow_runs,
    set_flow_run_state,
    stop_worker,
)

log = logging.getLogger(__name__)
run_log = logging.getLogger("coplane.run")


def show_run_output(stream: Any = None) -> None:
    """Print the runs' output lines (logger `coplane.run`) as they come, on stderr, unless
    something already handles that logger: the server and `coplane worker` call it."""
    if run_log.handlers:
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s run %(message)s"))
    run_log.addHandler(handler)
    run_log.setLevel(logging.INFO)
    run_log.propagate = False


@dataclass(slots=True)
class _Active:
    run: Row
    handle: RunHandle
    cleanup: Path | None = None
    cancelled: bool = False


@dataclass(slots=True)
class WorkerOptions:
    """How a worker behaves; every default suits one worker beside a server."""

    pool: str = "default"
    server_url: str = "http://127.0.0.1:4200"
    api_key: str | None = None
    poll_s: float = 0.2
    heartbeat_s: float = 5.0
    max_runs: int = 4
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-"
                      f"{uuid.uuid4().hex[:6]}")  # fmt: skip


class Worker:
    """Claims and runs the due flow runs of one work pool."""

    def __init__(self, store: Store, options: WorkerOptions) -> None:
        self.store = store
        self.options = options
        self.name = options.name
        self._active: dict[str, _Active] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0

    def start(self) -> None:
        """Run in a background thread (the server's own worker)."""
        self._thread = threading.Thread(target=self.run, name="coplane-worker", daemon=True)
        self._thread.start()

    def stop_soon(self) -> None:
        """Ask the loop to stop (from a signal handler): it cancels its runs and returns."""
        self._stop.set()
        wake_workers()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop claiming, stop the runs in flight (they end `cancelled`), and return."""
        self._stop.set()
        wake_workers()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Poll, start and watch runs until stopped."""
        log.info("worker %s polling pool %s", self.name, self.options.pool)
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception:  # the database may be away a moment: keep polling
                    log.exception("worker %s: poll failed", self.name)
                wait_for_queued(self.options.poll_s)  # a poll, or sooner for a run queued here
        finally:
            self._shutdown()

    def step(self) -> None:
        """One round: heartbeat when due, reap ended runs, claim and start due ones."""
        now_m = time.monotonic()
        if now_m - self._last_beat >= self.options.heartbeat_s:
            self._heartbeat()
            self._last_beat = now_m
        self._stop_cancelled()
        self._reap()
        while len(self._active) < self.options.max_runs and not self._stop.is_set():
            run = self._claim()
            if run is None:
                break
            self._start(run)

    def _heartbeat(self) -> None:
        now = datetime.now(UTC)
        ids = [uuid.UUID(str(a.run["id"])) for a in self._active.values()]
        with self.store.connect() as conn, conn.transaction():
            beat_worker(conn, self.name, self.options.pool, socket.gethostname(), os.getpid(),
                        now)  # fmt: skip
            beat_flow_runs(conn, self.name, ids, now)

    def _stop_cancelled(self) -> None:
        """Stop the runs asked to stop: a read each poll, so a cancel takes effect at once."""
        ids = [uuid.UUID(str(a.run["id"])) for a in self._active.values() if not a.cancelled]
        if not ids:
            return
        with self.store.connect() as conn:
            stopping = list_stopping_flow_runs(conn, ids)
        for row in stopping:
            active = self._active.get(str(row["id"]))
            if active is not None:
                log.info("stopping run %s (%s)", row["id"], row["state"])
                active.cancelled = True
                active.handle.stop()

    def _claim(self) -> Row | None:
        now = datetime.now(UTC)
        with self.store.connect() as conn:
            if not has_due_flow_run(conn, self.options.pool, now):
                return None
        with self.store.connect() as conn, conn.transaction():
            run = claim_flow_run(conn, self.options.pool, self.name, now)
            if run is not None:
                mark_claimed(self.store, conn, run, now)
        return run

    def _start(self, run: Row) -> None:
        run_id = str(run["id"])
        cleanup: Path | None = None
        try:
            with self.store.connect() as conn:
                deployment = read_deployment(conn, run["deployment"])
            root, cleanup = self._code(deployment, run_id)
            env = self._environment(deployment, run)
            spec = RunSpec(
                run_id=run_id,
                command=[sys.executable, "-m", "coplane.orchestrate.execute"],
                working_dir=root,
                env=env,
                on_output=lambda line: run_log.info("[%s] %s", run_id[:8], line),
            )
            handle = load_infrastructure(deployment["infrastructure"]).start(spec)
        except (DeploymentError, NotFound, KeyError, OSError) as exc:
            log.warning("run %s could not start: %s", run_id, exc)
            end_flow_run(self.store, run, "failed", datetime.now(UTC),
                         error=f"could not start: {exc}", report=True)  # fmt: skip
            self._remove(cleanup)
            return
        with self.store.connect() as conn:
            set_flow_run_state(conn, run_id, "running", datetime.now(UTC), expect=("pending",))
        self._active[run_id] = _Active(run, handle, cleanup)

    def _code(self, deployment: Row, run_id: str) -> tuple[Path, Path | None]:
        if deployment["git_url"] is None:
            root = Path(deployment["working_dir"])
            if not root.is_dir():
                raise DeploymentError(f"working_dir {root} is not a directory on this worker",
                                      ["working_dir"])  # fmt: skip
            return root, None
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix=f"coplane-run-{run_id[:8]}-"))
        try:
            commit = fetch_git_tree(deployment["git_url"], deployment["git_ref"], folder)
        except BaseException:
            self._remove(folder)
            raise
        log.info("run %s: %s at %s (%s)", run_id, deployment["git_url"], deployment["git_ref"],
                 commit[:12])  # fmt: skip
        return folder, folder

    def _environment(self, deployment: Row, run: Row) -> dict[str, str]:
        import json

        env = {**os.environ, **deployment["env"]}
        env.update(
            COPLANE_URL=self.options.server_url,
            COPLANE_FLOW_RUN_ID=str(run["id"]),
            COPLANE_FLOW=run["flow"],
            COPLANE_FLOW_RUN_KEY=run["run_key"],
            COPLANE_DEPLOYMENT=run["deployment"],
            COPLANE_ENTRYPOINT=deployment["entrypoint"],
            COPLANE_PARAMETERS=json.dumps(run["parameters"]),
            # what caused the run (an automation, an incident): its events carry it on, so an
            # automation's own runs never trigger it again
            COPLANE_RELATED=json.dumps(run["related"]),
        )
        if self.options.api_key:
            env["COPLANE_API_KEY"] = self.options.api_key
        else:
            env.pop("COPLANE_API_KEY", None)
        return env

    def _reap(self) -> None:
        for run_id, active in list(self._active.items()):
            code = active.handle.poll()
            if code is None:
                continue
            del self._active[run_id]
            self._remove(active.cleanup)
            now = datetime.now(UTC)
            if active.cancelled:
                end_flow_run(self.store, active.run, "cancelled", now, report=True,
                             error="cancelled")  # fmt: skip
            elif code == 0:
                end_flow_run(self.store, active.run, "completed", now)
            else:
                # exit 1: the flow failed and said so itself; anything else (a signal, an
                # interpreter that never got to the flow) is reported here
                end_flow_run(self.store, active.run, "failed", now, error=_exit_text(code),
                             report=code != 1)  # fmt: skip
            log.info("run %s ended with exit status %s", run_id, code)

    def _shutdown(self) -> None:
        for active in list(self._active.values()):
            active.cancelled = True
            active.handle.stop()
        deadline = time.monotonic() + 10
        while self._active and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        try:
            with self.store.connect() as conn:
                stop_worker(conn, self.name, datetime.now(UTC))
        except Exception:  # the database may be gone at shutdown: the heartbeat ages out
            log.warning("worker %s: could not record its stop", self.name)

    @staticmethod
    def _remove(folder: Path | None) -> None:
        if folder is not None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


def _exit_text(code: int) -> str:
    if code < 0:
        return f"the flow's process was killed by signal {-code}"
    return f"the flow's process exited with status {code}"


def worker_status(options: WorkerOptions) -> dict[str, Any]:
    """What `coplane worker` prints when it starts."""
    return {"worker": options.name, "pool": options.pool, "server": options.server_url}
