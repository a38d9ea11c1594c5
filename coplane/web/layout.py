"""Layered (Sugiyama-style) layout of the dataflow graph, drawn left to right as inline SVG.

The steps, one function each: normalise the input; break cycles by reversing the back edges
of an iterative depth-first search; put every node in the layer of the longest path reaching
it, then move right the nodes with more out-edges than in-edges, to shorten edges; split
edges spanning several layers with virtual nodes, one per layer crossed, so the edge bends
around the boxes there; order each layer by the barycentre of its neighbours' positions,
sweeping down and up and keeping the order with the fewest crossings; then stack each
layer's slots and pull them towards their neighbours' heights with a least-squares fit that
keeps their order and gaps. Connected components never interleave; isolated nodes go last
in layer 0.

Conventions: self-loops are omitted (no Path); a reversed edge's points run in its original
direction, from the original source's left-middle to the original target's right-middle, so
its x decreases and an arrow at its last point points back. Pure functions, no I/O.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

_NEW, _ACTIVE, _DONE = 0, 1, 2
_PLACEMENT_PASSES = 2  # down-and-up passes pulling nodes towards their neighbours' heights


@dataclass(frozen=True, slots=True)
class Box:
    """One placed node."""

    id: str
    x: float  # left edge
    y: float  # top edge
    width: float
    height: float
    layer: int  # 0 = leftmost


@dataclass(frozen=True, slots=True)
class Path:
    """One drawn edge: a polyline from the source box to the target box."""

    source: str
    target: str
    points: tuple[tuple[float, float], ...]
    reversed: bool  # reversed to break a cycle: drawn right to left


@dataclass(frozen=True, slots=True)
class Layout:
    boxes: dict[str, Box]
    paths: tuple[Path, ...]
    width: float
    height: float


@dataclass(slots=True)
class _Chain:
    """One input edge as laid out: real ends and virtual nodes between, in layer order."""

    source: str
    target: str
    reversed: bool
    nodes: list[int]


@dataclass(slots=True)
class _Graph:
    """The layered graph: real nodes 0..len(names)-1, then the virtual ones."""

    names: list[str]
    layer: list[int]
    rank: list[int]  # position in name order, the tie-break wherever one is needed
    group: list[int]  # connected component, so components are never interleaved
    preds: list[list[int]]
    succs: list[list[int]]
    chains: list[_Chain]

    def is_virtual(self, v: int) -> bool:
        return v >= len(self.names)


def layered_layout(
    nodes: Sequence[str],
    edges: Iterable[tuple[str, str]],
    *,
    node_width: float = 180.0,
    node_height: float = 36.0,
    layer_gap: float = 80.0,
    node_gap: float = 16.0,
    margin: float = 16.0,
    sweeps: int = 4,
) -> Layout:
    """Place `nodes` in layers left to right and route `edges` between them."""
    names, pairs = _normalise(nodes, edges)
    back = _find_back_edges(len(names), pairs)
    laid = [((v, u, True) if (u, v) in back else (u, v, False)) for u, v in pairs]
    forward = [(u, v) for u, v, _ in laid]
    layers_of = _tighten_layers(_assign_layers(len(names), forward), forward)
    graph = _insert_virtual_nodes(names, layers_of, laid, _components(len(names), pairs))
    layers = _order_layers(graph, sweeps)
    heights = [
        node_height / 3 if graph.is_virtual(v) else node_height for v in range(len(graph.layer))
    ]
    centers = _assign_y(graph, layers, heights, node_gap)

    top = min((centers[v] - heights[v] / 2 for v in range(len(centers))), default=0.0)
    shift = margin - top
    step = node_width + layer_gap

    def left(v: int) -> float:
        return margin + graph.layer[v] * step

    boxes = {
        name: Box(
            name,
            left(v),
            centers[v] - node_height / 2 + shift,
            node_width,
            node_height,
            graph.layer[v],
        )
        for v, name in enumerate(names)
    }
    paths = tuple(_route(chain, left, centers, shift, node_width) for chain in graph.chains)
    bottom = max((centers[v] + heights[v] / 2 + shift for v in range(len(centers))), default=0.0)
    columns = len(layers)
    width = 2 * margin + (columns * step - layer_gap if columns else 0.0)
    return Layout(boxes, paths, width, max(bottom, margin) + margin)


def _normalise(
    nodes: Sequence[str], edges: Iterable[tuple[str, str]]
) -> tuple[list[str], list[tuple[int, int]]]:
    """Index the nodes (given ones first, then edge-only ones by name); dedupe edges, drop loops."""
    index: dict[str, int] = {}
    for name in nodes:
        index.setdefault(name, len(index))
    unique = set(edges)
    for name in sorted({n for edge in unique for n in edge} - index.keys()):
        index[name] = len(index)
    pairs = sorted((index[s], index[t]) for s, t in unique if s != t)
    return list(index), pairs


def _find_back_edges(count: int, pairs: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Edges closing a cycle in an iterative depth-first search, roots (no in-edges) first."""
    succs: list[list[int]] = [[] for _ in range(count)]
    has_pred = [False] * count
    for u, v in pairs:
        succs[u].append(v)
        has_pred[v] = True
    state = [_NEW] * count
    back: set[tuple[int, int]] = set()
    roots = [v for v in range(count) if not has_pred[v]] + [v for v in range(count) if has_pred[v]]
    for root in roots:
        if state[root] != _NEW:
            continue
        state[root] = _ACTIVE
        stack = [(root, iter(succs[root]))]
        while stack:
            u, todo = stack[-1]
            for v in todo:
                if state[v] == _ACTIVE:
                    back.add((u, v))
                elif state[v] == _NEW:
                    state[v] = _ACTIVE
                    stack.append((v, iter(succs[v])))
                    break
            else:
                state[u] = _DONE
                stack.pop()
    return back


