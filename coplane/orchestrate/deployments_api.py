"""HTTP API for deployments, their flow runs, cancelling a run, and work pools and their workers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict

from coplane.http.deps import store_of
from coplane.http.errors import ApiError, not_found_at
from coplane.orchestrate import remediation as _remediation  # noqa: F401  (registers its job)
from coplane.orchestrate.deployments import DeploymentError
from coplane.orchestrate.register import register_deployment
from coplane.orchestrate.runs import cancel_flow_run, create_flow_run, wake_workers
from coplane.orchestrate.schedules import next_runs, pause_schedules, resume_schedules
from coplane.rules.deployment import DeploymentSpec
from coplane.store.deployments import (
    delete_deployment,
    deployment_json,
    list_deployments,
    read_deployment,
)
from coplane.store.dialects import Conn
from coplane.store.flow_runs import (
    flow_run_json,
    list_flow_runs,
    list_workers,
    queue_depths,
    read_flow_run,
)
from coplane.store.remediations import (
    read_remediation,
    read_remediation_of_run,
    remediation_json,
)
from coplane.store.schedules import list_schedules, schedule_json

router = APIRouter()

# Workers that have not heartbeat for this long are no longer listed under their pool.
WORKERS_SHOWN_FOR = timedelta(hours=1)


class RunRequest(BaseModel):
    """A run asked for by hand: parameters over the deployment's defaults, and when."""

    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, Any] = {}
    due: AwareDatetime | None = None


def _refused(exc: DeploymentError, loc_prefix: list[str | int]) -> ApiError:
    loc = exc.loc if exc.loc[:1] == ["body"] else [*loc_prefix, *exc.loc]
    return ApiError(422, str(exc), loc)


def _schedules(conn: Conn, name: str, now: datetime) -> list[dict[str, Any]]:
    return [schedule_json(s, next_runs(s, now)) for s in list_schedules(conn, name)]


