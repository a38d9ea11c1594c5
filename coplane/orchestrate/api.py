"""The HTTP API of the flow SDK's server side: logs, concurrency limits, pauses, connections."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from coplane.auth.vault import SecretError, Vault, check_name
from coplane.events import names as n
from coplane.events.model import Event
from coplane.http.body import read_body
from coplane.http.deps import store_of
from coplane.http.errors import ApiError, not_found_at
from coplane.orchestrate.connections import (
    connection_model,
    merge_secrets,
    secret_paths,
    split_secrets,
)
from coplane.orchestrate.paused import run_state_event
from coplane.orchestrate.schemas import Problem, check_schema, input_problems
from coplane.security.mask import mask, masker
from coplane.store import Conflict, Store
from coplane.store.concurrency import (
    acquire_slots,
    check_limit_name,
    delete_limit,
    list_limits,
    release_lease,
    renew_lease,
    set_limit,
)
from coplane.store.connections import (
    delete_connection,
    list_connections,
    put_connection,
    read_connection,
)
from coplane.store.dialects import Row
from coplane.store.logs import LogLine, insert_logs, list_run_logs, log_json
from coplane.store.pauses import (
    latest_pause,
    open_pause,
    pause_json,
    pause_state,
    resume_pause,
)
from coplane.store.runs import read_run

router = APIRouter()


async def write(store: Store, events: list[Event]) -> None:
    """Hand events to the store's writer threads and wait until they are committed."""
    await asyncio.wrap_future(store.writer.submit(events))


MAX_LOGS = 10_000  # log lines per request, as for events
MAX_MESSAGE_CHARS = 65_536  # a longer message keeps its head and says it was cut
TRUNCATED = " … [truncated]"


class LogIn(BaseModel):
    """One log record as the SDK ships it."""

    run_id: uuid.UUID = Field(description="the flow run's id, as `/api/runs/{id}` takes it")
    task_run_id: str | None = Field(
        None, min_length=1, max_length=200, description="the task run's id, if any"
    )
    timestamp: AwareDatetime
    level: str = Field(min_length=1, max_length=32, description="INFO, WARNING, ...")
    logger: str = Field("", max_length=512)
    message: str


_LOGS = TypeAdapter(list[LogIn])


def _clean(message: str) -> str:
    # PostgreSQL text cannot hold NUL; a log line is for reading, so it shows a marker instead
    message = mask(message.replace("\x00", "\ufffd"))  # nor does it keep a known secret
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - len(TRUNCATED)] + TRUNCATED
    return message


@router.post("/api/logs", status_code=202, summary="Send log lines of flow and task runs")
async def post_logs(request: Request) -> dict[str, int]:
    """Validate the whole batch and store it; a batch with an invalid line is refused whole."""
    body = await read_body(request)
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", ["body"]) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("logs"), list):
        raise ApiError(422, 'logs: the body must be {"logs": [...]}', ["body", "logs"])
    if len(obj["logs"]) > MAX_LOGS:
        count = len(obj["logs"])
        detail = f"{count} log lines in one request; the limit is {MAX_LOGS}"
        raise ApiError(413, detail, ["body", "logs"])
    try:
        items = _LOGS.validate_python(obj["logs"])
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", "logs", *e["loc"])} for e in exc.errors()]
        ) from None
    lines = [
        LogLine(i.run_id, i.task_run_id, i.timestamp, i.level, i.logger, _clean(i.message))
        for i in items
    ]
    store = store_of(request)

    def insert() -> int:
        with store.connect() as conn:
            return insert_logs(conn, lines, datetime.now(UTC))

    return {"accepted": await run_in_threadpool(insert)}


