"""Skipping writes that change nothing is exact: stored runs equal the fold of all events."""

from __future__ import annotations

import random
from typing import Any

import pytest

from coplane.events.derive import derive
from coplane.store import Store
from tests.factories import event_dict, events

PIPE = "airflow.prod.sales"
NAMES = ["run.scheduled", "run.started", "run.heartbeat", "run.completed", "run.failed",
         "run.cancelled", "run.updated"]  # fmt: skip


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
