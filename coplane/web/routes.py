"""The web UI's routes: HTML pages over the store, and the CSRF-checked ack and resolve forms."""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from coplane.collector.ingest import store_of
from coplane.events import names as n
from coplane.slas.api import sla_json
from coplane.store.errors import Conflict, NotFound
from coplane.store.incidents import (
    IncidentState,
    ack_incident,
    incident_json,
    list_incidents,
    list_notifications,
    read_incident,
    resolve_incident,
)
from coplane.store.resources import list_resources, pipelines_json
from coplane.store.slas import list_slas, read_sla

# Hidden from the OpenAPI schema: it documents the JSON API, which the README lists route by route.
router = APIRouter(include_in_schema=False)

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
CSRF_COOKIE = "coplane_csrf"
CSRF_FIELD = "csrf_token"
INCIDENT_LIMIT = 500  # the incident pages show this many, newest first
PAGE_SIZE = 500  # pipelines are read in pages of this size
STATES: dict[str, IncidentState | None] = {"": None, "open": "open", "resolved": "resolved"}

# Worst first: the order of the health page and of its status filter.
STATUSES = ("breached", "at_risk", "failing", "unknown", "ok")
# Every status is shown as a symbol and a word; colour only repeats what they say.
ICONS = {
    "breached": "✖",
    "at_risk": "▲",
    "failing": "◆",
    "unknown": "?",
    "ok": "✓",
    "open": "●",
    "acked": "◐",
    "resolved": "✓",
    "sent": "✓",
    "pending": "…",
    "dead": "✖",
    "skipped": "⊘",
    "silenced": "⊘",
    "inhibited": "⊘",
}
# What each shown status looks like (its CSS class): incident and delivery states map onto the
# five health colours so that one scheme covers every page.
TONES = {
    "open": "breached",
    "acked": "at_risk",
    "resolved": "ok",
    "sent": "ok",
    "pending": "unknown",
    "dead": "breached",
    "skipped": "unknown",
    "silenced": "unknown",
    "inhibited": "unknown",
}
# A pipeline's status is that of its last run.
RUN_STATUS = {
    "failed": "failing",
    "retrying": "at_risk",
    "cancelled": "unknown",
    "completed": "ok",
    "running": "ok",
    "scheduled": "ok",
}


def status_badge(status: str) -> Markup:
    """A status as icon (hidden from screen readers, which read the word) and text."""
    tone = TONES.get(status, status if status in STATUSES else "unknown")
    icon = ICONS.get(status, "?")
    label = status.replace("_", " ")
    return Markup(
        '<span class="status status-{}"><span class="icon" aria-hidden="true">{}</span> {}</span>'
    ).format(tone, icon, label)


def when(value: str | None) -> Markup:
    """An ISO timestamp as a `<time>` in UTC, to the minute; a dash when there is none."""
    if not value:
        return Markup('<span class="none">—</span>')
    at = datetime.fromisoformat(value).astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        at.isoformat(), at.strftime("%Y-%m-%d %H:%M UTC")
    )


def duration(seconds: float | None) -> str:
    """Seconds in words, such as `1h 2m` or `42s`; a dash when unknown."""
    if seconds is None:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["status_badge"] = status_badge
    env.globals["statuses"] = STATUSES
    env.filters["when"] = when
    env.filters["duration"] = duration
    return env


ENV = _environment()


def render(
    request: Request, template: str, context: Mapping[str, Any], status_code: int = 200
) -> HTMLResponse:
    """A template as a page; `path` lets the navigation mark the current page."""
    html = ENV.get_template(template).render(path=request.url.path, **context)
    return HTMLResponse(html, status_code=status_code)


def error_page(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", {"title": title, "message": message}, status_code)


# --- health -----------------------------------------------------------------------------------


def _all_pipelines(request: Request) -> list[dict[str, Any]]:
    """Every pipeline with its last run, read page by page as GET /api/pipelines does."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    with store_of(request).connect() as conn:
        while True:
            rows, cursor = list_resources(conn, (n.KIND_PIPELINE,), PAGE_SIZE, cursor)
            out += pipelines_json(conn, rows)
            if cursor is None:
                return out


def _tiles(request: Request) -> list[dict[str, Any]]:
    tiles: list[dict[str, Any]] = []
    for p in _all_pipelines(request):
        run = p["last_run"]
        tiles.append(
            {
                "type": "pipeline",
                "name": p["id"],
                "status": "unknown" if run is None else RUN_STATUS.get(run["state"], "unknown"),
                "run": run,
            }
        )
    with store_of(request).connect() as conn:
        slas = [sla_json(s.sla, s.state, s.origin) for s in list_slas(conn)]
    for s in slas:
        tiles.append({"type": "sla", "name": s["name"], "status": s["status"], "sla": s})
    rank = {status: i for i, status in enumerate(STATUSES)}
    tiles.sort(key=lambda t: (rank.get(t["status"], len(STATUSES)), t["type"], t["name"]))
    return tiles


@router.get("/")
def health_page(request: Request, status: str = "", q: str = "") -> HTMLResponse:
    """One tile per pipeline and per SLA, worst first, filtered by status and text."""
    tiles = _tiles(request)
    total = len(tiles)
    if status in STATUSES:
        tiles = [t for t in tiles if t["status"] == status]
    else:
        status = ""  # an unknown status filters nothing, and the form shows "any"
    needle = q.strip().lower()
    if needle:
        tiles = [t for t in tiles if needle in t["name"].lower()]
    return render(
        request, "health.html", {"tiles": tiles, "total": total, "status": status, "q": q}
    )


# --- SLAs -------------------------------------------------------------------------------------


@router.get("/slas")
def slas_page(request: Request) -> HTMLResponse:
    """Every SLA with its status, next deadline, last met, explanation and open incidents."""
    with store_of(request).connect() as conn:
        slas = [sla_json(s.sla, s.state, s.origin) for s in list_slas(conn)]
        incidents = list_incidents(conn, "open", INCIDENT_LIMIT)
    open_count: dict[str, int] = {}
    for i in incidents:
        open_count[i["sla"]] = open_count.get(i["sla"], 0) + 1
    return render(request, "slas.html", {"slas": slas, "open_count": open_count})


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
    except NotFound:
        return _no_incident(request, incident_id)
    # Double-submit CSRF: the cookie keeps its token across pages (several tabs stay valid).
    token = request.cookies.get(CSRF_COOKIE) or ""
    if len(token) < 32:
        token = secrets.token_urlsafe(32)
    context = {"incident": incident, "state": _incident_state(incident), "csrf_token": token}
    response = render(request, "incident.html", context)
    response.set_cookie(
        CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def _no_incident(request: Request, incident_id: str) -> HTMLResponse:
    return error_page(request, 404, "Incident not found", f"There is no incident {incident_id}.")


async def _csrf_ok(request: Request) -> bool:
    """The form's token equals the cookie's (compared in constant time), and both are set."""
    # Parsed here rather than with Form(): a urlencoded body needs no multipart dependency.
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    sent = (form.get(CSRF_FIELD) or [""])[0]
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    return bool(sent and cookie) and hmac.compare_digest(sent.encode(), cookie.encode())


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