@router.get("/api/runs/{run_id}/logs", summary="A run's log lines, oldest first")
def get_run_logs(
    request: Request,
    run_id: uuid.UUID,
    since: Annotated[AwareDatetime | None, Query(description="only lines at or after")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: Annotated[str | None, Query(description="`next` of the previous page")] = None,
) -> dict[str, Any]:
    """The flow run's lines and its task runs' (each names its `task_run_id`)."""
    with store_of(request).connect() as conn:
        try:
            rows, next_cursor = list_run_logs(conn, run_id, since=since, limit=limit, cursor=cursor)
        except ValueError as exc:
            raise ApiError(422, f"cursor: {exc}", ["query", "cursor"]) from None
    return {"logs": [log_json(r) for r in rows], "next": next_cursor}


# --- concurrency limits -----------------------------------------------------------------------

LimitName = Annotated[str, Path(description="the limit's name, as `concurrency(name)` uses it")]
LeaseSeconds = Annotated[
    float, Field(ge=1, le=3600, description="seconds the lease lasts unless renewed")
]


class NewLimit(BaseModel):
    limit: int = Field(ge=0, le=1_000_000, description="slots; 0 lets nobody in")


class Acquire(BaseModel):
    holder: str = Field(min_length=1, max_length=200, description="who asks, for `list`")
    occupy: int = Field(1, ge=1, le=1_000_000, description="slots to take at once")
    lease_s: LeaseSeconds = 30.0
    lease_id: uuid.UUID | None = Field(
        None, description="the lease of an earlier answer, to keep its place in the queue"
    )


class Renew(BaseModel):
    lease_id: uuid.UUID
    lease_s: LeaseSeconds = 30.0


class Release(BaseModel):
    lease_id: uuid.UUID


def _limit_named(name: str) -> str:
    problem = check_limit_name(name)
    if problem:
        raise ApiError(422, f"name: {problem}", ["path", "name"])
    return name


@router.put("/api/concurrency/{name}", summary="Create a concurrency limit or change its slots")
def put_concurrency_limit(
    request: Request, name: LimitName, body: Annotated[NewLimit, Body()], response: Response
) -> dict[str, Any]:
    """201 when the limit is new; more slots let waiters in at once."""
    now = datetime.now(UTC)
    with store_of(request).connect() as conn:
        new = set_limit(conn, _limit_named(name), body.limit, now)
        found = [x for x in list_limits(conn, now) if x["name"] == name]
    response.status_code = 201 if new else 200
    return found[0]


@router.get("/api/concurrency", summary="Concurrency limits with their holders and waiters")
def get_concurrency_limits(request: Request) -> dict[str, Any]:
    """Each limit with its slots, live holders and waiters (in the order they will be let in)."""
    with store_of(request).connect() as conn:
        return {"limits": list_limits(conn, datetime.now(UTC))}


@router.delete("/api/concurrency/{name}", status_code=204, summary="Delete a concurrency limit")
def delete_concurrency_limit(request: Request, name: LimitName) -> Response:
    """Holders keep running; their renewals and new requests for the name answer 404."""
    with not_found_at("path", "name"), store_of(request).connect() as conn:
        delete_limit(conn, name)
    return Response(status_code=204)


@router.post("/api/concurrency/{name}/acquire", summary="Ask for slots, or keep waiting for them")
def post_acquire(
    request: Request, name: LimitName, body: Annotated[Acquire, Body()]
) -> dict[str, Any]:
    """`state` is `held` or `waiting`; a waiter asks again with its `lease_id` until held."""
    with not_found_at("path", "name"), store_of(request).connect() as conn:
        try:
            state = acquire_slots(
                conn,
                name,
                holder=body.holder,
                occupy=body.occupy,
                lease_s=body.lease_s,
                now=datetime.now(UTC),
                lease_id=body.lease_id,
            )
        except ValueError as exc:
            raise ApiError(422, f"occupy: {exc}", ["body", "occupy"]) from None
    return state.json()


@router.post("/api/concurrency/{name}/renew", summary="Keep a lease alive")
def post_renew(request: Request, name: LimitName, body: Annotated[Renew, Body()]) -> dict[str, Any]:
    """404 when the lease has expired: its slots may be someone else's by now."""
    with not_found_at("body", "lease_id"), store_of(request).connect() as conn:
        state = renew_lease(conn, name, body.lease_id, lease_s=body.lease_s, now=datetime.now(UTC))
    return state.json()


@router.post("/api/concurrency/{name}/release", summary="Give slots back, or leave the queue")
def post_release(
    request: Request, name: LimitName, body: Annotated[Release, Body()]
) -> dict[str, Any]:
    """`released` is false when the lease had expired already; releasing twice is harmless."""
    with not_found_at("path", "name"), store_of(request).connect() as conn:
        gone = release_lease(conn, name, body.lease_id, datetime.now(UTC))
    return {"released": gone}


# --- pausing for input ------------------------------------------------------------------------

MAX_PAUSE_S = 7 * 24 * 3600.0


class NewPause(BaseModel):
    timeout_s: float = Field(gt=0, le=MAX_PAUSE_S, description="seconds until the pause fails")
    schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="JSON schema of the input the run waits for"
    )
    pipeline_id: str | None = Field(None, description="the flow's resource id, checked if given")


class Resume(BaseModel):
    input: Any = Field(None, description="the input, valid under the pause's schema")


def _read_run_or_404(store: Store, run_id: uuid.UUID) -> Row:
    with not_found_at("path", "run_id"), store.connect() as conn:
        return read_run(conn, run_id)


