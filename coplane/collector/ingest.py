"""HTTP ingest: native events (`/api/events`) and OpenLineage (`/api/v1/lineage`, `/batch`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from coplane.collector.openlineage import (
    OpenLineageEvent,
    naming_claims,
    parse_openlineage,
    renamed,
    translate_parsed,
)
from coplane.collector.senders import check_sender
from coplane.events.model import (
    Event,
    EventDecodeError,
    check_no_nul,
    decode_events,
    normalise_ids,
    too_deep,
)
from coplane.http.body import MAX_EVENTS, read_body
from coplane.http.deps import store_of
from coplane.http.errors import ApiError
from coplane.store import Store
from coplane.store.events import InsertResult
from coplane.store.openlineage_runs import RunName, claim_run_names

router = APIRouter()

_EVENT_SCHEMA = msgspec.json.schema(Event | list[Event])


async def write(store: Store, events: list[Event]) -> InsertResult:
    """Hand a batch to the writer threads and wait until it is committed."""
    return await asyncio.wrap_future(store.writer.submit(events))


@router.post(
    "/api/events",
    status_code=202,
    summary="Send one event or an array of events",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _EVENT_SCHEMA}},
        }
    },
)
async def post_events(request: Request) -> dict[str, int]:
    """Validate the whole batch, store it atomically, and count what was new."""
    body = await read_body(request)
    try:
        events = decode_events(body)
    except EventDecodeError as exc:
        if not exc.unreadable and looks_like_openlineage(body):
            raise ApiError(
                422,
                "this is an OpenLineage event: send it to /api/v1/lineage "
                "(an array of them to /api/v1/lineage/batch); /api/events takes coplane events",
                ["body"],
            ) from None
        raise decode_error(exc) from None
    if len(events) > MAX_EVENTS:
        raise ApiError(
            413, f"{len(events)} events in one request; the limit is {MAX_EVENTS}", ["body"]
        )
    if not events:
        return {"accepted": 0, "duplicates": 0}
    check_sender(request, events)
    result = await write(store_of(request), events)
    return {"accepted": result.accepted, "duplicates": result.duplicates}


MAX_REPORTED = 100  # invalid events one answer lists; the detail still counts them all


async def translate_named(
    store: Store, parsed: Sequence[OpenLineageEvent], translated: list[list[Event]]
) -> list[Event]:
    """The events of `parsed` (`translated`: each translated with no names), each run named
    as its first event named it, in the store."""
    claims, lookups = naming_claims(parsed)
    cache = store.run_names
    names = {r: n for r in (*claims, *lookups) if (n := cache.get(r)) is not None}
    # only runs this process has not seen named yet cost a query (and the write lock)
    claims = {r: c for r, c in claims.items() if r not in names}
    lookups = {r for r in lookups if r not in names}

    def claim() -> dict[str, RunName]:
        with store.connect() as conn:
            return claim_run_names(conn, claims, lookups, datetime.now(UTC))

    if claims or lookups:
        stored = await run_in_threadpool(claim)
        cache.remember(stored)
        names |= stored
    # most events name their run as it is stored: only the others are translated again
    return [
        e
        for p, events in zip(parsed, translated, strict=True)
        for e in (translate_parsed(p, names) if renamed(p, names) else events)
    ]


def normalised(events: list[Event]) -> list[Event]:
    """Events translated again with their stored run names have their ids normalised too
    (the names were checked when first stored, so this cannot fail)."""
    for event in events:
        normalise_ids(event, [])
    return events


def decode_error(exc: EventDecodeError) -> ApiError:
    """400 for a body that is not JSON, 422 naming the field for one that is not valid events.

    `errors` lists every invalid event's field (up to MAX_REPORTED), `detail` the first."""
    where = ".".join(str(p) for p in exc.loc[1:])
    detail = f"{where}: {exc.message}" if where else exc.message
    if len(exc.problems) > 1:
        shown = min(len(exc.problems), MAX_REPORTED)
        detail += (
            f" (and {len(exc.problems) - 1} more invalid events; errors lists "
            f"{'all' if shown == len(exc.problems) else f'the first {shown}'})"
        )
    error = ApiError(400 if exc.unreadable else 422, detail, exc.loc, msg=exc.message)
    error.errors = [{"loc": loc, "msg": msg} for msg, loc in exc.problems[:MAX_REPORTED]]
    return error


