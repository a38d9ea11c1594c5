"""Healthchecks.io-compatible cron pings (`/ping/{slug}`...), stored as runs of `cron.<slug>`.

A ping is an ordinary run event on the pipeline `cron.<slug>` (labels {"source": "cron"}),
written through the same writer as `POST /api/events`: a start ping is `run.started`, a
success `run.completed`, a fail or nonzero exit code `run.failed`. The run key is the `rid`
when one is given; a start without one gets a fresh key, and an end without one (or a fail
whose rid no start had) finishes the run of the latest start if that run is still running
(else it is a run of its own), as Healthchecks.io closes its one open start. Heartbeat SLAs
read these events back (`coplane.store.sla_facts.read_pings`).

The same pings also come as `/ping/{ping_key}/{slug}...`, carrying the monitor's ping key in
the URL for jobs that cannot send an Authorization header: a `pingkey` path convertor tells
the key (`cpk_...`, which no slug may start with) from a slug, and the key routes come first.
A key that is not the live key of that slug is answered like an unknown slug.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from coplane.auth.middleware import PING_KEY_STATE
from coplane.collector.ingest import write
from coplane.collector.senders import check_sender
from coplane.events import names as n
from coplane.events.model import Event, RelatedResource, Resource
from coplane.http.deps import store_of
from coplane.http.errors import ApiError
from coplane.store import Store
from coplane.store.ping_keys import PING_KEY_PATTERN, PING_KEY_PREFIX, PingKey, check_ping_key
from coplane.store.pings import has_run, is_monitor, open_start

router = APIRouter()

PingKind = Literal["start", "success", "fail"]

MAX_LOG_BYTES = 100 * 1024  # the body kept as the run's log: its last 100 KB
ERROR_LOG_CHARS = 1000  # the log tail a failed run's error carries
PIPELINE_PREFIX = "cron."
SOURCE = "cron"
RECENT_STARTS = 100  # newest runs searched for the start an end without rid finishes

SLUG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
MAX_SLUG_LENGTH = 200
_EXIT_CODE = re.compile(r"^[+-]?\d{1,30}$")

_EVENTS: dict[PingKind, str] = {
    "start": n.RUN_STARTED,
    "success": n.RUN_COMPLETED,
    "fail": n.RUN_FAILED,
}

Slug = Annotated[str, Path(description="the monitor's slug (a heartbeat SLA's `target`)")]
Rid = Annotated[
    str | None, Query(description="a UUID pairing a start ping with its success or fail ping")
]
Create = Annotated[str | None, Query(description="`1`: accept a ping for a monitor not known yet")]
PingKeyParam = Annotated[
    str,
    Path(
        description="the monitor's ping key (`coplane cron keys create SLUG`)",
        pattern=PING_KEY_PATTERN.pattern,
    ),
]
ExitCode = Annotated[str, Path(description="the job's exit code, 0 to 255")]


class PingKeyConvertor(Convertor[str]):
    """A path segment that is a ping key: `cpk_` and URL-safe base64."""

    regex = PING_KEY_PATTERN.pattern.removeprefix("^").removesuffix("$")

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("pingkey", PingKeyConvertor())


def pipeline_of(slug: str) -> str:
    """The pipeline resource id a monitor's pings are stored on."""
    return PIPELINE_PREFIX + slug


def valid_slug(slug: str) -> bool:
    """True for a slug a monitor may have (as an SLA name: letters, digits, `_.-`, and not
    beginning like a ping key, so that `/ping/{ping_key}/{slug}` is never ambiguous)."""
    return (
        len(slug) <= MAX_SLUG_LENGTH
        and SLUG_PATTERN.match(slug) is not None
        and not slug.startswith(PING_KEY_PREFIX)
    )


def parse_rid(rid: str | None) -> str | None:
    """The rid as a canonical UUID string (None when absent or empty); 400 when malformed."""
    if not rid:
        return None
    try:
        return str(uuid.UUID(rid))
    except ValueError:
        raise ApiError(400, f"rid: {rid!r} is not a UUID", ["query", "rid"]) from None


