"""Skipping writes that change nothing is exact: stored runs equal the fold of all events; the
cache stays within its bounds, and what it forgets is written again rather than lost."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from coplane.events.derive import derive
from coplane.store import Store
from coplane.store.events import insert_events
from coplane.store.known import KnownRows
from tests.factories import event_dict, events

PIPE = "airflow.prod.sales"
NAMES = ["run.scheduled", "run.started", "run.heartbeat", "run.completed", "run.failed",
         "run.cancelled", "run.updated", "run.paused", "run.resumed"]  # fmt: skip


def _random_events(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for i in range(120):
        run = f"r{rng.randrange(6)}"
        task = rng.random() < 0.5
        related = (
            [{"role": "parent", "id": PIPE}, {"role": "parent_run", "id": run}] if task else []
        )
        out.append(event_dict(
            rng.choice(NAMES),
            f"{PIPE}.t{rng.randrange(3)}" if task else PIPE,
            minutes=rng.randrange(0, 90),
            run=f"{run}-t{i % 4}" if task else run,
            related=related,
            payload={"error": f"e{i}"} if rng.random() < 0.3 else {},
        ))  # fmt: skip
    return out


def _runs(store: Store) -> dict[Any, tuple[Any, ...]]:
    with store.connect() as conn:
        rows = conn.query(
            "SELECT id, state, state_at, error, scheduled, started, ended, parent_run FROM runs"
        )

    def text(v: Any) -> Any:
        return None if v is None else str(v)

    return {
        str(r["id"]): (r["state"], r["state_at"], r["error"], r["scheduled"], r["started"],
                       r["ended"], text(r["parent_run"]))
        for r in rows
    }  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stored_runs_equal_the_fold_of_all_events(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    sent = _random_events(rng)
    # send in random batches, in random order, with a third of them repeated
    stream = sent + rng.sample(sent, len(sent) // 3)
    rng.shuffle(stream)
    while stream:
        size = rng.randint(1, 30)
        batch, stream = stream[:size], stream[size:]
        store.writer.submit(events(*batch)).result(timeout=30)
    expected = {
        run.id: (run.state, run.state_at, run.error, run.scheduled, run.started, run.ended,
                 run.parent_run)
        for run in derive(events(*sent)).runs.values()
    }  # fmt: skip
    assert _runs(store) == expected


def run_events(first: int, count: int) -> list[dict[str, object]]:
    out = []
    for i in range(first, first + count):
        pipe = f"etl.p{i % 3}"
        out += [
            event_dict("run.started", pipe, run=f"r{i}", kind="pipeline"),
            event_dict("run.completed", pipe, run=f"r{i}", kind="pipeline", minutes=1),
        ]
    return out


def test_the_cache_keeps_its_newest_runs_within_the_bound() -> None:
    known = KnownRows(runs=50, resources=10, edges=10)
    for start in range(0, 1000, 100):
        known.remember(derive(events(*run_events(start, 100))))
    runs, resources, edges = known.sizes()
    assert runs <= 50 and resources <= 10 and edges <= 10
    newest = derive(events(*run_events(990, 10)))
    oldest = derive(events(*run_events(0, 10)))
    assert known.changes(newest).runs == {}  # still known: nothing to write
    assert len(known.changes(oldest).runs) == 10  # forgotten: written again


def test_a_forgotten_run_still_gets_its_end(store: Store) -> None:
    now = datetime.now(UTC)
    small = KnownRows(runs=5, resources=2, edges=2)
    batch = run_events(0, 40)
    # every run's end comes in a later batch than its start, after the start was forgotten
    starts = [e for e in batch if e["event"] == "run.started"]
    ends = [e for e in batch if e["event"] == "run.completed"]
    with store.connect() as conn:
        for chunk in (starts[:20], starts[20:], ends[:20], ends[20:]):
            insert_events(conn, events(*chunk), now, store.partitions, known=small)
        rows = conn.query("SELECT run_key, state FROM runs ORDER BY run_key")
    assert len(rows) == 40 and {r["state"] for r in rows} == {"completed"}
    assert small.sizes()[0] <= 5
