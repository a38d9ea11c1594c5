"""SLA backtests: the live rules replayed over past (or given) events on a simulated clock.

The events are written, in the order they arrived, into a scratch in-memory SQLite store
through the same insert-and-derive path as ingest, so runs, assets and checks are derived
exactly as live. The rule is evaluated where the live engine would evaluate it: at `start`,
when events arrive (at most once per the engine's DEBOUNCE), and at each `next_deadline` the
rule returns, up to `end`. A breach key
that appears is a breach (breached at that evaluation); one that disappears is resolved, as
`apply_evaluation` opens and resolves incidents.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import Any

import msgspec

from coplane.events.model import Event, EventDecodeError, decode_events
from coplane.rules import evaluate
from coplane.rules.facts import Evaluation
from coplane.rules.model import SLA, ExpectedEventSLA
from coplane.rules.schedule import MAX_LOOKBACK
from coplane.rules.warning import Outcome, outcome, warning_due
from coplane.slas.engine import DEBOUNCE, watched_resources
from coplane.store.dialects import Conn
from coplane.store.events import insert_events
from coplane.store.migrate import migrated_connection
from coplane.store.replay import read_replay_events
from coplane.store.sla_facts import read_facts

MAX_SPAN = timedelta(days=90)  # end - start
MAX_EVENTS = 50_000  # events given in a request, or read from the store
# Rule evaluations in one backtest. Each reads its facts as the live engine does (up to 7
# days of updates or runs), about 5 ms for a target updated every minute: this keeps a
# request under two minutes at worst.
MAX_EVALUATIONS = 20_000


# A backtest replays up to MAX_EVALUATIONS evaluations and may take minutes: a few at once
# per server process, each within a time budget, so that reading keys cannot tie up the
# server (one took 128 s, and nothing stopped several at once).
MAX_CONCURRENT = 2
TIME_BUDGET_S = 30.0
BUSY_RETRY_S = 5  # Retry-After when every slot is taken
_slots = threading.BoundedSemaphore(MAX_CONCURRENT)


class BacktestError(ValueError):
    """A backtest that cannot run as asked; `loc` names the field (below the body), `status`
    the HTTP status that says why (422 invalid, 413 too much work, 429 busy)."""

    def __init__(self, message: str, loc: list[str | int], status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.status = status

    @property
    def where(self) -> str:
        """`events[3].occurred`: the field as the error message names it."""
        out = ""
        for part in self.loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


@dataclass(slots=True)
class BacktestBreach:
    """One breach the engine would have opened, and when it would have resolved it."""

    key: str
    due: datetime
    breached_at: datetime
    resolved_at: datetime | None
    window_start: datetime | None
    reason: str
    resource: str | None


@dataclass(slots=True)
class BacktestWarning:
    """One early warning the engine would have sent (`warn_at_risk`), and what became of it."""

    key: str
    due: datetime
    warned_at: datetime
    reason: str
    outcome: Outcome | None = None  # met or breached; None while still open at `end`
    settled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """The breaches, in the order they were opened, and how many evaluations ran."""

    breaches: list[BacktestBreach]
    evaluations: int
    events: int  # events replayed
    warnings: list[BacktestWarning] = field(default_factory=list)  # with warn_at_risk only


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def backtest_json(result: BacktestResult) -> dict[str, Any]:
    """A backtest as the API answers it."""
    return {
        "breaches": [
            {
                "key": b.key,
                "due": _iso(b.due),
                "breached_at": _iso(b.breached_at),
                "resolved_at": _iso(b.resolved_at),
                "window_start": _iso(b.window_start),
                "reason": b.reason,
                "resource": b.resource,
            }
            for b in result.breaches
        ],
        "warnings": [
            {
                "key": w.key,
                "due": _iso(w.due),
                "warned_at": _iso(w.warned_at),
                "outcome": w.outcome,
                "settled_at": _iso(w.settled_at),
                "reason": w.reason,
            }
            for w in result.warnings
        ],
        "evaluations": result.evaluations,
        "events": result.events,
    }


def parse_time(value: Any, field: str) -> datetime:
    """An ISO 8601 time with an offset (`Z` allowed), else a BacktestError naming `field`."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BacktestError(f"{value!r} is not an ISO 8601 time", [field]) from None
    else:
        raise BacktestError("expected an ISO 8601 time such as 2026-11-24T09:00:00Z", [field])
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise BacktestError("the time needs an offset, such as Z or +01:00", [field])
    return parsed.astimezone(UTC)


def check_window(start: datetime, end: datetime) -> None:
    """`start` before `end`, at most MAX_SPAN apart."""
    if start >= end:
        raise BacktestError("must be after start", ["end"])
    if end - start > MAX_SPAN:
        raise BacktestError(f"end - start is over the limit of {MAX_SPAN.days} days", ["end"])


def decode_given_events(items: Any) -> list[tuple[datetime, Event]]:
    """The request's `events` (the JSON of `POST /api/events`) as (arrival, event) pairs.

    An event arrives at its optional `received` time, else when it occurred.
    """
    if not isinstance(items, list):
        raise BacktestError("expected an array of events", ["events"])
    if len(items) > MAX_EVENTS:
        raise BacktestError(f"{len(items)} events; the limit is {MAX_EVENTS}", ["events"])
    try:
        events = decode_events(msgspec.json.encode(items))
    except EventDecodeError as exc:
        raise BacktestError(exc.message, ["events", *exc.loc[1:]]) from None
    out: list[tuple[datetime, Event]] = []
    for index, (item, event) in enumerate(zip(items, events, strict=True)):
        received = item.get("received") if isinstance(item, dict) else None
        arrival = event.occurred if received is None else parse_time(received, "received")
        out.append((arrival.astimezone(UTC), event))
        if received is not None and arrival < event.occurred:
            raise BacktestError("received before it occurred", ["events", index, "received"])
    return out