def parse_exit_code(text: str) -> int | None:
    """The exit code of `/ping/{slug}/{exit_code}`; None when it is not a number (404), 400
    when it is one outside 0..255."""
    if not _EXIT_CODE.match(text):
        return None
    code = int(text)
    if not 0 <= code <= 255:
        raise ApiError(
            400, f"exit_code: {code} is not an exit code (0 to 255)", ["path", "exit_code"]
        )
    return code


def clean_text(text: str) -> str:
    """`text` without U+0000, which PostgreSQL cannot store in jsonb."""
    return text.replace("\x00", "\ufffd")


async def read_log(request: Request) -> str:
    """The body's last MAX_LOG_BYTES as text (UTF-8, errors replaced); longer is not refused."""
    tail = bytearray()
    async for chunk in request.stream():
        tail += chunk
        if len(tail) > 2 * MAX_LOG_BYTES:
            del tail[:-MAX_LOG_BYTES]
    return clean_text(bytes(tail[-MAX_LOG_BYTES:]).decode("utf-8", errors="replace"))


def run_key_for(
    store: Store, slug: str, kind: PingKind, rid: str | None, create: bool
) -> str | None:
    """The run key a ping belongs to, or None when the monitor is unknown (and not created)."""
    with store.connect() as conn:
        if not create and not is_monitor(conn, slug, pipeline_of(slug)):
            return None
        if kind == "start":
            return rid or str(uuid.uuid4())
        # An end finishes its rid's run; else (no rid, or for a fail a rid no start had) the
        # latest start if still open, as Healthchecks closes its one open start: left open,
        # that start would raise a "has not ended" incident of its own.
        if rid is not None and (kind != "fail" or has_run(conn, pipeline_of(slug), rid)):
            return rid
        key = open_start(conn, pipeline_of(slug), RECENT_STARTS)
        if key is not None:
            return key
    return rid or str(uuid.uuid4())


def ping_event(
    slug: str,
    kind: PingKind,
    run_key: str,
    *,
    occurred: datetime,
    exit_code: int | None = None,
    log: str = "",
    rid: str | None = None,
    user_agent: str | None = None,
    remote_addr: str | None = None,
) -> Event:
    """The run event one ping stands for."""
    payload: dict[str, Any] = {
        "ping": kind,
        "exit_code": exit_code,
        "log": log,
        "rid": rid,
        "user_agent": user_agent,
        "remote_addr": remote_addr,
    }
    if kind == "fail":
        what = f"exit code {exit_code}" if exit_code is not None else "failed"
        tail = log[-ERROR_LOG_CHARS:].strip()
        payload["error"] = f"{what}\n{tail}" if tail else what
    return Event(
        occurred=occurred,
        event=_EVENTS[kind],
        resource=Resource(
            id=pipeline_of(slug), name=slug, kind=n.KIND_PIPELINE, labels={"source": SOURCE}
        ),
        related=[RelatedResource(id=run_key, role=n.ROLE_RUN)],
        payload=payload,
    )


# On every ping answer, as Healthchecks sends them: scripts in a browser may ping, and no
# cache between the job and coplane may answer a ping in coplane's place.
PING_HEADERS = {"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"}


def _answer(text: str, status_code: int = 200) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status_code, headers=PING_HEADERS)


def _not_found() -> PlainTextResponse:
    return _answer("not found", 404)


