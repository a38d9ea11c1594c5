"""Reading what each SLA rule needs (`Facts`) from the store, bounded in time and rows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from coplane.events.names import ASSET_UPDATED, RUN_COMPLETED, RUN_FAILED, RUN_STARTED
from coplane.rules.common import event_matches
from coplane.rules.facts import CheckFact, EventFact, Facts, PingFact, RunFact
from coplane.rules.history import RECENT_RUNS, matches_target
from coplane.rules.model import (
    CompletionSLA,
    DurationSLA,
    EventMatch,
    ExpectedEventSLA,
    FreshnessSLA,
    HeartbeatSLA,
    QualitySLA,
)
from coplane.rules.schedule import MAX_LOOKBACK
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


_PING_EVENTS: dict[str, Literal["start", "success", "fail"]] = {
    RUN_STARTED: "start",
    RUN_COMPLETED: "success",
    RUN_FAILED: "fail",
}


def read_pings(conn: Conn, slug: str, since: datetime, now: datetime) -> list[PingFact]:
    """The pings of cron monitor `slug` in (since, now], ascending: the run.started,
    run.completed and run.failed events of pipeline `cron.<slug>` (the newest MAX_EVENTS).

    A ping's kind is its payload's `ping` (else its event's name); its rid the payload's
    `rid`, else, for a run event not sent as a ping, its run key. When no success (or no
    end at all) lies in the window, the latest one before it comes from the runs table, so
    a monitor with a period longer than the lookback keeps its last ping.
    """
    pipeline = f"cron.{slug}"
    if conn.dialect == "postgresql":
        ping, rid = "e.payload ->> 'ping'", "e.payload ->> 'rid'"
    else:
        ping, rid = "json_extract(e.payload, '$.ping')", "json_extract(e.payload, '$.rid')"
    events = list(_PING_EVENTS)
    rows = conn.query(
        f"SELECT e.event, e.occurred, {ping} AS ping, {rid} AS rid, r.run_key FROM events e "
        "LEFT JOIN runs r ON r.id = e.run_id "
        f"WHERE e.resource_id = ? AND e.event IN ({', '.join('?' * len(events))}) "
        "AND e.occurred > ? AND e.occurred <= ? ORDER BY e.occurred DESC, e.id DESC LIMIT ?",
        (pipeline, *events, conn.time(since), conn.time(now), MAX_EVENTS),
    )
    pings: list[PingFact] = []
    for row in reversed(rows):
        at = _aware(row["occurred"])
        assert at is not None
        sent = row["ping"]
        kind = sent if sent in ("start", "success", "fail") else _PING_EVENTS[row["event"]]
        key = row["rid"] or (None if sent is not None else row["run_key"])
        pings.append(PingFact(kind=kind, at=at, rid=None if key is None else str(key)))
    kinds = {p.kind for p in pings}
    before: list[tuple[Literal["success", "fail"], str]] = []
    if "success" not in kinds:
        before.append(("success", "completed"))
    if not kinds - {"start"}:
        before.append(("fail", "failed"))
    for kind, state in before:
        last = conn.one(
            "SELECT ended FROM runs WHERE pipeline = ? AND state = ? AND sort_at <= ? "
            "AND ended <= ? ORDER BY sort_at DESC, id DESC LIMIT 1",
            (pipeline, state, conn.time(since), conn.time(since)),
        )
        ended = _aware(last["ended"]) if last is not None else None
        if ended is not None:
            pings.append(PingFact(kind=kind, at=ended))
    pings.sort(key=lambda p: p.at)
    return pings


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
            lineage, history = read_forecast_inputs(conn, sla.target, now)
            return Facts(updates=updates, runs=runs, created=created, lineage=lineage,
                         history=history)  # fmt: skip
        case CompletionSLA():
            since -= sla.within or timedelta(0)
            runs = read_runs(conn, sla.target, since, now, RECENT_RUNS)
            lineage, history = read_forecast_inputs(conn, sla.target, now)
            return Facts(runs=runs, created=created, lineage=lineage, history=history)
        case DurationSLA():
            since -= sla.max_duration or timedelta(0)
            runs = read_runs(conn, sla.target, since, now, sla.history)
            return Facts(runs=runs, created=created)
        case ExpectedEventSLA():
            matchers = [m for m in (sla.after, sla.expect) if m is not None]
            events = read_events(conn, matchers, since - sla.within, now)
            return Facts(events=events, created=created)
        case HeartbeatSLA():
            return Facts(pings=read_pings(conn, sla.target, since, now), created=created)
        case QualitySLA():
            return Facts(checks=read_checks(conn, sla.target, sla.checks, now), created=created)
    raise TypeError(f"not an SLA: {type(sla).__name__}")


LINEAGE_HOPS = 4  # asset <- producer <- input <- upstream producer (<- its input)
LINEAGE_FANOUT = 20  # sources kept per node, so a hub table does not fan out the read


def read_forecast_inputs(
    conn: Conn, target: str, now: datetime
) -> tuple[dict[str, tuple[str, ...]], dict[str, list[RunFact]]]:
    """The lineage near `target` and the runs of the pipelines in it, for forecasts."""
    if glob_like(target) is not None:
        return {}, {}
    lineage = read_lineage_many(conn, [target])[target]
    history: dict[str, list[RunFact]] = {}
    for node in _lineage_nodes(target, lineage):
        runs = read_runs(conn, node, now - MAX_LOOKBACK, now, RECENT_RUNS)
        if runs:
            history[node] = runs
    return lineage, history


def _lineage_nodes(target: str, lineage: dict[str, tuple[str, ...]]) -> list[str]:
    return sorted({n for sources in lineage.values() for n in sources} - {target})


def read_lineage_many(
    conn: Conn, targets: Sequence[str], hops: int = LINEAGE_HOPS
) -> dict[str, dict[str, tuple[str, ...]]]:
    """Per target: each node within `hops` upstream mapped to its sources (lineage edges),
    a few queries per BULK_CHUNK nodes and hop."""
    edges: dict[str, list[str]] = {}
    frontier = sorted(set(targets))
    for _ in range(hops):
        for chunk in _chunks(frontier):
            rows = conn.query(
                f"SELECT target, source FROM lineage_edges WHERE target IN "
                f"({', '.join('?' * len(chunk))}) ORDER BY target, source",
                list(chunk),
            )
            for node in chunk:
                edges.setdefault(node, [])
            for row in rows:
                edges[row["target"]].append(row["source"])
        frontier = sorted({src for n in frontier for src in edges[n][:LINEAGE_FANOUT]} - set(edges))
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for target in targets:
        walked: dict[str, tuple[str, ...]] = {}
        level = [target]
        for _ in range(hops):
            nxt: list[str] = []
            for node in level:
                sources = tuple(edges.get(node, [])[:LINEAGE_FANOUT])
                if node in walked or not sources:
                    continue
                walked[node] = sources
                nxt.extend(sources)
            level = nxt
        out[target] = walked
    return out


BULK_CHUNK = 500  # targets per query when reading many SLAs' facts at once


def read_facts_many(
    conn: Conn, items: Sequence[tuple[AnySLA, datetime | None]], now: datetime
) -> list[Facts]:
    """`read_facts` of many SLAs at once, equal to calling it for each (SLA, created).

    Freshness, completion, duration and quality SLAs on exact targets are read together,
    a few queries per 500 targets, instead of several queries per SLA; the others (globs,
    expected events, heartbeats) are read one by one.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("read_facts_many needs a timezone-aware `now`")
    now = now.astimezone(UTC)
    out: list[Facts | None] = [None] * len(items)
    run_needs: dict[int, tuple[str, datetime, int]] = {}
    forecast_needs: dict[int, str] = {}
    update_needs: dict[int, str] = {}
    check_needs: dict[int, str] = {}
    since = now - MAX_LOOKBACK
    for i, (sla, created) in enumerate(items):
        match sla:
            case FreshnessSLA() if glob_like(sla.target) is None:
                run_needs[i] = (sla.target, since - (sla.max_age or timedelta(0)), RECENT_RUNS)
                update_needs[i] = sla.target
                forecast_needs[i] = sla.target
            case CompletionSLA() if glob_like(sla.target) is None:
                run_needs[i] = (sla.target, since - (sla.within or timedelta(0)), RECENT_RUNS)
                forecast_needs[i] = sla.target
            case DurationSLA() if glob_like(sla.target) is None:
                span = sla.max_duration or timedelta(0)
                run_needs[i] = (sla.target, since - span, sla.history)
            case QualitySLA() if glob_like(sla.target) is None:
                check_needs[i] = sla.target
            case _:
                out[i] = read_facts(conn, sla, now, created)
    lineages = read_lineage_many(conn, sorted(set(forecast_needs.values())))
    upstream_nodes = sorted({n for t, g in lineages.items() for n in _lineage_nodes(t, g)})
    history_needs = [(n, since, RECENT_RUNS) for n in upstream_nodes]
    runs = _bulk_runs(conn, [*run_needs.values(), *history_needs], now)
    earliest = min((run_needs[i][1] for i in update_needs), default=now)
    updated, latest = _bulk_updates(conn, list(update_needs.values()), earliest, now)
    checks = _bulk_checks(conn, list(check_needs.values()), now)
    for i, (sla, created) in enumerate(items):
        if out[i] is not None:
            continue
        if i in check_needs:
            wanted = sla.checks if isinstance(sla, QualitySLA) else None
            found = [
                c for c in checks.get(check_needs[i], []) if wanted is None or c.check in wanted
            ]
            out[i] = Facts(checks=found[:MAX_CHECKS], created=created)
            continue
        target, after, completed = run_needs[i]
        facts_runs = _runs_for(runs.get(target, []), after, now, completed)
        lineage: dict[str, tuple[str, ...]] = {}
        history: dict[str, list[RunFact]] = {}
        if i in forecast_needs:
            lineage = lineages[target]
            for node in _lineage_nodes(target, lineage):
                if node_runs := _runs_for(runs.get(node, []), since, now, RECENT_RUNS):
                    history[node] = node_runs
        if i not in update_needs:
            out[i] = Facts(runs=facts_runs, created=created, lineage=lineage, history=history)
            continue
        times = {at for at in updated.get(target, []) if at > after}
        if target in latest:
            times.add(latest[target])
        times |= {r.ended for r in facts_runs
                  if r.state == "completed" and r.ended and r.ended <= now}  # fmt: skip
        out[i] = Facts(updates=sorted(times)[-MAX_EVENTS:], runs=facts_runs, created=created,
                       lineage=lineage, history=history)  # fmt: skip
    return [f for f in out if f is not None]


def _chunks(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[i : i + BULK_CHUNK] for i in range(0, len(values), BULK_CHUNK)]


def _bulk_runs(
    conn: Conn, needs: Iterable[tuple[str, datetime, int]], now: datetime
) -> dict[str, list[tuple[datetime, str, RunFact, bool]]]:
    """Per pipeline: its runs in (earliest since, now] and its newest completed ones, as
    (sort_at, id, fact, completed by now) newest first."""
    needs = list(needs)
    if not needs:
        return {}
    targets = sorted({t for t, _, _ in needs})
    since = min(s for _, s, _ in needs)
    completed = max(max(c for _, _, c in needs), 0)
    found: dict[str, dict[str, tuple[datetime, str, RunFact, bool]]] = {}
    t = conn.time
    for chunk in _chunks(targets):
        marks = ", ".join("?" * len(chunk))
        # One scan per chunk: each pipeline's runs in the window, and its newest completed
        # ones (numbered among the completed runs only).
        rows = conn.query(
            f"SELECT {_RUN_COLUMNS}, done FROM (SELECT {_RUN_COLUMNS}, "
            "CASE WHEN state = 'completed' AND ended <= ? THEN 1 ELSE 0 END AS done, "
            "ROW_NUMBER() OVER (PARTITION BY pipeline, "
            "CASE WHEN state = 'completed' AND ended <= ? THEN 1 ELSE 0 END "
            "ORDER BY sort_at DESC, id DESC) AS n "
            f"FROM runs WHERE pipeline IN ({marks}) AND sort_at <= ?) ranked "
            "WHERE sort_at > ? OR (done = 1 AND n <= ?)",
            (t(now), t(now), *chunk, t(now), t(since), completed),
        )
        for row in rows:
            rid = str(row["id"])
            sort_at = _aware(row["sort_at"])
            assert sort_at is not None
            found.setdefault(row["pipeline"], {})[rid] = (
                sort_at, rid, _run_fact(row), bool(row["done"])
            )  # fmt: skip
    return {
        pipeline: sorted(rows.values(), key=lambda r: (r[0], r[1]), reverse=True)
        for pipeline, rows in found.items()
    }


def _runs_for(
    rows: list[tuple[datetime, str, RunFact, bool]], since: datetime, now: datetime, completed: int
) -> list[RunFact]:
    """One SLA's runs out of its pipeline's bulk rows, as `read_runs` returns them."""
    recent = [r for r in rows if since < r[0] <= now][:MAX_RUNS]
    done = [r for r in rows if r[3]][: max(0, completed)]
    chosen = {r[1]: r for r in [*recent, *done]}
    ordered = sorted(chosen.values(), key=lambda r: (r[0], r[1]), reverse=True)
    return [r[2] for r in ordered][:MAX_RUNS]


def _bulk_updates(
    conn: Conn, targets: Sequence[str], since: datetime, now: datetime
) -> tuple[dict[str, list[datetime]], dict[str, datetime]]:
    """Per asset: its asset.updated times in (since, now] (the newest MAX_EVENTS), and its
    latest update from the assets table (which outlives the lookback)."""
    updated: dict[str, list[datetime]] = {}
    latest: dict[str, datetime] = {}
    t = conn.time
    for chunk in _chunks(sorted(set(targets))):
        marks = ", ".join("?" * len(chunk))
        rows = conn.query(
            f"SELECT resource_id, occurred FROM events WHERE event = ? AND resource_id IN "
            f"({marks}) AND occurred > ? AND occurred <= ?",
            (ASSET_UPDATED, *chunk, t(since), t(now)),
        )
        for row in rows:
            occurred = _aware(row["occurred"])
            if occurred is not None:
                updated.setdefault(row["resource_id"], []).append(occurred)
        for row in conn.query(
            f"SELECT id, updated FROM assets WHERE id IN ({marks}) AND updated <= ?",
            (*chunk, t(now)),
        ):
            at = _aware(row["updated"])
            if at is not None:
                latest[row["id"]] = at
    return {k: sorted(v)[-MAX_EVENTS:] for k, v in updated.items()}, latest


def _bulk_checks(conn: Conn, targets: Sequence[str], now: datetime) -> dict[str, list[CheckFact]]:
    """Per asset: the latest result of each check, by check name."""
    out: dict[str, list[CheckFact]] = {}
    for chunk in _chunks(sorted(set(targets))):
        marks = ", ".join("?" * len(chunk))
        rows = conn.query(
            "SELECT asset, check_name, passed, at, message FROM checks "
            f"WHERE asset IN ({marks}) AND at <= ? ORDER BY asset, check_name",
            (*chunk, conn.time(now)),
        )
        for row in rows:
            at = _aware(row["at"])
            if at is not None:
                fact = CheckFact(
                    row["asset"], row["check_name"], bool(row["passed"]), at, row["message"]
                )
                out.setdefault(row["asset"], []).append(fact)
    return out


def downstream(conn: Conn, resources: list[str], depth: int = 5, limit: int = 200) -> list[str]:
    """Resource ids downstream of `resources` through lineage edges (breadth-first), sorted."""
    return _walk(conn, resources, depth, limit, "source", "target")


def upstream(conn: Conn, resources: list[str], depth: int = 5, limit: int = 200) -> list[str]:
    """Resource ids upstream of `resources` through lineage edges (breadth-first), sorted."""
    return _walk(conn, resources, depth, limit, "target", "source")


def _walk(
    conn: Conn, resources: list[str], depth: int, limit: int, start: str, end: str
) -> list[str]:
    seen = set(resources)
    found: list[str] = []
    frontier = sorted(seen)
    for _ in range(depth):
        if not frontier or len(found) >= limit:
            break
        rows = conn.query(
            f"SELECT DISTINCT {end} AS node FROM lineage_edges WHERE {start} IN "
            f"({', '.join('?' * len(frontier))}) ORDER BY node",
            frontier,
        )
        frontier = [r["node"] for r in rows if r["node"] not in seen]
        seen.update(frontier)
        found.extend(frontier)
    return sorted(found[:limit])
