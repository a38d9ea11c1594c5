"""Reading what the health page shows, in a few set-wise queries however many pipelines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from coplane.events import names as n
from coplane.rules.budget import BUDGET_SUFFIX, breached_seconds
from coplane.store.dialects import Conn, Row
from coplane.store.runs import RUN_COLUMNS, duration_s

USUAL_RUNS = 20  # "the usual" duration is the median of this many latest completed runs


def health_resources(conn: Conn) -> list[Row]:
    """Every pipeline and asset, with the columns the health page filters on. Assets come
    without labels (most get no tile): read theirs with `labels_of`."""
    pipelines = conn.query(
        "SELECT id, kind, labels, source FROM resources WHERE kind = ?", (n.KIND_PIPELINE,)
    )
    assets = conn.query("SELECT id, kind, source FROM resources WHERE kind = ?", (n.KIND_ASSET,))
    return sorted([*pipelines, *assets], key=lambda r: str(r["id"]))


def labels_of(conn: Conn, ids: Sequence[str]) -> dict[str, Any]:
    """The labels of these resources."""
    out: dict[str, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for r in conn.query(f"SELECT id, labels FROM resources WHERE id IN ({marks})", chunk):
            out[r["id"]] = r["labels"]
    return out


def latest_runs(conn: Conn, kinds: Sequence[str] = (n.KIND_PIPELINE,)) -> dict[str, Row]:
    """The latest run of every resource of `kinds` (pipelines, tasks): one index probe per
    resource, all inside one query."""
    columns = ", ".join(f"r.{c.strip()}" for c in RUN_COLUMNS.split(","))
    rows = conn.query(
        f"SELECT {columns} FROM resources p JOIN runs r ON r.id = ("
        "SELECT id FROM runs WHERE pipeline = p.id ORDER BY sort_at DESC, id DESC LIMIT 1"
        f") WHERE p.kind IN ({', '.join('?' * len(kinds))})",
        tuple(kinds),
    )
    return {r["pipeline"]: r for r in rows}


def usual_durations(conn: Conn, pipelines: Sequence[str]) -> dict[str, float]:
    """The median duration of each pipeline's latest completed runs (pipelines with none are left
    out). Read for the tiles on show only, not for every pipeline."""
    out: dict[str, float] = {}
    for pipeline in pipelines:
        rows = conn.query(
            "SELECT started, ended FROM runs WHERE pipeline = ? AND state = 'completed' "
            "ORDER BY sort_at DESC, id DESC LIMIT ?",
            (pipeline, USUAL_RUNS),
        )
        durations = sorted(d for r in rows if (d := duration_s(r)) is not None)
        if durations:
            out[pipeline] = durations[len(durations) // 2]
    return out


def failing_assets(conn: Conn) -> set[str]:
    """Assets whose latest result of some check failed."""
    return {r["asset"] for r in conn.query("SELECT DISTINCT asset FROM checks WHERE NOT passed")}


def open_incidents_by_resource(conn: Conn) -> dict[str, list[dict[str, Any]]]:
    """Open incidents that name a resource, by that resource."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in conn.query(
        "SELECT id, sla, resource, reason FROM incidents "
        "WHERE resolved IS NULL AND resource IS NOT NULL ORDER BY opened"
    ):
        out.setdefault(r["resource"], []).append(
            {"id": str(r["id"]), "sla": r["sla"], "reason": r["reason"]}
        )
    return out


def breach_windows(
    conn: Conn, since: datetime
) -> dict[str, list[tuple[datetime, datetime | None]]]:
    """Per SLA, when its incidents were open (resolved None: still open), for incidents open at
    any time after `since`; budget alerts are not breaches of the SLA and are left out."""
    out: dict[str, list[tuple[datetime, datetime | None]]] = {}
    for r in conn.query(
        "SELECT sla, opened, resolved FROM incidents "
        "WHERE (resolved IS NULL OR resolved > ?) AND key <> sla || ?",
        (conn.time(since), BUDGET_SUFFIX),
    ):
        out.setdefault(r["sla"], []).append((r["opened"], r["resolved"]))
    return out


def compliance(
    windows: Sequence[tuple[datetime, datetime | None]], start: datetime, end: datetime
) -> float | None:
    """The share of [start, end) in which no incident of the SLA was open; None for an empty
    span. Overlapping incidents (several keys at once) count once."""
    if end <= start:
        return None
    return 1 - breached_seconds(windows, start, end) / (end - start).total_seconds()


def incidents_of(conn: Conn, slas: Sequence[str], resource: str, limit: int) -> list[Row]:
    """The latest incidents of these SLAs or about this resource, newest first."""
    marks = ", ".join("?" * len(slas)) or "NULL"
    return conn.query(
        f"SELECT id, sla, severity, reason, resource, opened, acked, resolved FROM incidents "
        f"WHERE sla IN ({marks}) OR resource = ? ORDER BY opened DESC, id DESC LIMIT ?",
        (*slas, resource, limit),
    )
