"""HTTP API for automations: definitions, why each fired or did not, and backtests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict

from coplane.http.deps import store_of
from coplane.http.errors import ApiError, not_found_at
from coplane.orchestrate.automations import (
    automation_definition,
    backtest,
    events_for_backtest,
)
from coplane.rules.automation import AutomationSpec, notify_channels
from coplane.store.automations import (
    delete_automation,
    list_automations,
    list_decisions,
    list_firings,
    read_automation,
    upsert_automation,
)
from coplane.store.dialects import Row

router = APIRouter()


def _json(row: Row, conn: Any, detail: bool) -> dict[str, Any]:
    out: dict[str, Any] = {**row["definition"], "origin": row["origin"]}
    limit = 50 if detail else 1
    out["decisions"] = [
        {"event": d["event_id"], "at": d["at"].isoformat(), "event_name": d["event"],
         "resource": d["resource"], "fired": bool(d["fired"]), "reason": d["reason"]}
        for d in list_decisions(conn, row["name"], limit)
    ]  # fmt: skip
    if detail:
        out["firings"] = [
            {"key": f["key"], "event": f["event_id"], "fired": f["fired"].isoformat(),
             "reason": f["reason"], "actions": f["actions"]}
            for f in list_firings(conn, row["name"])
        ]  # fmt: skip
    return out


def _check_channels(request: Request, spec: AutomationSpec) -> None:
    """Every channel a `notify` action names is one of the config file's, else a 422 naming
    the first unknown one (all of them under `errors`)."""
    engine = getattr(request.app.state, "sla_engine", None)
    if engine is None:
        return  # no engine, no config read: the channels are unknown here
    defined = set(engine.channels)
    known = ", ".join(sorted(defined)) or "none are defined"
    unknown = [(["body", *loc], name) for loc, name in notify_channels(spec) if name not in defined]
    if not unknown:
        return
    loc, name = unknown[0]
    msg = f"no channel named {name!r} in channels: ({known})"
    error = ApiError(422, f"{'.'.join(str(p) for p in loc)}: {msg}", loc, msg=msg)
    error.errors = [{"loc": where, "msg": f"no channel named {n!r} in channels: ({known})"}
                    for where, n in unknown]  # fmt: skip
    raise error


@router.get("/api/automations", summary="Automations")
def get_automations(request: Request) -> dict[str, Any]:
    """Every automation with its latest decision."""
    with store_of(request).connect() as conn:
        return {"automations": [_json(r, conn, False) for r in list_automations(conn)]}


@router.post("/api/automations", status_code=201, summary="Create an automation")
def post_automation(request: Request, spec: AutomationSpec) -> dict[str, Any]:
    """Store an automation (409 if the name exists); it acts on what happens from now on."""
    _check_channels(request, spec)
    with store_of(request).connect() as conn, conn.transaction():
        upsert_automation(conn, automation_definition(spec), "api", datetime.now(UTC),
                          replace=False)  # fmt: skip
        return _json(read_automation(conn, spec.name), conn, True)


@router.put("/api/automations/{name}", summary="Create or replace an automation")
def put_automation(request: Request, name: str, spec: AutomationSpec) -> dict[str, Any]:
    """As POST, replacing one of that name made through the API (409 for the file's)."""
    if spec.name != name:
        raise ApiError(422, f"the body names {spec.name!r}, the path {name!r}", ["body", "name"])
    _check_channels(request, spec)
    with store_of(request).connect() as conn, conn.transaction():
        upsert_automation(conn, automation_definition(spec), "api", datetime.now(UTC),
                          replace=True)  # fmt: skip
        return _json(read_automation(conn, spec.name), conn, True)


@router.get("/api/automations/{name}", summary="One automation and why it fired or did not")
def get_automation(request: Request, name: str) -> dict[str, Any]:
    """Its definition, the latest 50 decisions (each event it matched and what that meant,
    in words), and its latest firings with what each action did."""
    with store_of(request).connect() as conn, not_found_at("path", "name"):
        return _json(read_automation(conn, name), conn, True)


@router.delete("/api/automations/{name}", status_code=204, summary="Delete an automation")
def remove_automation(request: Request, name: str) -> Response:
    """Remove an automation made through the API (409 for one from the config file)."""
    with store_of(request).connect() as conn, conn.transaction(), not_found_at("path", "name"):
        delete_automation(conn, name)
    return Response(status_code=204)


class BacktestRequest(BaseModel):
    """An automation (need not be saved) and the span of stored events to replay."""

    model_config = ConfigDict(extra="forbid")
    automation: AutomationSpec
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


@router.post("/api/automations/backtest", summary="Replay an automation over past events")
def post_backtest(request: Request, body: Annotated[BacktestRequest, Body()]) -> dict[str, Any]:
    """When it would have fired over the stored events of [start, end] (default: the last 7
    days), and why; no action is run."""
    end = body.end or datetime.now(UTC)
    start = body.start or end - timedelta(days=7)
    if start >= end:
        raise ApiError(422, "start must be before end", ["body", "start"])
    events = events_for_backtest(store_of(request), body.automation, start, end)
    firings = backtest(body.automation, events)
    return {"firings": firings, "events": len(events)}
