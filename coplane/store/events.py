"""Writing events (batched, idempotent, derived tables in the same transaction) and reading them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import psycopg

from coplane.events.derive import derive, run_id_of
from coplane.events.model import Event, RelatedResource, Resource, encode_json
from coplane.store.derived import write_derived
from coplane.store.dialects import Conn, PgConn, Row, sqlite_time
from coplane.store.known import KnownRows
from coplane.store.paging import newest_first
from coplane.store.partitions import PartitionManager

EVENT_COLUMNS = (
    "id",
    "occurred",
    "received",
    "event",
    "resource_id",
    "resource",
    "related",
    "payload",
    "run_id",
)


@dataclass(frozen=True, slots=True)
class InsertResult:
    """How many events of a batch were stored now, and how many were already there."""

    accepted: int
    duplicates: int


def insert_events(
    conn: Conn,
    events: list[Event],
    received: datetime,
    partitions: PartitionManager | None = None,
    known: KnownRows | None = None,
) -> InsertResult:
    """Store one batch of events and fold it into the derived tables, atomically."""
    return insert_event_batches(conn, [events], received, partitions, known)[0]


def insert_event_batches(
    conn: Conn,
    batches: Sequence[list[Event]],
    received: datetime,
    partitions: PartitionManager | None = None,
    known: KnownRows | None = None,
) -> list[InsertResult]:
    """Store several batches in one transaction (group commit); one result per batch.

    An event already stored (same `dedup_key`) is skipped and counted as a duplicate; derived
    tables are folded from the newly stored events only, so they always agree with them.
    """
    events = [e for batch in batches for e in batch]
    for e in events:
        if e.id is None:
            e.id = uuid.uuid4()
    try:
        new = _write(conn, events, received, partitions, known)
    except psycopg.errors.CheckViolation:
        # "no partition of relation events found for row": a partition this process knew
        # was dropped elsewhere (retention on another replica); look again, once.
        if partitions is None:
            raise
        partitions.forget_all()
        new = _write(conn, events, received, partitions, known)
    stored = {id(e) for e in new}
    results = []
    for batch in batches:
        accepted = sum(1 for e in batch if id(e) in stored)
        results.append(InsertResult(accepted, len(batch) - accepted))
    return results


def _write(
    conn: Conn,
    events: list[Event],
    received: datetime,
    partitions: PartitionManager | None,
    known: KnownRows | None,
) -> list[Event]:
    if partitions is not None and events:
        partitions.ensure(conn, {e.occurred for e in events})
    with conn.transaction():
        new = (
            _insert_new_postgresql(conn, events, received)
            if isinstance(conn, PgConn)
            else _insert_new_sqlite(conn, events, received)
        )
        derived = derive(new)
        if known is not None:
            derived = known.changes(derived)
        write_derived(conn, derived)
    if known is not None:
        known.remember(derived)  # only what is committed
    return new


def _event_row(conn: Conn, e: Event, received: datetime) -> list[Any]:
    return [
        conn.uid(e.id),
        conn.time(e.occurred),
        conn.time(received),
        e.event,
        e.resource.id,
        encode_json(e.resource).decode(),
        encode_json(e.related).decode(),
        encode_json(e.payload).decode(),
        conn.uid(run_id_of(e)),
    ]


def dedup_key(e: Event) -> tuple[Any, ...]:
    """What makes two events the same event (the events table's key, on both backends): the
    id with the time and the resource, so that nobody can pre-empt another resource's event
    (or the same resource's at another time) by sending its id first."""
    return (e.id, e.occurred, e.resource.id)


def _first_of_each(events: list[Event], keys: set[Any], key: Any) -> list[Event]:
    """The first event in `events` for each key in `keys`, in batch order."""
    out = []
    for e in events:
        k = key(e)
        if k in keys:
            keys.discard(k)
            out.append(e)
    return out


# Below this many events, one INSERT from a JSON parameter beats COPY through a staging
# table, whose truncation at each commit dominates a small transaction.
COPY_MIN_EVENTS = 64
_PG_EVENT_TYPES = (
    "id uuid, occurred timestamptz, received timestamptz, event text, resource_id text, "
    "resource jsonb, related jsonb, payload jsonb, run_id uuid, related_ids text[]"
)


class _PgEventRow(msgspec.Struct, array_like=False, gc=False):
    """One events row, encoded to JSON for json_to_recordset."""

    id: uuid.UUID
    occurred: datetime
    received: datetime
    event: str
    resource_id: str
    resource: Resource
    related: list[RelatedResource]
    payload: dict[str, Any]
    run_id: str | None
    related_ids: list[str]


def _pg_event_row(e: Event, received: datetime) -> _PgEventRow:
    assert e.id is not None  # ids are assigned before writing
    related_ids = sorted({r.id for r in e.related})
    return _PgEventRow(
        e.id,
        e.occurred,
        received,
        e.event,
        e.resource.id,
        e.resource,
        e.related,
        e.payload,
        run_id_of(e),
        related_ids,
    )


def _insert_new_postgresql(conn: PgConn, events: list[Event], received: datetime) -> list[Event]:
    # Insert what is new in key order: ON CONFLICT makes retries and overlaps harmless, and
    # key order keeps concurrent writers from deadlocking.
    returning = (
        "ORDER BY id, occurred, resource_id ON CONFLICT DO NOTHING "
        "RETURNING id, occurred, resource_id"
    )
    if len(events) < COPY_MIN_EVENTS:
        rows = [_pg_event_row(e, received) for e in events]
        inserted = set(
            conn.query_tuples(
                "INSERT INTO events SELECT * FROM json_to_recordset(?::json) "
                f"AS t({_PG_EVENT_TYPES}) {returning}",
                (encode_json(rows).decode(),),
            )
        )
    else:
        # COPY into a session-local staging table (emptied at commit), then insert from it.
        conn.ensure_temp_table(
            "events_staging",
            "CREATE TEMP TABLE events_staging (LIKE events INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS",
        )
        conn.copy_rows(
            "events_staging",
            (*EVENT_COLUMNS, "related_ids"),
            ([*_event_row(conn, e, received), sorted({r.id for r in e.related})] for e in events),
        )
        inserted = set(
            conn.query_tuples("INSERT INTO events SELECT * FROM events_staging " + returning)
        )
    return _first_of_each(events, inserted, dedup_key)


def _insert_new_sqlite(conn: Conn, events: list[Event], received: datetime) -> list[Event]:
    # One writer holds SQLite's lock for the transaction, so read-then-insert cannot race.
    ids = sorted({str(e.id) for e in events})
    existing: set[tuple[Any, ...]] = {
        (uuid.UUID(r["id"]), r["occurred"], r["resource_id"])
        for r in conn.query(
            # CAST: the stored text, to compare with sqlite_time's, not a converted datetime
            "SELECT CAST(id AS TEXT) AS id, CAST(occurred AS TEXT) AS occurred, resource_id "
            "FROM events WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        )
    }
    # each time formatted once: on a busy batch, formatting was a seventh of the writer's time
    occurred = [sqlite_time(e.occurred) for e in events]
    at = sqlite_time(received)
    new, rows = [], []
    for e, when in zip(events, occurred, strict=True):
        key = (e.id, when, e.resource.id)
        if key in existing:
            continue
        existing.add(key)  # a repeat within the batch is stored once, the first time
        new.append(e)
        rows.append((str(e.id), when, at, e.event, e.resource.id, encode_json(e.resource).decode(),
                     encode_json(e.related).decode(), encode_json(e.payload).decode(),
                     conn.uid(run_id_of(e))))  # fmt: skip
    conn.executemany(
        f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * 9)})", rows
    )
    return new