def lookback(sla: SLA) -> timedelta:
    """How far before `start` the facts of an evaluation at `start` can reach."""
    own = [getattr(sla, f, None) for f in ("max_age", "within", "max_duration")]
    extra = sum((d for d in own if isinstance(d, timedelta)), timedelta(0))
    if isinstance(sla, ExpectedEventSLA):
        extra = sla.within
    return MAX_LOOKBACK + extra


def read_stored_events(
    conn: Conn, sla: SLA, start: datetime, end: datetime
) -> list[tuple[datetime, Event]]:
    """The stored events a backtest of `sla` over [start, end] replays, as received: those
    about the resources it watches (all of them for a glob target or a matcher without one)."""
    found = read_replay_events(
        conn, start - lookback(sla), end, MAX_EVENTS + 1, watched_resources(sla)
    )
    if len(found) > MAX_EVENTS:
        raise BacktestError(
            f"over {MAX_EVENTS} stored events in the window; choose a shorter one", ["start"]
        )
    return found


@contextmanager
def backtest_slot() -> Iterator[None]:
    """Hold one of the MAX_CONCURRENT backtest slots; BacktestError (429) when none is free."""
    if not _slots.acquire(blocking=False):
        raise BacktestError(
            f"{MAX_CONCURRENT} backtests are running already: retry in a few seconds",
            [],
            status=429,
        )
    try:
        yield
    finally:
        _slots.release()


def run_backtest(
    sla: SLA,
    start: datetime,
    end: datetime,
    events: Iterable[tuple[datetime, Event]],
    budget: float = TIME_BUDGET_S,
    clock: Callable[[], float] = time.monotonic,
) -> BacktestResult:
    """What the live engine would have done with `sla` from `start` to `end`, had the
    `(arrival, event)` pairs arrived at their arrival times; the SLA counts as created at
    `start`, so no window due before it breaches. Past `budget` seconds of work it stops
    with a BacktestError (413)."""
    check_window(start, end)
    give_up = clock() + budget
    # Stable: events arriving together keep their given order, as in one ingest batch.
    queue = sorted(((a, e) for a, e in events if a <= end), key=lambda pair: pair[0])
    batches = [(a, [e for _, e in group]) for a, group in groupby(queue, key=lambda p: p[0])]
    opened: dict[str, BacktestBreach] = {}
    breaches: list[BacktestBreach] = []
    warned: dict[str, BacktestWarning] = {}  # every warning by key: one per window, as live
    warnings: list[BacktestWarning] = []
    evaluations = 0
    with migrated_connection("sqlite:///:memory:") as conn:
        now, pending, deadline = start, 0, None
        while True:
            while pending < len(batches) and batches[pending][0] <= now:
                insert_events(conn, batches[pending][1], batches[pending][0])
                pending += 1
            evaluations += 1
            if clock() > give_up:
                raise BacktestError(
                    f"the replay took over {budget:g} s (at {now.isoformat()}, "
                    f"{evaluations} evaluations); choose a shorter window",
                    ["end"],
                    status=413,
                )
            if evaluations > MAX_EVALUATIONS:
                raise BacktestError(
                    f"over {MAX_EVALUATIONS} evaluations; choose a shorter window", ["end"]
                )
            evaluation = evaluate(sla, read_facts(conn, sla, now, start), now)
            current = {b.key: b for b in evaluation.breaches}
            for key, b in current.items():
                if key not in opened:
                    opened[key] = BacktestBreach(
                        key, b.due, now, None, b.window_start, b.reason, b.resource
                    )
                    breaches.append(opened[key])
            for key in [k for k in opened if k not in current]:
                opened.pop(key).resolved_at = now
            _warn(sla, evaluation, now, warned, warnings)
            deadline = evaluation.next_deadline
            upcoming: list[datetime] = []
            if pending < len(batches):  # ingest wakes the engine at most once per DEBOUNCE
                upcoming.append(max(batches[pending][0], now + DEBOUNCE))
            if deadline is not None and deadline > now:
                upcoming.append(deadline.astimezone(UTC))
            if not upcoming or min(upcoming) > end:
                break
            now = min(upcoming)
    return BacktestResult(breaches, evaluations, len(queue), warnings)


def _warn(
    sla: SLA,
    evaluation: Evaluation,
    now: datetime,
    warned: dict[str, BacktestWarning],
    warnings: list[BacktestWarning],
) -> None:
    """Settle the open warnings and raise a due one, as the engine does (store/warnings.py)."""
    for w in warnings:
        if w.outcome is None:
            w.outcome = outcome(w.key, w.due, w.warned_at, evaluation)
            w.settled_at = now if w.outcome is not None else None
    due = warning_due(sla.name, sla.warn_at_risk, evaluation)
    if due is not None and due.key not in warned:
        warned[due.key] = BacktestWarning(due.key, due.due, now, due.reason)
        warnings.append(warned[due.key])
