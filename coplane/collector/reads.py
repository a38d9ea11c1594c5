"""Read endpoints: health, events, runs, pipelines, assets and lineage."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from coplane.events import names as n
from coplane.http.deps import store_of
from coplane.http.errors import ApiError, error_body
from coplane.store.events import EventFilter, event_json, list_events
from coplane.store.lineage import read_lineage
from coplane.store.resources import (
    assets_json,
    list_resources,
    pipelines_json,
    read_asset,
    read_pipeline,
)
from coplane.store.runs import RunFilter, list_child_runs, list_runs, read_run, run_json
from coplane.version import __version__

router = APIRouter()
HEALTH_TIMEOUT_S = 2.0  # a monitor asking for health wants an answer, not a hang

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Cursor = Annotated[str | None, Query(description="`next` of the previous page")]


def _bad_cursor(exc: ValueError) -> ApiError:
    return ApiError(422, f"cursor: {exc}", ["query", "cursor"])


@router.get("/api/health", summary="Is coplane up, and can it reach its database?")
def health(request: Request) -> JSONResponse:
    """200 with the backend when the database answers, 503 with the reason when not."""
    store = store_of(request)
    info = {
        "database": store.dialect,
        "timescaledb": store.layout == "hypertable",
        "version": __version__,
    }
    try:
        with store.connect(timeout=HEALTH_TIMEOUT_S) as conn:
            conn.one("SELECT 1 AS ok")
    except Exception as exc:  # any failure to answer is an outage
        body = {**error_body(f"database unreachable: {exc}"), "status": "error", **info}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", **info})


@router.get("/api/events", summary="Stored events, newest first")
def get_events(
    request: Request,
    event: Annotated[str | None, Query(description="name, or prefix ending in *")] = None,
    resource: str | None = None,
    related: str | None = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Filter by name (trailing `*`), resource, related resource and time."""
    f = EventFilter(event=event, resource=resource, related=related, since=since, until=until)
    with store_of(request).connect() as conn:
        try:
            rows, next_cursor = list_events(conn, f, limit, cursor)
        except ValueError as exc:
            raise _bad_cursor(exc) from None
    return {"events": [event_json(r) for r in rows], "next": next_cursor}


@router.get("/api/runs", summary="Runs, newest first")
def get_runs(
    request: Request,
    pipeline: Annotated[str | None, Query(description="resource id of the pipeline")] = None,
    state: Literal[
        "scheduled", "pending", "running", "paused", "completed", "failed", "retrying",
        "cancelled", "cached", "crashed",
    ]
    | None = None,
    since: AwareDatetime | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Runs of one pipeline or of all, by state and start time."""
    f = RunFilter(pipeline=pipeline, state=state, since=since)
    with store_of(request).connect() as conn:
        try:
            rows, next_cursor = list_runs(conn, f, limit, cursor)
        except ValueError as exc:
            raise _bad_cursor(exc) from None
    return {"runs": [run_json(r) for r in rows], "next": next_cursor}


@router.get("/api/runs/{run_id}", summary="One run with its tasks and events")
def get_run(request: Request, run_id: uuid.UUID) -> dict[str, Any]:
    """The run, its task runs, and its events (oldest first)."""
    with store_of(request).connect() as conn:
        run = run_json(read_run(conn, run_id))
        tasks = [run_json(r) for r in list_child_runs(conn, run_id)]
        rows, _ = list_events(conn, EventFilter(run_id=run_id), 1000)
    run["tasks"] = tasks
    run["events"] = [event_json(r) for r in reversed(rows)]
    return run


@router.get("/api/pipelines", summary="Pipelines with their last run and statistics")
def get_pipelines(
    request: Request,
    kind: Literal["pipeline", "task"] = "pipeline",
    limit: Limit = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Pipelines (or tasks) in id order, each with last run, success rate, p50/p95 duration."""
    with store_of(request).connect() as conn:
        rows, next_cursor = list_resources(conn, (kind,), limit, cursor)
        return {"pipelines": pipelines_json(conn, rows), "next": next_cursor}


@router.get("/api/pipelines/{pipeline_id:path}", summary="One pipeline")
def get_pipeline(request: Request, pipeline_id: str) -> dict[str, Any]:
    """A pipeline or task with statistics, tasks, inputs and outputs."""
    with store_of(request).connect() as conn:
        return read_pipeline(conn, pipeline_id)


@router.get("/api/assets", summary="Assets with their last update and checks")
def get_assets(request: Request, limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """Assets in id order, each with last update, producing pipeline and latest checks."""
    with store_of(request).connect() as conn:
        rows, next_cursor = list_resources(conn, (n.KIND_ASSET,), limit, cursor)
        return {"assets": assets_json(conn, rows), "next": next_cursor}


@router.get("/api/assets/{asset_id:path}", summary="One asset")
def get_asset(request: Request, asset_id: str) -> dict[str, Any]:
    """An asset with its last update, producer and checks."""
    with store_of(request).connect() as conn:
        return read_asset(conn, asset_id)


@router.get("/api/lineage", summary="The lineage graph around a node")
def get_lineage(
    request: Request,
    node: Annotated[
        str | None, Query(description="resource id; the whole graph when absent")
    ] = None,
    depth: Annotated[int, Query(ge=1, le=10)] = 3,
    direction: Literal["both", "upstream", "downstream"] = "both",
) -> dict[str, Any]:
    """Nodes (id, kind, name, parent, status) and edges (source → target)."""
    with store_of(request).connect() as conn:
        return read_lineage(conn, node, depth, direction)
