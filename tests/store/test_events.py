"""Writing and reading events on SQLite and PostgreSQL: idempotent, atomic, derived rows agree."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coplane.events.derive import run_uuid
from coplane.events.model import Event
from coplane.store import Conn, Store, migrate, open_store
from coplane.store.errors import DatabaseUnavailable
from coplane.store.events import (
    COPY_MIN_EVENTS,
    EventFilter,
    InsertResult,
    insert_event_batches,
    insert_events,
    list_events,
)
from coplane.store.migrate import upgrade_schema
from coplane.store.runs import read_run
from coplane.store.writer import EventWriter
from tests.factories import at, event_dict, events

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PIPE = "airflow.prod.sales"


def _count(conn: Conn) -> int:
    row = conn.one("SELECT count(*) AS n FROM events")
    assert row is not None
    return int(row["n"])


@pytest.mark.parametrize("size", [5, COPY_MIN_EVENTS, 300])  # both PostgreSQL write paths
def test_same_batch_twice_is_stored_once(conn: Conn, store: Store, size: int) -> None:
    batch = [event_dict("run.started", PIPE, minutes=i, run=f"r{i}") for i in range(size)]
    first = insert_events(conn, events(*batch), NOW, store.partitions)
    again = insert_events(conn, events(*batch), NOW, store.partitions)
    assert (first.accepted, first.duplicates) == (size, 0)
    assert (again.accepted, again.duplicates) == (0, size)
    assert _count(conn) == size
    [row] = list_events(conn, EventFilter(resource=PIPE), 1)[0]
    assert row["related"] == [{"id": f"r{size - 1}", "role": "run"}]
    assert row["payload"] == {}


def test_duplicate_inside_one_batch_counts_once(conn: Conn, store: Store) -> None:
    e = event_dict("run.started", PIPE, run="r1")
    result = insert_events(conn, events(e, e, e), NOW, store.partitions)
    assert (result.accepted, result.duplicates) == (1, 2)


def test_grouped_batches_are_counted_per_batch(conn: Conn, store: Store) -> None:
    shared = event_dict("run.started", PIPE, run="r1")
    a = events(shared, event_dict("run.started", PIPE, run="r2"))
    b = events(shared, event_dict("run.started", PIPE, run="r3"))
    ra, rb = insert_event_batches(conn, [a, b], NOW, store.partitions)
    assert (ra.accepted, ra.duplicates, rb.accepted, rb.duplicates) == (2, 0, 1, 1)
    assert _count(conn) == 3


def test_server_assigns_ids_when_absent(conn: Conn, store: Store) -> None:
    raw = event_dict("run.started", PIPE, run="r1")
    del raw["id"]
    batch = events(raw, raw)
    assert insert_events(conn, batch, NOW, store.partitions).accepted == 2
    assert len({e.id for e in batch}) == 2


def test_a_rejected_duplicate_does_not_change_derived_rows(conn: Conn, store: Store) -> None:
    started = event_dict("run.started", PIPE, minutes=0, run="r1")
    insert_events(conn, events(started), NOW, store.partitions)
    # same id re-sent with other content: the stored event wins, the run is untouched
    forged = {**started, "event": "run.failed"}
    assert insert_events(conn, events(forged), NOW, store.partitions).duplicates == 1
    assert read_run(conn, run_uuid(PIPE, "r1"))["state"] == "running"


@pytest.mark.parametrize("size", [1, COPY_MIN_EVENTS])  # both PostgreSQL write paths
def test_an_id_sent_first_elsewhere_suppresses_nothing(
    conn: Conn, store: Store, size: int
) -> None:
    """Another producer learns (or predicts) the id of tomorrow's failure and sends it first,
    for another resource, or for the same one at another time: the real failure still counts."""
    ids = [uuid.uuid4() for _ in range(size)]
    real = [
        event_dict("run.failed", PIPE, minutes=60 * 24, run=f"r{i}", id=i_d)
        for i, i_d in enumerate(ids)
    ]
    squats = [
        *(event_dict("run.heartbeat", "cron.other", run="x", id=i_d) for i_d in ids),
        *(event_dict("run.heartbeat", PIPE, minutes=1, run="x", id=i_d) for i_d in ids),
    ]
    assert insert_events(conn, events(*squats), NOW, store.partitions).accepted == 2 * size
    stored = insert_events(conn, events(*real), NOW, store.partitions)
    assert (stored.accepted, stored.duplicates) == (size, 0)
    assert read_run(conn, run_uuid(PIPE, "r0"))["state"] == "failed"
    again = insert_events(conn, events(*real), NOW, store.partitions)  # a retry is still one
    assert (again.accepted, again.duplicates) == (0, size)
    assert _count(conn) == 3 * size


def test_completed_before_started_across_batches(conn: Conn, store: Store) -> None:
    insert_events(
        conn, events(event_dict("run.completed", PIPE, minutes=10, run="r1")), NOW, store.partitions
    )
    insert_events(
        conn, events(event_dict("run.started", PIPE, minutes=2, run="r1")), NOW, store.partitions
    )
    rows = conn.query("SELECT state, started, ended FROM runs")
    assert rows == [{"state": "completed", "started": at(2), "ended": at(10)}]


def test_late_running_event_does_not_reopen_a_finished_run(conn: Conn, store: Store) -> None:
    for e in (
        event_dict("run.started", PIPE, minutes=0, run="r1"),
        event_dict("run.failed", PIPE, minutes=5, run="r1", payload={"error": {"message": "x"}}),
        event_dict("run.heartbeat", PIPE, minutes=4, run="r1"),
    ):
        insert_events(conn, events(e), NOW, store.partitions)
    run = read_run(conn, run_uuid(PIPE, "r1"))
    assert (run["state"], run["ended"], run["error"]) == ("failed", at(5), "x")


def test_concurrent_overlapping_batches_store_each_event_once(store: Store) -> None:
    pool = [event_dict("run.started", f"{PIPE}{i % 7}", minutes=i, run=f"r{i}") for i in range(600)]
    # six writers send overlapping windows of the same events at the same time
    windows = [pool[i * 80 : i * 80 + 200] for i in range(6)]
    results: list[int] = []
    lock = threading.Lock()

    def send(window: list[dict[str, object]]) -> None:
        for start in range(0, len(window), 50):
            r = store.writer.submit(events(*window[start : start + 50])).result(timeout=60)
            with lock:
                results.append(r.accepted)

    threads = [threading.Thread(target=send, args=(w,)) for w in windows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with store.connect() as conn:
        assert _count(conn) == 600
        runs = conn.query("SELECT count(*) AS n FROM runs")[0]["n"]
    assert sum(results) == 600
    assert runs == 600


def test_a_failed_batch_stores_nothing(conn: Conn, store: Store) -> None:
    good = event_dict("run.started", PIPE, run="r1")
    bad = event_dict("run.started", PIPE, run="r2")
    batch = events(good, bad)
    batch[1].payload = {"unencodable": object()}  # the write fails after the first event
    with pytest.raises(TypeError):
        insert_events(conn, batch, NOW, store.partitions)
    assert _count(conn) == 0
    assert conn.query("SELECT id FROM runs") == []


def test_filters_and_pages(conn: Conn, store: Store) -> None:
    batch = [
        event_dict(
            "run.started", PIPE, minutes=1, run="r1", related=[{"role": "output", "id": "wh.sales"}]
        ),
        event_dict("run.completed", PIPE, minutes=2, run="r1"),
        event_dict(
            "asset.updated", "wh.sales", minutes=3, related=[{"role": "producer", "id": PIPE}]
        ),
        event_dict("run_x.custom", PIPE, minutes=4),
    ]
    insert_events(conn, events(*batch), NOW, store.partitions)

    def names(f: EventFilter) -> list[str]:
        return [r["event"] for r in list_events(conn, f, 100)[0]]

    assert names(EventFilter()) == ["run_x.custom", "asset.updated", "run.completed", "run.started"]
    assert names(EventFilter(event="run.*")) == ["run.completed", "run.started"]
    assert names(EventFilter(event="asset.updated")) == ["asset.updated"]
    assert names(EventFilter(resource="wh.sales")) == ["asset.updated"]
    assert names(EventFilter(related="wh.sales")) == ["run.started"]
    assert names(EventFilter(since=at(2), until=at(4))) == ["asset.updated", "run.completed"]
    assert names(EventFilter(run_id=run_uuid(PIPE, "r1"))) == ["run.completed", "run.started"]

    seen, cursor = [], None
    while True:
        rows, cursor = list_events(conn, EventFilter(), 1, cursor)
        seen += [r["event"] for r in rows]
        if cursor is None:
            break
    assert seen == names(EventFilter())


def test_bad_cursor_is_a_value_error(conn: Conn) -> None:
    with pytest.raises(ValueError, match="cursor"):
        list_events(conn, EventFilter(), 10, "not-a-cursor")


def test_events_survive_reopening(db_url: str) -> None:
    first = open_store(db_url, pool_size=2)
    batch = [event_dict("run.started", PIPE, minutes=i, run=f"r{i}") for i in range(20)]
    assert first.writer.submit(events(*batch)).result(timeout=30).accepted == 20
    first.close()
    second = open_store(db_url, pool_size=2)
    try:
        with second.connect() as conn:
            assert _count(conn) == 20
            assert upgrade_schema(conn) == []  # nothing left to migrate
    finally:
        second.close()


def test_events_far_apart_in_time_are_all_stored(conn: Conn, store: Store) -> None:
    times = [NOW - timedelta(days=400), NOW, NOW + timedelta(days=30)]
    batch = [
        {**event_dict("run.started", PIPE, run=str(i)), "occurred": t.isoformat()}
        for i, t in enumerate(times)
    ]
    assert insert_events(conn, events(*batch), NOW, store.partitions).accepted == 3
    stored = sorted(r["occurred"] for r in list_events(conn, EventFilter(), 10)[0])
    assert stored == times


def test_ids_are_uuids(conn: Conn, store: Store) -> None:
    insert_events(conn, events(event_dict("run.started", PIPE, run="r")), NOW, store.partitions)
    [row] = list_events(conn, EventFilter(), 1)[0]
    assert isinstance(row["id"], uuid.UUID)


def test_one_failing_batch_does_not_fail_those_grouped_with_it(store: Store) -> None:
    """Group commit writes several requests in one transaction; a bad one fails alone."""
    writer = EventWriter(store.db, store.partitions, threads=0)
    good = events(*[event_dict("run.started", PIPE, run=f"g{i}") for i in range(3)])
    bad = events(event_dict("run.started", PIPE, run="b"))
    bad[0].payload = {"unencodable": object()}
    futures = [writer.submit(good[:2]), writer.submit(bad), writer.submit(good[2:])]
    writer.write_pending()  # all three as one group
    outcomes: list[object] = []
    for f in futures:
        try:
            outcomes.append(f.result(timeout=30).accepted)
        except TypeError:
            outcomes.append("failed")
    assert outcomes == [2, "failed", 1]
    with store.connect() as conn:
        assert _count(conn) == 3


def test_a_failing_commit_listener_does_not_break_ingest(store: Store) -> None:
    heard = threading.Event()
    touched: list[set[str]] = []

    def broken(resources: set[str]) -> None:
        raise RuntimeError("listener bug")

    def listener(resources: set[str]) -> None:
        touched.append(resources)
        heard.set()

    store.writer.add_listener(broken)
    store.writer.add_listener(listener)
    result = store.writer.submit(events(event_dict("run.started", PIPE, run="r1")))
    assert result.result(timeout=30).accepted == 1
    assert heard.wait(timeout=30)  # the next listener still ran
    assert PIPE in touched[0]  # it hears which resources the events name
    # and the writer keeps writing
    assert (
        store.writer.submit(events(event_dict("run.started", PIPE, run="r2"))).result(30).accepted
    )


def test_an_unreachable_database_fails_a_group_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every batch of the group fails with the first attempt, rather than each batch waiting
    for a connection again on its own."""
    writer = EventWriter(store.db, store.partitions, threads=0)
    attempts: list[int] = []

    def unreachable(batches: list[list[Event]]) -> list[InsertResult]:
        attempts.append(len(batches))
        raise DatabaseUnavailable("the database cannot be reached")

    monkeypatch.setattr(writer, "_insert", unreachable)
    batches = [events(event_dict("run.started", PIPE, run=f"u{i}")) for i in range(3)]
    futures = [writer.submit(b) for b in batches]
    writer.write_pending()
    for f in futures:
        with pytest.raises(DatabaseUnavailable):
            f.result(timeout=30)
    assert attempts == [3]


@pytest.mark.parametrize(
    "dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def test_events_stored_before_the_dedup_key_changed_are_kept(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'old.sqlite'}"
        if dialect == "sqlite"
        else request.getfixturevalue("own_database")
    )
    shipped = migrate.list_migrations
    monkeypatch.setattr(migrate, "list_migrations", lambda d: shipped(d)[:8])  # as of 0008
    old_store = open_store(url, pool_size=1)
    try:
        with old_store.connect() as conn:
            old = event_dict("run.started", PIPE, run="r1")
            insert_events(conn, events(old), NOW, old_store.partitions)
            # 0009 alone, the migration that changed the key (later ones are other features')
            monkeypatch.setattr(migrate, "list_migrations", lambda d: shipped(d)[:9])
            assert [m.version for m in upgrade_schema(conn)] == [9]
            assert _count(conn) == 1
            assert insert_events(conn, events(old), NOW, old_store.partitions).duplicates == 1
            other = {**old, "resource": {"id": "cron.other"}}
            assert insert_events(conn, events(other), NOW, old_store.partitions).accepted == 1
    finally:
        old_store.close()