def _assign_layers(count: int, pairs: list[tuple[int, int]]) -> list[int]:
    """Layer of each node in an acyclic graph: the length of the longest path reaching it."""
    succs: list[list[int]] = [[] for _ in range(count)]
    waiting = [0] * count
    for u, v in pairs:
        succs[u].append(v)
        waiting[v] += 1
    layer = [0] * count
    ready = deque(v for v in range(count) if not waiting[v])
    while ready:
        u = ready.popleft()
        for v in succs[u]:
            layer[v] = max(layer[v], layer[u] + 1)
            waiting[v] -= 1
            if not waiting[v]:
                ready.append(v)
    return layer


def _tighten_layers(layer: list[int], pairs: list[tuple[int, int]]) -> list[int]:
    """Move right each node with more out-edges than in-edges, as far as its successors allow."""
    # Moving a node d layers right lengthens its in-edges and shortens its out-edges by d each,
    # so it saves d * (outs - ins) virtual nodes; successors are settled first (right to left).
    succs: list[list[int]] = [[] for _ in layer]
    ins = [0] * len(layer)
    for u, v in pairs:
        succs[u].append(v)
        ins[v] += 1
    layer = list(layer)
    for v in sorted(range(len(layer)), key=layer.__getitem__, reverse=True):
        if len(succs[v]) > ins[v]:
            layer[v] = min(layer[s] for s in succs[v]) - 1
    return layer


