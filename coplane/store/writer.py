"""Group commit: writer threads take every batch waiting and store them in one transaction.

One commit per request would cap single-event ingest at the disk's commit rate; gathering
what arrived while the previous transaction ran costs no latency when idle and turns many
small requests into few transactions under load.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

from coplane.events.model import Event
from coplane.store.dialects import Database
from coplane.store.errors import DatabaseUnavailable
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
        self._listeners: list[Callable[[set[str]], None]] = []
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._run, name=f"coplane-writer-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def add_listener(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener` (in the writer thread; keep it quick) after each commit, with the
        ids of the resources the committed events name (their own and related ones)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[set[str]], None]) -> None:
        """Stop calling `listener` after commits."""
        self._listeners.remove(listener)

    def submit(self, events: list[Event]) -> Future[InsertResult]:
        """Queue a batch; the future resolves once it is committed (or fails with the error)."""
        future: Future[InsertResult] = Future()
        self._queue.put(_Pending(events, future))
        return future

    def write_pending(self) -> None:
        """Write everything queued now as one group, in the calling thread."""
        try:
            first = self._queue.get_nowait()
        except queue.Empty:
            return
        if first is not None:
            self._write(self._take_group(first)[0])

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
            results = self._insert([p.events for p in group])
        except BaseException as exc:
            if len(group) == 1 or isinstance(exc, DatabaseUnavailable):
                # an unreachable database fails every batch alike: answer them all now, not
                # each after its own connection timeout
                for p in group:
                    log.warning("writing a batch of %d events failed: %s", len(p.events), exc)
                    p.future.set_exception(exc)
                return
            # one batch must not fail the others it was grouped with: write each alone
            for p in group:
                self._write([p])
            return
        for p, result in zip(group, results, strict=True):
            p.future.set_result(result)
        if not self._listeners:
            return
        touched = {e.resource.id for p in group for e in p.events}
        touched |= {r.id for p in group for e in p.events for r in e.related}
        for listener in self._listeners:
            try:
                listener(touched)
            except Exception:  # a listener must never break ingest
                log.exception("commit listener failed")

    def _insert(self, batches: list[list[Event]]) -> list[InsertResult]:
        with self._db.connect() as conn:
            return insert_event_batches(
                conn, batches, datetime.now(UTC), self._partitions, self._known
            )
