"""The deployments, flow run, work pool and automation pages, and their CSRF-checked forms."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from coplane.http.deps import store_of
from coplane.orchestrate.deployments import DeploymentError
from coplane.orchestrate.runs import cancel_flow_run, create_flow_run, wake_workers
from coplane.orchestrate.schedules import next_runs, pause_schedules, resume_schedules
from coplane.store.automations import (
    list_automations,
    list_decisions,
    list_firings,
    read_automation,
)
from coplane.store.deployments import deployment_json, list_deployments, read_deployment
from coplane.store.errors import Conflict, NotFound
from coplane.store.events import EventFilter, event_json, list_events
from coplane.store.flow_runs import (
    TERMINAL,
    flow_run_json,
    list_flow_runs,
    list_workers,
    queue_depths,
    read_flow_run,
)
from coplane.store.remediations import read_remediation_of_run
from coplane.store.runs import list_child_runs, read_run, run_json
from coplane.store.schedules import list_schedules, schedule_json
from coplane.web import csrf
from coplane.web.render import error_page, render
from coplane.web.runs import resume_url, run_logs_context, run_pause_context

router = APIRouter(include_in_schema=False)

REFRESH = "every 2s"


def _csrf_page(request: Request, template: str, context: dict[str, Any], status: int = 200,
               blocks: tuple[str, ...] = ()) -> HTMLResponse:  # fmt: skip
    token = csrf.token_for(request)
    response = render(request, template, {**context, "csrf_token": token}, status, blocks)
    csrf.set_token(request, response, token)
    return response


async def _form_or_none(request: Request) -> dict[str, str] | None:
    form = await csrf.read_form(request)
    return form if csrf.token_matches(request, form) else None


def _forbidden(request: Request) -> HTMLResponse:
    return error_page(request, 403, "Form expired or forged",
                      "The form's security token did not match this browser's. Nothing was "
                      "changed: reload the page and submit the form again.")  # fmt: skip


# --- deployments ------------------------------------------------------------------------------


@router.get("/deployments")
def deployments_page(request: Request) -> HTMLResponse:
    """Every deployment with its schedules, next run and latest run."""
    now = datetime.now(UTC)
    rows = []
    with store_of(request).connect() as conn:
        for d in list_deployments(conn):
            schedules = list_schedules(conn, d["name"])
            upcoming = sorted(t for s in schedules for t in next_runs(s, now, 1))
            last = list_flow_runs(conn, deployment=d["name"], limit=5)
            ended = [r for r in last if r["state"] not in ("scheduled",)]
            rows.append({
                **deployment_json(d),
                "schedules": [schedule_json(s) for s in schedules],
                "next_run": upcoming[0].isoformat() if upcoming else None,
                "last_run": flow_run_json(ended[0]) if ended else None,
            })  # fmt: skip
    return render(request, "deployments.html", {"deployments": rows})


def _form_fields(d: dict[str, Any]) -> list[dict[str, Any]]:
    """The Run form's inputs, one per parameter of the flow's signature."""
    schema = d["signature"].get("schema") or {}
    required = set(schema.get("required") or [])
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") or ("json" if "anyOf" in prop else "string")
        default = d["parameters"].get(name, prop.get("default"))
        shown = default if isinstance(default, str) else (
            "" if default is None else json.dumps(default)
        )  # fmt: skip
        fields.append({"name": name, "kind": kind, "required": name in required and
                       name not in d["parameters"], "value": shown,
                       "checked": default is True})  # fmt: skip
    return fields


def _deployment_context(request: Request, name: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    with store_of(request).connect() as conn:
        d = deployment_json(read_deployment(conn, name))
        schedules = [schedule_json(s, next_runs(s, now)) for s in list_schedules(conn, name)]
        runs = [flow_run_json(r) for r in list_flow_runs(conn, deployment=name, limit=20)]
    paused = any(s["paused"] for s in schedules)
    return {"d": d, "schedules": schedules, "runs": runs, "fields": _form_fields(d),
            "paused": paused, "error": None, "refresh": REFRESH}  # fmt: skip


@router.get("/deployments/{name}")
def deployment_page(request: Request, name: str) -> HTMLResponse:
    """One deployment: its schedules, pause and resume, the Run form and its latest runs."""
    try:
        context = _deployment_context(request, name)
    except NotFound:
        return error_page(request, 404, "Deployment not found", f"There is no deployment {name}.")
    return _csrf_page(request, "deployment.html", context, blocks=("deployment-runs",))


def _parse(field: dict[str, Any], raw: str | None) -> Any:
    if field["kind"] == "boolean":
        return raw is not None
    if raw is None or raw == "":
        return None
    if field["kind"] == "string":
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # the signature check names the parameter


@router.post("/deployments/{name}/run")
async def run_form(request: Request, name: str) -> Response:
    """Start a run with the form's parameters; then its page. A parameter the flow refuses is
    shown on the form, naming it, and nothing is queued."""
    form = await _form_or_none(request)
    if form is None:
        return _forbidden(request)
    store = store_of(request)

    def start() -> dict[str, Any] | str:
        try:
            context = _deployment_context(request, name)
        except NotFound:
            return "missing"
        parameters = {}
        for field in context["fields"]:
            value = _parse(field, form.get(f"param-{field['name']}"))
            if value is not None:
                parameters[field["name"]] = value
        try:
            with store.connect() as conn, conn.transaction():
                row, _ = create_flow_run(store, conn, read_deployment(conn, name), parameters)
        except DeploymentError as exc:
            return {**context, "error": str(exc)}
        return str(row["id"])

    result = await run_in_threadpool(start)
    if isinstance(result, str) and result != "missing":
        wake_workers()
    if result == "missing":
        return error_page(request, 404, "Deployment not found", f"There is no deployment {name}.")
    if isinstance(result, dict):
        return _csrf_page(request, "deployment.html", result, status=422)
    return RedirectResponse(f"/flow-runs/{result}", status_code=303)


@router.post("/deployments/{name}/{action}")
async def schedule_form(request: Request, name: str, action: str) -> Response:
    """Pause or resume a deployment's schedules from its page."""
    if action not in ("pause", "resume"):
        return error_page(request, 404, "Not found", f"No action {action!r}.")
    if await _form_or_none(request) is None:
        return _forbidden(request)
    act = pause_schedules if action == "pause" else resume_schedules
    try:
        await run_in_threadpool(act, store_of(request), name)
    except NotFound:
        return error_page(request, 404, "No schedule", f"Deployment {name} has no schedule.")
    return RedirectResponse(f"/deployments/{name}", status_code=303)


