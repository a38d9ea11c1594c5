"""SLA evaluations: the latest results of each SLA that differed from the one before, with the
facts the rule used, kept to the newest `KEEP` per SLA (plus those that opened open incidents)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coplane.rules.facts import Evaluation
from coplane.store.dialects import Conn, Row

KEEP = 50  # evaluations kept per SLA
EVALUATION_COLUMNS = "id, sla, evaluated, status, next_deadline, explanation, inputs, breaches"


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """One evaluation to store: its id (incidents it opens point at it), SLA, time and inputs."""

    id: uuid.UUID
    sla: str
    evaluated: datetime
    evaluation: Evaluation
    inputs: dict[str, Any]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def breaches_json(evaluation: Evaluation) -> list[dict[str, Any]]:
    """An evaluation's breaches as JSON."""
    return [
        {
            "key": b.key,
            "due": _iso(b.due),
            "reason": b.reason,
            "window_start": _iso(b.window_start),
            "resource": b.resource,
        }
        for b in evaluation.breaches
    ]


def insert_sla_evaluations(conn: Conn, records: Sequence[EvaluationRecord]) -> None:
    """Store evaluations (in the caller's transaction, if any)."""
    if not records:
        return
    t = conn.time
    conn.executemany(
        f"INSERT INTO sla_evaluations ({EVALUATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                conn.uid(r.id),
                r.sla,
                t(r.evaluated),
                r.evaluation.status,
                t(r.evaluation.next_deadline),
                r.evaluation.explanation,
                conn.json(r.inputs),
                conn.json(breaches_json(r.evaluation)),
            )
            for r in records
        ],
    )


def prune_sla_evaluations(conn: Conn, slas: Sequence[str], keep: int = KEEP) -> None:
    """Delete all but the newest `keep` evaluations of each of `slas`, except those that
    opened an incident still open (its page links to them).

    One index probe per SLA: the `keep`-th newest evaluation's time; fewer rows, nothing to do.
    """
    if not slas:
        return
    conn.executemany(
        "DELETE FROM sla_evaluations WHERE sla = ? AND evaluated < ("
        "SELECT evaluated FROM sla_evaluations WHERE sla = ? "
        "ORDER BY evaluated DESC LIMIT 1 OFFSET ?) "
        "AND id NOT IN (SELECT evaluation_id FROM incidents "
        "WHERE sla = ? AND resolved IS NULL AND evaluation_id IS NOT NULL)",
        [(name, name, keep - 1, name) for name in sorted(set(slas))],
    )


def list_sla_evaluations(conn: Conn, sla: str, limit: int) -> list[Row]:
    """The newest `limit` evaluations of one SLA, newest first."""
    return conn.query(
        f"SELECT {EVALUATION_COLUMNS} FROM sla_evaluations WHERE sla = ? "
        "ORDER BY evaluated DESC, id DESC LIMIT ?",
        (sla, limit),
    )


def evaluation_json(row: Row) -> dict[str, Any]:
    """An evaluation as the API shows it."""
    return {
        "id": str(row["id"]),
        "evaluated": _iso(row["evaluated"]),
        "status": row["status"],
        "next_deadline": _iso(row["next_deadline"]),
        "explanation": row["explanation"],
        "inputs": row["inputs"],
        "breaches": row["breaches"],
    }
