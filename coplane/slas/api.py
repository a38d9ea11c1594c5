"""HTTP API for SLAs (`/api/slas`) and their incidents (`/api/incidents`)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import TypeAdapter, ValidationError

from coplane.http.deps import store_of
from coplane.http.errors import ApiError
from coplane.logs import decision
from coplane.rules.budget import BURN_SPANS, OpenSpan, error_budget
from coplane.rules.model import SLA
from coplane.slas import backtest
from coplane.slas.config import ConfigError
from coplane.store.channels import channel_state_json, list_channel_states
from coplane.store.dialects import Conn, Row
from coplane.store.errors import Conflict, NotFound
from coplane.store.evaluations import evaluation_json, list_sla_evaluations
from coplane.store.health import breach_windows
from coplane.store.incidents import (
    ack_incident,
    incident_json,
    list_incidents,
    list_notifications,
    read_incident,
    resolve_incident,
)
from coplane.store.slas import (
    delete_sla,
    insert_sla,
    list_slas,
    read_sla,
    sla_definition,
    upsert_slas,
)
from coplane.store.warnings import list_sla_warnings

log = logging.getLogger(__name__)
router = APIRouter()

_SLA_ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
# Errors about the discriminator itself: their loc is the body, and the field is `kind`.
_TAG_ERRORS = {"union_tag_invalid", "union_tag_not_found"}
# What GET adds to a definition: ignored in a body, so that a GET can be PUT back as it is.
READ_ONLY = (
    "origin", "status", "next_deadline", "last_met", "evaluated", "explanation", "budget"
)  # fmt: skip

SlaBody = Annotated[Any, Body(description="one SLA, as under `slas:` in coplane.yaml")]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def budget_json(
    sla: SLA, spans: list[OpenSpan], created: datetime, now: datetime
) -> dict[str, Any] | None:
    """An SLA's error budget as the API shows it (None without an objective): compliance in
    percent like the objective, budget in minutes, burn rates over the last 1 and 6 hours."""
    if sla.objective is None:
        return None
    b = error_budget(sla.objective, sla.objective_period, spans, created, now)
    out: dict[str, Any] = {
        "objective": b.objective,
        "period": b.period.total_seconds(),
        "compliance": None if b.compliance is None else round(100 * b.compliance, 4),
        "budget_minutes": round(b.budget_s / 60, 2),
        "spent_minutes": round(b.spent_s / 60, 2),
        "left_minutes": round(b.left_s / 60, 2),
    }
    for span in BURN_SPANS:
        rate = b.burn_rates[span]
        out[f"burn_rate_{int(span.total_seconds() // 3600)}h"] = (
            None if rate is None else round(rate, 3)
        )
    return out


def budgets(conn: Conn, stored: list[Any], now: datetime) -> dict[str, dict[str, Any] | None]:
    """The error budgets of stored SLAs (`StoredSla`s), from their incidents' open times."""
    with_objective = [s for s in stored if s.sla.objective is not None]
    if not with_objective:
        return {}
    longest = max(s.sla.objective_period or timedelta(days=30) for s in with_objective)
    windows = breach_windows(conn, now - longest)
    return {
        s.sla.name: budget_json(s.sla, windows.get(s.sla.name, []), s.created, now)
        for s in with_objective
    }


