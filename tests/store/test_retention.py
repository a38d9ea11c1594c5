"""Retention drops old raw events and keeps the derived rows; partitions are made ahead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coplane.store import Conn, Store
from coplane.store.events import EventFilter, insert_events, list_events
from coplane.store.partitions import list_partitions, partition_name, week_start
from coplane.store.retention import maintain_events
from tests.factories import event_dict, events

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _at(days_ago: int, name: str, run: str) -> dict[str, object]:
    return {
        **event_dict(name, "cron.export", run=run),
        "occurred": (NOW - timedelta(days=days_ago)).isoformat(),
    }


def test_old_events_go_derived_rows_stay(conn: Conn, store: Store) -> None:
    batch = events(
        _at(200, "run.started", "old"),
        _at(200, "run.completed", "old"),
        _at(1, "run.started", "new"),
    )
    insert_events(conn, batch, NOW, store.partitions)
    report = maintain_events(conn, store.layout, NOW, retention_days=90)
    left = list_events(conn, EventFilter(), 10)[0]
    assert [r["related"][0]["id"] for r in left] == ["new"]
    runs = {r["run_key"]: r["state"] for r in conn.query("SELECT run_key, state FROM runs")}
    assert runs == {"old": "completed", "new": "running"}
    if store.layout == "partitioned":
        assert report.partitions_dropped == [partition_name(week_start(NOW - timedelta(days=200)))]
        names = {p.name for p in list_partitions(conn)}
        assert partition_name(week_start(NOW + timedelta(weeks=4))) in names  # made ahead
    else:
        assert report.events_deleted == 2


def test_zero_retention_keeps_everything(conn: Conn, store: Store) -> None:
    insert_events(conn, events(_at(2000, "run.started", "ancient")), NOW, store.partitions)
    maintain_events(conn, store.layout, NOW, retention_days=0)
    assert len(list_events(conn, EventFilter(), 10)[0]) == 1


def test_writes_after_a_partition_was_dropped_elsewhere(conn: Conn, store: Store) -> None:
    insert_events(conn, events(_at(200, "run.started", "a")), NOW, store.partitions)
    # another replica's retention drops the partition this store remembers
    maintain_events(conn, store.layout, NOW, retention_days=90)
    # a late backfill for that week is still accepted, and its run completes
    result = insert_events(conn, events(_at(200, "run.completed", "a")), NOW, store.partitions)
    assert result.accepted == 1
    assert conn.query("SELECT state FROM runs") == [{"state": "completed"}]
