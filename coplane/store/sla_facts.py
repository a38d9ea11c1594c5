"""Reading what each SLA rule needs (`Facts`) from the store, bounded in time and rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from coplane.events.names import ASSET_UPDATED
from coplane.slas.facts import CheckFact, EventFact, Facts, RunFact
from coplane.slas.model import (
    CompletionSLA,
    DurationSLA,
    EventMatch,
    ExpectedEventSLA,
    FreshnessSLA,
    HeartbeatSLA,
    QualitySLA,
)
from coplane.slas.rules.common import RECENT_RUNS, event_matches, matches_target
from coplane.slas.rules.schedule import MAX_LOOKBACK
from coplane.store.dialects import Conn, Row
from coplane.store.events import like_pattern

AnySLA = FreshnessSLA | CompletionSLA | DurationSLA | ExpectedEventSLA | HeartbeatSLA | QualitySLA

MAX_RUNS = 500  # runs read per SLA, newest kept
MAX_EVENTS = 5000  # events (or updates) read per SLA, newest kept
MAX_CHECKS = 1000  # latest check rows read per SLA

_GLOB_CHARS = frozenset("*?[")
_ESCAPE = " ESCAPE '\\'"
_RUN_COLUMNS = "id, pipeline, run_key, state, started, ended, sort_at"


def glob_like(pattern: str) -> str | None:
    """The SQL LIKE pattern (ESCAPE '\\') for an fnmatch glob; None when it has no glob char."""
    # `*` becomes `%`, `?` and a `[...]` class become `_`: a superset, so callers filter rows
    # with `matches_target` too, which also undoes SQLite's case-insensitive LIKE.
    if _GLOB_CHARS.isdisjoint(pattern):
        return None
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c == "[":
            j = i + 1 if i < n and pattern[i] == "!" else i
            j = j + 1 if j < n and pattern[j] == "]" else j
            while j < n and pattern[j] != "]":
                j += 1
            if j < n:  # a class: any one character
                out.append("_")
                i = j + 1
            else:  # no closing bracket: a literal `[`, as fnmatch reads it
                out.append("[")
        elif c in "\\%_":
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def _match(column: str, pattern: str, params: list[Any]) -> str:
    """SQL matching `column` to a resource id or glob, appending its parameter."""
    like = glob_like(pattern)
    params.append(pattern if like is None else like)
    return f"{column} = ?" if like is None else f"{column} LIKE ?{_ESCAPE}"


def _name_match(pattern: str, params: list[Any]) -> str:
    """SQL matching `event` to an event name with an optional trailing `*`."""
    if pattern.endswith("*"):
        params.append(like_pattern(pattern))
        return f"event LIKE ?{_ESCAPE}"
    params.append(pattern)
    return "event = ?"


def _aware(value: datetime | None) -> datetime | None:
    """A time read from the store as an aware UTC datetime."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _run_fact(row: Row) -> RunFact:
    return RunFact(
        id=str(row["id"]),
        key=row["run_key"],
        pipeline=row["pipeline"],
        state=row["state"],
        started=_aware(row["started"]),
        ended=_aware(row["ended"]),
    )


def read_runs(
    conn: Conn, target: str, since: datetime, now: datetime, completed: int
) -> list[RunFact]:
    """Runs of `target` since `since` plus its `completed` newest completed runs, newest first."""
    params: list[Any] = []
    match = _match("pipeline", target, params)
    recent = conn.query(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE {match} AND sort_at > ? AND sort_at <= ? "
        "ORDER BY sort_at DESC, id DESC LIMIT ?",
        (*params, conn.time(since), conn.time(now), MAX_RUNS),
    )
    done = conn.query(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE {match} AND state = 'completed' "
        "AND sort_at <= ? AND ended <= ? ORDER BY sort_at DESC, id DESC LIMIT ?",
        (*params, conn.time(now), conn.time(now), max(0, completed)),
    )
    rows = {str(r["id"]): r for r in [*recent, *done] if matches_target(target, r["pipeline"])}
    ordered = sorted(rows.values(), key=lambda r: (_aware(r["sort_at"]), str(r["id"])))
    return [_run_fact(r) for r in reversed(ordered)][:MAX_RUNS]


def read_updates(
    conn: Conn, target: str, since: datetime, now: datetime, runs: list[RunFact]
) -> list[datetime]:
    """Times `target` was updated by `now` (asset.updated, completed `runs`), ascending."""
    params: list[Any] = [ASSET_UPDATED]
    match = _match("resource_id", target, params)
    rows = conn.query(
        f"SELECT resource_id, occurred AS at FROM events WHERE event = ? AND {match} "
        "AND occurred > ? AND occurred <= ? ORDER BY occurred DESC LIMIT ?",
        (*params, conn.time(since), conn.time(now), MAX_EVENTS),
    )
    params = []
    match = _match("id", target, params)
    # The assets table holds each asset's latest update: it keeps `last` known past the lookback.
    rows += conn.query(
        f"SELECT id AS resource_id, updated AS at FROM assets WHERE {match} AND updated <= ? "
        "ORDER BY updated DESC LIMIT ?",
        (*params, conn.time(now), MAX_EVENTS),
    )
    times = {_aware(r["at"]) for r in rows if matches_target(target, r["resource_id"])}
    times |= {r.ended for r in runs if r.state == "completed" and r.ended and r.ended <= now}
    return sorted(t for t in times if t is not None)[-MAX_EVENTS:]