# --- Reading ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What `GET /api/events` may filter on."""

    event: str | None = None  # exact, or a prefix ending in `*`
    resource: str | None = None
    related: str | None = None
    run_id: uuid.UUID | str | None = None
    since: datetime | None = None
    until: datetime | None = None


def related_contains(conn: Conn) -> str:
    """SQL that is true when an event's related resources include the id bound to its `?`."""
    if conn.dialect == "postgresql":
        return "related_ids @> ARRAY[?]::text[]"
    return "EXISTS (SELECT 1 FROM json_each(related) WHERE json_extract(value, '$.id') = ?)"


def like_pattern(pattern: str) -> str:
    """A LIKE pattern for an event-name filter with an optional trailing `*`."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped[:-1] + "%" if escaped.endswith("*") else escaped


def list_events(
    conn: Conn, f: EventFilter, limit: int, cursor: str | None = None
) -> tuple[list[Row], str | None]:
    """Events matching `f`, newest first, and the cursor of the next page (None at the end)."""
    where: list[str] = []
    params: list[Any] = []
    if f.event is not None:
        if f.event.endswith("*"):
            where.append("event LIKE ? ESCAPE '\\'")
            params.append(like_pattern(f.event))
        else:
            where.append("event = ?")
            params.append(f.event)
    if f.resource is not None:
        where.append("resource_id = ?")
        params.append(f.resource)
    if f.related is not None:
        where.append(related_contains(conn))
        params.append(f.related)
    if f.run_id is not None:
        where.append("run_id = ?")
        params.append(conn.uid(f.run_id))
    if f.since is not None:
        where.append("occurred >= ?")
        params.append(conn.time(f.since))
    if f.until is not None:
        where.append("occurred < ?")
        params.append(conn.time(f.until))
    select = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
    return newest_first(conn, select, "occurred", where, params, limit, cursor)


def event_json(row: Row) -> dict[str, Any]:
    """A stored event as the API shows it."""
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "occurred": row["occurred"].isoformat(),
        "received": row["received"].isoformat(),
        "event": row["event"],
        "resource": row["resource"],
        "related": row["related"],
        "payload": row["payload"],
    }
    return out
