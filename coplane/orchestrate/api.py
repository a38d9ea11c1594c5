"""The HTTP API of the flow SDK's server side: run logs (more routers join as they are built)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from coplane.collector.body import read_body
from coplane.collector.errors import ApiError
from coplane.collector.ingest import store_of
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
