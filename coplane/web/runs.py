"""The run page's own parts: its log lines (refreshed by htmx while it goes on) and, while it is
paused, the form that resumes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from coplane.http.deps import store_of
from coplane.http.errors import ApiError
from coplane.orchestrate.api import resume_run
from coplane.orchestrate.schemas import form_fields, input_from_form
from coplane.store.dialects import Conn
from coplane.store.errors import NotFound
from coplane.store.logs import latest_run_logs, log_json
from coplane.store.pauses import latest_pause, pause_json
from coplane.store.runs import read_run
from coplane.web import csrf
from coplane.web.render import error_page, render

router = APIRouter(include_in_schema=False)

SHOWN_LOGS = 500  # lines on the page; the API pages through all of them
LIVE_STATES = ("running", "paused", "scheduled", "retrying", None)


def run_logs_context(conn: Conn, run_id: uuid.UUID, state: str | None) -> dict[str, Any]:
    """What `_run_logs.html` needs for one run."""
    return {
        "run_id": str(run_id),
        "logs": [log_json(r) for r in latest_run_logs(conn, run_id, SHOWN_LOGS)],
        "shown": SHOWN_LOGS,
        "live": state in LIVE_STATES,
    }


@router.get("/runs/{run_id}/logs")
def run_logs_partial(request: Request, run_id: str) -> HTMLResponse:
    """The log section of a run's page, alone (htmx swaps it in place)."""
    try:
        rid = uuid.UUID(run_id)
    except ValueError:
        return error_page(request, 404, "Not found", f"{run_id!r} is not a run id.")
    with store_of(request).connect() as conn:
        try:
            state: str | None = read_run(conn, rid)["state"]
        except NotFound:  # lines can arrive before the run's first event
            state = None
        context = run_logs_context(conn, rid, state)
    # a page whose sections are h2s (a deployment's flow-run page) keeps its logs' h2
    level = 2 if request.query_params.get("heading") == "2" else 3
    return render(request, "_run_logs.html", {**context, "heading_level": level})


def run_pause_context(
    conn: Conn, run_id: uuid.UUID, request: Request | None = None
) -> dict[str, Any] | None:
    """The open pause of a run and its form's fields; None when the run is not paused.

    `may_resume` is whether whoever asks may send the form (editors and admins, when keys
    are required), so that a viewer is told instead of being handed a form that fails.
    """
    row = latest_pause(conn, run_id)
    if row is None:
        return None
    pause = pause_json(row, datetime.now(UTC))
    if pause["state"] != "paused":
        return None
    schema = pause["schema"]
    key = getattr(request.state, "key", None) if request is not None else None
    return {
        "pause": pause,
        "may_resume": key is None or key.allows("act"),
        "title": (schema or {}).get("title"),
        "description": (schema or {}).get("description"),
        "fields": form_fields(schema) if schema else [],
    }


def resume_url(run_id: uuid.UUID, back: str | None = None) -> str:
    """Where a run's resume form posts to; `back` names the page to land on after (see
    `_landing`): a name and not a URL, so that the form cannot send anyone elsewhere."""
    return f"/runs/{run_id}/resume" + ("?back=flow-run" if back == "flow-run" else "")


def _landing(run_id: uuid.UUID, pipeline: str, back: str | None) -> str:
    """The page a resume form was on: a deployment's flow-run page, else the pipeline's."""
    if back == "flow-run":
        return f"/flow-runs/{run_id}"
    return f"/pipelines/{quote(pipeline, safe=':@/')}?run={run_id}"


@router.post("/runs/{run_id}/resume")
async def resume_form(request: Request, run_id: str) -> Response:
    """Resume a paused run from its page with the form's input (editors and admins); the form
    of a deployment's flow-run page adds `?back=flow-run` to come back to that page."""
    form = await csrf.read_form(request)
    if not csrf.token_matches(request, form):
        return error_page(
            request,
            403,
            "Form expired or forged",
            "The form's security token did not match this browser's. The run was not resumed: "
            "reload its page and submit the form again.",
        )
    try:
        rid = uuid.UUID(run_id)
    except ValueError:
        return error_page(request, 404, "Not found", f"{run_id!r} is not a run id.")
    with store_of(request).connect() as conn:
        try:
            run = read_run(conn, rid)
        except NotFound:
            return error_page(request, 404, "Not found", f"There is no run {run_id}.")
        row = latest_pause(conn, rid)
    schema = None if row is None else row["schema"]
    fields = {k: v for k, v in form.items() if k != csrf.CSRF_FIELD}
    value, typing = input_from_form(schema, fields) if schema else (None, [])
    back = request.query_params.get("back")
    action, page = resume_url(rid, back), _landing(rid, run["pipeline"], back)
    try:
        await resume_run(request, rid, value, typing)
    except ApiError as exc:
        if exc.status == 422 and schema:
            return _refused(request, rid, action, page, fields, exc)
        title = "Input not valid" if exc.status == 422 else "Run not resumed"
        message = f"{exc.detail}. The run is still paused." if exc.status == 422 else exc.detail
        return error_page(request, exc.status, title, message)
    return RedirectResponse(page, status_code=303)


def _refused(
    request: Request,
    run_id: uuid.UUID,
    action: str,
    run_page: str,
    values: dict[str, str],
    exc: ApiError,
) -> Response:
    """The form again, as it was sent, with each wrong field's error beside it: a page that
    only said what was wrong sent people back to retype everything."""
    with store_of(request).connect() as conn:
        pause = run_pause_context(conn, run_id, request)
    message = f"{exc.detail}. The run is still paused."
    if pause is None:  # timed out since: no form to show again
        return error_page(request, 422, "Input not valid", message)
    field_errors: dict[str, str] = {}
    for error in exc.errors:
        loc = error["loc"] or []
        if len(loc) > 2 and loc[:2] == ["body", "input"]:
            field_errors.setdefault(str(loc[2]), str(error["msg"]))
    token = csrf.token_for(request)
    context = {"pause": pause, "run_id": str(run_id), "resume_action": action,
               "run_page": run_page, "message": message, "values": values,
               "field_errors": field_errors, "csrf_token": token}  # fmt: skip
    response = render(request, "run_resume.html", context, 422)
    csrf.set_token(request, response, token)
    return response
