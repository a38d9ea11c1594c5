"""Reading runs: lists with keyset pages, one run with its tasks, recent runs per pipeline."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound
from coplane.store.paging import newest_first

RUN_COLUMNS = (
    "id, pipeline, run_key, source, state, started, ended, error, scheduled, parent_run, "
    "nominal_start, first_seen, sort_at"
)
RUN_STATES = (
    "scheduled", "pending", "running", "paused", "completed", "failed", "retrying",
    "cancelled", "cached", "crashed",
)


@dataclass(frozen=True, slots=True)
class RunFilter:
    """What `GET /api/runs` may filter on."""

    pipeline: str | None = None
    state: str | None = None
    since: datetime | None = None
    parent_run: uuid.UUID | None = None


def list_runs(
    conn: Conn, f: RunFilter, limit: int, cursor: str | None = None
) -> tuple[list[Row], str | None]:
    """Runs matching `f`, newest first (by start, else schedule, else first event)."""
    where: list[str] = []
    params: list[Any] = []
    if f.pipeline is not None:
        where.append("pipeline = ?")
        params.append(f.pipeline)
    if f.state is not None:
        where.append("state = ?")
        params.append(f.state)
    if f.since is not None:
        where.append("sort_at >= ?")
        params.append(conn.time(f.since))
    if f.parent_run is not None:
        where.append("parent_run = ?")
        params.append(conn.uid(f.parent_run))
    return newest_first(
        conn, f"SELECT {RUN_COLUMNS} FROM runs", "sort_at", where, params, limit, cursor
    )


def read_run(conn: Conn, run_id: uuid.UUID | str) -> Row:
    """One run; NotFound when there is none with that id."""
    row = conn.one(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = ?", (conn.uid(run_id),))
    if row is None:
        raise NotFound(f"no run with id {run_id}")
    return row


def list_child_runs(conn: Conn, run_id: uuid.UUID | str) -> list[Row]:
    """The task runs of a run, in the order they started."""
    return conn.query(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE parent_run = ? ORDER BY sort_at, id",
        (conn.uid(run_id),),
    )


def recent_runs(conn: Conn, pipelines: Sequence[str], per_pipeline: int) -> dict[str, list[Row]]:
    """The latest `per_pipeline` runs of each pipeline, newest first."""
    out: dict[str, list[Row]] = {p: [] for p in pipelines}
    if not pipelines:
        return out
    if conn.dialect == "postgresql":
        # LATERAL walks runs_pipeline once per pipeline and stops after the limit.
        rows = conn.query(
            f"SELECT r.* FROM unnest(?::text[]) AS p(id) CROSS JOIN LATERAL "
            f"(SELECT {RUN_COLUMNS} FROM runs WHERE pipeline = p.id "
            f"ORDER BY sort_at DESC, id DESC LIMIT ?) r",
            (list(pipelines), per_pipeline),
        )
        for row in rows:
            out[row["pipeline"]].append(row)
        return out
    for pipeline in pipelines:
        out[pipeline] = conn.query(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE pipeline = ? "
            "ORDER BY sort_at DESC, id DESC LIMIT ?",
            (pipeline, per_pipeline),
        )
    return out


def duration_s(row: Row) -> float | None:
    """Seconds from start to end, when both are known."""
    started, ended = row["started"], row["ended"]
    if started is None or ended is None:
        return None
    seconds: float = (ended - started).total_seconds()
    return round(seconds, 6)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def run_json(row: Row) -> dict[str, Any]:
    """A run as the API shows it."""
    return {
        "id": str(row["id"]),
        "pipeline": row["pipeline"],
        "run_key": row["run_key"],
        "source": row["source"],
        "state": row["state"],
        "started": _iso(row["started"]),
        "ended": _iso(row["ended"]),
        "duration_s": duration_s(row),
        "parent_run": None if row["parent_run"] is None else str(row["parent_run"]),
        "scheduled": _iso(row["scheduled"]),
        "nominal_start": _iso(row["nominal_start"]),
        "error": row["error"],
    }