@router.post("/api/runs/{run_id}/pause", status_code=201, summary="Pause a run for input")
async def post_pause(
    request: Request, run_id: uuid.UUID, body: Annotated[NewPause, Body()]
) -> dict[str, Any]:
    """Record what input the run waits for and until when; the run's state becomes `paused`."""
    store = store_of(request)
    run = await run_in_threadpool(_read_run_or_404, store, run_id)
    if body.pipeline_id is not None and body.pipeline_id != run["pipeline"]:
        raise ApiError(
            422,
            f"pipeline_id: run {run_id} is a run of {run['pipeline']!r}, not {body.pipeline_id!r}",
            ["body", "pipeline_id"],
        )
    if body.schema_ is not None:
        problem = check_schema(body.schema_)
        if problem:
            raise ApiError(422, f"schema: {problem}", ["body", "schema"])
    now = datetime.now(UTC)
    deadline = now + timedelta(seconds=body.timeout_s)

    def pause() -> Row:
        with store.connect() as conn:
            try:
                return open_pause(conn, run_id, body.schema_, deadline, now)
            except Conflict as exc:
                raise ApiError(409, str(exc), ["path", "run_id"]) from None

    row = await run_in_threadpool(pause)
    title = (body.schema_ or {}).get("title")
    payload = {"timeout_s": body.timeout_s, "wait_for_input": title}
    await write(store, run_state_event(run, n.RUN_PAUSED, now, payload))
    return pause_json(row, now)


@router.get("/api/runs/{run_id}/pause", summary="Where the run's latest pause stands")
def get_pause(request: Request, run_id: uuid.UUID) -> dict[str, Any]:
    """`state` is `paused`, `resumed` (with the `input`) or `timed_out`; a paused run polls it."""
    with store_of(request).connect() as conn:
        row = latest_pause(conn, run_id)
    if row is None:
        raise ApiError(404, f"run {run_id} has never paused", ["path", "run_id"])
    return pause_json(row, datetime.now(UTC))


def _claim_resume(
    store: Store, run_id: uuid.UUID, value: Any, typing: list[Problem], by: str | None
) -> tuple[Row, Row]:
    """Check the input against the open pause and claim it: the run and the resumed pause."""
    now = datetime.now(UTC)
    with not_found_at("path", "run_id"), store.connect() as conn:
        run = read_run(conn, run_id)
        row = latest_pause(conn, run_id)
        if row is None:
            raise ApiError(404, f"run {run_id} has never paused", ["path", "run_id"])
        state = pause_state(row, now)
        if state != "paused":
            what = "was resumed already" if state == "resumed" else "timed out"
            raise ApiError(409, f"run {run_id} is not paused: its pause {what}", ["path", "run_id"])
        schema = row["schema"]
        if schema is not None:
            found = typing + input_problems(schema, {} if value is None else value)
            if found:
                where, msg = found[0]
                dotted = ".".join(str(p) for p in ["input", *where])
                error = ApiError(422, f"{dotted}: {msg}", ["body", "input", *where], msg=msg)
                error.errors = [{"loc": ["body", "input", *w], "msg": m} for w, m in found]
                raise error
        elif value not in (None, {}):
            raise ApiError(422, "input: this pause takes no input", ["body", "input"])
        if not resume_pause(conn, row["id"], value, by, now):
            # resumed by someone else, or timed out, since it was read
            raise ApiError(409, f"run {run_id} is not paused any more", ["path", "run_id"])
        resumed = latest_pause(conn, run_id)
    assert resumed is not None
    return run, resumed


async def resume_run(
    request: Request, run_id: uuid.UUID, value: Any, typing: list[Problem] | None = None
) -> dict[str, Any]:
    """Validate `value` against the open pause's schema and resume the run with it.

    ApiError 404 (no such run, or it never paused), 409 (not paused any more) or 422 naming
    the input's field that is wrong (`typing`: problems found before, such as a form's
    number that is not one); on any of them the run stays paused.
    """
    store = store_of(request)
    by = getattr(getattr(request.state, "key", None), "name", None)
    run, row = await run_in_threadpool(_claim_resume, store, run_id, value, typing or [], by)
    await write(store, run_state_event(run, n.RUN_RESUMED, row["resumed"], {"resumed_by": by}))
    return pause_json(row, datetime.now(UTC))


@router.post("/api/runs/{run_id}/resume", summary="Resume a paused run with its input")
async def post_resume(
    request: Request, run_id: uuid.UUID, body: Annotated[Resume, Body()]
) -> dict[str, Any]:
    """The input is validated against the schema the run recorded; editors and admins only."""
    return await resume_run(request, run_id, body.input)


# --- connections ------------------------------------------------------------------------------

ConnectionName = Annotated[str, Path(description="the name `Connection.load` takes")]


class NewConnection(BaseModel):
    type: str = Field(description="a connection type: generic, postgres, s3, http or a plugin's")
    fields: dict[str, Any] = Field(default_factory=dict, description="the type's fields")


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


def _connection_named(name: str) -> str:
    problem = check_name(name)
    if problem:
        detail = problem.replace("secret name", "connection name")
        raise ApiError(422, f"name: {detail}", ["path", "name"])
    return name


