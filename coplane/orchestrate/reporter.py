"""Ships a flow's events and log records to coplane from a background thread.

A task must cost microseconds and a flow must never wait for, or fail because of, the
server. So `emit` and `emit_log` only append a dict to a deque; one daemon thread per
process wakes, waits `LINGER` seconds so that what a burst of tasks emits goes in one
request, and sends:

- events through `CoplaneClient.send_events` (batches of 1,000, retries, and the on-disk
  spool when the server is away: a flow that ran while the server was down is delivered by
  a later send, from this process or any other sharing the spool);
- log records as `POST /api/logs` with `{"logs": [...]}`, at most `LOG_BATCH` records a
  request. Logs are best-effort: one retry after a transient failure, then dropped with a
  warning; a 404 (a server without the endpoint) turns log shipping off for the process.

Every exception is logged, never raised. `flush` waits (bounded) until what was emitted
before it has been handed to the server or the spool; at exit the queue is flushed for at
most `FLUSH_SECONDS`. With `COPLANE_URL` unset, `get_reporter` gives a reporter that drops
everything, so a flow runs the same and reports nothing.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coplane.client import CoplaneClient

log = logging.getLogger(__name__)

LINGER = 0.05  # seconds the sender waits after waking, so a burst of events shares a request
FLUSH_SECONDS = 10.0  # longest wait at exit for queued events to reach the server or spool
SEND_TIMEOUT = 3.0  # seconds per request
SEND_MAX_TIME = 3.0  # seconds one send may spend on a server that is down before spooling
LOG_BATCH = 1_000  # log records per POST /api/logs
MAX_QUEUED = 1_000_000  # events held in memory; past it, the oldest are dropped (logged)
MAX_QUEUED_LOGS = 100_000  # log records held in memory; past it, the oldest are dropped
LOGS_PATH = "/api/logs"


class Reporter:
    """The interface flows report through: events, log records, flush."""

    enabled = False

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event (a dict in the shape of `POST /api/events`)."""

    def emit_log(self, record: dict[str, Any]) -> None:
        """Queue one log record (the shape of an item of `POST /api/logs`)."""

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait at most `timeout` s until what was queued before is sent; True if it was."""
        return True


class NullReporter(Reporter):
    """Drops everything: the reporter of flows run with no server configured."""


class CollectingReporter(Reporter):
    """Keeps what is emitted in lists, for a task run on a Dask worker to hand back."""

    enabled = True

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def emit_log(self, record: dict[str, Any]) -> None:
        self.logs.append(record)


class HttpReporter(Reporter):
    """Sends through `CoplaneClient` from a daemon thread (see the module's docstring)."""

    enabled = True

    def __init__(self, make_client: Callable[[], CoplaneClient]) -> None:
        self.pid = os.getpid()
        self._make_client = make_client
        self._events: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED)
        self._logs: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED_LOGS)
        self._markers: deque[threading.Event] = deque()
        self._wake = threading.Event()
        self._logs_supported = True
        self.sent_events = 0  # events handed to the server or the spool, for tests and bench
        self.sent_logs = 0  # log records the server accepted
        self._thread = threading.Thread(target=self._run, name="coplane-reporter", daemon=True)
        self._thread.start()

    def emit(self, event: dict[str, Any]) -> None:
        if len(self._events) == MAX_QUEUED:
            log.warning("coplane: report queue full, the oldest event is dropped")
        self._events.append(event)
        if not self._wake.is_set():
            self._wake.set()

    def emit_log(self, record: dict[str, Any]) -> None:
        if self._logs_supported:
            self._logs.append(record)
            if not self._wake.is_set():
                self._wake.set()

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        self._markers.append(done)
        self._wake.set()
        return done.wait(timeout)

    def _run(self) -> None:
        try:
            client = self._make_client()
        except Exception:
            log.exception("coplane: cannot make a client; flow runs will not be reported")
            return
        while True:
            self._wake.wait()
            time.sleep(LINGER)
            self._wake.clear()
            # markers first: whatever was queued before a marker is drained below with it
            markers = _drain(self._markers)
            events = _drain(self._events)
            logs = _drain(self._logs)
            if events:
                self._send_events(client, events)
            if logs:
                self._send_logs(client, logs)
            for marker in markers:
                marker.set()

    def _send_events(self, client: CoplaneClient, events: list[dict[str, Any]]) -> None:
        events = coalesce(events)
        try:
            result = client.send_events(events)
        except Exception:
            log.exception("coplane: sending %d flow events failed", len(events))
            return
        self.sent_events += len(events) - result.lost
        if result.lost:
            log.warning("coplane: %d flow events lost (the spool cannot be written)", result.lost)

    def _send_logs(self, client: CoplaneClient, logs: list[dict[str, Any]]) -> None:
        for start in range(0, len(logs), LOG_BATCH):
            if not self._logs_supported:
                return
            self._post_logs(client, logs[start : start + LOG_BATCH])

    def _post_logs(self, client: CoplaneClient, batch: list[dict[str, Any]]) -> None:
        import httpx

        from coplane.client import TRANSIENT_STATUSES

        reason = ""
        for attempt in range(2):
            if attempt:
                time.sleep(0.5)
            try:
                response = client.post_json(LOGS_PATH, {"logs": batch})
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            except Exception:
                log.exception("coplane: sending %d log records failed", len(batch))
                return
            if response.status_code == 404:  # a server from before run logs: never mind them
                self._logs_supported = False
                self._logs.clear()
                log.info("coplane: the server does not take run logs; they are not sent")
                return
            if response.is_success:
                self.sent_logs += len(batch)
                return
            reason = f"answered {response.status_code}: {response.text[:300]}"
            if response.status_code not in TRANSIENT_STATUSES:
                break
        log.warning("coplane: %d log records dropped: %s", len(batch), reason)


