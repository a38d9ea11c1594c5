"""Incidents (at most one open per breach key) and the alert outbox that announces them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from coplane.rules.facts import Breach, Evaluation
from coplane.rules.model import SLA
from coplane.store.dialects import Conn, Row
from coplane.store.errors import Conflict, NotFound
from coplane.store.sla_facts import upstream

INCIDENT_COLUMNS = (
    "id, sla, key, severity, reason, resource, due, window_start, affected, opened, acked, "
    "resolved, inhibited_by, evaluation_id"
)
NOTIFICATION_COLUMNS = (
    "id, incident_id, warning_id, message_id, channel, action, created, due, claimed, sent, "
    "attempts, status, last_error, response"
)
IncidentState = Literal["open", "resolved"]


def apply_evaluation(
    conn: Conn,
    sla: SLA,
    evaluation: Evaluation,
    affected: Callable[[Breach], list[str]],
    now: datetime,
    *,
    evaluation_id: uuid.UUID | None = None,
) -> tuple[list[Row], list[Row]]:
    """Open an incident per new breach, resolve those no longer breached, queue their alerts.

    `evaluation_id`: the stored evaluation (`store/evaluations.py`) the new incidents link to.
    Runs in the caller's transaction (or its own). Concurrent evaluators are safe: the partial
    unique index keeps one open incident per key, and a conflicting insert does nothing.
    Returns the incidents (opened, resolved) by this call.
    """
    t = conn.time
    opened: list[Row] = []
    resolved: list[Row] = []
    with conn.transaction():
        breaches = {b.key: b for b in evaluation.breaches}
        still_open = conn.query(
            "SELECT id, key FROM incidents WHERE sla = ? AND resolved IS NULL ORDER BY key",
            (sla.name,),
        )
        open_keys = {row["key"] for row in still_open}
        # Key order: concurrent evaluators wait on the same keys in the same order. Only new
        # breaches are inserted, so `affected` (a lineage walk) runs once per incident.
        for key in sorted(breaches.keys() - open_keys):
            b = breaches[key]
            incident_id = uuid.uuid4()
            downstream = list(affected(b))
            cause = _root_cause(conn, sla.name, b.resource)
            inserted = conn.execute(
                f"INSERT INTO incidents ({INCIDENT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?) "
                "ON CONFLICT (sla, key) WHERE resolved IS NULL DO NOTHING",
                (
                    conn.uid(incident_id),
                    sla.name,
                    key,
                    sla.severity,
                    b.reason,
                    b.resource,
                    t(b.due),
                    t(b.window_start),
                    conn.json(downstream),
                    t(now),
                    None if cause is None else conn.uid(cause),
                    None if evaluation_id is None else conn.uid(evaluation_id),
                ),
            )
            if inserted == 1:
                queue_notifications(conn, "incident_id", incident_id, sla.notify, "trigger", now)
                opened.append(read_incident(conn, incident_id))
        for row in still_open:
            if row["key"] in breaches:
                continue
            if _set_resolved(conn, row["id"], now):
                queue_notifications(conn, "incident_id", row["id"], sla.notify, "resolve", now)
                _release_inhibited(conn, row["id"], now)
                resolved.append(read_incident(conn, row["id"]))
    return opened, resolved


def _root_cause(conn: Conn, sla: str, resource: str | None) -> Any:
    """The oldest open incident of another SLA that lists `resource` as affected downstream:
    the breach is a consequence of it, so it is attached to it instead of alerting again.

    Looked up from the resource's upstream lineage (indexed), not by scanning every open
    incident, so opening many incidents at once stays linear.
    """
    if resource is None:
        return None
    causes = upstream(conn, [resource])
    for i in range(0, len(causes), 500):
        chunk = causes[i : i + 500]
        rows = conn.query(
            "SELECT id, affected FROM incidents WHERE resolved IS NULL AND sla <> ? "
            f"AND resource IN ({', '.join('?' * len(chunk))}) ORDER BY opened, id",
            (sla, *chunk),
        )
        for row in rows:
            if resource in row["affected"]:
                return row["id"]
    return None


def _release_inhibited(conn: Conn, cause_id: uuid.UUID | str, now: datetime) -> None:
    """The incidents attached to a resolved one stand alone again: announce those still open."""
    children = conn.query(
        "SELECT i.id, s.definition FROM incidents i JOIN slas s ON s.name = i.sla "
        "WHERE i.inhibited_by = ? AND i.resolved IS NULL ORDER BY i.id",
        (conn.uid(cause_id),),
    )
    if not children:
        return
    conn.execute(
        "UPDATE incidents SET inhibited_by = NULL WHERE inhibited_by = ? AND resolved IS NULL",
        (conn.uid(cause_id),),
    )
    for child in children:
        notify = child["definition"].get("notify") or []
        queue_notifications(conn, "incident_id", child["id"], notify, "trigger", now)


def open_incident_keys(conn: Conn, slas: Sequence[str] | None = None) -> dict[str, set[str]]:
    """The keys of the open incidents of `slas` (all when None), by SLA: what an evaluation
    is compared against."""
    out: dict[str, set[str]] = {}
    if slas is None:
        rows = conn.query("SELECT sla, key FROM incidents WHERE resolved IS NULL")
    else:
        names = sorted(set(slas))
        rows = []
        for i in range(0, len(names), 500):
            chunk = names[i : i + 500]
            rows += conn.query(
                f"SELECT sla, key FROM incidents WHERE resolved IS NULL "
                f"AND sla IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
    for row in rows:
        out.setdefault(row["sla"], set()).add(row["key"])
    return out


def read_incident(conn: Conn, incident_id: uuid.UUID | str) -> Row:
    """One incident; NotFound when there is none with that id."""
    uid = _parse_id(incident_id, "incident")
    row = conn.one(f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (conn.uid(uid),))
    if row is None:
        raise NotFound(f"no incident with id {incident_id}")
    return row


def list_incidents(conn: Conn, state: IncidentState | None, limit: int) -> list[dict[str, Any]]:
    """Incidents newest first, as the API shows them, each with its notifications."""
    where = {
        None: "",
        "open": "WHERE resolved IS NULL",
        "resolved": "WHERE resolved IS NOT NULL",
    }[state]
    rows = conn.query(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents {where} ORDER BY opened DESC, id DESC LIMIT ?",
        (limit,),
    )
    by_incident = list_notifications(conn, [row["id"] for row in rows])
    return [incident_json(row, by_incident.get(str(row["id"]), [])) for row in rows]


def list_sla_incidents(conn: Conn, sla: str, limit: int) -> list[dict[str, Any]]:
    """One SLA's incidents newest first, as the API shows them, each with its notifications."""
    rows = conn.query(
        f"SELECT {INCIDENT_COLUMNS} FROM incidents WHERE sla = ? "
        "ORDER BY opened DESC, id DESC LIMIT ?",
        (sla, limit),
    )
    by_incident = list_notifications(conn, [row["id"] for row in rows])
    return [incident_json(row, by_incident.get(str(row["id"]), [])) for row in rows]


