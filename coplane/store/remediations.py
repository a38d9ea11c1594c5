"""Remediations: the one run an SLA's `remediate` started for each incident, and its outcome."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row

COLUMNS = "incident_id, sla, deployment, run_id, outcome, detail, created, updated"
# outcomes: started (its run is going), rate_limited, refused (it could not be created),
# remediated (its run completed and the incident resolved), or the run's end state
OPEN_OUTCOMES = ("started",)


def list_unremediated_incidents(conn: Conn, slas: Sequence[str]) -> list[Row]:
    """Open incidents of `slas` that no remediation row covers yet, oldest first."""
    if not slas:
        return []
    return conn.query(
        "SELECT i.id, i.sla, i.key, i.reason, i.resource, i.due, i.opened FROM incidents i "
        f"WHERE i.resolved IS NULL AND i.sla IN ({', '.join('?' * len(slas))}) "
        "AND NOT EXISTS (SELECT 1 FROM remediations r WHERE r.incident_id = i.id) "
        "ORDER BY i.opened, i.id",
        list(slas),
    )


def insert_remediation(
    conn: Conn, incident_id: uuid.UUID | str, sla: str, deployment: str,
    run_id: uuid.UUID | str | None, outcome: str, detail: str, now: datetime,
) -> bool:  # fmt: skip
    """Record an incident's remediation; False when another server recorded it first."""
    changed = conn.execute(
        f"INSERT INTO remediations ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (conn.uid(incident_id), sla, deployment, conn.uid(run_id), outcome, detail,
         conn.time(now), conn.time(now)),
    )  # fmt: skip
    return changed == 1


def count_recent_remediations(conn: Conn, sla: str, since: datetime) -> int:
    """Runs an SLA's remediation started since `since` (for its hourly limit)."""
    row = conn.one(
        "SELECT count(*) AS n FROM remediations WHERE sla = ? AND created >= ? "
        "AND run_id IS NOT NULL",
        (sla, conn.time(since)),
    )
    return 0 if row is None else int(row["n"])


def list_open_remediations(conn: Conn) -> list[Row]:
    """Remediations whose run has not been seen to end, with its state and the incident's."""
    return conn.query(
        "SELECT r.incident_id, r.sla, r.run_id, f.state AS run_state, i.resolved "
        "FROM remediations r JOIN incidents i ON i.id = r.incident_id "
        "LEFT JOIN flow_runs f ON f.id = r.run_id "
        f"WHERE r.outcome IN ({', '.join('?' * len(OPEN_OUTCOMES))})",
        OPEN_OUTCOMES,
    )


def settle_remediation(
    conn: Conn, incident_id: uuid.UUID | str, outcome: str, detail: str, now: datetime
) -> None:
    """Record how an incident's remediation ended."""
    conn.execute(
        "UPDATE remediations SET outcome = ?, detail = ?, updated = ? WHERE incident_id = ?",
        (outcome, detail, conn.time(now), conn.uid(incident_id)),
    )


def read_remediation(conn: Conn, incident_id: uuid.UUID | str) -> Row | None:
    """An incident's remediation, with its run's state, or None."""
    return conn.one(
        "SELECT r.incident_id, r.sla, r.deployment, r.run_id, r.outcome, r.detail, r.created, "
        "r.updated, f.state AS run_state FROM remediations r "
        "LEFT JOIN flow_runs f ON f.id = r.run_id WHERE r.incident_id = ?",
        (conn.uid(incident_id),),
    )


def read_remediation_of_run(conn: Conn, run_id: uuid.UUID | str) -> Row | None:
    """The remediation a run was started for, or None."""
    return conn.one(f"SELECT {COLUMNS} FROM remediations WHERE run_id = ?", (conn.uid(run_id),))


def remediation_json(row: Row) -> dict[str, Any]:
    """A remediation as the API shows it."""
    return {
        "incident": str(row["incident_id"]),
        "sla": row["sla"],
        "deployment": row["deployment"],
        "run": None if row["run_id"] is None else str(row["run_id"]),
        "run_state": row.get("run_state"),
        "outcome": row["outcome"],
        "detail": row["detail"],
        "created": row["created"].isoformat(),
        "updated": row["updated"].isoformat(),
    }
