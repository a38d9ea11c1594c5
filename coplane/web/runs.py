"""The run page's live parts: its log lines, refreshed by htmx while the run goes on."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from coplane.collector.ingest import store_of
from coplane.store.dialects import Conn
from coplane.store.errors import NotFound
from coplane.store.logs import latest_run_logs, log_json
from coplane.store.runs import read_run
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
    return render(request, "_run_logs.html", context)
