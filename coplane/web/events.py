"""The events page: the live stream, newest first, filtered by name and resource."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from coplane.http.deps import store_of
from coplane.store.events import EventFilter, event_json, list_events
from coplane.web.render import error_page, render

router = APIRouter(include_in_schema=False)

EVENT_PAGE = 100
REFRESH = "every 3s"


def details(event: dict[str, Any]) -> dict[str, str]:
    """What the events table shows of an event besides its name and resource."""
    out: dict[str, str] = {}
    for rel in event["related"] or []:
        if isinstance(rel, dict) and rel.get("role") == "run" and rel.get("id"):
            out["run"] = str(rel["id"])
    payload = event["payload"] if isinstance(event["payload"], dict) else {}
    for key in ("error", "message", "check", "reason"):
        value = payload.get(key)
        if isinstance(value, dict):
            value = value.get("message") or value.get("name")
        if value:
            out[key] = str(value)
    return out


@router.get("/events")
def events_page(
    request: Request, name: str = "", resource: str = "", cursor: str | None = None
) -> HTMLResponse:
    """The newest events matching the filters; the first page refreshes itself."""
    f = EventFilter(event=name.strip() or None, resource=resource.strip() or None)
    try:
        with store_of(request).connect() as conn:
            rows, next_cursor = list_events(conn, f, EVENT_PAGE, cursor)
    except ValueError as exc:  # a cursor this server did not make
        return error_page(request, 400, "Bad page cursor", str(exc))
    context = {
        "events": [{**(e := event_json(r)), "details": details(e)} for r in rows],
        "name": name,
        "resource": resource,
        "cursor": cursor,
        "next_cursor": next_cursor,
        "refresh": None if cursor else REFRESH,
        "now": datetime.now(UTC),
    }
    return render(request, "events.html", context, blocks=("event-list",))
