"""The coplane run each OpenLineage runId names: fixed by the first event that named it.

OpenLineage identifies a run by its runId alone; which facets an event carries varies by
producer and event type (Airflow's provider puts the DAG run's `run_id` on its START and,
in older releases, not on its COMPLETE). The name coplane gives a run is kept here, so an
event that cannot name its run itself still lands on it, in any process of any replica.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from coplane.store.dialects import Conn


@dataclass(frozen=True, slots=True)
class RunName:
    """A run as coplane names it: its pipeline (or task) resource, name, kind and run key."""

    pipeline: str
    run_key: str
    name: str
    kind: str


_COLUMNS = ("run_id", "pipeline", "run_key", "name", "kind")
MAX_CACHED = 50_000  # runs whose name this process remembers (a run's events come close)


class RunNameCache:
    """Names this process read from the table. A stored name never changes, so a runId
    found here needs no query; the oldest are forgotten first past `size`."""

    def __init__(self, size: int = MAX_CACHED) -> None:
        self._size = size
        self._names: dict[str, RunName] = {}
        self._lock = threading.Lock()

    def get(self, run_id: str) -> RunName | None:
        """The stored name of `run_id`, if this process has read it."""
        return self._names.get(run_id)

    def remember(self, names: Mapping[str, RunName]) -> None:
        """Keep names just read from the table."""
        with self._lock:
            self._names.update(names)
            excess = len(self._names) - self._size
            if excess > 0:
                for run_id in list(islice(self._names, excess + self._size // 10)):
                    del self._names[run_id]


def claim_run_names(
    conn: Conn, claims: Mapping[str, RunName], others: Iterable[str], at: datetime
) -> dict[str, RunName]:
    """The name of each runId of `claims` and `others`: the one stored before, else for one
    of `claims` the name claimed now (`others` are only looked up)."""
    ids = sorted(claims)  # one lock order for concurrent writers
    wanted = sorted(set(ids).union(others))
    if not wanted:
        return {}
    names = ", ".join(_COLUMNS)
    with conn.transaction():
        if ids:
            conn.executemany(
                f"INSERT INTO openlineage_runs ({names}, first_seen) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
                [(*_row(run_id, claims[run_id]), conn.time(at)) for run_id in ids],
            )
        rows = conn.query(
            f"SELECT {names} FROM openlineage_runs "
            f"WHERE run_id IN ({', '.join('?' * len(wanted))})",
            wanted,
        )
    return {r["run_id"]: RunName(*(r[c] for c in _COLUMNS[1:])) for r in rows}


def _row(run_id: str, c: RunName) -> tuple[object, ...]:
    return (run_id, c.pipeline, c.run_key, c.name, c.kind)
