"""The SLA page: definition, status, the latest evaluations with their inputs, and incidents."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from coplane.http.deps import store_of
from coplane.slas.api import budgets, sla_json
from coplane.slas.explain import DURATION_KEYS, TIME_KEYS
from coplane.store.errors import NotFound
from coplane.store.evaluations import evaluation_json, list_sla_evaluations
from coplane.store.incidents import list_sla_incidents
from coplane.store.slas import read_sla
from coplane.web.render import duration, error_page, render, when

router = APIRouter(include_in_schema=False)

EVALUATIONS_SHOWN = 20
INCIDENTS_SHOWN = 50
# What the definition list shows: the fields of every kind besides these.
_NOT_DEFINITION = {"name", "kind", "origin", "status", "next_deadline", "last_met", "evaluated",
                   "explanation", "budget"}  # fmt: skip


_LABELS = {"sla_created": "SLA created", "p95": "p95"}


def _label(key: str) -> str:
    return _LABELS.get(key) or key.replace("_", " ").capitalize()


def readable(key: str, value: Any) -> Markup | str:
    """One input value in words: times as `<time>`, seconds as durations, lists one per line."""
    if value is None or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in DURATION_KEYS and isinstance(value, int | float):
        return duration(value)
    if key in TIME_KEYS and isinstance(value, str):
        try:
            return when(value)
        except ValueError:  # not a time after all: shown as it is
            return value
    if isinstance(value, dict):
        parts = [
            Markup("{}: {}").format(_label(k), readable(k, v))
            for k, v in value.items()
            if v is not None
        ]
        return Markup(", ").join(parts) if parts else "—"
    if isinstance(value, list):
        return Markup("<br>").join(readable(key, v) for v in value)
    return str(value)


def inputs_items(inputs: dict[str, Any]) -> list[tuple[str, Markup | str]]:
    """An evaluation's inputs as (label, value in words) pairs for a definition list."""
    return [(_label(k), readable(k, v)) for k, v in inputs.items() if k != "kind"]


@router.get("/slas/{name}")
def sla_page(request: Request, name: str) -> HTMLResponse:
    """One SLA: its definition and state, its latest evaluations explained, its incidents."""
    try:
        with store_of(request).connect() as conn:
            stored = read_sla(conn, name)
            budget = budgets(conn, [stored], datetime.now(UTC)).get(name)
            evaluations = list_sla_evaluations(conn, name, EVALUATIONS_SHOWN)
            incidents = list_sla_incidents(conn, name, INCIDENTS_SHOWN)
    except NotFound:
        return error_page(request, 404, "SLA not found", f"There is no SLA named {name}.")
    sla = sla_json(stored.sla, stored.state, stored.origin, budget)
    definition = [(_label(k), readable(k, v)) for k, v in sla.items() if k not in _NOT_DEFINITION]
    rows = []
    for row in evaluations:
        e = evaluation_json(row)
        rows.append({**e, "items": inputs_items(e["inputs"] or {})})
    context = {
        "sla": sla,
        "definition": definition,
        "evaluations": rows,
        "incidents": incidents,
        "evaluations_shown": EVALUATIONS_SHOWN,
    }
    return render(request, "sla.html", context)
