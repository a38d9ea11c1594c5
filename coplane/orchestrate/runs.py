"""A deployment's flow runs as state changes: created, claimed, ended, cancelled, crashed, retried.

Each change of a flow run's orchestration state is written with the event that tells it
(`run.scheduled`, `run.pending`, `run.cancelled`, `run.crashed`, ...) in one transaction, so
the run that `/api/runs` shows (folded from events) never disagrees with what the workers
act on. The events are recorded by the server through the store, never through ingest.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from coplane.events import names as n
from coplane.events.derive import run_uuid
from coplane.events.model import Event, RelatedResource, Resource
from coplane.jobs.scheduler import job
from coplane.orchestrate.deployments import check_parameters
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.dialects import Conn, Row
from coplane.store.events import insert_events
from coplane.store.flow_runs import (
    ACTIVE,
    NewFlowRun,
    insert_flow_run,
    list_stale_flow_runs,
    read_flow_run,
    request_cancel,
    set_flow_run_state,
)

log = logging.getLogger(__name__)

SOURCE = "deployment"

# Set when this process has queued a run that is due now, so that its own worker claims it at
# once instead of at its next poll.
_RUN_QUEUED = threading.Event()


def wake_workers() -> None:
    """Tell this process's worker a run is due now (call after the run's transaction)."""
    _RUN_QUEUED.set()


def wait_for_queued(timeout: float) -> bool:
    """Wait up to `timeout` s for `wake_workers`; whether it was called (and clear it)."""
    woken = _RUN_QUEUED.wait(timeout)
    _RUN_QUEUED.clear()
    return woken


def run_event(run: Row, name: str, at: datetime, payload: dict[str, Any] | None = None) -> Event:
    """An event about flow run `run` (a `flow_runs` row), landing on its `runs` row."""
    related = [
        RelatedResource(id=run["run_key"], role=n.ROLE_RUN),
        RelatedResource(id=SOURCE, role=n.ROLE_SOURCE),
        RelatedResource(id=f"deployment.{run['deployment']}", role=n.ROLE_DEPLOYMENT),
    ]
    related += [RelatedResource(id=r["id"], role=r["role"]) for r in run["related"]]
    # derived from the run and the change, so recording the same change twice stores it once
    event_id = uuid.uuid5(uuid.UUID(str(run["id"])), f"{name}\n{run['attempt']}")
    return Event(
        id=event_id,
        occurred=at,
        event=name,
        resource=Resource(
            id=run["flow"], name=run["flow"].removeprefix("sdk."), kind=n.KIND_PIPELINE
        ),
        related=related,
        payload=payload or {},
    )


def _record(store: Store, conn: Conn, events: list[Event], now: datetime) -> None:
    insert_events(conn, events, now, store.partitions)


def create_flow_run(
    store: Store,
    conn: Conn,
    deployment: Row,
    parameters: Mapping[str, Any] | None = None,
    *,
    due: datetime | None = None,
    idempotency_key: str | None = None,
    related: list[dict[str, str]] | None = None,
    attempt: int = 1,
    retry_of: uuid.UUID | None = None,
    schedule_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> tuple[Row, bool]:
    """Create a scheduled run of `deployment` (in the caller's transaction); the run and
    whether it is new. With an `idempotency_key` already used, the run made then is returned.

    The parameters are the deployment's defaults overridden by `parameters`, checked against
    the flow's signature: DeploymentError naming the parameter when they do not fit.
    """
    now = now or datetime.now(UTC)
    merged = {**deployment["parameters"], **(parameters or {})}
    check_parameters(deployment["signature"]["schema"], merged, ["body", "parameters"])
    run_key = str(uuid.uuid4())
    run_id = uuid.UUID(run_uuid(deployment["flow"], run_key))
    new = NewFlowRun(
        id=run_id,
        flow=deployment["flow"],
        run_key=run_key,
        deployment=deployment["name"],
        work_pool=deployment["work_pool"],
        parameters=merged,
        due=due or now,
        idempotency_key=idempotency_key,
        related=related or [],
        attempt=attempt,
        retry_of=retry_of,
        schedule_id=schedule_id,
    )
    if not insert_flow_run(conn, new, now):
        existing = conn.one(
            "SELECT id FROM flow_runs WHERE idempotency_key = ?", (idempotency_key,)
        )
        assert existing is not None
        return read_flow_run(conn, existing["id"]), False
    row = read_flow_run(conn, run_id)
    payload: dict[str, Any] = {"parameters": merged, "attempt": attempt}
    if retry_of is not None:
        payload["retry_of"] = str(retry_of)
    # the scheduled event occurs at the time the run is due, which is what the run shows
    _record(store, conn, [run_event(row, n.RUN_SCHEDULED, new.due, payload)], now)
    return row, True


def mark_claimed(store: Store, conn: Conn, run: Row, now: datetime) -> None:
    """Record that a worker claimed `run` (already `pending` in the store)."""
    _record(store, conn, [run_event(run, n.RUN_PENDING, now, {"worker": run["worker"]})], now)


def cancel_flow_run(store: Store, run_id: uuid.UUID | str) -> Row:
    """Ask a run to stop: a run not yet started is `cancelled` now, a running one once its
    worker has stopped it (on its next heartbeat)."""
    now = datetime.now(UTC)
    with store.connect() as conn, conn.transaction():
        before = read_flow_run(conn, run_id)
        row = request_cancel(conn, run_id, now)
        if before["state"] == "scheduled" and row["state"] == "cancelled":
            _record(store, conn, [run_event(row, n.RUN_CANCELLED, now, {"reason": "cancelled"})],
                    now)  # fmt: skip
        return row


def end_flow_run(
    store: Store, run: Row, state: str, now: datetime, *, error: str | None = None,
    report: bool = False,
) -> bool:  # fmt: skip
    """Move a run its worker ran to its end state; `report`: also record the event (when the
    flow itself could not). Whether it moved (False when it was crashed or cancelled first)."""
    with store.connect() as conn, conn.transaction():
        moved = set_flow_run_state(conn, run["id"], state, now, expect=ACTIVE, error=error)
        if moved and report:
            name = {"failed": n.RUN_FAILED, "cancelled": n.RUN_CANCELLED}.get(state)
            if name is not None:
                payload = {"error": error} if error else {}
                _record(store, conn, [run_event(run, name, now, payload)], now)
        return moved


def crash_stale_runs(store: Store, timeout: timedelta, now: datetime | None = None) -> list[Row]:
    """Runs whose worker has not heartbeat within `timeout` become `crashed` (each once, by
    whichever server gets there first), and those of a deployment with `retries` left are
    queued again as a new attempt. The crashed runs."""
    now = now or datetime.now(UTC)
    crashed = []
    with store.connect() as conn:
        stale = list_stale_flow_runs(conn, now - timeout)
    for run in stale:
        with store.connect() as conn, conn.transaction():
            error = f"worker {run['worker']} stopped heartbeating ({run['heartbeat']:%H:%M:%S})"
            if not set_flow_run_state(conn, run["id"], "crashed", now, expect=ACTIVE, error=error):
                continue  # it ended, or another server crashed it, meanwhile
            _record(store, conn, [run_event(run, n.RUN_CRASHED, now, {"error": error})], now)
            crashed.append(run)
            deployment = conn.one(
                "SELECT name, flow, parameters, signature, work_pool, retries "
                "FROM deployments WHERE name = ?",
                (run["deployment"],),
            )
            if deployment is not None and run["attempt"] <= deployment["retries"]:
                create_flow_run(
                    store, conn, deployment, run["parameters"],
                    idempotency_key=f"retry:{run['id']}", related=run["related"],
                    attempt=run["attempt"] + 1, retry_of=uuid.UUID(str(run["id"])), now=now,
                )  # fmt: skip
        log.warning("run %s of %s crashed: %s", run["id"], run["deployment"], error)
    return crashed


@job("crash-stale-runs", every_s=2)
def crash_stale_runs_job(store: Store, settings: Settings) -> list[Row]:
    """Mark runs whose worker stopped heartbeating `crashed` (and queue their retries)."""
    return crash_stale_runs(store, timedelta(seconds=settings.worker_heartbeat_timeout))
