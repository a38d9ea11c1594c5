"""The layered graph layout: boxes never overlap, edges run between their boxes' sides and around
other boxes, cycles are broken, and the result is deterministic."""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from collections import defaultdict
from itertools import combinations, pairwise

import pytest

from coplane.web.layout import Box, Layout, Path, layered_layout

Edge = tuple[str, str]
EPS = 1e-6


def random_dag(rng: random.Random, n: int) -> tuple[list[str], list[Edge]]:
    """`n` nodes in a random order and edges that only ever go from a lower to a higher index,
    some of them spanning many layers."""
    names = [f"n{i:03d}" for i in range(n)]
    edges = {
        (names[a], names[b])
        for a in range(n)
        for b in rng.sample(range(a + 1, n), min(n - a - 1, rng.randrange(3)))
    }
    rng.shuffle(names)
    return names, sorted(edges)


def random_graph(rng: random.Random, n: int) -> tuple[list[str], list[Edge]]:
    """`n` nodes and edges in both directions, so with cycles (and the odd self-loop)."""
    names = [f"n{i:03d}" for i in range(n)]
    edges = [(rng.choice(names), rng.choice(names)) for _ in range(n * 3 // 2)]
    return names, edges


def overlap(a: Box, b: Box) -> bool:
    return (
        a.x < b.x + b.width - EPS
        and b.x < a.x + a.width - EPS
        and a.y < b.y + b.height - EPS
        and b.y < a.y + a.height - EPS
    )


def overlapping(layout: Layout) -> list[tuple[str, str]]:
    by_layer: dict[int, list[Box]] = defaultdict(list)
    for box in layout.boxes.values():
        by_layer[box.layer].append(box)
    assert len(by_layer) == len({b.x for b in layout.boxes.values()})  # one column per layer
    found = []
    for column in by_layer.values():
        column.sort(key=lambda b: b.y)
        found += [(a.id, b.id) for a, b in pairwise(column) if overlap(a, b)]
    return found


def inside(point: tuple[float, float], box: Box) -> bool:
    x, y = point
    return (
        box.x - EPS <= x <= box.x + box.width + EPS and box.y - EPS <= y <= box.y + box.height + EPS
    )


def cuts_through(start: tuple[float, float], end: tuple[float, float], box: Box) -> bool:
    """Whether the segment passes through the box's interior (Liang-Barsky clipping)."""
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    low, high = 0.0, 1.0
    for p, q in (
        (-dx, x0 - box.x - EPS),
        (dx, box.x + box.width - EPS - x0),
        (-dy, y0 - box.y - EPS),
        (dy, box.y + box.height - EPS - y0),
    ):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            low = max(low, t)
        else:
            high = min(high, t)
    return low < high


def right_middle(box: Box) -> tuple[float, float]:
    return box.x + box.width, box.y + box.height / 2


def left_middle(box: Box) -> tuple[float, float]:
    return box.x, box.y + box.height / 2


def check(layout: Layout, nodes: list[str], edges: list[Edge]) -> None:
    """Everything a drawable layout must satisfy, whatever the graph."""
    assert set(layout.boxes) == set(nodes) | {n for edge in edges for n in edge}
    assert overlapping(layout) == []
    for box in layout.boxes.values():
        assert box.x >= 16 - EPS and box.y >= 16 - EPS
        assert box.x + box.width <= layout.width - 16 + EPS
        assert box.y + box.height <= layout.height - 16 + EPS
    assert {(p.source, p.target) for p in layout.paths} == {(s, t) for s, t in edges if s != t}
    columns = Columns(layout)
    for path in layout.paths:
        source, target = layout.boxes[path.source], layout.boxes[path.target]
        xs = [x for x, _ in path.points]
        if path.reversed:
            # drawn in its own direction, leaving the source's left side for the target's right
            assert path.points[0] == pytest.approx(left_middle(source))
            assert path.points[-1] == pytest.approx(right_middle(target))
            assert all(a > b for a, b in pairwise(xs))
        else:
            assert path.points[0] == pytest.approx(right_middle(source))
            assert path.points[-1] == pytest.approx(left_middle(target))
            assert all(a < b for a, b in pairwise(xs))
        for point in path.points[1:-1]:
            assert not [b.id for b in columns.between(point[0], point[0]) if inside(point, b)]
        for start, end in pairwise(path.points):
            near = columns.between(*sorted((start[0], end[0])))
            assert not [b.id for b in near if cuts_through(start, end, b)], path


class Columns:
    """The boxes by column, to find those near a point or segment quickly."""

    def __init__(self, layout: Layout) -> None:
        by_x: dict[float, list[Box]] = defaultdict(list)
        for box in layout.boxes.values():
            by_x[box.x].append(box)
        self.xs = sorted(by_x)
        self.boxes = [by_x[x] for x in self.xs]
        self.width = max((b.width for b in layout.boxes.values()), default=0.0)

    def between(self, low: float, high: float) -> list[Box]:
        """Boxes in the columns that the x range [low, high] touches."""
        first = bisect_left(self.xs, low - self.width - EPS)
        last = bisect_right(self.xs, high + EPS)
        return [box for column in self.boxes[first:last] for box in column]


def crossings(layout: Layout) -> int:
    """Pairs of path segments that cross in the gap between two columns."""
    gaps: dict[float, list[tuple[float, float]]] = defaultdict(list)
    for path in layout.paths:
        for (x0, y0), (x1, y1) in pairwise(path.points):
            if x0 != x1:
                (left, y_left), (_, y_right) = sorted([(x0, y0), (x1, y1)])
                gaps[left].append((y_left, y_right))
    return sum(
        (a0 - b0) * (a1 - b1) < 0
        for segments in gaps.values()
        for (a0, a1), (b0, b1) in combinations(segments, 2)
    )


@pytest.mark.parametrize("seed", range(8))
def test_random_dags_are_drawn_left_to_right(seed: int) -> None:
    rng = random.Random(seed)
    nodes, edges = random_dag(rng, rng.randint(1, 300))
    layout = layered_layout(nodes, edges)
    check(layout, nodes, edges)
    assert not any(p.reversed for p in layout.paths)
    for source, target in edges:
        assert layout.boxes[source].layer < layout.boxes[target].layer


def test_long_edges_bend_around_the_boxes_they_pass() -> None:
    # a -> d passes two layers full of boxes
    nodes = ["a", "b", "c", "d", "p", "q", "r", "s"]
    edges = [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d"), ("p", "b"), ("q", "c"), ("r", "s")]
    layout = layered_layout(nodes, edges)
    check(layout, nodes, edges)
    long = next(p for p in layout.paths if (p.source, p.target) == ("a", "d"))
    assert len(long.points) == 2 + 2 * 2  # across each of the two layers between
    assert [b.layer for b in layout.boxes.values()][:4] == [0, 1, 2, 3]


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_with_cycles(seed: int) -> None:
    rng = random.Random(100 + seed)
    nodes, edges = random_graph(rng, rng.randint(1, 300))
    layout = layered_layout(nodes, edges)
    check(layout, nodes, edges)
    for path in layout.paths:
        source, target = layout.boxes[path.source], layout.boxes[path.target]
        assert (source.layer > target.layer) == path.reversed


@pytest.mark.parametrize(
    "edges",
    [
        [("a", "b"), ("b", "a")],
        [("a", "b"), ("b", "c"), ("c", "a")],
        [("x", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "y")],
    ],
)
def test_a_simple_cycle_has_one_reversed_edge(edges: list[Edge]) -> None:
    layout = layered_layout([], edges)
    check(layout, [], edges)
    assert sum(p.reversed for p in layout.paths) == 1


def test_self_loops_are_omitted() -> None:
    layout = layered_layout(["a"], [("a", "a"), ("a", "b")])
    assert list(layout.boxes) == ["a", "b"]
    assert [(p.source, p.target) for p in layout.paths] == [("a", "b")]
    assert layered_layout(["a"], [("a", "a")]).paths == ()


def test_one_big_cycle() -> None:
    nodes = [f"n{i:04d}" for i in range(1000)]
    edges = list(pairwise([*nodes, nodes[0]]))
    layout = layered_layout(nodes, edges)
    check(layout, nodes, edges)
    assert [(p.source, p.target) for p in layout.paths if p.reversed] == [("n0999", "n0000")]
    assert [b.layer for b in layout.boxes.values()] == list(range(1000))


def test_a_long_chain_is_not_recursed_along() -> None:
    nodes = [f"n{i:05d}" for i in range(10_000)]
    edges = list(pairwise(nodes))
    layout = layered_layout(list(reversed(nodes)), edges)
    assert overlapping(layout) == []
    assert not any(p.reversed for p in layout.paths)
    assert [layout.boxes[n].layer for n in nodes] == list(range(10_000))
    assert len({b.y for b in layout.boxes.values()}) == 1  # a straight line


def test_duplicate_edges_merge_and_edge_only_nodes_are_added() -> None:
    layout = layered_layout(["b"], [("a", "b"), ("a", "b"), ("b", "c")])
    assert list(layout.boxes) == ["b", "a", "c"]
    assert [(p.source, p.target) for p in layout.paths] == [("b", "c"), ("a", "b")]


def test_isolated_nodes_and_components_are_placed_apart() -> None:
    nodes = ["lonely", "x", "b", "a", "y", "z", "alone"]
    edges = [("a", "y"), ("b", "x"), ("x", "z"), ("y", "z")]  # {a, b, x, y, z} and {lonely, alone}
    edges += [("c", "y"), ("d", "e")]  # joining the first, and a third
    layout = layered_layout(nodes, edges)
    check(layout, nodes, edges)
    assert layout.boxes["lonely"].layer == layout.boxes["alone"].layer == 0
    # in every column, one component's boxes all sit above the next one's (isolated ones last)
    order = {n: 0 for n in "abcxyz"} | {"d": 1, "e": 1, "lonely": 2, "alone": 2}
    for layer in {b.layer for b in layout.boxes.values()}:
        column = sorted((b for b in layout.boxes.values() if b.layer == layer), key=lambda b: b.y)
        assert [order[b.id] for b in column] == sorted(order[b.id] for b in column)


def test_same_graph_in_another_edge_order_gives_the_same_layout() -> None:
    rng = random.Random(7)
    nodes, edges = random_graph(rng, 120)
    shuffled = list(edges)
    rng.shuffle(shuffled)
    first, second = layered_layout(nodes, edges), layered_layout(nodes, shuffled)
    assert list(first.boxes.items()) == list(second.boxes.items())
    assert first == second


def test_empty_graph_is_just_the_margins() -> None:
    layout = layered_layout([], [], margin=10)
    assert layout == Layout({}, (), 20.0, 20.0)


def test_one_node_fills_the_margins() -> None:
    layout = layered_layout(["a"], [], node_width=100, node_height=30, margin=10)
    assert layout == Layout({"a": Box("a", 10, 10, 100, 30, 0)}, (), 120, 50)


def test_layers_are_spaced_by_the_given_sizes() -> None:
    layout = layered_layout(["a", "b", "c"], [("a", "b"), ("a", "c")], layer_gap=50, node_gap=8)
    a, b, c = layout.boxes.values()
    assert (a.x, b.x, c.x) == (16, 16 + 180 + 50, 16 + 180 + 50)
    assert abs(b.y - c.y) == 36 + 8
    assert a.y + 18 == pytest.approx((b.y + c.y) / 2 + 18)  # centred on its two successors
    assert layout.width == 16 + 180 + 50 + 180 + 16
    assert layout.height == 16 + 36 + 8 + 36 + 16
    assert layout.paths == (
        Path("a", "b", (right_middle(a), left_middle(b)), reversed=False),
        Path("a", "c", (right_middle(a), left_middle(c)), reversed=False),
    )


def test_crossings_are_removed() -> None:
    nodes = ["a", "b", "x", "y"]
    edges = [("a", "y"), ("b", "x"), ("a", "x")]
    assert crossings(layered_layout(nodes, edges, sweeps=0)) == 1  # a -> y and b -> x cross
    assert crossings(layered_layout(nodes, edges)) == 0


def test_crossings_are_removed_over_several_layers() -> None:
    # three parallel chains from one root, whose layers in name order are each other's mirror
    edges = [("a", "z1"), ("z1", "m3"), ("b", "y2"), ("y2", "m2"), ("c", "x3"), ("x3", "m1")]
    edges += [("r", "a"), ("r", "b"), ("r", "c")]
    nodes = sorted({n for edge in edges for n in edge})
    assert crossings(layered_layout(nodes, edges, sweeps=0)) == 3
    layout = layered_layout(nodes, edges)
    check(layout, nodes, edges)
    assert crossings(layout) == 0


@pytest.mark.parametrize("seed", range(4))
def test_sweeps_never_add_crossings(seed: int) -> None:
    rng = random.Random(200 + seed)
    nodes, edges = random_dag(rng, 80)
    assert crossings(layered_layout(nodes, edges)) <= crossings(
        layered_layout(nodes, edges, sweeps=0)
    )