async def handle_ping(
    request: Request,
    slug: str,
    kind: PingKind,
    *,
    exit_code: int | None = None,
    rid: str | None = None,
    create: str | None = None,
) -> Response:
    """Validate a ping, find its run and store its event; "OK", or 404 "not found"."""
    if not valid_slug(slug):
        return _not_found()
    run_id = parse_rid(rid)
    log = await read_log(request)
    store = store_of(request)
    # A GET is what any page can make a browser send (an <img src>): it may ping a monitor,
    # but creating one takes a POST or the monitor's own ping key.
    may_create = request.method == "POST" or "ping_key" in request.path_params
    key = await run_in_threadpool(
        run_key_for, store, slug, kind, run_id, create == "1" and may_create
    )
    if key is None:
        if create == "1" and not may_create:
            return PlainTextResponse(
                "not found: ?create=1 creates a monitor only with POST", status_code=404
            )
        return _not_found()
    agent = request.headers.get("user-agent")
    event = ping_event(
        slug,
        kind,
        key,
        occurred=datetime.now(UTC),
        exit_code=exit_code,
        log=log,
        rid=run_id,
        user_agent=clean_text(agent) if agent is not None else None,
        remote_addr=request.client.host if request.client else None,
    )
    check_sender(request, [event], "path")  # an API key limited to other resources
    await write(store, [event])
    return _answer("OK")


async def handle_exit_code(
    request: Request,
    slug: str,
    exit_code: str,
    *,
    rid: str | None = None,
    create: str | None = None,
) -> Response:
    """`/{exit_code}`: 0 is a success, 1 to 255 a failure; not a number is a 404."""
    if not valid_slug(slug):
        return _not_found()
    code = parse_exit_code(exit_code)
    if code is None:
        return _not_found()
    kind: PingKind = "success" if code == 0 else "fail"
    return await handle_ping(request, slug, kind, exit_code=code, rid=rid, create=create)


def _check(store: Store, ping_key: str) -> PingKey | None:
    with store.connect() as conn:
        return check_ping_key(conn, ping_key)


async def key_allows(request: Request, ping_key: str, slug: str) -> bool:
    """Whether `ping_key` is the live key of the monitor `slug`.

    With COPLANE_AUTH=keys the middleware has looked the key up already, to rate-limit it,
    and left what it found in the request's state: one lookup per ping either way.
    """
    found: PingKey | None
    if hasattr(request.state, PING_KEY_STATE):
        found = getattr(request.state, PING_KEY_STATE)
    else:
        found = await run_in_threadpool(_check, store_of(request), ping_key)
    return found is not None and found.slug == slug


# One decorator per method rather than api_route(methods=[...]): FastAPI gives a multi-method
# route one operationId for all its methods, a duplicate in the OpenAPI schema.
# The key routes come first: `/ping/{slug}/start` and `/ping/{slug}/{exit_code}` would also
# match `/ping/cpk_.../{slug}`, which the `pingkey` convertor claims for them.
_KEY = "/ping/{ping_key:pingkey}/{slug}"


@router.get(_KEY, response_class=PlainTextResponse, summary="Cron ping with a key: success")
@router.post(_KEY, response_class=PlainTextResponse, summary="Cron ping with a key: success")
@router.head(_KEY, response_class=PlainTextResponse, summary="Cron ping with a key: success")
async def ping_key_success(
    request: Request, ping_key: PingKeyParam, slug: Slug, rid: Rid = None, create: Create = None
) -> Response:
    """The job succeeded: `run.completed`. The key must be the monitor's."""
    if not await key_allows(request, ping_key, slug):
        return _not_found()
    return await handle_ping(request, slug, "success", rid=rid, create=create)


_KEY_START_SUMMARY = "Cron ping with a key: start"


@router.get(_KEY + "/start", response_class=PlainTextResponse, summary=_KEY_START_SUMMARY)
@router.post(_KEY + "/start", response_class=PlainTextResponse, summary=_KEY_START_SUMMARY)
@router.head(_KEY + "/start", response_class=PlainTextResponse, summary=_KEY_START_SUMMARY)
async def ping_key_start(
    request: Request, ping_key: PingKeyParam, slug: Slug, rid: Rid = None, create: Create = None
) -> Response:
    """The job started: `run.started`. The key must be the monitor's."""
    if not await key_allows(request, ping_key, slug):
        return _not_found()
    return await handle_ping(request, slug, "start", rid=rid, create=create)


_KEY_FAIL_SUMMARY = "Cron ping with a key: failure"