def _with_runs(request: Request, row: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    with store_of(request).connect() as conn:
        runs = list_flow_runs(conn, deployment=row["name"], limit=20)
        schedules = _schedules(conn, row["name"], now)
    return {
        **deployment_json(row),
        "schedules": schedules,
        "runs": [flow_run_json(r) for r in runs],
    }


@router.get("/api/deployments", summary="Deployments")
def get_deployments(request: Request) -> dict[str, Any]:
    """Every deployment, by name."""
    now = datetime.now(UTC)
    with store_of(request).connect() as conn:
        return {
            "deployments": [
                {**deployment_json(r), "schedules": _schedules(conn, r["name"], now)}
                for r in list_deployments(conn)
            ]
        }


@router.post("/api/deployments", status_code=201, summary="Create a deployment")
def post_deployment(request: Request, spec: DeploymentSpec) -> dict[str, Any]:
    """Load the entrypoint where its code is, check the default parameters, and store it."""
    try:
        row = register_deployment(store_of(request), spec, "api", replace=False)
    except DeploymentError as exc:
        raise _refused(exc, ["body"]) from None
    return _with_runs(request, row)


@router.put("/api/deployments/{name}", summary="Create or replace a deployment")
def put_deployment(request: Request, name: str, spec: DeploymentSpec) -> dict[str, Any]:
    """As POST, replacing a deployment of that name made through the API."""
    if spec.name != name:
        raise ApiError(422, f"the body names {spec.name!r}, the path {name!r}", ["body", "name"])
    try:
        row = register_deployment(store_of(request), spec, "api", replace=True)
    except DeploymentError as exc:
        raise _refused(exc, ["body"]) from None
    return _with_runs(request, row)


@router.get("/api/deployments/{name}", summary="One deployment and its latest runs")
def get_deployment(request: Request, name: str) -> dict[str, Any]:
    """A deployment with its latest 20 flow runs."""
    with store_of(request).connect() as conn, not_found_at("path", "name"):
        row = read_deployment(conn, name)
    return _with_runs(request, row)


@router.delete("/api/deployments/{name}", status_code=204, summary="Delete a deployment")
def remove_deployment(request: Request, name: str) -> Response:
    """Remove a deployment made through the API (its runs' history stays under /api/runs)."""
    with store_of(request).connect() as conn, conn.transaction(), not_found_at("path", "name"):
        delete_deployment(conn, name, origin="api")
    return Response(status_code=204)


@router.post("/api/deployments/{name}/pause", summary="Pause a deployment's schedules")
def post_pause(request: Request, name: str) -> dict[str, Any]:
    """Pause its schedules: the runs they made that have not started are cancelled, and no
    more are made until it is resumed. 404 when it has no schedule."""
    with not_found_at("path", "name"):
        rows = pause_schedules(store_of(request), name)
    return {"schedules": [schedule_json(r, []) for r in rows]}


@router.post("/api/deployments/{name}/resume", summary="Resume a deployment's schedules")
def post_resume(request: Request, name: str) -> dict[str, Any]:
    """Resume its schedules; their upcoming runs are made at once."""
    store = store_of(request)
    with not_found_at("path", "name"):
        resume_schedules(store, name)
    now = datetime.now(UTC)
    with store.connect() as conn:
        return {"schedules": _schedules(conn, name, now)}


@router.post("/api/deployments/{name}/runs", status_code=201, summary="Run a deployment")
def post_run(
    request: Request,
    name: str,
    body: Annotated[RunRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Queue a run now (or at `due`); 422 naming a parameter the flow's signature refuses."""
    body = body or RunRequest()
    store = store_of(request)
    with store.connect() as conn, conn.transaction():
        with not_found_at("path", "name"):
            deployment = read_deployment(conn, name)
        try:
            row, _ = create_flow_run(store, conn, deployment, body.parameters, due=body.due)
        except DeploymentError as exc:
            raise _refused(exc, ["body"]) from None
    if body.due is None:
        wake_workers()
    return flow_run_json(row)


@router.get("/api/flow-runs", summary="Flow runs of deployments")
def get_flow_runs(
    request: Request,
    deployment: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Flow runs with their orchestration state, latest due first."""
    with store_of(request).connect() as conn:
        rows = list_flow_runs(conn, deployment=deployment, state=state, limit=limit)
    return {"flow_runs": [flow_run_json(r) for r in rows]}


@router.get("/api/flow-runs/{run_id}", summary="One flow run's orchestration state")
def get_flow_run(request: Request, run_id: uuid.UUID) -> dict[str, Any]:
    """Which worker holds it, its attempt, parameters, heartbeat and cancel request, and the
    incident it remediates."""
    with store_of(request).connect() as conn, not_found_at("path", "run_id"):
        row = read_flow_run(conn, run_id)
        remediation = read_remediation_of_run(conn, run_id)
    out = flow_run_json(row)
    out["remediates"] = None if remediation is None else str(remediation["incident_id"])
    return out


@router.get("/api/incidents/{incident_id}/remediation", summary="An incident's remediation")
def get_remediation(request: Request, incident_id: uuid.UUID) -> dict[str, Any]:
    """The run its SLA's `remediate` started for it (and that run's state), or why none was;
    404 when none was asked for (yet)."""
    with store_of(request).connect() as conn:
        row = read_remediation(conn, incident_id)
    if row is None:
        raise ApiError(404, f"incident {incident_id} has no remediation", ["path", "incident_id"])
    return remediation_json(row)


@router.post("/api/runs/{run_id}/cancel", summary="Cancel a deployment's run")
def post_cancel(request: Request, run_id: uuid.UUID) -> dict[str, Any]:
    """A run not yet started is cancelled at once; a running one when its worker has stopped
    it (within a heartbeat). 409 when it has ended already."""
    with not_found_at("path", "run_id"):
        return flow_run_json(cancel_flow_run(store_of(request), run_id))


@router.get("/api/work-pools", summary="Work pools, their workers and queue depth")
def get_work_pools(request: Request) -> dict[str, Any]:
    """Each pool that has deployments or workers: its workers and its due runs waiting."""
    now = datetime.now(UTC)
    with store_of(request).connect() as conn:
        depths = queue_depths(conn, now)
        workers = list_workers(conn, now - WORKERS_SHOWN_FOR)
        pools = {r["work_pool"] for r in list_deployments(conn)}
    pools |= set(depths) | {w["pool"] for w in workers}
    timeout = request.app.state.settings.worker_heartbeat_timeout
    out = []
    for pool in sorted(pools):
        mine = [w for w in workers if w["pool"] == pool]
        out.append(
            {
                "name": pool,
                "queued": depths.get(pool, 0),
                "workers": [
                    {
                        "name": w["id"],
                        "hostname": w["hostname"],
                        "pid": w["pid"],
                        "started": w["started"].isoformat(),
                        "heartbeat": w["heartbeat"].isoformat(),
                        "status": "stopped" if w["stopped"] is not None
                        else "online" if (now - w["heartbeat"]).total_seconds() < timeout
                        else "offline",
                    }
                    for w in mine
                ],
            }
        )  # fmt: skip
    return {"work_pools": out}
