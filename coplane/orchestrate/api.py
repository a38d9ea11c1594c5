"""The HTTP API of the flow SDK's server side: run logs and concurrency limits."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from coplane.collector.body import read_body
from coplane.collector.errors import ApiError, not_found_at
from coplane.collector.ingest import store_of
from coplane.store.concurrency import (
    acquire_slots,
    check_limit_name,
    delete_limit,
    list_limits,
    release_lease,
    renew_lease,
    set_limit,
)
from coplane.store.logs import LogLine, insert_logs, list_run_logs, log_json

router = APIRouter()

MAX_LOGS = 10_000  # log lines per request, as for events
MAX_MESSAGE_CHARS = 65_536  # a longer message keeps its head and says it was cut
TRUNCATED = " … [truncated]"


class LogIn(BaseModel):
    """One log record as the SDK ships it."""

    run_id: uuid.UUID = Field(description="the flow run's id, as `/api/runs/{id}` takes it")
    task_run_id: uuid.UUID | None = Field(None, description="the task run's id, if any")
    timestamp: AwareDatetime
    level: str = Field(min_length=1, max_length=32, description="INFO, WARNING, ...")
    logger: str = Field("", max_length=512)
    message: str


_LOGS = TypeAdapter(list[LogIn])


def _clean(message: str) -> str:
    # PostgreSQL text cannot hold NUL; a log line is for reading, so it shows a marker instead
    message = message.replace("\x00", "\ufffd")
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