def connection_json(row: Row, secret_fields: list[str]) -> dict[str, Any]:
    """A connection as anyone may see it: never a secret, only which secret fields are set."""
    return {
        "name": row["name"],
        "type": row["type"],
        "fields": row["fields"],
        "secret_fields": secret_fields,
        "created": row["created"].isoformat(),
        "updated": row["updated"].isoformat(),
    }


@router.put("/api/connections/{name}", summary="Store a connection, its secrets encrypted")
def put_stored_connection(
    request: Request,
    name: ConnectionName,
    body: Annotated[NewConnection, Body()],
    response: Response,
) -> dict[str, Any]:
    """Store or replace a connection whole (rotating it); 201 when new. No secret comes back."""
    _connection_named(name)
    try:
        model = connection_model(body.type)
    except LookupError as exc:
        raise ApiError(422, f"type: {exc}", ["body", "type"]) from None
    try:
        instance = model.model_validate(body.fields)
    except ValidationError as exc:
        # the inputs are left out: they may be the secrets
        raise RequestValidationError(
            [{"loc": ("body", "fields", *e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        ) from None
    public, secret = split_secrets(instance)
    masker.add(*_flat(secret))  # from now on no log line of this server shows them
    try:
        token = _vault(request).encrypt(json.dumps(secret)) if secret else None
    except SecretError as exc:
        raise ApiError(409, str(exc), ["body", "fields"]) from None
    now = datetime.now(UTC)
    with store_of(request).connect() as conn:
        new = put_connection(conn, name, body.type, public, token, now)
        row = read_connection(conn, name)
    response.status_code = 201 if new else 200
    return connection_json(row, secret_paths(secret))


def _secret_fields(request: Request, row: Row) -> list[str]:
    if row["secrets"] is None:
        return []
    try:
        return secret_paths(json.loads(_vault(request).decrypt(row["secrets"], row["name"])))
    except SecretError:
        return ["(unreadable with the configured keys)"]


@router.get("/api/connections", summary="Every connection, without secrets")
def get_connections(request: Request) -> dict[str, Any]:
    """Names, types and the fields shown in clear; `secret_fields` names the secrets set."""
    with store_of(request).connect() as conn:
        rows = list_connections(conn)
    return {"connections": [connection_json(r, _secret_fields(request, r)) for r in rows]}


@router.get("/api/connections/{name}", summary="One connection, without secrets")
def get_connection(request: Request, name: ConnectionName) -> dict[str, Any]:
    """The fields shown in clear and the names of the secret fields that are set."""
    with not_found_at("path", "name"), store_of(request).connect() as conn:
        row = read_connection(conn, name)
    return connection_json(row, _secret_fields(request, row))


@router.get(
    "/api/connections/{name}/resolved", summary="One connection with its secrets, for a flow"
)
def get_resolved_connection(request: Request, name: ConnectionName, response: Response) -> Any:
    """Everything `Connection.load` needs, secrets in clear: the admin scope only."""
    with not_found_at("path", "name"), store_of(request).connect() as conn:
        row = read_connection(conn, name)
    fields = row["fields"]
    if row["secrets"] is not None:
        try:
            secret = json.loads(_vault(request).decrypt(row["secrets"], f"connection {name!r}"))
        except SecretError as exc:
            raise ApiError(409, str(exc), ["path", "name"]) from None
        masker.add(*_flat(secret))
        fields = merge_secrets(fields, secret)
    response.headers["Cache-Control"] = "no-store"  # no proxy or browser keeps the secrets
    return {"name": row["name"], "type": row["type"], "fields": fields}


@router.delete("/api/connections/{name}", status_code=204, summary="Delete a connection")
def delete_stored_connection(request: Request, name: ConnectionName) -> Response:
    """Forget a connection; flows loading it fail with a 404 until it is set again."""
    with not_found_at("path", "name"), store_of(request).connect() as conn:
        delete_connection(conn, name)
    return Response(status_code=204)


def mask_stored_connection_secrets(store: Store, vault: Vault) -> None:
    """Teach the masker every stored connection secret, so that no log line this server
    writes or stores (`POST /api/logs`) shows one, even before a flow loads it."""
    if not vault.configured:
        return
    with store.connect() as conn:
        rows = list_connections(conn)
    for row in rows:
        if row["secrets"] is not None:
            try:
                masker.add(*_flat(json.loads(vault.decrypt(row["secrets"], row["name"]))))
            except (SecretError, ValueError):
                continue  # stored under another key: `coplane secrets rotate` will say so


def _flat(secret: Any) -> list[str]:
    if isinstance(secret, dict):
        return [v for value in secret.values() for v in _flat(value)]
    return [str(secret)]
