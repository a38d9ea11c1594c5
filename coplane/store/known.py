"""What this process committed to the derived tables, so that writes changing nothing are skipped.

Every batch mentions the same pipelines, tasks, assets and edges again, and upserting them
again made concurrent writers queue on those rows' locks. The cache holds committed rows
only (filled after commit), and the stored row is a join over every write, so a row whose
join with the cached one leaves it unchanged cannot change the stored one: skipping it is
exact. Only `last_seen` of resources and edges is coarsened: it is written when it moves
by at least TOUCH.

Each cache is bounded and forgets its oldest entries first (a dict keeps insertion order),
so memory levels off once it is full instead of growing until a wholesale clear. Runs are
many and short-lived (a run's events come within minutes), so their cache is the smallest;
pipelines, tasks, assets and edges are fewer and seen again and again. Forgetting an entry
only costs a write that changes nothing.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from itertools import islice
from typing import Any

from coplane.events.derive import Derived, EdgeRow, ResourceRow, RunRow

TOUCH = timedelta(minutes=1)
MAX_RUNS = 20_000  # about a minute of runs at 1,000 events a second
MAX_RESOURCES = 100_000
MAX_EDGES = 100_000


class KnownRows:
    """Bounded per-process caches of committed runs, resources and edges."""

    def __init__(
        self, runs: int = MAX_RUNS, resources: int = MAX_RESOURCES, edges: int = MAX_EDGES
    ) -> None:
        self._caps = (runs, resources, edges)
        self._runs: dict[str, RunRow] = {}
        self._resources: dict[str, ResourceRow] = {}
        self._edges: dict[tuple[str, str], EdgeRow] = {}
        self._lock = threading.Lock()

    def changes(self, d: Derived) -> Derived:
        """The part of `d` that would change what is stored (assets and checks pass through)."""
        out = Derived(assets=d.assets, checks=d.checks)
        for run_id, run in d.runs.items():
            known = self._runs.get(run_id)
            if known is None or _merged(known, run) != known:
                out.runs[run_id] = run
        for rid, res in d.resources.items():
            known_res = self._resources.get(rid)
            if known_res is None or not _resource_unchanged(known_res, res):
                out.resources[rid] = res
        for pair, edge in d.edges.items():
            known_edge = self._edges.get(pair)
            if (
                known_edge is None
                or edge.first_seen < known_edge.first_seen
                or edge.last_seen - known_edge.last_seen >= TOUCH
            ):
                out.edges[pair] = edge
        return out

    def remember(self, written: Derived) -> None:
        """Record rows just committed (merged into what was known)."""
        with self._lock:
            for run_id, run in written.runs.items():
                known = self._runs.get(run_id)
                # rows of `written` are not used again by the writer: keep them, no copy
                self._runs[run_id] = run if known is None else _merged(known, run)
            for rid, res in written.resources.items():
                known_res = self._resources.get(rid)
                if known_res is None:
                    self._resources[rid] = res
                else:
                    merged = known_res.copy()
                    merged.merge(res)
                    self._resources[rid] = merged
            for pair, edge in written.edges.items():
                known_edge = self._edges.get(pair)
                if known_edge is None:
                    self._edges[pair] = edge
                else:
                    self._edges[pair] = EdgeRow(
                        edge.source,
                        edge.target,
                        min(edge.first_seen, known_edge.first_seen),
                        max(edge.last_seen, known_edge.last_seen),
                    )
            _trim(self._runs, self._caps[0])
            _trim(self._resources, self._caps[1])
            _trim(self._edges, self._caps[2])

    def sizes(self) -> tuple[int, int, int]:
        """How many runs, resources and edges are cached."""
        return len(self._runs), len(self._resources), len(self._edges)


def _trim(rows: dict[Any, Any], cap: int) -> None:
    """Forget the oldest entries beyond `cap`, and a tenth more, so that trimming is rare."""
    excess = len(rows) - cap
    if excess > 0:
        for key in list(islice(rows, excess + cap // 10)):
            del rows[key]


def _merged(known: RunRow, run: RunRow) -> RunRow:
    merged = known.copy()
    merged.merge(run)
    return merged


def _resource_unchanged(known: ResourceRow, res: ResourceRow) -> bool:
    merged = known.copy()
    merged.merge(res)
    moved = merged.last_seen - known.last_seen
    merged.last_seen = known.last_seen
    return merged == known and moved < TOUCH
