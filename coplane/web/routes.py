"""The web UI's routes: the SLA and incident pages, the CSRF-checked ack and resolve forms, and
the routers of the other pages."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from coplane.http.deps import store_of
from coplane.slas.api import sla_json
from coplane.store.errors import Conflict, NotFound
from coplane.store.health import breach_windows, compliance
from coplane.store.incidents import (
    IncidentState,
    ack_incident,
    incident_json,
    list_incidents,
    list_notifications,
    read_incident,
    resolve_incident,
)
from coplane.store.remediations import read_remediation
from coplane.store.slas import list_slas, read_sla
from coplane.web import backtest, csrf, deployments, events, graph, health, resources, runs, sla
from coplane.web.render import STATIC_DIR, error_page, render

# Hidden from the OpenAPI schema: it documents the JSON API, which the README lists route by route.
router = APIRouter(include_in_schema=False)
for _pages in (health, graph, resources, events, sla, backtest, runs, deployments):
    router.include_router(_pages.router)

__all__ = ["CSRF_COOKIE", "STATIC_DIR", "router"]

CSRF_COOKIE = csrf.CSRF_COOKIE
INCIDENT_LIMIT = 500  # the incident pages show this many, newest first
STATES: dict[str, IncidentState | None] = {"": None, "open": "open", "resolved": "resolved"}


# --- SLAs -------------------------------------------------------------------------------------


COMPLIANCE_DAYS = (7, 30)


@router.get("/slas")
def slas_page(request: Request) -> HTMLResponse:
    """Every SLA with its status, next deadline, compliance over 7 and 30 days, explanation and
    open incidents."""
    now = datetime.now(UTC)
    month = now - timedelta(days=max(COMPLIANCE_DAYS))
    with store_of(request).connect() as conn:
        stored = list_slas(conn)
        incidents = list_incidents(conn, "open", INCIDENT_LIMIT)
        windows = breach_windows(conn, month)
    open_count: dict[str, int] = {}
    for i in incidents:
        open_count[i["sla"]] = open_count.get(i["sla"], 0) + 1
    slas = []
    for s in stored:
        mine = windows.get(s.sla.name, [])
        shares = {
            days: compliance(mine, max(now - timedelta(days=days), s.created), now)
            for days in COMPLIANCE_DAYS
        }
        slas.append({**sla_json(s.sla, s.state, s.origin), "compliance": shares})
    context = {"slas": slas, "open_count": open_count, "days": COMPLIANCE_DAYS}
    return render(request, "slas.html", context, blocks=("sla-table",))


# --- incidents --------------------------------------------------------------------------------


def _deliveries(incident: dict[str, Any]) -> list[dict[str, Any]]:
    """The latest notification per channel: where the incident's alerts stand."""
    latest: dict[str, dict[str, Any]] = {}
    for note in incident["notifications"]:  # oldest first: later ones replace earlier ones
        latest[note["channel"]] = note
    return [latest[c] for c in sorted(latest)]


@router.get("/incidents")
def incidents_page(request: Request, state: str = "", sla: str = "") -> HTMLResponse:
    """Incidents newest first: all, open or resolved, optionally of one SLA."""
    if state not in STATES:
        return error_page(
            request, 400, "Bad filter", f"state must be open or resolved, not {state!r}."
        )
    with store_of(request).connect() as conn:
        incidents = list_incidents(conn, STATES[state], INCIDENT_LIMIT)
    if sla:
        incidents = [i for i in incidents if i["sla"] == sla]
    rows = [{**i, "deliveries": _deliveries(i)} for i in incidents]
    context = {"incidents": rows, "state": state, "sla": sla, "limit": INCIDENT_LIMIT}
    return render(request, "incidents.html", context)


def _incident_state(incident: dict[str, Any]) -> str:
    if incident["resolved"]:
        return "resolved"
    return "acked" if incident["acked"] else "open"


@router.get("/incidents/{incident_id}")
def incident_page(request: Request, incident_id: str) -> HTMLResponse:
    """One incident with its notifications, and the ack and resolve forms."""
    try:
        with store_of(request).connect() as conn:
            row = read_incident(conn, incident_id)
            notes = list_notifications(conn, [row["id"]])
            incident = incident_json(row, notes.get(str(row["id"]), []))
            remediation = read_remediation(conn, row["id"])
            cause = None
            if row["inhibited_by"] is not None:
                # named by its SLA and reason: a bare UUID tells the reader nothing
                with contextlib.suppress(NotFound):
                    cause = incident_json(read_incident(conn, str(row["inhibited_by"])), [])
    except NotFound:
        return _no_incident(request, incident_id)
    token = csrf.token_for(request)
    context = {
        "incident": incident,
        "cause": cause,
        "state": _incident_state(incident),
        "csrf_token": token,
        "remediation": remediation,
    }
    response = render(request, "incident.html", context)
    csrf.set_token(request, response, token)
    return response


def _no_incident(request: Request, incident_id: str) -> HTMLResponse:
    return error_page(request, 404, "Incident not found", f"There is no incident {incident_id}.")


async def _csrf_ok(request: Request) -> bool:
    """The form's token equals the cookie's (compared in constant time), and both are set."""
    return csrf.token_matches(request, await csrf.read_form(request))


def _forbidden(request: Request) -> HTMLResponse:
    return error_page(
        request,
        403,
        "Form expired or forged",
        "The form's security token did not match this browser's. Nothing was changed: "
        "reload the incident page and submit the form again.",
    )


def _ack(request: Request, incident_id: str) -> None:
    with store_of(request).connect() as conn:
        ack_incident(conn, incident_id, datetime.now(UTC))


def _resolve(request: Request, incident_id: str) -> None:
    """As POST /api/incidents/{id}/resolve does: resolve, queue 'resolve' alerts, wake the
    dispatcher so that they go out now."""
    with store_of(request).connect() as conn:
        incident = read_incident(conn, incident_id)  # NotFound when unknown
        try:
            channels = read_sla(conn, incident["sla"]).sla.notify
        except NotFound:  # the SLA was deleted: nobody to tell
            channels = []
        resolve_incident(conn, incident_id, datetime.now(UTC), channels)
    dispatcher = getattr(request.app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.wake()


async def _change(request: Request, incident_id: str, action: str) -> Response:
    if not await _csrf_ok(request):
        return _forbidden(request)
    change = _ack if action == "ack" else _resolve
    try:
        await run_in_threadpool(change, request, incident_id)
    except NotFound:
        return _no_incident(request, incident_id)
    except Conflict:
        return error_page(
            request, 409, "Incident already resolved", f"Incident {incident_id} is resolved."
        )
    # 303: the browser follows with a GET, so a reload does not post the form again.
    return RedirectResponse(f"/incidents/{uuid.UUID(incident_id)}", status_code=303)


@router.post("/incidents/{incident_id}/ack")
async def ack_form(request: Request, incident_id: str) -> Response:
    """Acknowledge an open incident from its page."""
    return await _change(request, incident_id, "ack")


@router.post("/incidents/{incident_id}/resolve")
async def resolve_form(request: Request, incident_id: str) -> Response:
    """Resolve an open incident from its page, queuing its 'resolve' alerts."""
    return await _change(request, incident_id, "resolve")