def sla_json(
    sla: SLA, state: Row | None, origin: str | None, budget: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An SLA as the API shows it: its definition (durations in seconds), its latest state
    and, with an objective, its error budget."""
    state = state or {}
    return {
        **sla_definition(sla),
        "origin": origin,
        "status": state.get("status") or "unknown",
        "next_deadline": _iso(state.get("next_deadline")),
        "last_met": _iso(state.get("last_met")),
        "evaluated": _iso(state.get("evaluated")),
        "explanation": state.get("explanation"),
        "budget": budget,
    }


class _Invalid(ApiError):
    """A 422 with several field errors."""

    def __init__(self, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, detail)
        self.errors = errors


def _validate(body: Any) -> SLA:
    """The body as an SLA, or a 422 naming each bad field under `body`."""
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in READ_ONLY}
    try:
        return _SLA_ADAPTER.validate_python(body)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        for e in exc.errors():
            loc = list(e["loc"])
            if e["type"] in _TAG_ERRORS:
                loc = ["kind"]
            elif loc and isinstance(body, dict) and loc[0] == body.get("kind"):
                loc = loc[1:]  # pydantic's union-tag element
            errors.append({"loc": ["body", *loc], "msg": e["msg"]})
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _Invalid(f"{where}: {first['msg']}", errors) from None


def _check_channels(request: Request, sla: SLA) -> None:
    """Every `notify` entry names a channel of the config file, else a 422 naming the entry."""
    engine = getattr(request.app.state, "sla_engine", None)
    if engine is None:
        return  # no engine, no config read: the channels are unknown here
    defined = set(engine.channels)
    errors = [
        {"loc": ["body", "notify", i], "msg": f"no channel named {name!r} in channels: "
         f"({', '.join(sorted(defined)) or 'none are defined'})"}
        for i, name in enumerate(sla.notify)
        if name not in defined
    ]  # fmt: skip
    if errors:
        raise _Invalid(f"body.notify.{errors[0]['loc'][2]}: {errors[0]['msg']}", errors)


def _file_conflict(name: str) -> Conflict:
    return Conflict(
        f"SLA {name!r} comes from the config file: change or delete it there, not through the API"
    )


def _poke_engine(request: Request) -> None:
    """Ask the SLA engine (when one runs) to evaluate soon."""
    engine = getattr(request.app.state, "sla_engine", None)
    if engine is not None:
        engine.request_evaluation(())  # no events: the new or changed SLAs are evaluated


def _one(conn: Conn, name: str) -> dict[str, Any]:
    stored = read_sla(conn, name)
    budget = budgets(conn, [stored], datetime.now(UTC)).get(name)
    return sla_json(stored.sla, stored.state, stored.origin, budget)


@router.get("/api/slas", summary="Every SLA with its status")
def get_slas(request: Request) -> dict[str, Any]:
    """Every SLA by name, with status, next deadline, when it was last met and its budget."""
    with store_of(request).connect() as conn:
        stored = list_slas(conn)
        found = budgets(conn, stored, datetime.now(UTC))
    return {"slas": [sla_json(s.sla, s.state, s.origin, found.get(s.sla.name)) for s in stored]}


@router.get("/api/slas/{name}", summary="One SLA with its status")
def get_sla(request: Request, name: str) -> dict[str, Any]:
    """One SLA; 404 when there is none of that name."""
    with store_of(request).connect() as conn:
        return _one(conn, name)


@router.get("/api/slas/{name}/explain", summary="An SLA's latest evaluations and their inputs")
def get_sla_explain(
    request: Request,
    name: str,
    limit: Annotated[int, Query(ge=1, le=100, description="evaluations, newest first")] = 20,
) -> dict[str, Any]:
    """The evaluations whose result changed, newest first, each with the facts the rule used
    and the decision in words; 404 when there is no SLA of that name."""
    with store_of(request).connect() as conn:
        read_sla(conn, name)  # NotFound names the SLA
        rows = list_sla_evaluations(conn, name, limit)
    return {"sla": name, "evaluations": [evaluation_json(row) for row in rows]}


@router.get("/api/slas/{name}/warnings", summary="An SLA's early warnings, newest first")
def get_sla_warnings(
    request: Request,
    name: str,
    limit: Annotated[int, Query(ge=1, le=100, description="warnings, newest first")] = 20,
) -> dict[str, Any]:
    """The early warnings of an SLA with `warn_at_risk` and what became of each; 404 when
    there is no SLA of that name."""
    with store_of(request).connect() as conn:
        read_sla(conn, name)  # NotFound names the SLA
        return {"sla": name, "warnings": list_sla_warnings(conn, name, limit)}


@router.post("/api/slas", status_code=201, summary="Declare an SLA")
def post_sla(request: Request, body: SlaBody) -> dict[str, Any]:
    """Create an SLA (origin 'api'); 409 when one of that name exists."""
    sla = _validate(body)
    _check_channels(request, sla)
    now = datetime.now(UTC)
    with store_of(request).connect() as conn:
        if not insert_sla(conn, sla, "api", now):
            origin = read_sla(conn, sla.name).origin
            raise Conflict(f"an SLA named {sla.name!r} exists (origin {origin})")
        result = _one(conn, sla.name)
    _poke_engine(request)
    return result


@router.put("/api/slas/{name}", summary="Replace an SLA")
def put_sla(request: Request, name: str, body: SlaBody) -> dict[str, Any]:
    """Replace an API-declared SLA; 404 when missing, 409 when it comes from the config file."""
    sla = _validate(body)
    if sla.name != name:
        raise ApiError(
            422, f"body.name: {sla.name!r} differs from the path's {name!r}", ["body", "name"]
        )
    _check_channels(request, sla)
    now = datetime.now(UTC)
    with store_of(request).connect() as conn:
        with conn.transaction():
            if read_sla(conn, name).origin == "file":  # NotFound when missing
                raise _file_conflict(name)
            upsert_slas(conn, [sla], "api", now)
        result = _one(conn, name)
    _poke_engine(request)
    return result


@router.delete("/api/slas/{name}", status_code=204, summary="Delete an SLA")
def remove_sla(request: Request, name: str) -> Response:
    """Delete an API-declared SLA (its incidents stay); 409 when it comes from the config file."""
    with store_of(request).connect() as conn, conn.transaction():
        if read_sla(conn, name).origin == "file":  # NotFound when missing
            raise _file_conflict(name)
        delete_sla(conn, name)
    _poke_engine(request)
    return Response(status_code=204)


@router.get("/api/incidents", summary="Incidents, newest first")
def get_incidents(
    request: Request,
    state: Literal["open", "resolved"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
) -> dict[str, Any]:
    """Incidents, open or resolved or both, each with its notifications."""
    with store_of(request).connect() as conn:
        return {"incidents": list_incidents(conn, state, limit)}


def _incident(conn: Conn, row: Row) -> dict[str, Any]:
    notes = list_notifications(conn, [row["id"]])
    return incident_json(row, notes.get(str(row["id"]), []))


@router.post("/api/incidents/{incident_id}/ack", summary="Acknowledge an incident")
def post_ack(request: Request, incident_id: uuid.UUID) -> dict[str, Any]:
    """Acknowledge an open incident; 404 when unknown, 409 when resolved."""
    with store_of(request).connect() as conn:
        row = ack_incident(conn, incident_id, datetime.now(UTC))
        return _incident(conn, row)


@router.post("/api/incidents/{incident_id}/resolve", summary="Resolve an incident by hand")
def post_resolve(request: Request, incident_id: uuid.UUID) -> dict[str, Any]:
    """Resolve an open incident and queue 'resolve' alerts to its SLA's channels."""
    with store_of(request).connect() as conn:
        incident = read_incident(conn, incident_id)  # NotFound when unknown
        try:
            channels = read_sla(conn, incident["sla"]).sla.notify
        except NotFound:  # the SLA was deleted: nobody to tell
            channels = []
        row = resolve_incident(conn, incident_id, datetime.now(UTC), channels)
        result = _incident(conn, row)
    decision(
        log,
        "incident.resolved",
        f"incident {incident_id} of SLA {incident['sla']} resolved by hand",
        sla=incident["sla"],
        incident=str(incident_id),
        by="api",
    )
    dispatcher = getattr(request.app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.wake()
    return result


@router.get("/api/channels", summary="Alert channels and their delivery state")
def get_channels(request: Request) -> dict[str, Any]:
    """Each configured channel: its type, and whether a permanent error disabled it (and why)."""
    engine = getattr(request.app.state, "sla_engine", None)
    channels = dict(getattr(engine, "channels", {}) or {})
    with store_of(request).connect() as conn:
        states = list_channel_states(conn)
    return {
        "channels": [
            channel_state_json(name, config.type, states.get(name))
            for name, config in sorted(channels.items())
        ]
    }


@router.post("/api/slas/reload", summary="Re-read the config file's SLAs and evaluate")
def post_reload(request: Request) -> dict[str, int]:
    """Reload the config file (422 naming each problem's line) and evaluate every SLA."""
    engine = getattr(request.app.state, "sla_engine", None)
    if engine is None:
        raise ApiError(409, "no SLA engine runs in this process")
    try:
        result = engine.reload()
    except ConfigError as exc:
        first = exc.problems[0]
        raise ApiError(422, str(exc), [first.source, first.line or 0, *first.loc],
                       msg=first.message) from None  # fmt: skip
    return {"evaluated": result.evaluated, "opened": result.opened, "resolved": result.resolved}


BacktestBody = Annotated[
    Any, Body(description='{"sla": {...}, "start": T, "end": T, "events": [...] (optional)}')
]


@router.post("/api/slas/backtest", summary="Replay an SLA over past or given events")
def post_backtest(request: Request, body: BacktestBody) -> dict[str, Any]:
    """The breaches the engine would have opened (and resolved) for `sla` in [start, end]."""
    if not isinstance(body, dict):
        raise ApiError(422, "body: expected an object with sla, start, end", ["body"])
    try:
        sla = _validate(body.get("sla"))
    except _Invalid as exc:  # name the field below `sla`
        for e in exc.errors:
            e["loc"] = ["body", "sla", *e["loc"][1:]]
        where = ".".join(str(p) for p in exc.errors[0]["loc"][1:])
        raise _Invalid(f"{where}: {exc.errors[0]['msg']}", exc.errors) from None
    try:
        start = backtest.parse_time(body.get("start"), "start")
        end = backtest.parse_time(body.get("end"), "end")
        backtest.check_window(start, end)
        with backtest.backtest_slot():
            if body.get("events") is not None:
                events = backtest.decode_given_events(body["events"])
            else:
                with store_of(request).connect() as conn:
                    events = backtest.read_stored_events(conn, sla, start, end)
            result = backtest.run_backtest(
                sla, start, end, events, budget=backtest.TIME_BUDGET_S
            )
    except backtest.BacktestError as exc:
        detail = f"{exc.where}: {exc.message}" if exc.loc else exc.message
        retry = {"Retry-After": str(backtest.BUSY_RETRY_S)} if exc.status == 429 else None
        raise ApiError(exc.status, detail, ["body", *exc.loc], headers=retry,
                       msg=exc.message) from None  # fmt: skip
    return backtest.backtest_json(result)