# --- flow runs --------------------------------------------------------------------------------


def _gantt(children: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Each task run as a bar: its offset and width in percent of the span of them all."""
    timed = [c for c in children if c["started"]]
    if not timed:
        return []
    start = min(datetime.fromisoformat(c["started"]) for c in timed)
    end = max(datetime.fromisoformat(c["ended"]) if c["ended"] else now for c in timed)
    span = max((end - start).total_seconds(), 1e-6)
    bars = []
    for c in timed:
        s = datetime.fromisoformat(c["started"])
        e = datetime.fromisoformat(c["ended"]) if c["ended"] else now
        left = round(100 * (s - start).total_seconds() / span, 2)
        width = max(round(100 * (e - s).total_seconds() / span, 2), 0.5)
        bars.append({**c, "left": left, "width": width})
    return bars


def _flow_run_context(request: Request, run_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    rid = uuid.UUID(run_id)
    with store_of(request).connect() as conn:
        flow_run = flow_run_json(read_flow_run(conn, run_id))
        try:
            run = run_json(read_run(conn, run_id))
        except NotFound:
            run = None
        events, _ = list_events(conn, EventFilter(run_id=rid), 200)
        children = [run_json(c) for c in list_child_runs(conn, run_id)]
        remediation = read_remediation_of_run(conn, run_id)
        pause = run_pause_context(conn, rid, request)
        logs = run_logs_context(conn, rid, run["state"] if run else None)
    timeline = sorted((event_json(e) for e in events), key=lambda e: e["occurred"])
    causes = [r["id"] for r in flow_run["related"] if r.get("role") == "cause"]
    return {
        "fr": flow_run, "run": run, "timeline": timeline, "bars": _gantt(children, now),
        "causes": causes, "incident": None if remediation is None
        else str(remediation["incident_id"]),
        "live": flow_run["state"] not in TERMINAL, "refresh": REFRESH, "pause": pause,
        "resume_action": resume_url(rid, "flow-run"),
        "run_logs": logs,
    }  # fmt: skip


@router.get("/flow-runs/{run_id}")
def flow_run_page(request: Request, run_id: str) -> HTMLResponse:
    """One flow run: its state timeline, task runs as a Gantt chart, its causes, cancel; the
    form that resumes it while it waits for input, and its logs."""
    try:
        uuid.UUID(run_id)
        context = _flow_run_context(request, run_id)
    except (ValueError, NotFound):
        return error_page(request, 404, "Run not found", f"There is no deployment run {run_id}.")
    shown = request.query_params.get("paused") == "1"
    if request.headers.get("hx-request") == "true" and shown != (context["pause"] is not None):
        # The resume form sits outside the refreshed part so that a refresh never undoes what
        # someone types; the page is reloaded whole only when the form is to appear or go.
        return HTMLResponse("", headers={"HX-Refresh": "true"})
    return _csrf_page(request, "flow_run.html", context, blocks=("flow-run-live",))


@router.post("/flow-runs/{run_id}/cancel")
async def cancel_form(request: Request, run_id: str) -> Response:
    """Cancel a run from its page."""
    if await _form_or_none(request) is None:
        return _forbidden(request)
    try:
        await run_in_threadpool(cancel_flow_run, store_of(request), run_id)
    except NotFound:
        return error_page(request, 404, "Run not found", f"There is no deployment run {run_id}.")
    except Conflict as exc:
        return error_page(request, 409, "Run already ended", str(exc))
    return RedirectResponse(f"/flow-runs/{run_id}", status_code=303)


# --- work pools and automations ---------------------------------------------------------------


@router.get("/work-pools")
def work_pools_page(request: Request) -> HTMLResponse:
    """Each work pool with its workers and how many due runs wait."""
    now = datetime.now(UTC)
    timeout = request.app.state.settings.worker_heartbeat_timeout
    with store_of(request).connect() as conn:
        depths = queue_depths(conn, now)
        workers = list_workers(conn, now - timedelta(hours=1))
        pools = {d["work_pool"] for d in list_deployments(conn)}
    pools |= set(depths) | {w["pool"] for w in workers}
    rows = []
    for pool in sorted(pools):
        mine = [{**w, "status": "stopped" if w["stopped"] else "online"
                 if (now - w["heartbeat"]).total_seconds() < timeout else "offline"}
                for w in workers if w["pool"] == pool]  # fmt: skip
        rows.append({"name": pool, "queued": depths.get(pool, 0), "workers": mine})
    return render(request, "work_pools.html", {"pools": rows})


@router.get("/automations")
def automations_page(request: Request) -> HTMLResponse:
    """Every automation with its latest decision."""
    with store_of(request).connect() as conn:
        rows = []
        for r in list_automations(conn):
            last = list_decisions(conn, r["name"], 1)
            rows.append(
                {**r["definition"], "origin": r["origin"], "last": last[0] if last else None}
            )
    return render(request, "automations.html", {"automations": rows})


@router.get("/automations/{name}")
def automation_page(request: Request, name: str) -> HTMLResponse:
    """Why an automation fired or did not, event by event, and what its actions did."""
    try:
        with store_of(request).connect() as conn:
            row = read_automation(conn, name)
            decisions = list_decisions(conn, name, 50)
            firings = list_firings(conn, name)
    except NotFound:
        return error_page(request, 404, "Automation not found", f"There is no automation {name}.")
    context = {"a": {**row["definition"], "origin": row["origin"]}, "decisions": decisions,
               "firings": firings}  # fmt: skip
    return render(request, "automation.html", context)
