"""Which server replica evaluates SLAs: the one holding a PostgreSQL advisory lock.

The lock is held by a session of its own, so it is released the moment the leader's process
dies or loses its connection, and another replica's next attempt takes it over. The same
session LISTENs for `coplane_evaluate`, which replicas that ingested events NOTIFY, so the
leader also evaluates reactive SLAs for events it did not receive itself. On SQLite there is
one process: it always leads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from functools import partial

import psycopg

from coplane.logs import decision
from coplane.store.dialects import Conn

log = logging.getLogger(__name__)

LOCK_KEY = 0x636F706C616E65  # "coplane": the advisory lock of SLA evaluation
CHANNEL = "coplane_evaluate"


MAX_PAYLOAD = 7000  # bytes; PostgreSQL refuses NOTIFY payloads of 8000 or more


def notify_leader(conn: Conn, resources: Iterable[str] | None) -> None:
    """Ask the leading replica to evaluate soon: events naming `resources` (None: anything)
    were stored here."""
    if conn.dialect != "postgresql":
        return
    payload = "*" if resources is None else json.dumps(sorted(resources))
    if len(payload.encode()) > MAX_PAYLOAD:
        payload = "*"  # too many to list: the leader looks at everything
    conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, payload))


def parse_notification(payload: str) -> set[str] | None:
    """The resources a notification names; None for 'anything may have changed'."""
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return set(value)
    return None


class Leadership:
    """Tries to lead; calls `on_lead` when it becomes leader and `on_notify` on each NOTIFY."""

    def __init__(
        self,
        url: str,
        on_lead: Callable[[], None],
        on_notify: Callable[[set[str] | None], None],
        retry: float = 2.0,
    ) -> None:
        self._url = url
        self._on_lead = on_lead
        self._on_notify = on_notify
        self._retry = retry  # seconds between attempts to take over: well under 10
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._leading = not url.startswith(("postgresql://", "postgres://"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading

    def start(self) -> None:
        """Contend for leadership in a background thread (PostgreSQL only)."""
        if self._leading:
            return  # SQLite: nobody to contend with
        self.try_lead()
        self._thread = threading.Thread(target=self._run, name="coplane-leader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._leading and self._conn is not None and not self._conn.closed:
            # Give the lock back before the session ends: the server frees a closed session's
            # locks only once it has noticed the disconnection, and another replica should
            # take over at once, not after that.
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        self._drop()

    def try_lead(self) -> bool:
        """One attempt to take the lock; True when this replica leads now."""
        if self._leading:
            return True
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            if row is None or not row[0]:
                return False
            self._conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            log.warning("cannot contend for SLA evaluation: %s", exc)
            self._drop()
            return False
        self._leading = True
        decision(log, "leadership.gained", "this replica now evaluates SLAs")
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._leading:
                if self.try_lead():
                    self._call(self._on_lead)
                else:
                    self._stop.wait(self._retry)
                continue
            try:
                assert self._conn is not None
                changed: set[str] | None = set()
                notified = False
                for note in self._conn.notifies(timeout=1.0, stop_after=1):
                    notified = True
                    named = parse_notification(note.payload)
                    changed = None if named is None or changed is None else changed | named
                if notified:
                    self._call(partial(self._on_notify, changed))
                # A dead session raises here, even when no notification came
                self._conn.execute("SELECT 1")
            except (psycopg.Error, AssertionError) as exc:
                decision(
                    log,
                    "leadership.lost",
                    f"lost the SLA evaluation lock: {exc}",
                    level=logging.WARNING,
                )
                self._leading = False
                self._drop()

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("SLA evaluation request failed")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
