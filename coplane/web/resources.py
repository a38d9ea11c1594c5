"""The pipeline and asset pages: run history with a duration chart and p50-p95 band, a run's
task timeline, errors, checks, and the history of the SLAs that watch them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from coplane.events import names as n
from coplane.http.deps import store_of
from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound
from coplane.store.events import EventFilter, event_json, list_events
from coplane.store.health import incidents_of
from coplane.store.resources import assets_json, read_asset, read_pipeline
from coplane.store.runs import RunFilter, list_child_runs, list_runs, read_run, run_json
from coplane.store.slas import StoredSla, list_slas
from coplane.web import csrf
from coplane.web.charts import RunPoint, Span, duration_chart, gantt
from coplane.web.health import SlaIndex
from coplane.web.render import error_page, render
from coplane.web.runs import run_logs_context, run_pause_context

router = APIRouter(include_in_schema=False)

CHART_RUNS = 100  # runs in the duration chart
TABLE_RUNS = 30  # runs in the history table
HISTORY = 30  # incidents and asset updates listed


def resource_url(kind: str | None, rid: str) -> str:
    """The page of a resource: pipelines and tasks on the pipeline page, others as assets."""
    base = "/pipelines/" if kind in (n.KIND_PIPELINE, n.KIND_TASK) else "/assets/"
    return base + quote(rid, safe=":@/")


def _slas_watching(conn: Conn, rid: str) -> list[StoredSla]:
    return SlaIndex(list_slas(conn)).watching(rid)


def _run_point(row: Row, now: datetime) -> RunPoint:
    """A run for the duration chart; a running one at its elapsed time, so that a run far
    past its usual (or its SLA's) duration stands out instead of being the shortest bar."""
    seconds = run_json(row)["duration_s"]
    running = seconds is None and row["state"] == "running" and row["started"] is not None
    if running:
        seconds = max((now - row["started"]).total_seconds(), 0.0)
    return RunPoint(str(row["id"]), row["state"] or "unknown", seconds, row["run_key"], running)


def _sla_history(conn: Conn, slas: list[StoredSla], rid: str) -> list[dict[str, Any]]:
    names = [s.sla.name for s in slas]
    return [
        {
            **r,
            "id": str(r["id"]),
            "state": "resolved" if r["resolved"] else "acked" if r["acked"] else "open",
        }
        for r in incidents_of(conn, names, rid, HISTORY)
    ]


def _kinds(conn: Conn, ids: list[str]) -> dict[str, str | None]:
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    rows = conn.query(f"SELECT id, kind FROM resources WHERE id IN ({marks})", ids)
    return {r["id"]: r["kind"] for r in rows}


def _links(conn: Conn, ids: list[str]) -> list[dict[str, str]]:
    kinds = _kinds(conn, ids)
    return [{"id": i, "url": resource_url(kinds.get(i), i)} for i in ids]


def _task_label(task: str, pipeline: str) -> str:
    return task[len(pipeline) + 1 :] if task.startswith(pipeline + ".") else task


@router.get("/pipelines/{pid:path}")
def pipeline_page(request: Request, pid: str, run: str | None = None) -> HTMLResponse:
    """A pipeline (or task): stats, duration chart, run history, one run's timeline and events,
    output checks, and SLA history."""
    now = datetime.now(UTC)
    try:
        run_id = None if run is None else uuid.UUID(run)
    except ValueError:
        return error_page(request, 404, "Not found", f"{run!r} is not a run id.")
    try:
        with store_of(request).connect() as conn:
            pipeline = read_pipeline(conn, pid)
            rows, _ = list_runs(conn, RunFilter(pipeline=pid), CHART_RUNS)
            chosen = rows[0] if rows and run_id is None else None
            if run_id is not None:
                chosen = read_run(conn, run_id)
                if chosen["pipeline"] != pid:
                    raise NotFound(f"run {run} is not a run of {pid}")
            tasks = list_child_runs(conn, chosen["id"]) if chosen else []
            run_events = []
            logs: dict[str, Any] = {}
            pause: dict[str, Any] | None = None
            if chosen is not None:
                found, _ = list_events(conn, EventFilter(run_id=chosen["id"]), 200)
                run_events = [event_json(e) for e in reversed(found)]
                logs = run_logs_context(conn, chosen["id"], chosen["state"])
                pause = run_pause_context(conn, chosen["id"], request)
            outputs = assets_json(
                conn,
                [r for r in _resources(conn, pipeline["outputs"]) if r["kind"] == n.KIND_ASSET],
            )
            slas = _slas_watching(conn, pid)
            history = _sla_history(conn, slas, pid)
            inputs, outs = _links(conn, pipeline["inputs"]), _links(conn, pipeline["outputs"])
            task_links = _links(conn, pipeline["tasks"])
    except NotFound as exc:
        return error_page(request, 404, "Not found", str(exc))
    points = [_run_point(r, now) for r in reversed(rows)]
    spans = [
        Span(
            str(t["id"]),
            _task_label(t["pipeline"], pid),
            t["state"] or "unknown",
            t["started"],
            t["ended"],
        )
        for t in tasks
    ]
    context = {
        "pipeline": pipeline,
        "runs": [run_json(r) for r in rows[:TABLE_RUNS]],
        "errors": [run_json(r) for r in rows if r["error"]][:5],
        "chart": duration_chart(points),
        "chosen": run_json(chosen) if chosen else None,
        "timeline": gantt(spans, now),
        "task_runs": [run_json(t) for t in tasks],
        "run_events": run_events,
        "run_logs": logs,
        "pause": pause,
        "outputs": outputs,
        "slas": slas,
        "history": history,
        "inputs": inputs,
        "outs": outs,
        "task_links": task_links,
        "now": now,
        "quote": quote,
    }
    if pause is None:
        return render(request, "pipeline.html", context, blocks=("pipeline-live",))
    token = csrf.token_for(request)  # the resume form's
    response = render(
        request, "pipeline.html", {**context, "csrf_token": token}, blocks=("pipeline-live",)
    )
    csrf.set_token(request, response, token)
    return response


def _resources(conn: Conn, ids: list[str]) -> list[Any]:
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    return conn.query(
        "SELECT id, kind, name, labels, source, parent, first_seen, last_seen FROM resources "
        f"WHERE id IN ({marks}) ORDER BY id",
        ids,
    )


@router.get("/assets/{aid:path}")
def asset_page(request: Request, aid: str) -> HTMLResponse:
    """An asset: last update and producer, checks, update history, neighbours, SLA history."""
    try:
        with store_of(request).connect() as conn:
            asset = read_asset(conn, aid)
            found, _ = list_events(conn, EventFilter(event="asset.updated", resource=aid), HISTORY)
            producers = [
                r["source"]
                for r in conn.query(
                    "SELECT source FROM lineage_edges WHERE target = ? ORDER BY source", (aid,)
                )
            ]
            consumers = [
                r["target"]
                for r in conn.query(
                    "SELECT target FROM lineage_edges WHERE source = ? ORDER BY target", (aid,)
                )
            ]
            slas = _slas_watching(conn, aid)
            history = _sla_history(conn, slas, aid)
            context = {
                "asset": asset,
                "updates": [event_json(e) for e in found],
                "producers": _links(conn, producers),
                "consumers": _links(conn, consumers),
                "slas": slas,
                "history": history,
                "now": datetime.now(UTC),
            }
    except NotFound as exc:
        return error_page(request, 404, "Not found", str(exc))
    return render(request, "asset.html", context)
