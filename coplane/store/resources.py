"""Reading pipelines and assets: what they are, their last run or update, their stats and checks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from coplane.events import names as n
from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound
from coplane.store.runs import duration_s, recent_runs, run_json

STATS_WINDOW = 100  # pipeline statistics cover this many latest runs
RESOURCE_COLUMNS = "id, kind, name, labels, source, parent, first_seen, last_seen"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 6)


def list_resources(
    conn: Conn, kinds: Sequence[str], limit: int, after: str | None = None
) -> tuple[list[Row], str | None]:
    """Resources of `kinds` in id order; the next page starts after the returned cursor."""
    marks = ", ".join("?" * len(kinds))
    params: list[Any] = list(kinds)
    where = f"kind IN ({marks})"
    if after is not None:
        where += " AND id > ?"
        params.append(after)
    rows = conn.query(
        f"SELECT {RESOURCE_COLUMNS} FROM resources WHERE {where} ORDER BY id LIMIT ?",
        (*params, limit + 1),
    )
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1]["id"])
    return rows, None


def read_resource(conn: Conn, rid: str, kinds: Sequence[str]) -> Row:
    """One resource of one of `kinds`; NotFound otherwise."""
    row = conn.one(f"SELECT {RESOURCE_COLUMNS} FROM resources WHERE id = ?", (rid,))
    if row is None or row["kind"] not in kinds:
        raise NotFound(f"no {' or '.join(kinds)} with id {rid!r}")
    return row


def _resource_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "labels": row["labels"],
        "source": row["source"],
        "parent": row["parent"],
        "first_seen": row["first_seen"].isoformat(),
        "last_seen": row["last_seen"].isoformat(),
    }


def pipeline_stats(runs: list[Row]) -> dict[str, Any]:
    """Last run, success rate and p50/p95 duration over the given (newest first) runs."""
    finished = [r for r in runs if r["state"] in ("completed", "failed")]
    durations = [d for r in runs if r["state"] == "completed" and (d := duration_s(r)) is not None]
    succeeded = sum(1 for r in finished if r["state"] == "completed")
    return {
        "last_run": run_json(runs[0]) if runs else None,
        "runs_counted": len(runs),
        "success_rate": round(succeeded / len(finished), 4) if finished else None,
        "p50_duration_s": percentile(durations, 50),
        "p95_duration_s": percentile(durations, 95),
    }


def pipelines_json(conn: Conn, rows: list[Row]) -> list[dict[str, Any]]:
    """Pipelines with their statistics, as the API shows them."""
    recent = recent_runs(conn, [r["id"] for r in rows], STATS_WINDOW)
    return [{**_resource_json(r), **pipeline_stats(recent[r["id"]])} for r in rows]


def read_pipeline(conn: Conn, pid: str) -> dict[str, Any]:
    """A pipeline (or task) with statistics, its tasks, and its direct inputs and outputs."""
    row = read_resource(conn, pid, (n.KIND_PIPELINE, n.KIND_TASK))
    out = pipelines_json(conn, [row])[0]
    out["tasks"] = [
        r["id"] for r in conn.query("SELECT id FROM resources WHERE parent = ? ORDER BY id", (pid,))
    ]
    out["inputs"] = [
        r["source"]
        for r in conn.query(
            "SELECT source FROM lineage_edges WHERE target = ? ORDER BY source", (pid,)
        )
    ]
    out["outputs"] = [
        r["target"]
        for r in conn.query(
            "SELECT target FROM lineage_edges WHERE source = ? ORDER BY target", (pid,)
        )
    ]
    return out


def assets_json(conn: Conn, rows: list[Row]) -> list[dict[str, Any]]:
    """Assets with their last update, producer and latest check results."""
    ids = [r["id"] for r in rows]
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    updates = {
        a["id"]: a
        for a in conn.query(
            f"SELECT id, updated, producer, run_id FROM assets WHERE id IN ({marks})", ids
        )
    }
    checks: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for c in conn.query(
        f"SELECT asset, check_name, passed, at, message FROM checks WHERE asset IN ({marks}) "
        "ORDER BY asset, check_name",
        ids,
    ):
        checks[c["asset"]].append(
            {
                "name": c["check_name"],
                "status": "passed" if c["passed"] else "failed",
                "at": c["at"].isoformat(),
                "message": c["message"],
            }
        )
    out = []
    for r in rows:
        update = updates.get(r["id"])
        out.append(
            {
                **_resource_json(r),
                "last_updated": update["updated"].isoformat() if update else None,
                "producer": update["producer"] if update else None,
                "last_update_run": str(update["run_id"]) if update and update["run_id"] else None,
                "checks": checks[r["id"]],
            }
        )
    return out


def read_asset(conn: Conn, aid: str) -> dict[str, Any]:
    """An asset with its last update, producer and checks."""
    return assets_json(conn, [read_resource(conn, aid, (n.KIND_ASSET,))])[0]
