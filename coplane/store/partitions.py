"""Weekly range partitions of the PostgreSQL events table: created ahead, on demand, and dropped."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from coplane.store.dialects import Conn

WEEK = timedelta(days=7)
_EPOCH_MONDAY = datetime(2000, 1, 3, tzinfo=UTC)  # partitions start on Mondays, 00:00 UTC


def week_start(at: datetime) -> datetime:
    """The start of the partition that holds `at`."""
    weeks = (at.astimezone(UTC) - _EPOCH_MONDAY) // WEEK
    return _EPOCH_MONDAY + weeks * WEEK


def partition_name(start: datetime) -> str:
    """The table name of the partition starting at `start`."""
    return f"events_p{start:%Y%m%d}"


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of the events table."""

    name: str
    start: datetime
    end: datetime


def events_layout(conn: Conn) -> str:
    """How events are stored: 'partitioned', 'hypertable', or 'table' (SQLite)."""
    if conn.dialect == "sqlite":
        return "table"
    row = conn.one(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS ts, "
        "(SELECT relkind FROM pg_class WHERE oid = to_regclass('events')) AS relkind"
    )
    assert row is not None
    if row["relkind"] == "p":
        return "partitioned"
    return "hypertable" if row["ts"] else "table"


def list_partitions(conn: Conn) -> list[Partition]:
    """The events table's partitions, oldest first."""
    rows = conn.query(
        "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass('events') ORDER BY c.relname"
    )
    found = []
    for row in rows:
        name = str(row["name"])
        start = datetime.strptime(name.removeprefix("events_p"), "%Y%m%d").replace(tzinfo=UTC)
        found.append(Partition(name, start, start + WEEK))
    return found


class PartitionManager:
    """Makes sure a partition exists before events for its week are written."""

    def __init__(self) -> None:
        self._known: set[datetime] = set()
        self._lock = threading.Lock()

    def ensure(self, conn: Conn, times: Iterable[datetime]) -> None:
        """Create any missing partitions for `times`; cheap when they exist already."""
        needed = {week_start(t) for t in times} - self._known
        for start in sorted(needed):
            with self._lock:
                if start not in self._known:
                    create_partition(conn, start)
                    self._known.add(start)

    def forget_all(self) -> None:
        """Forget every partition, so the next write checks again."""
        with self._lock:
            self._known.clear()

    def forget(self, starts: Iterable[datetime]) -> None:
        """Drop cached knowledge of partitions that were removed."""
        with self._lock:
            self._known.difference_update(starts)


def create_partition(conn: Conn, start: datetime) -> None:
    """Create the partition for the week starting at `start`, if it is missing.

    Runs in its own transaction: creating a partition locks the parent table briefly,
    which must not be held while a batch of events is being written.
    """
    name = partition_name(start)
    sql = (
        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + WEEK).isoformat()}')"
    )
    # another writer or replica may have created it first
    with contextlib.suppress(psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation):
        conn.execute(sql)


def create_partitions_ahead(conn: Conn, now: datetime, weeks: int = 4) -> list[str]:
    """Create this week's partition and the next `weeks`; return their names."""
    first = week_start(now)
    names = []
    for i in range(weeks + 1):
        start = first + i * WEEK
        create_partition(conn, start)
        names.append(partition_name(start))
    return names


def drop_partitions_before(conn: Conn, cutoff: datetime) -> list[Partition]:
    """Drop every partition that ends at or before `cutoff`; return them."""
    dropped = []
    for part in list_partitions(conn):
        if part.end <= cutoff:
            conn.execute(f"DROP TABLE IF EXISTS {part.name}")
            dropped.append(part)
    return dropped