def read_events(
    conn: Conn, matchers: Sequence[EventMatch], since: datetime, now: datetime
) -> list[EventFact]:
    """Events matching any of `matchers` in (since, now], ascending, with resource labels."""
    if not matchers:
        return []
    clauses: list[str] = []
    params: list[Any] = []
    for m in matchers:
        parts = [_name_match(m.event, params)]
        if m.resource is not None:
            parts.append(_match("e.resource_id", m.resource, params))
        clauses.append("(" + " AND ".join(parts) + ")")
    rows = conn.query(
        "SELECT e.event, e.resource_id, e.occurred, r.labels FROM events e "
        "LEFT JOIN resources r ON r.id = e.resource_id "
        f"WHERE ({' OR '.join(clauses)}) AND e.occurred > ? AND e.occurred <= ? "
        "ORDER BY e.occurred DESC, e.id DESC LIMIT ?",
        (*params, conn.time(since), conn.time(now), MAX_EVENTS),
    )
    facts: list[EventFact] = []
    for row in reversed(rows):
        occurred = _aware(row["occurred"])
        assert occurred is not None
        labels = row["labels"] if isinstance(row["labels"], dict) else {}
        fact = EventFact(
            event=row["event"],
            resource=row["resource_id"],
            occurred=occurred,
            labels={str(k): str(v) for k, v in labels.items()},
        )
        if any(event_matches(fact, m.event, m.resource) for m in matchers):
            facts.append(fact)
    return facts


def read_checks(
    conn: Conn, target: str, checks: list[str] | None, now: datetime
) -> list[CheckFact]:
    """The latest result of each check on `target` assets (only `checks` when given)."""
    if checks is not None and not checks:
        return []
    params: list[Any] = []
    where = [_match("asset", target, params), "at <= ?"]
    params.append(conn.time(now))
    if checks is not None:
        where.append(f"check_name IN ({', '.join('?' * len(checks))})")
        params.extend(checks)
    rows = conn.query(
        "SELECT asset, check_name, passed, at, message FROM checks "
        f"WHERE {' AND '.join(where)} ORDER BY asset, check_name LIMIT ?",
        (*params, MAX_CHECKS),
    )
    facts: list[CheckFact] = []
    for row in rows:
        at = _aware(row["at"])
        if at is None or not matches_target(target, row["asset"]):
            continue
        facts.append(CheckFact(row["asset"], row["check_name"], bool(row["passed"]), at,
                               row["message"]))  # fmt: skip
    return facts


def read_facts(conn: Conn, sla: AnySLA, now: datetime, created: datetime | None) -> Facts:
    """What `sla`'s rule needs at `now`, read with a few bounded, indexed queries."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("read_facts needs a timezone-aware `now`")
    now = now.astimezone(UTC)
    since = now - MAX_LOOKBACK
    match sla:
        case FreshnessSLA():
            since -= sla.max_age or timedelta(0)
            runs = read_runs(conn, sla.target, since, now, RECENT_RUNS)
            updates = read_updates(conn, sla.target, since, now, runs)
            return Facts(updates=updates, runs=runs, created=created)
        case CompletionSLA():
            since -= sla.within or timedelta(0)
            runs = read_runs(conn, sla.target, since, now, RECENT_RUNS)
            return Facts(runs=runs, created=created)
        case DurationSLA():
            since -= sla.max_duration or timedelta(0)
            runs = read_runs(conn, sla.target, since, now, sla.history)
            return Facts(runs=runs, created=created)
        case ExpectedEventSLA():
            matchers = [m for m in (sla.after, sla.expect) if m is not None]
            events = read_events(conn, matchers, since - sla.within, now)
            return Facts(events=events, created=created)
        case HeartbeatSLA():
            # No ping storage exists yet: a heartbeat SLA sees no pings (so it reads unknown,
            # or breached once its first expected ping is overdue after `created`).
            return Facts(created=created)
        case QualitySLA():
            return Facts(checks=read_checks(conn, sla.target, sla.checks, now), created=created)
    raise TypeError(f"not an SLA: {type(sla).__name__}")


def downstream(conn: Conn, resources: list[str], depth: int = 5, limit: int = 200) -> list[str]:
    """Resource ids downstream of `resources` through lineage edges (breadth-first), sorted."""
    seen = set(resources)
    found: list[str] = []
    frontier = sorted(seen)
    for _ in range(depth):
        if not frontier or len(found) >= limit:
            break
        rows = conn.query(
            f"SELECT DISTINCT target FROM lineage_edges WHERE source IN "
            f"({', '.join('?' * len(frontier))}) ORDER BY target",
            frontier,
        )
        frontier = [r["target"] for r in rows if r["target"] not in seen]
        seen.update(frontier)
        found.extend(frontier)
    return sorted(found[:limit])
