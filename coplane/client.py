"""The one HTTP client collectors send through: event batches, retries, an on-disk spool, pings.

Every collector (`coplane cron wrap`, the orchestrator integrations) reports through
`CoplaneClient`, so they share one behaviour towards the server:

- `send_events` POSTs to `/api/events` in batches of at most 1,000 events (and 4 MiB), far
  under the server's limit of 10,000 events and 16 MiB per request.
- Transient failures (connection errors, timeouts, 408, 429, 502, 503, 504) are retried with
  exponential backoff and jitter, after Retry-After when the server gives one (capped), at
  most `retries` times and for at most `max_time` seconds of failing per call, so a job that
  reports is never held up for long by a server that is down.
- Any other 4xx or 5xx is the server refusing the events: `ClientError` names the field, and
  nothing is spooled (sending it again would be refused again).
- When the server stays unreachable, each batch is written to the spool directory, one
  JSON-lines file per batch, and sent by a later call (`send_events` flushes the spool first)
  or by `flush_spool`. Every event is given an `id` before it is sent or spooled, and the
  server stores an id once, so a batch replayed twice is still stored once. The spool is
  bounded by `spool_max_bytes`; past it, the oldest batches are dropped, with a warning.
- Processes sharing a spool directory claim a batch by renaming its file (atomic) before
  sending it, so no batch is sent by two of them at once and no file is read half-written.

Pings (`ping`) are never spooled: a Healthchecks-style ping is about timeliness. The server
stamps it with the time it arrives, so a start or success replayed an hour later would claim
that the job ran then, and could satisfy a heartbeat that was in fact missed.
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec

from coplane.version import __version__

log = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 1_000  # events per request (the server takes up to 10,000)
MAX_BATCH_BYTES = 4 * 1024 * 1024  # bytes per request, before gzip (the server takes 16 MiB)
GZIP_ABOVE = 8 * 1024  # bodies larger than this are sent gzip-compressed
DEFAULT_SPOOL_MAX_BYTES = 50 * 1024 * 1024
RETRY_AFTER_CAP = 5.0  # longest wait a server's Retry-After can impose, in seconds
BACKOFF_CAP = 4.0  # longest wait between two attempts without Retry-After
TRANSIENT_STATUSES = frozenset({408, 429, 502, 503, 504})
# a refusal of the batch itself: a spooled batch answered so is set aside, not retried
BATCH_REFUSED_STATUSES = frozenset({400, 413, 415, 422})
PING_TIMEOUT = 3.0  # seconds; a ping is tried twice at most
PING_BODY_MAX = 100 * 1024  # the server keeps the last 100 KB of a ping's body as the log
STALE_CLAIM_SECONDS = 600.0  # a claim this old belongs to a process that died mid-send

SPOOL_SUFFIX = ".jsonl"
CLAIM_SUFFIX = ".claim"
REJECTED_SUFFIX = ".rejected"
TMP_SUFFIX = ".tmp"

PingKind = Literal["start", "success", "fail"]


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ClientError(Exception):
    """The server refused the events (a 4xx other than 408 and 429, or a 5xx not retried).

    `detail` is the server's message, naming the field (`1500.occurred: ...`: the index is
    the event's position in the list given to `send_events`); `errors` is its list of
    `{"loc": [...], "msg": ...}`. Batches before the refused one were stored; the ones
    after it were not sent.
    """

    def __init__(
        self, status: int, detail: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"the coplane server refused the events ({status}): {detail}")
        self.status = status
        self.detail = detail
        self.errors = errors or []


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of the events of one `send_events` call."""

    accepted: int = 0  # stored by the server now
    duplicates: int = 0  # the server had them already (same id)
    spooled: int = 0  # written to the spool, to be sent by a later call
    lost: int = 0  # neither sent nor spooled: the spool could not be written
    replayed: int = 0  # events from the spool that this call delivered first

    @property
    def delivered(self) -> bool:
        """True when every event reached the server."""
        return self.spooled == 0 and self.lost == 0


