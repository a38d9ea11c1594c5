"""The schema, migrations and every query; SQLite and PostgreSQL (+TimescaleDB) backends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from coplane.store.dialects import Conn, Database
from coplane.store.errors import Conflict, DatabaseUnavailable, NotFound, StoreError
from coplane.store.known import KnownRows
from coplane.store.migrate import upgrade_schema
from coplane.store.openlineage_runs import RunNameCache
from coplane.store.partitions import PartitionManager, events_layout
from coplane.store.writer import EventWriter

__all__ = [
    "Conflict",
    "Conn",
    "DatabaseUnavailable",
    "NotFound",
    "Store",
    "StoreError",
    "open_store",
]


@dataclass(slots=True)
class Store:
    """An open database with its schema up to date, and the event writer in front of it."""

    db: Database
    layout: str  # 'partitioned', 'hypertable' or 'table'
    partitions: PartitionManager | None
    writer: EventWriter
    run_names: RunNameCache = field(default_factory=RunNameCache)  # OpenLineage runs' names

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @contextmanager
    def connect(self, timeout: float | None = None) -> Iterator[Conn]:
        """A connection for reads and small writes; DatabaseUnavailable after `timeout` s."""
        with self.db.connect(timeout) as conn:
            yield conn

    def close(self) -> None:
        """Flush the writer and close every connection."""
        self.writer.close()
        self.db.close()


def open_store(
    url: str, *, pool_size: int = 10, writers: int | None = None, timeout: float = 10.0
) -> Store:
    """Open `url`, apply pending migrations, and start the event writer."""
    db = Database(url, pool_size=pool_size, timeout=timeout)
    try:
        with db.connect() as conn:
            upgrade_schema(conn)
            layout = events_layout(conn)
    except BaseException:
        db.close()
        raise
    partitions = PartitionManager() if layout == "partitioned" else None
    if writers is None:
        # measured: two writers fill PostgreSQL's commit groups best on 2 cores; more writers
        # only split the same requests into smaller groups, each paying its own WAL flush
        writers = 1 if db.dialect == "sqlite" else max(1, min(2, pool_size // 2))
    # SQLite allows one writer at a time: more threads would only queue on its lock.
    threads = 1 if db.dialect == "sqlite" else writers
    writer = EventWriter(db, partitions, known=KnownRows(), threads=threads)
    return Store(db, layout, partitions, writer)