_TERMINAL = frozenset({"run.completed", "run.failed", "run.retrying", "run.cancelled",
                       "run.cached"})  # fmt: skip


def coalesce(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`events` with each run's `run.started` folded into its end when both are here.

    Most task runs end before their start has been sent. One event instead of two halves
    what the server stores for them: the end carries the start's time as `payload.started`
    (which the server reads as the run's start) and the start's payload under its own.
    """
    starts: dict[tuple[str, str], int] = {}
    merged: set[int] = set()
    for i, event in enumerate(events):
        name = event.get("event")
        if name != "run.started" and name not in _TERMINAL:
            continue
        related = event.get("related") or ()
        if not related or related[0].get("role") != "run":
            continue
        key = (event["resource"]["id"], related[0]["id"])
        if name == "run.started":
            starts[key] = i
            continue
        at = starts.pop(key, None)
        if at is None:
            continue
        start = events[at]
        event["payload"] = {**start.get("payload", {}), **event.get("payload", {}),
                            "started": start["occurred"]}  # fmt: skip
        merged.add(at)
    if not merged:
        return events
    return [e for i, e in enumerate(events) if i not in merged]


def _drain(queue: deque[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(queue.popleft())
        except IndexError:
            return items


_reporter: Reporter | None = None
_lock = threading.Lock()


def _forget_reporter() -> None:
    """In a forked child: the parent's thread is gone, and its lock may have been held."""
    global _reporter, _lock
    _reporter = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_reporter)


def _client_from_environment() -> CoplaneClient:
    from coplane.client import CoplaneClient

    spool = os.environ.get("COPLANE_SPOOL_DIR")
    return CoplaneClient(
        os.environ["COPLANE_URL"],
        api_key=os.environ.get("COPLANE_API_KEY") or None,
        timeout=SEND_TIMEOUT,
        retries=2,
        max_time=SEND_MAX_TIME,
        spool_dir=Path(spool) if spool else None,
    )


def get_reporter() -> Reporter:
    """This process's reporter: over `COPLANE_URL` (and `COPLANE_API_KEY`), else a no-op one.

    Made once per process, on the first flow run; the environment is read then.
    """
    global _reporter
    with _lock:
        if _reporter is None:
            if os.environ.get("COPLANE_URL"):
                reporter = HttpReporter(_client_from_environment)
                atexit.register(reporter.flush, FLUSH_SECONDS)
                _reporter = reporter
            else:
                _reporter = NullReporter()
        return _reporter


def reset_reporter() -> None:
    """Forget this process's reporter, so the next flow run reads the environment again."""
    global _reporter
    with _lock:
        if _reporter is not None:
            _reporter.flush(FLUSH_SECONDS)
        _reporter = None