class _Unreachable(Exception):
    """A batch could not be delivered within the retries and time allowed."""


class _Budget:
    """Seconds a call may still spend on failing attempts and the waits between them."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def spend(self, seconds: float) -> None:
        self.left -= seconds


@dataclass(frozen=True, slots=True)
class _Batch:
    lines: list[bytes]  # one JSON-encoded event each
    offset: int  # index of its first event in the caller's list

    def body(self) -> bytes:
        return b"[" + b",".join(self.lines) + b"]"


class CoplaneClient:
    """Sends events and pings to one coplane server. Close it (or use `with`) when done.

    `timeout` bounds each request, `retries` the retries of one batch, and `max_time` the
    seconds one call may spend on failing attempts and backoff before it spools what is
    left. `backoff` is the first wait between attempts; it doubles, with jitter, up to 4 s.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 5.0,
        spool_dir: Path | None = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        retries: int = 3,
        max_time: float = 10.0,
        backoff: float = 0.5,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"coplane server URL {url!r}: expected http://... or https://...")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.spool_dir = spool_dir if spool_dir is not None else default_spool_dir()
        self.spool_max_bytes = spool_max_bytes
        self.retries = max(0, retries)
        self.max_time = max_time
        self.backoff = backoff
        self.last_ping_error: str | None = None  # why this client's latest ping failed
        self.last_ping_status: int | None = None  # its HTTP status (None: no answer)
        self.sends_api_key = bool(api_key)
        headers = {"User-Agent": f"coplane-client/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(headers=headers, timeout=timeout)
        self._last_spool_ns = 0

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> CoplaneClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int | float] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """One request to the server's API (`path` like `/api/runs`), with this client's key;
        no retries and no spool: for calls whose caller decides what a failure means."""
        return self._http.request(
            method,
            self.url + path,
            json=json,
            params=params,
            timeout=self.timeout if timeout is None else timeout,
        )

    # events

    def send_events(self, events: Iterable[Mapping[str, Any]]) -> SendResult:
        """Send events (dicts in the shape of `POST /api/events`); spool what cannot be sent.

        An event without an `id` is sent with a new UUID (the caller's dict is not changed).
        The spool is flushed first. Raises ClientError when the server refuses a batch; never
        raises because the server cannot be reached.
        """
        batches = list(_batches([_encode(e) for e in events]))
        budget = _Budget(self.max_time)
        replayed, reachable = 0, True
        if self._spooled_files():
            try:
                replayed, reachable = self._flush(budget)
            except ClientError as exc:  # e.g. a bad API key: the new batches will tell
                log.warning("coplane spool not flushed: %s", exc)
        accepted = duplicates = spooled = lost = 0
        for batch in batches:
            if reachable:
                try:
                    answer = self._post_events(batch, budget)
                except _Unreachable as exc:
                    reachable = False
                    log.warning("coplane server unreachable, spooling events: %s", exc)
                else:
                    accepted += answer[0]
                    duplicates += answer[1]
                    continue
            if self._spool(batch):
                spooled += len(batch.lines)
            else:
                lost += len(batch.lines)
        return SendResult(accepted, duplicates, spooled, lost, replayed)

    def flush_spool(self) -> int:
        """Send the spooled batches, oldest first, deleting each once the server has it.

        Stops at the first batch the server cannot be reached for (it stays spooled). A
        batch the server refuses (400, 413, 415, 422) is renamed `*.rejected` and logged.
        Returns the number of events delivered. Raises ClientError for any other refusal,
        such as a 401 for a wrong API key (the batch stays spooled).
        """
        delivered, _ = self._flush(_Budget(self.max_time))
        return delivered

    def _flush(self, budget: _Budget) -> tuple[int, bool]:
        """(events delivered, whether the server could be reached)."""
        delivered = 0
        for path in self._spooled_files():
            claimed = _claim(path)
            if claimed is None:  # another process took it
                continue
            try:
                data = claimed.read_bytes()
            except OSError as exc:
                log.warning("coplane spool: cannot read %s: %s", claimed, exc)
                continue
            batch = _Batch([line for line in data.split(b"\n") if line.strip()], 0)
            if not batch.lines:
                _remove(claimed)
                continue
            try:
                answer = self._post_events(batch, budget)
            except _Unreachable as exc:
                _unclaim(claimed, path)
                log.warning("coplane server unreachable, spool kept: %s", exc)
                return delivered, False
            except ClientError as exc:
                if exc.status not in BATCH_REFUSED_STATUSES:
                    _unclaim(claimed, path)
                    raise
                rejected = path.with_name(path.name + REJECTED_SUFFIX)
                log.error("coplane spool: %s refused, kept as %s: %s", path.name, rejected, exc)
                _rename(claimed, rejected)
                continue
            delivered += answer[0] + answer[1]
            _remove(claimed)
        return delivered, True

    def _post_events(self, batch: _Batch, budget: _Budget) -> tuple[int, int]:
        """(accepted, duplicates) of one batch; ClientError or _Unreachable otherwise."""
        body = batch.body()
        headers = {"Content-Type": "application/json"}
        if len(body) > GZIP_ABOVE:
            body = gzip.compress(body, compresslevel=1)  # JSON still shrinks ~10x
            headers["Content-Encoding"] = "gzip"
        url = f"{self.url}/api/events"
        attempt = 0
        while True:
            request_timeout = min(self.timeout, budget.left)
            if request_timeout <= 0:
                raise _Unreachable(f"{url}: no time left to retry")
            started = time.monotonic()
            wait: float | None = None
            try:
                response = self._http.post(
                    url, content=body, headers=headers, timeout=request_timeout
                )
            except httpx.TransportError as exc:
                reason = f"cannot reach {url}: {type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return _counts(response, len(batch.lines))
                if response.status_code not in TRANSIENT_STATUSES:
                    raise _refusal(response, batch.offset)
                reason = f"{url} answered {response.status_code}"
                wait = retry_after(response.headers)
            budget.spend(time.monotonic() - started)
            if attempt >= self.retries:
                raise _Unreachable(f"{reason} ({attempt + 1} attempts)")
            delay = self._delay(attempt)
            if wait is not None:
                delay = max(delay, min(wait, RETRY_AFTER_CAP))
            if delay >= budget.left:
                raise _Unreachable(f"{reason} (no time left to retry)")
            time.sleep(delay)
            budget.spend(delay)
            attempt += 1

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of backoff * 2**attempt."""
        ceiling = min(BACKOFF_CAP, self.backoff * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def post_json(self, path: str, body: Any, *, timeout: float | None = None) -> httpx.Response:
        """POST `body` as JSON to `path` through this client's session (its key included).

        One attempt, no spool: for the SDK's log records, which are shipped best-effort.
        Raises httpx.HTTPError when the server cannot be reached.
        """
        return self._http.post(f"{self.url}{path}", json=body, timeout=timeout or self.timeout)

    # spool

    def _spooled_files(self) -> list[Path]:
        """The batches waiting in the spool, oldest first (stale claims released first)."""
        try:
            names = sorted(os.listdir(self.spool_dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("coplane spool: cannot read %s: %s", self.spool_dir, exc)
            return []
        now = time.time_ns()
        batches = []
        for name in names:
            if name.endswith(CLAIM_SUFFIX) and _claim_age(name, now) > STALE_CLAIM_SECONDS:
                released = name.split(SPOOL_SUFFIX, 1)[0] + SPOOL_SUFFIX
                _unclaim(self.spool_dir / name, self.spool_dir / released)
                name = released
            if name.endswith(SPOOL_SUFFIX) and not name.startswith("."):
                batches.append(self.spool_dir / name)
        return sorted(batches)

    def _spool(self, batch: _Batch) -> bool:
        """Write a batch to the spool (atomically), then keep the spool within its bound."""
        ns = max(time.time_ns(), self._last_spool_ns + 1)
        self._last_spool_ns = ns
        name = f"{ns:020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}{SPOOL_SUFFIX}"
        tmp = self.spool_dir / f".{name}{TMP_SUFFIX}"
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                f.write(b"\n".join(batch.lines) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, self.spool_dir / name)
        except OSError as exc:
            lost = len(batch.lines)
            log.error("coplane spool: cannot write %s, %d events lost: %s", name, lost, exc)
            _remove(tmp)
            return False
        return name not in self._enforce_bound()

    def _enforce_bound(self) -> set[str]:
        """Drop the oldest batches (and set-aside rejected ones) while over spool_max_bytes.

        Returns the names of the files dropped.
        """
        dropped: set[str] = set()
        sizes: dict[str, int] = {}
        now = time.time()
        for name in sorted(os.listdir(self.spool_dir)):
            path = self.spool_dir / name
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if name.endswith(TMP_SUFFIX):
                if now - stat.st_mtime > STALE_CLAIM_SECONDS:  # left by a crash mid-write
                    _remove(path)
                continue
            sizes[name] = stat.st_size
        total = sum(sizes.values())
        for name, size in sizes.items():
            if total <= self.spool_max_bytes:
                break
            if not name.endswith((SPOOL_SUFFIX, REJECTED_SUFFIX)):
                continue  # claimed: being sent right now
            path = self.spool_dir / name
            events = _count_lines(path)
            try:
                os.remove(path)
            except FileNotFoundError:  # claimed or dropped meanwhile by another process
                continue
            total -= size
            dropped.add(name)
            log.warning(
                "coplane spool over its bound of %d bytes: dropped the oldest batch %s (%d events)",
                self.spool_max_bytes,
                name,
                events,
            )
        return dropped

    # pings

    def ping(
        self,
        slug: str,
        kind: PingKind | int,
        *,
        rid: str | None = None,
        body: bytes = b"",
        create: bool = False,
        ping_key: str | None = None,
    ) -> bool:
        """Ping `/ping/{slug}` (success), `/start`, `/fail` or `/{exit code}`; True if stored.

        `body` becomes the run's log (its last 100 KB). One request, retried once after a
        transient failure, each with a short timeout. Returns False, never raises, when the
        server cannot be reached or refuses the ping (`last_ping_error` says why, showing a
        ping key by its prefix only). Pings are not spooled: they are about timeliness (see
        the module's docstring). With `ping_key`, the URL is `/ping/{ping_key}/{slug}...`:
        the key is the monitor's credential (make the client without an API key then).
        """
        if isinstance(kind, int):
            suffix = f"/{kind}"
        elif kind == "success":
            suffix = ""
        elif kind in ("start", "fail"):
            suffix = f"/{kind}"
        else:
            raise ValueError(f"ping kind {kind!r}: expected start, success, fail or an exit code")
        path = f"{quote(slug, safe='')}{suffix}"
        url = shown = f"{self.url}/ping/{path}"
        if ping_key is not None:
            url = f"{self.url}/ping/{quote(ping_key, safe='')}/{path}"
            shown = f"{self.url}/ping/{ping_key[:12]}…/{path}"
        params = {"rid": rid} if rid else {}
        if create:
            params["create"] = "1"
        content = body[-PING_BODY_MAX:]
        for attempt in range(2):
            if attempt:
                time.sleep(self._delay(0))
            try:
                response = self._http.post(
                    url, params=params, content=content, timeout=min(self.timeout, PING_TIMEOUT)
                )
            except httpx.TransportError as exc:
                self.last_ping_error = f"cannot reach {shown}: {type(exc).__name__}: {exc}"
                self.last_ping_status = None
                continue
            self.last_ping_status = response.status_code
            if response.is_success:
                self.last_ping_error = None
                return True
            self.last_ping_error = f"{shown} answered {response.status_code}: " + (
                response.text.strip()[:300] or response.reason_phrase
            )
            if response.status_code not in TRANSIENT_STATUSES:
                break
        log.warning("coplane ping failed: %s", self.last_ping_error)
        return False


def default_spool_dir() -> Path:
    """`spool` under the user's cache directory (`~/.cache/coplane/spool` on Linux)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("coplane")) / "spool"


# msgspec writes datetimes (RFC 3339), dates and UUIDs itself, in C: a flow's reporter
# encodes thousands of events a second on the flow's own cores
_encoder = msgspec.json.Encoder()


def _encode(event: Mapping[str, Any]) -> bytes:
    """One event as compact JSON, with an `id` (a new UUID when it has none)."""
    if not isinstance(event, Mapping):
        raise TypeError(f"an event is a dict, not {type(event).__name__}")
    if not event.get("id"):
        event = {**event, "id": str(uuid.uuid4())}
    try:
        return _encoder.encode(event)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"an event cannot be sent as JSON: {exc}") from None