@router.get(_KEY + "/fail", response_class=PlainTextResponse, summary=_KEY_FAIL_SUMMARY)
@router.post(_KEY + "/fail", response_class=PlainTextResponse, summary=_KEY_FAIL_SUMMARY)
@router.head(_KEY + "/fail", response_class=PlainTextResponse, summary=_KEY_FAIL_SUMMARY)
async def ping_key_fail(
    request: Request, ping_key: PingKeyParam, slug: Slug, rid: Rid = None, create: Create = None
) -> Response:
    """The job failed: `run.failed`. The key must be the monitor's."""
    if not await key_allows(request, ping_key, slug):
        return _not_found()
    return await handle_ping(request, slug, "fail", rid=rid, create=create)


_KEY_EXIT = _KEY + "/{exit_code}"
_KEY_EXIT_SUMMARY = "Cron ping with a key: exit code (0 success, 1-255 failure)"


@router.get(_KEY_EXIT, response_class=PlainTextResponse, summary=_KEY_EXIT_SUMMARY)
@router.post(_KEY_EXIT, response_class=PlainTextResponse, summary=_KEY_EXIT_SUMMARY)
@router.head(_KEY_EXIT, response_class=PlainTextResponse, summary=_KEY_EXIT_SUMMARY)
async def ping_key_exit_code(
    request: Request,
    ping_key: PingKeyParam,
    slug: Slug,
    exit_code: ExitCode,
    rid: Rid = None,
    create: Create = None,
) -> Response:
    """0 is a success (`run.completed`), 1 to 255 a failure (`run.failed`). The key must be
    the monitor's."""
    if not await key_allows(request, ping_key, slug):
        return _not_found()
    return await handle_exit_code(request, slug, exit_code, rid=rid, create=create)


@router.get("/ping/{slug}", response_class=PlainTextResponse, summary="Cron ping: success")
@router.post("/ping/{slug}", response_class=PlainTextResponse, summary="Cron ping: success")
@router.head("/ping/{slug}", response_class=PlainTextResponse, summary="Cron ping: success")
async def ping_success(
    request: Request, slug: Slug, rid: Rid = None, create: Create = None
) -> Response:
    """The job succeeded: `run.completed`."""
    return await handle_ping(request, slug, "success", rid=rid, create=create)


@router.get("/ping/{slug}/start", response_class=PlainTextResponse, summary="Cron ping: start")
@router.post("/ping/{slug}/start", response_class=PlainTextResponse, summary="Cron ping: start")
@router.head("/ping/{slug}/start", response_class=PlainTextResponse, summary="Cron ping: start")
async def ping_start(
    request: Request, slug: Slug, rid: Rid = None, create: Create = None
) -> Response:
    """The job started: `run.started`."""
    return await handle_ping(request, slug, "start", rid=rid, create=create)


@router.get("/ping/{slug}/fail", response_class=PlainTextResponse, summary="Cron ping: failure")
@router.post("/ping/{slug}/fail", response_class=PlainTextResponse, summary="Cron ping: failure")
@router.head("/ping/{slug}/fail", response_class=PlainTextResponse, summary="Cron ping: failure")
async def ping_fail(
    request: Request, slug: Slug, rid: Rid = None, create: Create = None
) -> Response:
    """The job failed: `run.failed`."""
    return await handle_ping(request, slug, "fail", rid=rid, create=create)


_EXIT_SUMMARY = "Cron ping: exit code (0 success, 1-255 failure)"


@router.get("/ping/{slug}/{exit_code}", response_class=PlainTextResponse, summary=_EXIT_SUMMARY)
@router.post("/ping/{slug}/{exit_code}", response_class=PlainTextResponse, summary=_EXIT_SUMMARY)
@router.head("/ping/{slug}/{exit_code}", response_class=PlainTextResponse, summary=_EXIT_SUMMARY)
async def ping_exit_code(
    request: Request,
    slug: Slug,
    exit_code: ExitCode,
    rid: Rid = None,
    create: Create = None,
) -> Response:
    """0 is a success (`run.completed`), 1 to 255 a failure (`run.failed`)."""
    return await handle_exit_code(request, slug, exit_code, rid=rid, create=create)
