"""Group commit: writer threads take every batch waiting and store them in one transaction.

One commit per request would cap single-event ingest at the disk's commit rate; gathering
what arrived while the previous transaction ran costs no latency when idle and turns many
small requests into few transactions under load.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

from coplane.events.model import Event
from coplane.store.dialects import Database
from coplane.store.events import InsertResult, insert_event_batches
from coplane.store.known import KnownRows
from coplane.store.partitions import PartitionManager

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    events: list[Event]
    future: Future[InsertResult]


class EventWriter:
    """Writer threads in front of `insert_event_batches`; `submit` returns a future."""

    def __init__(
        self,
        db: Database,
        partitions: PartitionManager | None,
        *,
        known: KnownRows | None = None,
        threads: int = 1,
        max_group_events: int = 20_000,
    ) -> None:
        self._db = db
        self._partitions = partitions
        self._known = known
        self._max = max_group_events
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._run, name=f"coplane-writer-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, events: list[Event]) -> Future[InsertResult]:
        """Queue a batch; the future resolves once it is committed (or fails with the error)."""
        future: Future[InsertResult] = Future()
        self._queue.put(_Pending(events, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop the threads."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    def _take_group(self, first: _Pending) -> tuple[list[_Pending], bool]:
        group, size, stop = [first], len(first.events), False
        while size < self._max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            group.append(item)
            size += len(item.events)
        return group, stop

    def _run(self) -> None:
        if self._db.dialect == "sqlite":
            # the writer touches every index of a growing table: give it a 64 MiB page
            # cache instead of SQLite's 2 MiB default, which made it wait on disk reads
            with self._db.connect() as conn:
                conn.execute("PRAGMA cache_size=-65536")
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stop = self._take_group(first)
            self._write(group)
            if stop:
                return

    def _write(self, group: list[_Pending]) -> None:
        try:
            with self._db.connect() as conn:
                results = insert_event_batches(
                    conn,
                    [p.events for p in group],
                    datetime.now(UTC),
                    self._partitions,
                    self._known,
                )
        except BaseException as exc:  # every waiting request must hear about the failure
            log.warning("writing %d event batches failed: %s", len(group), exc)
            for p in group:
                p.future.set_exception(exc)
            return
        for p, result in zip(group, results, strict=True):
            p.future.set_result(result)
