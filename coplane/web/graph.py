"""The dataflow graph page: every pipeline, task and asset from every source as one graph,
laid out on the server (`coplane.web.layout`) and drawn as inline SVG, so it works without
JavaScript. Large graphs open in focus mode: a node and its N hops up- and downstream."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from coplane.events import names as n
from coplane.http.deps import store_of
from coplane.store.dialects import Conn
from coplane.store.health import failing_assets, latest_runs, open_incidents_by_resource
from coplane.store.runs import RunFilter, list_runs, run_json
from coplane.store.slas import list_slas
from coplane.web.health import SlaIndex
from coplane.web.layout import layered_layout
from coplane.web.render import render
from coplane.web.resources import resource_url

router = APIRouter(include_in_schema=False)

FOCUS_ABOVE = 300  # graphs with more nodes open in focus mode
MAX_HOPS = 6
BROKEN = frozenset({"breached", "failed", "failing_checks"})
_RUN_STATUS = {
    "failed": "failed",
    "retrying": "at_risk",
    "paused": "at_risk",
    "running": "running",
    "cancelled": "unknown",
    "crashed": "failed",
}
Direction = Literal["both", "upstream", "downstream"]


@dataclass(slots=True)
class Node:
    id: str
    kind: str | None
    parent: str | None
    status: str = "unknown"
    label: str = ""


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: dict[str, Node]
    edges: set[tuple[str, str]]


def read_graph(conn: Conn, collapse: bool) -> Graph:
    """Every resource that is a pipeline, task or asset or that lineage names, with its health;
    with `collapse`, each task is folded into its pipeline."""
    nodes: dict[str, Node] = {}
    for r in conn.query(
        "SELECT id, kind, parent FROM resources WHERE kind IN (?, ?, ?)",
        (n.KIND_PIPELINE, n.KIND_TASK, n.KIND_ASSET),
    ):
        nodes[r["id"]] = Node(r["id"], r["kind"], r["parent"])
    raw = {
        (r["source"], r["target"]) for r in conn.query("SELECT source, target FROM lineage_edges")
    }
    for s, t in raw:
        for end in (s, t):
            if end not in nodes:
                nodes[end] = Node(end, None, None)
    _health(conn, nodes)
    linked = {end for edge in raw for end in edge}
    into = {
        i: node.parent
        for i, node in nodes.items()
        if node.kind == n.KIND_TASK
        and node.parent in nodes
        and (collapse or i not in linked)  # shown, a task without lineage would float alone
    }
    for task, pipeline in into.items():
        parent = nodes[pipeline or task]
        if _worse(nodes[task].status, parent.status):
            parent.status = nodes[task].status
        del nodes[task]
    return Graph(nodes, fold_tasks(raw, {t: p for t, p in into.items() if p is not None}))


def fold_tasks(edges: set[tuple[str, str]], into: dict[str, str]) -> set[tuple[str, str]]:
    """The lineage with each task of `into` folded into its pipeline, keeping the lineage
    that runs through tasks: a task reading A and writing B becomes the edge A -> B, so a
    dbt project reads raw -> stg -> mart rather than every model hanging off the project.
    The pipeline keeps an edge to what it produces last (outputs none of its tasks reads),
    and to or from the assets of tasks that only read or only write."""
    ins: dict[str, set[str]] = {}
    outs: dict[str, set[str]] = {}
    folded: set[tuple[str, str]] = set()
    for s, t in edges:
        if t in into:
            ins.setdefault(t, set()).add(s)
        if s in into:
            outs.setdefault(s, set()).add(t)
        if s not in into and t not in into:
            folded.add((s, t))
    read_by: dict[str, set[str]] = {}  # pipeline -> what its tasks read
    for task, pipeline in into.items():
        read_by.setdefault(pipeline, set()).update(ins.get(task, ()))
    for task, pipeline in into.items():
        sources = {into.get(s, s) for s in ins.get(task, ())}
        targets = {into.get(t, t) for t in outs.get(task, ())}
        if sources and targets:
            folded.update((s, t) for s in sources for t in targets)
            folded.update((pipeline, t) for t in targets if t not in read_by[pipeline])
        elif targets:
            folded.update((pipeline, t) for t in targets)
        elif sources:
            folded.update((s, pipeline) for s in sources)
    return {(s, t) for s, t in folded if s != t}


_ORDER = ("breached", "failed", "failing_checks", "at_risk", "running", "unknown", "ok")


def _worse(a: str, b: str) -> bool:
    return _ORDER.index(a) < _ORDER.index(b)


def _health(conn: Conn, nodes: dict[str, Node]) -> None:
    """Each node's status: breached (an open incident about it), its last run's state, failing
    checks, ok (ran or was updated), else unknown."""
    runs = latest_runs(conn, (n.KIND_PIPELINE, n.KIND_TASK))
    failing = failing_assets(conn)
    incidents = open_incidents_by_resource(conn)
    updated = {r["id"] for r in conn.query("SELECT id FROM assets")}
    for i, node in nodes.items():
        run = runs.get(i)
        if i in incidents:
            node.status = "breached"
        elif run is not None:
            node.status = _RUN_STATUS.get(run["state"] or "", "ok")
        elif i in failing:
            node.status = "failing_checks"
        elif i in updated:
            node.status = "ok"
        node.label = _short(node)


def _short(node: Node) -> str:
    """A task's name without its pipeline's prefix; others whole."""
    if node.parent and node.id.startswith(node.parent + "."):
        return node.id[len(node.parent) + 1 :]
    return node.id


def neighbourhood(
    edges: Iterable[tuple[str, str]], start: str, hops: int, direction: Direction
) -> set[str]:
    """Nodes within `hops` of `start` following edges downstream, upstream, or both ways (each
    way walked on its own, so 'both' is ancestors and descendants, not cousins)."""
    down: dict[str, list[str]] = {}
    up: dict[str, list[str]] = {}
    for s, t in edges:
        down.setdefault(s, []).append(t)
        up.setdefault(t, []).append(s)
    seen = {start}
    ways = {"both": (down, up), "downstream": (down,), "upstream": (up,)}[direction]
    for way in ways:
        frontier, depth = deque([(start, 0)]), {start: 0}
        while frontier:
            node, d = frontier.popleft()
            if d == hops:
                continue
            for nxt in way.get(node, ()):
                if nxt not in depth:
                    depth[nxt] = d + 1
                    frontier.append((nxt, d + 1))
        seen |= set(depth)
    return seen


def downstream_of(
    edges: Iterable[tuple[str, str]], start: str
) -> tuple[set[str], set[tuple[str, str]]]:
    """Everything reachable from `start`, and the edges on the way: what a broken node affects."""
    down: dict[str, list[str]] = {}
    for s, t in edges:
        down.setdefault(s, []).append(t)
    reached, path, stack = {start}, set(), [start]
    while stack:
        node = stack.pop()
        for nxt in down.get(node, ()):
            path.add((node, nxt))
            if nxt not in reached:
                reached.add(nxt)
                stack.append(nxt)
    return reached - {start}, path


def _panel(conn: Conn, node: Node, graph: Graph) -> dict[str, Any]:
    """What the side panel shows about a node: last runs, SLAs, checks, open incidents."""
    runs: list[dict[str, Any]] = []
    if node.kind in (n.KIND_PIPELINE, n.KIND_TASK):
        rows, _ = list_runs(conn, RunFilter(pipeline=node.id), 5)
        runs = [run_json(r) for r in rows]
    checks = conn.query(
        "SELECT check_name, passed, at, message FROM checks WHERE asset = ? ORDER BY check_name",
        (node.id,),
    )
    incidents = open_incidents_by_resource(conn).get(node.id, [])
    slas = SlaIndex(list_slas(conn)).watching(node.id)
    affected, _ = downstream_of(graph.edges, node.id)
    return {
        "node": node,
        "url": resource_url(node.kind, node.id),
        "runs": runs,
        "checks": checks,
        "incidents": incidents,
        "slas": slas,
        "affected": sorted(affected) if node.status in BROKEN else [],
    }


@router.get("/graph")
def graph_page(
    request: Request,
    focus: str = "",
    hops: int = 2,
    direction: str = "both",
    tasks: str = "",
    node: str = "",
    all: str = "",
) -> HTMLResponse:
    """The graph, a focused part of it, or (for large graphs) a prompt to pick a focus; `node`
    opens a node's panel, which htmx loads alone."""
    hops = min(max(hops, 1), MAX_HOPS)
    way: Direction = direction if direction in ("upstream", "downstream") else "both"  # type: ignore[assignment]
    collapse = tasks != "shown"
    with store_of(request).connect() as conn:
        graph = read_graph(conn, collapse)
        focus = focus.strip()
        missing = bool(focus) and focus not in graph.nodes
        focus_mode = not focus and len(graph.nodes) > FOCUS_ABOVE and not all
        if focus and not missing:
            shown = neighbourhood(graph.edges, focus, hops, way)
        elif focus_mode or missing:
            shown = set()  # pick a node first
        else:
            shown = set(graph.nodes)
        selected = graph.nodes.get(node) if node else None
        panel = _panel(conn, selected, graph) if selected else None
    edges = sorted((s, t) for s, t in graph.edges if s in shown and t in shown)
    layout = layered_layout(sorted(shown), edges)
    impacted: set[str] = set()
    impact_edges: set[tuple[str, str]] = set()
    broken = selected or (graph.nodes.get(focus) if focus else None)
    if broken is not None and broken.status in BROKEN:
        impacted, impact_edges = downstream_of(edges, broken.id)
    params: dict[str, Any] = {
        "focus": focus,
        "hops": hops,
        "direction": way,
        "tasks": "" if collapse else "shown",
        "all": all,
    }

    def link(**extra: Any) -> str:
        """This view's URL with some parameters changed."""
        chosen = {k: v for k, v in {**params, **extra}.items() if v not in ("", None)}
        return "/graph?" + urlencode(chosen)

    base = link(node="")
    node_prefix = base + ("&" if base != "/graph?" else "") + "node="  # + the node id, quoted
    context = {
        "graph": graph,
        "layout": layout,
        "shown": shown,
        "focus": focus,
        "missing": missing,
        "hops": hops,
        "direction": way,
        "collapse": collapse,
        "panel": panel,
        "impacted": impacted,
        "impact_edges": impact_edges,
        "focus_mode": focus_mode,
        "entry_points": _entry_points(graph),
        "total": len(graph.nodes),
        "focus_above": FOCUS_ABOVE,
        "link": link,
        "node_prefix": node_prefix,
    }
    return render(request, "graph.html", context, blocks=("graph-panel",))


def _entry_points(graph: Graph, limit: int = 30) -> list[Node]:
    """Where to start in focus mode: broken nodes first, then the rest by name."""
    ranked = sorted(graph.nodes.values(), key=lambda x: (_ORDER.index(x.status), x.id))
    return ranked[:limit]
