"""Keeping the events and logs tables bounded: partitions made ahead, old rows dropped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from coplane.store.dialects import Conn
from coplane.store.logs import delete_logs_before
from coplane.store.partitions import create_partitions_ahead, drop_partitions_before


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one maintenance pass did."""

    partitions_created: list[str]
    partitions_dropped: list[str]
    events_deleted: int


def maintain_events(
    conn: Conn, layout: str, now: datetime, retention_days: int
) -> MaintenanceReport:
    """Create the coming weeks' partitions and drop raw events older than `retention_days`.

    Derived tables (runs, assets, lineage) are kept: retention bounds the raw event log only.
    On PostgreSQL whole weekly partitions are dropped, so an event is kept up to a week longer
    than the retention; on SQLite rows are deleted exactly.
    """
    created: list[str] = []
    dropped: list[str] = []
    deleted = 0
    if layout == "partitioned":
        created = create_partitions_ahead(conn, now)
    cutoff = now - timedelta(days=retention_days) if retention_days > 0 else None
    if cutoff is not None:
        if layout == "partitioned":
            dropped = [p.name for p in drop_partitions_before(conn, cutoff)]
        elif layout == "hypertable":
            rows = conn.query("SELECT drop_chunks('events', older_than => ?) AS chunk", (cutoff,))
            dropped = [str(r["chunk"]) for r in rows]
        else:
            with conn.transaction():
                deleted = conn.execute(
                    "DELETE FROM events WHERE occurred < ?", (conn.time(cutoff),)
                )
    return MaintenanceReport(created, dropped, deleted)


def maintain_logs(conn: Conn, now: datetime, retention_days: int) -> int:
    """Drop run log lines older than `retention_days` (0 keeps them); how many went."""
    if retention_days <= 0:
        return 0
    return delete_logs_before(conn, now - timedelta(days=retention_days))
