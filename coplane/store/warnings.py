"""Early warnings of SLAs with `warn_at_risk`, and their notifications in the alert outbox.

A warning is not an incident: it lives in its own table, so compliance, the error budget and
the incident lists never see it. Its notifications share the outbox (with a `warning_id`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from coplane.rules.facts import Evaluation
from coplane.rules.model import SLA
from coplane.rules.warning import breach_of, outcome, warning_due
from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound
from coplane.store.incidents import queue_notifications

WARNING_COLUMNS = "id, sla, key, reason, resource, due, opened, resolved, outcome, incident_id"


def apply_warning(
    conn: Conn, sla: SLA, evaluation: Evaluation, resource: str | None, now: datetime
) -> tuple[bool, int]:
    """Settle the SLA's open warnings by `evaluation`, and raise the one it makes due.

    Runs after the evaluation's incidents were opened (`apply_evaluation`): a warning that
    turned into a breach is linked to the breach's incident, whose trigger then continues the
    warning's thread; one met in time queues a 'resolve' per channel. A new warning queues a
    'warn' per channel; the unique (sla, key) keeps it to one per window, whichever replica
    or pass raises it. Returns (whether an open warning is left, notifications queued).
    """
    queued = 0
    left = False
    with conn.transaction():
        rows = conn.query(
            f"SELECT {WARNING_COLUMNS} FROM sla_warnings WHERE sla = ? AND resolved IS NULL "
            "ORDER BY due, id",
            (sla.name,),
        )
        for row in rows:
            became = outcome(row["key"], row["due"], row["opened"], evaluation)
            if became is None:
                left = True
                continue
            incident = None
            if became == "breached":
                breach = breach_of(row["key"], row["due"], evaluation)
                assert breach is not None
                incident = conn.one(
                    "SELECT id FROM incidents WHERE sla = ? AND key = ? AND resolved IS NULL",
                    (sla.name, breach.key),
                )
            changed = conn.execute(
                "UPDATE sla_warnings SET resolved = ?, outcome = ?, incident_id = ? "
                "WHERE id = ? AND resolved IS NULL",
                (
                    conn.time(now),
                    became,
                    None if incident is None else conn.uid(incident["id"]),
                    conn.uid(row["id"]),
                ),
            )
            if changed == 1 and became == "met":
                queued += queue_notifications(
                    conn, "warning_id", row["id"], sla.notify, "resolve", now
                )
        due = warning_due(sla.name, sla.warn_at_risk, evaluation)
        if due is not None:
            warning_id = uuid.uuid4()
            inserted = conn.execute(
                f"INSERT INTO sla_warnings ({WARNING_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL) ON CONFLICT (sla, key) DO NOTHING",
                (
                    conn.uid(warning_id),
                    sla.name,
                    due.key,
                    due.reason,
                    resource,
                    conn.time(due.due),
                    conn.time(now),
                ),
            )
            if inserted == 1:
                queued += queue_notifications(
                    conn, "warning_id", warning_id, sla.notify, "warn", now
                )
            left = left or inserted == 1 or _is_open(conn, sla.name, due.key)
    return left, queued


def _is_open(conn: Conn, sla: str, key: str) -> bool:
    row = conn.one(
        "SELECT id FROM sla_warnings WHERE sla = ? AND key = ? AND resolved IS NULL", (sla, key)
    )
    return row is not None


def read_warning(conn: Conn, warning_id: uuid.UUID | str) -> Row:
    """One warning; NotFound when there is none with that id."""
    row = conn.one(
        f"SELECT {WARNING_COLUMNS} FROM sla_warnings WHERE id = ?", (conn.uid(warning_id),)
    )
    if row is None:
        raise NotFound(f"no warning with id {warning_id}")
    return row


def list_sla_warnings(conn: Conn, sla: str, limit: int) -> list[dict[str, Any]]:
    """One SLA's early warnings newest first, as the API shows them."""
    rows = conn.query(
        f"SELECT {WARNING_COLUMNS} FROM sla_warnings WHERE sla = ? "
        "ORDER BY opened DESC, id DESC LIMIT ?",
        (sla, limit),
    )
    return [
        {
            "id": str(r["id"]),
            "key": r["key"],
            "reason": r["reason"],
            "resource": r["resource"],
            "due": _iso(r["due"]),
            "opened": _iso(r["opened"]),
            "resolved": _iso(r["resolved"]),
            "outcome": r["outcome"],
            "incident_id": None if r["incident_id"] is None else str(r["incident_id"]),
        }
        for r in rows
    ]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def read_warn_notification(conn: Conn, warning_id: uuid.UUID | str, channel: str) -> Row | None:
    """The 'warn' notification of a warning on a channel (its thread once sent)."""
    return conn.one(
        "SELECT id, status, due, response FROM notifications "
        "WHERE warning_id = ? AND channel = ? AND action = 'warn' "
        "ORDER BY created DESC, id DESC LIMIT 1",
        (conn.uid(warning_id), channel),
    )


def warning_thread(conn: Conn, incident_id: uuid.UUID | str, channel: str) -> dict[str, Any] | None:
    """The thread of the sent warning an incident continues on a channel, if there is one."""
    row = conn.one(
        "SELECT n.response FROM sla_warnings w JOIN notifications n ON n.warning_id = w.id "
        "WHERE w.incident_id = ? AND n.channel = ? AND n.action = 'warn' AND n.status = 'sent' "
        "ORDER BY n.created DESC LIMIT 1",
        (conn.uid(incident_id), channel),
    )
    if row is None or not isinstance(row["response"], dict):
        return None
    return row["response"]