def list_notifications(conn: Conn, incident_ids: Sequence[uuid.UUID | str]) -> dict[str, list[Row]]:
    """The notifications of these incidents, oldest first, by incident id (as text)."""
    out: dict[str, list[Row]] = {}
    if not incident_ids:
        return out
    marks = ", ".join("?" * len(incident_ids))
    rows = conn.query(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE incident_id IN ({marks}) "
        "ORDER BY created, channel, id",
        [conn.uid(i) for i in incident_ids],
    )
    for row in rows:
        out.setdefault(str(row["incident_id"]), []).append(row)
    return out


def ack_incident(conn: Conn, incident_id: uuid.UUID | str, now: datetime) -> Row:
    """Acknowledge an open incident (the first ack's time stays); Conflict once resolved."""
    uid = _parse_id(incident_id, "incident")
    changed = conn.execute(
        "UPDATE incidents SET acked = COALESCE(acked, ?) WHERE id = ? AND resolved IS NULL",
        (conn.time(now), conn.uid(uid)),
    )
    row = read_incident(conn, uid)
    if changed == 0:
        raise Conflict(f"incident {incident_id} is already resolved")
    return row


def resolve_incident(
    conn: Conn, incident_id: uuid.UUID | str, now: datetime, channels: Sequence[str]
) -> Row:
    """Resolve an open incident by hand and queue a 'resolve' alert per channel."""
    uid = _parse_id(incident_id, "incident")
    with conn.transaction():
        if not _set_resolved(conn, uid, now):
            read_incident(conn, uid)  # NotFound when there is no such incident
            raise Conflict(f"incident {incident_id} is already resolved")
        queue_notifications(conn, "incident_id", uid, channels, "resolve", now)
        return read_incident(conn, uid)


