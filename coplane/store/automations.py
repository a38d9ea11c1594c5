"""Automations: their definitions, firings (once per key), decisions, the pass's cursor, and
the messages their `notify` actions queue in the alert outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row
from coplane.store.errors import Conflict, NotFound
from coplane.store.events import like_pattern, related_contains
from coplane.store.incidents import queue_notifications

DECISIONS_KEPT = 200  # per automation: what its explain page can show
MESSAGE_COLUMNS = "id, automation, key, action, message, event_id, event, resource, created"


def replace_automations(conn: Conn, definitions: Sequence[dict[str, Any]], origin: str,
                        now: datetime) -> None:  # fmt: skip
    """Make `definitions` the automations of `origin` (the config file's, say)."""
    names = {d["name"] for d in definitions}
    for row in conn.query("SELECT name FROM automations WHERE origin = ?", (origin,)):
        if row["name"] not in names:
            conn.execute("DELETE FROM automations WHERE name = ?", (row["name"],))
    for d in definitions:
        upsert_automation(conn, d, origin, now, replace=True)


def upsert_automation(
    conn: Conn, definition: dict[str, Any], origin: str, now: datetime, *, replace: bool
) -> None:
    """Store one automation; Conflict when it exists (and not `replace`) or is the file's."""
    name = definition["name"]
    existing = conn.one("SELECT origin FROM automations WHERE name = ?", (name,))
    if existing is not None:
        if not replace:
            raise Conflict(f"an automation named {name!r} exists")
        if existing["origin"] == "file" and origin != "file":
            raise Conflict(f"automation {name!r} comes from the config file: change it there")
        conn.execute(
            "UPDATE automations SET definition = ?, origin = ?, updated = ? WHERE name = ?",
            (conn.json(definition), origin, conn.time(now), name),
        )
        return
    conn.execute(
        "INSERT INTO automations (name, definition, origin, created, updated) "
        "VALUES (?, ?, ?, ?, ?)",
        (name, conn.json(definition), origin, conn.time(now), conn.time(now)),
    )


def delete_automation(conn: Conn, name: str) -> None:
    """Remove an automation made through the API."""
    row = read_automation(conn, name)
    if row["origin"] == "file":
        raise Conflict(f"automation {name!r} comes from the config file: change it there")
    conn.execute("DELETE FROM automations WHERE name = ?", (name,))


def list_automations(conn: Conn) -> list[Row]:
    """Every automation, by name."""
    return conn.query("SELECT name, definition, origin, created, updated FROM automations "
                      "ORDER BY name")  # fmt: skip


def read_automation(conn: Conn, name: str) -> Row:
    """One automation; NotFound naming it."""
    row = conn.one(
        "SELECT name, definition, origin, created, updated FROM automations WHERE name = ?",
        (name,),
    )
    if row is None:
        raise NotFound(f"no automation named {name!r}")
    return row


def insert_firing(
    conn: Conn, automation: str, key: str, group: str, event_id: str, reason: str,
    now: datetime,
) -> bool:  # fmt: skip
    """Record a firing; False when that key fired already (another server, an earlier pass)."""
    changed = conn.execute(
        "INSERT INTO automation_firings (automation, key, grp, event_id, fired, reason, actions) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (automation, key, group, event_id, conn.time(now), reason, conn.json([])),
    )
    return changed == 1


def record_firing_actions(conn: Conn, automation: str, key: str, actions: list[Any]) -> None:
    """What each action of a firing did."""
    conn.execute(
        "UPDATE automation_firings SET actions = ? WHERE automation = ? AND key = ?",
        (conn.json(actions), automation, key),
    )


def last_firing(conn: Conn, automation: str, group: str) -> datetime | None:
    """When an automation last fired for a group."""
    row = conn.one(
        "SELECT fired FROM automation_firings WHERE automation = ? AND grp = ? "
        "ORDER BY fired DESC LIMIT 1",
        (automation, group),
    )
    return None if row is None else row["fired"]


def count_firings(conn: Conn, automation: str, since: datetime) -> int:
    """How many times an automation fired since `since`."""
    row = conn.one(
        "SELECT count(*) AS n FROM automation_firings WHERE automation = ? AND fired >= ?",
        (automation, conn.time(since)),
    )
    return 0 if row is None else int(row["n"])


def list_firings(conn: Conn, automation: str, limit: int = 20) -> list[Row]:
    """An automation's latest firings, newest first."""
    return conn.query(
        "SELECT key, grp, event_id, fired, reason, actions FROM automation_firings "
        "WHERE automation = ? ORDER BY fired DESC LIMIT ?",
        (automation, limit),
    )


def insert_decision(
    conn: Conn, automation: str, event: dict[str, Any], fired: bool, reason: str, now: datetime
) -> None:
    """Record what an event meant to an automation (once per event)."""
    conn.execute(
        "INSERT INTO automation_decisions (automation, event_id, at, event, resource, fired, "
        "reason) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (automation, event["id"], conn.time(now), event["event"], event["resource"]["id"],
         fired, reason),
    )  # fmt: skip


def list_decisions(conn: Conn, automation: str, limit: int = 50) -> list[Row]:
    """An automation's latest decisions, newest first."""
    return conn.query(
        "SELECT event_id, at, event, resource, fired, reason FROM automation_decisions "
        "WHERE automation = ? ORDER BY at DESC LIMIT ?",
        (automation, limit),
    )