def looks_like_openlineage(body: bytes) -> bool:
    """Whether a body refused as coplane events is an OpenLineage event (or an array of them)."""
    try:
        obj = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):  # a body too deep is refused as too deep
        return False
    first = obj[0] if isinstance(obj, list) and obj else obj
    return isinstance(first, dict) and "eventTime" in first and "occurred" not in first


def _native_hint(obj: Any) -> str | None:
    """A pointer to /api/events for a coplane event sent to the OpenLineage path."""
    if isinstance(obj, dict) and "occurred" in obj and "event" in obj and "eventTime" not in obj:
        return "this is a coplane event, not an OpenLineage one: send it to /api/events"
    return None


@router.post("/api/v1/lineage", status_code=201, summary="Send one OpenLineage event")
async def post_openlineage(request: Request) -> dict[str, int]:
    """Translate one OpenLineage RunEvent, DatasetEvent or JobEvent and store the result."""
    body = await read_body(request)
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", ["body"]) from None
    except RecursionError:
        raise decode_error(too_deep()) from None
    try:
        if b"\\u0000" in body:
            check_no_nul(obj, [])
        parsed = parse_openlineage(obj)
        events = translate_parsed(parsed, {})
        for event in events:
            normalise_ids(event, [])
    except EventDecodeError as exc:
        hint = _native_hint(obj)
        if hint is not None:
            raise ApiError(422, hint, ["body"]) from None
        raise decode_error(
            EventDecodeError(exc.message, ["body", *exc.loc], unreadable=False)
        ) from None
    store = store_of(request)
    events = normalised(await translate_named(store, [parsed], [events]))
    check_sender(request, events)
    result = await write(store, events)
    return {"accepted": result.accepted, "duplicates": result.duplicates}


@router.post("/api/v1/lineage/batch", summary="Send an array of OpenLineage events")
async def post_openlineage_batch(request: Request) -> JSONResponse:
    """Store every valid event of the array; report the invalid ones by index."""
    body = await read_body(request)
    try:
        items = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", ["body"]) from None
    except RecursionError:
        raise decode_error(too_deep()) from None
    if not isinstance(items, list):
        raise ApiError(422, "the batch body must be a JSON array of OpenLineage events", ["body"])
    if len(items) > MAX_EVENTS:
        raise ApiError(
            413, f"{len(items)} events in one request; the limit is {MAX_EVENTS}", ["body"]
        )
    parsed: list[OpenLineageEvent] = []
    translated: list[list[Event]] = []
    failed: list[dict[str, Any]] = []
    has_nul = b"\\u0000" in body
    for index, item in enumerate(items):
        try:
            if has_nul:
                check_no_nul(item, [])
            one = parse_openlineage(item)
            events = translate_parsed(one, {})
            for event in events:
                normalise_ids(event, [])
            check_sender(request, events)
            translated.append(events)
            parsed.append(one)
        except ApiError as exc:  # a dataset or job outside the key's resources
            failed.append({"index": index, "reason": exc.detail, "retriable": False})
        except EventDecodeError as exc:
            where = ".".join(str(p) for p in exc.loc)
            reason = _native_hint(item) or (f"{where}: {exc.message}" if where else exc.message)
            failed.append({"index": index, "reason": reason, "retriable": False})
    if parsed:
        store = store_of(request)
        events = normalised(await translate_named(store, parsed, translated))
        if events:
            await write(store, events)
    successful = len(items) - len(failed)
    status = "success" if not failed else ("partial_success" if successful else "failure")
    return JSONResponse(
        {
            "status": status,
            "summary": {"received": len(items), "successful": successful, "failed": len(failed)},
            "failed_events": failed,
        }
    )