def claim_pending_notifications(
    conn: Conn, now: datetime, limit: int, skip_channels: Sequence[str] = ()
) -> list[Row]:
    """Claim up to `limit` due notifications, oldest first; each is claimed by one caller only.

    Notifications of `skip_channels` (disabled ones) stay pending for when they are fixed.
    """
    skip = ""
    if skip_channels:
        skip = f"AND channel NOT IN ({', '.join('?' * len(skip_channels))}) "
    candidates = conn.query(
        "SELECT id FROM notifications WHERE status = 'pending' AND claimed IS NULL AND due <= ? "
        f"{skip}ORDER BY due, created, id LIMIT ?",
        (conn.time(now), *skip_channels, limit),
    )
    claimed: list[Row] = []
    for row in candidates:
        if claim_notification(conn, row["id"], now):
            claimed.append(read_notification(conn, row["id"]))
    return claimed


def claim_notification(conn: Conn, notification_id: uuid.UUID | str, now: datetime) -> bool:
    """Claim one pending notification; False when another dispatcher holds it (or it is done)."""
    # Proceed only when this UPDATE changed the row: another dispatcher may have won it.
    won = conn.execute(
        "UPDATE notifications SET claimed = ? "
        "WHERE id = ? AND claimed IS NULL AND status = 'pending'",
        (conn.time(now), conn.uid(notification_id)),
    )
    return won == 1


def read_trigger(conn: Conn, incident_id: uuid.UUID | str, channel: str) -> Row | None:
    """The latest 'trigger' notification of an incident on a channel (its thread when sent)."""
    return conn.one(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications "
        "WHERE incident_id = ? AND channel = ? AND action = 'trigger' "
        "ORDER BY created DESC, id DESC LIMIT 1",
        (conn.uid(incident_id), channel),
    )


def settle_notification(
    conn: Conn, notification_id: uuid.UUID | str, status: str, note: str | None
) -> None:
    """Close a claimed notification without sending it: 'skipped', 'silenced' or 'inhibited',
    with the reason in `last_error`."""
    if status not in ("skipped", "silenced", "inhibited"):
        raise ValueError(f"not a settled status: {status}")
    changed = conn.execute(
        "UPDATE notifications SET status = ?, last_error = ? "
        "WHERE id = ? AND status = 'pending' AND claimed IS NOT NULL",
        (status, note, conn.uid(notification_id)),
    )
    if changed == 0:
        _not_claimed(conn, _parse_id(notification_id, "notification"))


def defer_notification(conn: Conn, notification_id: uuid.UUID | str, until: datetime) -> None:
    """Give a claimed notification back, due at `until`, without counting an attempt."""
    conn.execute(
        "UPDATE notifications SET claimed = NULL, due = ? "
        "WHERE id = ? AND status = 'pending' AND claimed IS NOT NULL",
        (conn.time(until), conn.uid(notification_id)),
    )


def queue_repeat(
    conn: Conn, incident_id: uuid.UUID | str, channel: str, due: datetime, now: datetime
) -> None:
    """Queue a reminder of a still-open incident on one channel, due at `due`."""
    conn.execute(
        "INSERT INTO notifications (id, incident_id, channel, action, created, due, status) "
        "VALUES (?, ?, ?, 'repeat', ?, ?, 'pending')",
        (conn.uid(uuid.uuid4()), conn.uid(incident_id), channel, conn.time(now), conn.time(due)),
    )


def release_stale_claims(conn: Conn, claimed_before: datetime) -> int:
    """Unclaim pending notifications claimed before a time (a dispatcher that died mid-send)."""
    return conn.execute(
        "UPDATE notifications SET claimed = NULL "
        "WHERE status = 'pending' AND claimed IS NOT NULL AND claimed < ?",
        (conn.time(claimed_before),),
    )


def read_notification(conn: Conn, notification_id: uuid.UUID | str) -> Row:
    """One notification; NotFound when there is none with that id."""
    uid = _parse_id(notification_id, "notification")
    row = conn.one(
        f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = ?", (conn.uid(uid),)
    )
    if row is None:
        raise NotFound(f"no notification with id {notification_id}")
    return row