def prune_decisions(conn: Conn, automation: str) -> None:
    """Keep the latest DECISIONS_KEPT decisions of an automation."""
    row = conn.one(
        "SELECT at FROM automation_decisions WHERE automation = ? ORDER BY at DESC "
        "LIMIT 1 OFFSET ?",
        (automation, DECISIONS_KEPT),
    )
    if row is not None:
        conn.execute("DELETE FROM automation_decisions WHERE automation = ? AND at <= ?",
                     (automation, conn.time(row["at"])))  # fmt: skip


def read_cursor(conn: Conn, name: str) -> datetime | None:
    """How far a pass has read."""
    row = conn.one("SELECT position FROM automation_cursor WHERE name = ?", (name,))
    return None if row is None else row["position"]


def save_cursor(conn: Conn, name: str, position: datetime) -> None:
    """Move a pass's cursor forward (never back: passes of several servers overlap)."""
    changed = conn.execute(
        "UPDATE automation_cursor SET position = ? WHERE name = ? AND position < ?",
        (conn.time(position), name, conn.time(position)),
    )
    if changed == 0:
        conn.execute(
            "INSERT INTO automation_cursor (name, position) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (name, conn.time(position)),
        )


def list_events_received(
    conn: Conn,
    after: datetime,
    until: datetime,
    limit: int,
    filters: Sequence[tuple[str, str | None]],
) -> list[Row]:
    """Events received in (after, until] that some filter admits, oldest received first;
    `automation.*` events never. A filter is a name (exact, or with a trailing `*`) and an
    id the event's related resources must include (or None)."""
    clauses, values = [], []
    for pattern, related in sorted(set(filters), key=str):
        clause = "event LIKE ? ESCAPE '\\'" if pattern.endswith("*") else "event = ?"
        values.append(like_pattern(pattern) if pattern.endswith("*") else pattern)
        if related is not None:
            clause = f"({clause} AND {related_contains(conn)})"
            values.append(related)
        clauses.append(clause)
    if not clauses:
        return []
    return conn.query(
        "SELECT id, occurred, received, event, resource, related, payload FROM events "
        f"WHERE received > ? AND received <= ? AND ({' OR '.join(clauses)}) "
        "AND event NOT LIKE 'automation.%' ORDER BY received, id LIMIT ?",
        (conn.time(after), conn.time(until), *values, limit),
    )


def list_events_named(
    conn: Conn, pattern: str, since: datetime, until: datetime, limit: int
) -> list[Row]:
    """Events whose name matches `pattern` (trailing `*`) that occurred in [since, until]."""
    if pattern.endswith("*"):
        clause, value = "event LIKE ? ESCAPE '\\'", like_pattern(pattern)
    else:
        clause, value = "event = ?", pattern
    return conn.query(
        "SELECT id, occurred, received, event, resource, related, payload FROM events "
        f"WHERE {clause} AND occurred >= ? AND occurred <= ? ORDER BY occurred, id LIMIT ?",
        (value, conn.time(since), conn.time(until), limit),
    )


def list_incident_changes(conn: Conn, after: datetime, until: datetime) -> list[Row]:
    """Incidents opened or resolved in (after, until]."""
    return conn.query(
        "SELECT id, sla, key, reason, resource, due, opened, resolved FROM incidents "
        "WHERE (opened > ? AND opened <= ?) OR (resolved > ? AND resolved <= ?)",
        (conn.time(after), conn.time(until), conn.time(after), conn.time(until)),
    )


def message_id(automation: str, key: str, action: int) -> uuid.UUID:
    """The id of the message one action of one firing sends: the same however often it runs."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"coplane:automation:{automation}:{key}:{action}")


def queue_automation_message(
    conn: Conn, automation: str, key: str, action: int, message: str, event: dict[str, Any],
    channels: Sequence[str], now: datetime,
) -> tuple[uuid.UUID, list[Row]]:  # fmt: skip
    """Store the message of a `notify` action and queue a notification of it per channel, in
    one transaction; the message's id and its notifications. Run again for the same firing and
    action (after a crash, say), it adds nothing: the first message stands."""
    mid = message_id(automation, key, action)
    with conn.transaction():
        conn.execute(
            f"INSERT INTO automation_messages ({MESSAGE_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (conn.uid(mid), automation, key, action, message, str(event["id"]), event["event"],
             event["resource"]["id"], conn.time(now)),
        )  # fmt: skip
        queue_notifications(conn, "message_id", mid, channels, "notify", now, once=True)
        rows = conn.query(
            "SELECT id, channel, status FROM notifications WHERE message_id = ? "
            "ORDER BY channel, id",
            (conn.uid(mid),),
        )
    return mid, rows


def read_automation_message(conn: Conn, message: uuid.UUID | str) -> Row:
    """One message of a `notify` action; NotFound when there is none with that id."""
    row = conn.one(
        f"SELECT {MESSAGE_COLUMNS} FROM automation_messages WHERE id = ?", (conn.uid(message),)
    )
    if row is None:
        raise NotFound(f"no automation message with id {message}")
    return row