def _components(count: int, pairs: list[tuple[int, int]]) -> list[int]:
    """Component number of each node: connected ones in input order, then isolated nodes."""
    parent = list(range(count))

    def find(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    linked = [False] * count
    for u, v in pairs:
        linked[u] = linked[v] = True
        parent[find(u)] = find(v)
    roots = [find(v) for v in range(count)]
    first: dict[int, int] = {}
    for v, root in enumerate(roots):
        first.setdefault(root, v)
    order = sorted(first, key=lambda root: (not linked[root], first[root]))
    number = {root: i for i, root in enumerate(order)}
    return [number[root] for root in roots]


def _insert_virtual_nodes(
    names: list[str], layer: list[int], laid: list[tuple[int, int, bool]], group: list[int]
) -> _Graph:
    """Split each edge spanning k > 1 layers into a chain through k - 1 virtual nodes."""
    layer, group = list(layer), list(group)
    preds: list[list[int]] = [[] for _ in names]
    succs: list[list[int]] = [[] for _ in names]
    keys: list[tuple[str, int, str, bool]] = [(name, 0, "", False) for name in names]
    chains = []
    for u, v, flipped in laid:
        nodes = [u]
        for k in range(layer[u] + 1, layer[v]):
            nodes.append(len(layer))
            layer.append(k)
            group.append(group[u])
            keys.append((names[u], 1, names[v], flipped))
            preds.append([])
            succs.append([])
        nodes.append(v)
        for a, b in pairwise(nodes):
            succs[a].append(b)
            preds[b].append(a)
        source, target = (names[v], names[u]) if flipped else (names[u], names[v])
        chains.append(_Chain(source, target, flipped, nodes))
    rank = [0] * len(keys)
    for i, v in enumerate(sorted(range(len(keys)), key=keys.__getitem__)):
        rank[v] = i
    return _Graph(names, layer, rank, group, preds, succs, chains)


def _order_layers(graph: _Graph, sweeps: int) -> list[list[int]]:
    """Order each layer by barycentre sweeps, keeping the order with the fewest crossings."""
    layers: list[list[int]] = [[] for _ in range(max(graph.layer, default=-1) + 1)]
    for v in sorted(range(len(graph.layer)), key=lambda v: (graph.group[v], graph.rank[v])):
        layers[graph.layer[v]].append(v)
    pos = [0] * len(graph.layer)
    _number(layers, pos)
    best, fewest = [list(layer) for layer in layers], _count_crossings(layers, graph.succs, pos)
    for _ in range(sweeps):
        if not fewest:
            break
        _sweep(layers, range(1, len(layers)), graph.preds, graph, pos)
        _sweep(layers, range(len(layers) - 2, -1, -1), graph.succs, graph, pos)
        crossings = _count_crossings(layers, graph.succs, pos)
        if crossings < fewest:
            best, fewest = [list(layer) for layer in layers], crossings
    return best


def _number(layers: list[list[int]], pos: list[int]) -> None:
    """Record each node's position within its layer."""
    for layer in layers:
        for i, v in enumerate(layer):
            pos[v] = i


def _sweep(
    layers: list[list[int]],
    direction: range,
    neighbours: list[list[int]],
    graph: _Graph,
    pos: list[int],
) -> None:
    """Sort each layer in `direction` by the mean position of its neighbours in the layer before."""

    def key(v: int) -> tuple[int, float, int]:
        around = neighbours[v]
        if len(around) == 1:  # every virtual node
            return graph.group[v], pos[around[0]], graph.rank[v]
        # a node with no neighbours there keeps its place
        middle = sum(pos[u] for u in around) / len(around) if around else float(pos[v])
        return graph.group[v], middle, graph.rank[v]

    for i in direction:
        layers[i].sort(key=key)
        for p, v in enumerate(layers[i]):
            pos[v] = p


def _count_crossings(layers: list[list[int]], succs: list[list[int]], pos: list[int]) -> int:
    """Edge crossings between adjacent layers: inversions of target positions in source order."""
    total = 0
    for layer in layers[:-1]:
        seen: list[int] = []
        for u in layer:
            targets = succs[u]
            if len(targets) > 1:
                # ascending, so edges sharing this source are never counted against each other
                targets = sorted(targets, key=pos.__getitem__)
            for v in targets:
                total += len(seen) - bisect_right(seen, pos[v])
                insort(seen, pos[v])
    return total


def _assign_y(
    graph: _Graph, layers: list[list[int]], heights: list[float], gap: float
) -> list[float]:
    """Vertical centre of every slot: stacked in order, then pulled towards its neighbours."""
    centers = [0.0] * len(heights)
    for layer in layers:
        top = 0.0
        for v in layer:
            centers[v] = top + heights[v] / 2
            top += heights[v] + gap
    down, up = layers[1:], layers[-2::-1]
    for _ in range(_PLACEMENT_PASSES):
        for direction, neighbours in ((down, graph.preds), (up, graph.succs)):
            for layer in direction:
                _pull_layer(layer, neighbours, heights, gap, centers)
    return centers


def _pull_layer(
    layer: list[int],
    neighbours: list[list[int]],
    heights: list[float],
    gap: float,
    centers: list[float],
) -> None:
    """Move a layer's slots as close as order and gaps allow to their neighbours' mean height."""
    # With offset[i] the least distance from the first centre to the i-th, centre - offset must
    # be non-decreasing: an isotonic least-squares fit of (wanted - offset).
    offsets, offset = [], 0.0
    for i, v in enumerate(layer):
        if i:
            offset += (heights[layer[i - 1]] + heights[v]) / 2 + gap
        offsets.append(offset)
    wanted = [
        sum(centers[u] for u in neighbours[v]) / len(neighbours[v]) if neighbours[v] else centers[v]
        for v in layer
    ]
    fitted = _fit_non_decreasing([w - o for w, o in zip(wanted, offsets, strict=True)])
    for v, z, o in zip(layer, fitted, offsets, strict=True):
        centers[v] = z + o


def _mean_center(around: list[int], centers: list[float], default: float) -> float:
    """The mean centre of `around`, or `default` when it is empty."""
    if len(around) == 1:  # every virtual node
        return centers[around[0]]
    return sum(centers[u] for u in around) / len(around) if around else default


def _fit_non_decreasing(values: list[float]) -> list[float]:
    """Least-squares non-decreasing fit of `values` (pool adjacent violators)."""
    means: list[float] = []
    sizes: list[int] = []
    for value in values:
        mean, size = value, 1
        while means and means[-1] > mean:
            before, count = means.pop(), sizes.pop()
            mean = (before * count + mean * size) / (count + size)
            size += count
        means.append(mean)
        sizes.append(size)
    fitted: list[float] = []
    for mean, size in zip(means, sizes, strict=True):
        fitted.extend([mean] * size)
    return fitted


def _route(
    chain: _Chain,
    left: Callable[[int], float],
    centers: list[float],
    shift: float,
    node_width: float,
) -> Path:
    """The polyline of one edge: across each virtual node's slot, then reversed if it was."""
    first, *middle, last = chain.nodes
    points = [(left(first) + node_width, centers[first] + shift)]
    for v in middle:
        y = centers[v] + shift
        points += [(left(v), y), (left(v) + node_width, y)]
    points.append((left(last), centers[last] + shift))
    if chain.reversed:
        points.reverse()
    return Path(chain.source, chain.target, tuple(points), chain.reversed)
