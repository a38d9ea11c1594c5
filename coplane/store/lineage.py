"""Reading the lineage graph: the neighbourhood of a node, or the whole graph, with node status."""

from __future__ import annotations

from typing import Any, Literal

from coplane.events import names as n
from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound
from coplane.store.runs import recent_runs

Direction = Literal["both", "upstream", "downstream"]
_RUN_STATUS = {
    "completed": "ok",
    "cached": "ok",  # a task run that reused a stored result: done, as if completed
    "failed": "failed",
    "retrying": "running",  # a try failed and another is coming: the task is not done
    "cancelled": "cancelled",
    "running": "running",
    "scheduled": "scheduled",
    "pending": "scheduled",
    "crashed": "failed",
}


def read_lineage(
    conn: Conn, node: str | None, depth: int, direction: Direction
) -> dict[str, list[dict[str, Any]]]:
    """Nodes and edges within `depth` hops of `node` (the whole graph when `node` is None)."""
    if node is None:
        edges = {
            (r["source"], r["target"])
            for r in conn.query("SELECT source, target FROM lineage_edges")
        }
        ids = {s for s, _ in edges} | {t for _, t in edges}
        return _graph(conn, ids, edges)
    if conn.one("SELECT 1 AS x FROM resources WHERE id = ?", (node,)) is None:
        raise NotFound(f"no resource with id {node!r}")
    ids, edges = {node}, set()
    # Breadth-first, one indexed query per hop and direction: depth is small and the
    # frontier query stays on the (source) / (target, source) indexes.
    for column, other in (("source", "target"), ("target", "source")):
        if (direction == "upstream" and column == "source") or (
            direction == "downstream" and column == "target"
        ):
            continue
        frontier = {node}
        for _ in range(depth):
            if not frontier:
                break
            marks = ", ".join("?" * len(frontier))
            rows = conn.query(
                f"SELECT source, target FROM lineage_edges WHERE {column} IN ({marks})",
                sorted(frontier),
            )
            found = {r[other] for r in rows} - ids
            edges |= {(r["source"], r["target"]) for r in rows}
            ids |= found
            frontier = found
    return _graph(conn, ids, edges)


def _graph(
    conn: Conn, ids: set[str], edges: set[tuple[str, str]]
) -> dict[str, list[dict[str, Any]]]:
    ordered = sorted(ids)
    resources: dict[str, Row] = {}
    failing: set[str] = set()
    updated: set[str] = set()
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for r in conn.query(
            f"SELECT id, kind, name, parent FROM resources WHERE id IN ({marks})", chunk
        ):
            resources[r["id"]] = r
        failing |= {
            r["asset"]
            for r in conn.query(
                f"SELECT DISTINCT asset FROM checks WHERE asset IN ({marks}) AND NOT passed",
                chunk,
            )
        }
        updated |= {
            r["id"] for r in conn.query(f"SELECT id FROM assets WHERE id IN ({marks})", chunk)
        }
    runnable = [i for i, r in resources.items() if r["kind"] in (n.KIND_PIPELINE, n.KIND_TASK)]
    last_runs = recent_runs(conn, runnable, 1)
    nodes = []
    for i in ordered:
        res = resources.get(i)
        kind = res["kind"] if res else None
        if kind in (n.KIND_PIPELINE, n.KIND_TASK):
            runs = last_runs.get(i) or []
            status = _RUN_STATUS.get(runs[0]["state"], "unknown") if runs else "unknown"
        elif i in failing:
            status = "failing_checks"
        else:
            status = "ok" if i in updated else "unknown"
        nodes.append(
            {
                "id": i,
                "kind": kind,
                "name": (res["name"] if res else None) or i,
                "parent": res["parent"] if res else None,
                "status": status,
            }
        )
    return {
        "nodes": nodes,
        "edges": [{"source": s, "target": t} for s, t in sorted(edges)],
    }