def _batches(lines: list[bytes]) -> Iterator[_Batch]:
    """Consecutive batches of at most MAX_BATCH_EVENTS events and about MAX_BATCH_BYTES."""
    start, size = 0, 0
    for i, line in enumerate(lines):
        if i > start and (i - start >= MAX_BATCH_EVENTS or size + len(line) > MAX_BATCH_BYTES):
            yield _Batch(lines[start:i], start)
            start, size = i, 0
        size += len(line) + 1
    if start < len(lines):
        yield _Batch(lines[start:], start)


def _counts(response: httpx.Response, sent: int) -> tuple[int, int]:
    """(accepted, duplicates) from a 2xx answer."""
    try:
        body = response.json()
        return int(body["accepted"]), int(body["duplicates"])
    except (ValueError, KeyError, TypeError):
        return sent, 0


def _refusal(response: httpx.Response, offset: int) -> ClientError:
    """The ClientError for a refusal, its event indexes counted in the caller's list."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:300] or response.reason_phrase
        return ClientError(response.status_code, text)
    detail = str(body.get("detail") or response.reason_phrase)
    errors: list[dict[str, Any]] = []
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        loc = list(error.get("loc") or [])
        if len(loc) > 1 and loc[0] == "body" and isinstance(loc[1], int):
            loc[1] += offset
        errors.append({"loc": loc, "msg": str(error.get("msg", ""))})
    if offset and errors and len(errors[0]["loc"]) > 1 and errors[0]["loc"][0] == "body":
        where = ".".join(str(p) for p in errors[0]["loc"][1:])
        detail = f"{where}: {errors[0]['msg']}"
    return ClientError(response.status_code, detail, errors)


def _claim(path: Path) -> Path | None:
    """Take a spooled batch for sending by renaming it; None if another process has it."""
    claimed = path.with_name(f"{path.name}.{time.time_ns()}.{os.getpid()}{CLAIM_SUFFIX}")
    try:
        os.rename(path, claimed)
    except FileNotFoundError:
        return None
    return claimed


def _claim_age(name: str, now_ns: int) -> float:
    """Seconds since a claim's file was claimed (from its name)."""
    try:
        claimed_ns = int(name.split(SPOOL_SUFFIX + ".", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return 0.0
    return (now_ns - claimed_ns) / 1e9


def _unclaim(claimed: Path, original: Path) -> None:
    """Give a claimed batch back to the spool."""
    _rename(claimed, original)


def _rename(source: Path, target: Path) -> None:
    try:
        os.rename(source, target)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("coplane spool: cannot rename %s to %s: %s", source, target, exc)


def _remove(path: Path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("coplane spool: cannot remove %s: %s", path, exc)


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0
