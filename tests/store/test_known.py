"""Skipping writes that change nothing is exact: stored runs equal the fold of all events; the
cache stays within its bounds, and what it forgets is written again rather than lost."""

from __future__ import annotations

import json
import random
import uuid
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


def _resource_events(rng: random.Random, prefix: str) -> list[dict[str, Any]]:
    """Jobs described with random labels, and mentioned bare as other jobs' parents."""
    out = []
    for i in range(200):
        job = f"{prefix}job{rng.randrange(20)}"
        # a job's own events carry its labels, or sometimes none (a facet left out); seconds
        # apart, as a DAG's tasks and its own events are
        labels = {"owners": job.removeprefix(prefix), "team": "t"} if rng.random() < 0.7 else {}
        event = event_dict("run.completed", job, minutes=rng.randrange(0, 600) / 10, run=f"r{i}")
        event["resource"]["labels"] = labels
        if rng.random() < 0.4:  # a task of another job names it as its parent, without labels
            parent = f"{prefix}job{rng.randrange(20)}"
            event["related"] += [
                {"role": "parent", "id": parent},
                {"role": "parent_run", "id": "p"},
            ]
        out.append(event)
    return out


def _resources(store: Store, prefix: str) -> dict[str, tuple[Any, ...]]:
    with store.connect() as conn:
        rows = conn.query(
            "SELECT id, kind, name, labels, source, parent, first_seen FROM resources"
        )
    return {
        r["id"].removeprefix(prefix): (r["kind"], r["name"], r["labels"], r["source"],
                                       (r["parent"] or "").removeprefix(prefix), r["first_seen"])
        for r in rows
        if r["id"].startswith(prefix)
    }  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_cache_writes_what_the_store_would_store_without_it(store: Store, seed: int) -> None:
    # The same events, in the same random order and batches, written once through a small
    # cache (which forgets, as after a restart) and once with no cache: the rows must match.
    rng = random.Random(seed)
    sent = _resource_events(rng, "")
    stream = sent + rng.sample(sent, len(sent) // 3)
    rng.shuffle(stream)
    batches = []
    while stream:
        size = rng.randint(1, 3)
        batches.append(stream[:size])
        stream = stream[size:]
    now = datetime.now(UTC)
    cached = KnownRows()
    with store.connect() as conn:
        for batch in batches:
            for prefix, known in (("c:", cached), ("n:", None)):
                copies = []
                for e in batch:
                    copy = json.loads(json.dumps(e))
                    copy["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, prefix + e["id"]))
                    copy["resource"]["id"] = prefix + copy["resource"]["id"]
                    for rel in copy["related"]:
                        if rel["role"] == "parent":
                            rel["id"] = prefix + rel["id"]
                    copies.append(copy)
                insert_events(conn, events(*copies), now, store.partitions, known=known)
    with_cache, without = _resources(store, "c:"), _resources(store, "n:")
    assert with_cache == without
    assert any(row[2] for row in without.values())  # labels were stored at all


def test_a_job_first_seen_as_a_parent_gets_the_labels_of_its_own_events(store: Store) -> None:
    now = datetime.now(UTC)
    own = {"owners": "data-team"}
    parent = [{"role": "parent", "id": "dag"}, {"role": "parent_run", "id": "r"}]
    task = event_dict("run.started", "dag.t", minutes=0.1, run="r/t", related=parent)
    start = event_dict("run.started", "dag", minutes=0, run="r")
    complete = event_dict("run.completed", "dag", minutes=0.5, run="r")
    start["resource"]["labels"] = complete["resource"]["labels"] = own
    known = KnownRows()
    with store.connect() as conn:
        for event in (task, start, complete):  # the DAG's START arrives after its task's
            insert_events(conn, events(event), now, store.partitions, known=known)
        row = conn.one("SELECT labels FROM resources WHERE id = 'dag'")
    assert row is not None and row["labels"] == own