def mark_sent(
    conn: Conn, notification_id: uuid.UUID | str, now: datetime, response: dict[str, Any] | None
) -> None:
    """Record a claimed notification as sent, with what the channel answered (e.g. Slack's ts)."""
    uid = _parse_id(notification_id, "notification")
    changed = conn.execute(
        "UPDATE notifications SET status = 'sent', sent = ?, attempts = attempts + 1, "
        "response = ?, last_error = NULL "
        "WHERE id = ? AND status = 'pending' AND claimed IS NOT NULL",
        (conn.time(now), None if response is None else conn.json(response), conn.uid(uid)),
    )
    if changed == 0:
        _not_claimed(conn, uid)


def mark_failed(
    conn: Conn,
    notification_id: uuid.UUID | str,
    now: datetime,
    error: str,
    permanent: bool,
    retry_at: datetime | None,
) -> None:
    """Record a failed send: retried from `retry_at` (default now) unless permanent ('dead')."""
    uid = _parse_id(notification_id, "notification")
    if permanent:
        changed = conn.execute(
            "UPDATE notifications SET status = 'dead', attempts = attempts + 1, last_error = ? "
            "WHERE id = ? AND status = 'pending' AND claimed IS NOT NULL",
            (error, conn.uid(uid)),
        )
    else:
        changed = conn.execute(
            "UPDATE notifications SET status = 'pending', claimed = NULL, "
            "attempts = attempts + 1, due = ?, last_error = ? "
            "WHERE id = ? AND status = 'pending' AND claimed IS NOT NULL",
            (conn.time(retry_at or now), error, conn.uid(uid)),
        )
    if changed == 0:
        _not_claimed(conn, uid)


def incident_json(row: Row, notifications: Sequence[Row]) -> dict[str, Any]:
    """An incident as the API shows it, with its notifications."""
    return {
        "id": str(row["id"]),
        "sla": row["sla"],
        "key": row["key"],
        "severity": row["severity"],
        "reason": row["reason"],
        "resource": row["resource"],
        "due": _iso(row["due"]),
        "window_start": _iso(row["window_start"]),
        "opened": _iso(row["opened"]),
        "acked": _iso(row["acked"]),
        "resolved": _iso(row["resolved"]),
        "inhibited_by": None if row["inhibited_by"] is None else str(row["inhibited_by"]),
        "evaluation_id": None if row["evaluation_id"] is None else str(row["evaluation_id"]),
        "affected": list(row["affected"]),
        "notifications": [
            {
                "channel": n["channel"],
                "action": n["action"],
                "status": n["status"],
                "sent": _iso(n["sent"]),
                "attempts": n["attempts"],
                "last_error": n["last_error"],
            }
            for n in notifications
        ],
    }


def _set_resolved(conn: Conn, incident_id: uuid.UUID | str, now: datetime) -> bool:
    # Conditional: of two concurrent resolvers only one changes the row (and queues alerts).
    changed = conn.execute(
        "UPDATE incidents SET resolved = ? WHERE id = ? AND resolved IS NULL",
        (conn.time(now), conn.uid(incident_id)),
    )
    return changed == 1


def queue_notifications(
    conn: Conn,
    owner: Literal["incident_id", "warning_id", "message_id"],
    owner_id: uuid.UUID | str,
    channels: Sequence[str],
    action: str,
    now: datetime,
    *,
    once: bool = False,
) -> int:
    """One pending notification per channel (named once) for an incident, an early warning or
    an automation's message, `owner` naming which; the number of channels queued for.

    With `once`, each id is derived from the owner, channel and action, so queueing the same
    again (an action run anew after a crash) adds nothing."""
    ids = {
        channel: uuid.uuid5(uuid.UUID(str(owner_id)), f"{channel}:{action}") if once
        else uuid.uuid4()
        for channel in dict.fromkeys(channels)
    }  # fmt: skip
    rows = [
        (conn.uid(ids[channel]), conn.uid(owner_id), channel, action, conn.time(now),
         conn.time(now))
        for channel in ids
    ]  # fmt: skip
    if rows:
        again = " ON CONFLICT (id) DO NOTHING" if once else ""
        conn.executemany(
            f"INSERT INTO notifications (id, {owner}, channel, action, created, due, status) "
            f"VALUES (?, ?, ?, ?, ?, ?, 'pending'){again}",
            rows,
        )
    return len(rows)


def _not_claimed(conn: Conn, notification_id: uuid.UUID) -> None:
    row = read_notification(conn, notification_id)  # NotFound when absent
    raise Conflict(f"notification {notification_id} is {row['status']} and not claimed")


def _parse_id(value: uuid.UUID | str, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"no {what} with id {value}") from None


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
