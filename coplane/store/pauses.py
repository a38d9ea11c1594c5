"""Pauses of flow runs: opened by the run, claimed once by a resume, timed out by the clock."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from coplane.store.dialects import Conn, Row
from coplane.store.errors import Conflict

PAUSE_COLUMNS = "id, run_id, schema, requested, deadline, resumed, resumed_by, input"
PauseState = Literal["paused", "resumed", "timed_out"]


def pause_state(row: Row, now: datetime) -> PauseState:
    """Resumed once claimed; timed out once past its deadline unclaimed; else paused."""
    if row["resumed"] is not None:
        return "resumed"
    return "timed_out" if now > row["deadline"] else "paused"


def latest_pause(conn: Conn, run_id: uuid.UUID | str) -> Row | None:
    """The run's most recent pause, open or not."""
    return conn.one(
        f"SELECT {PAUSE_COLUMNS} FROM run_pauses WHERE run_id = ? "
        "ORDER BY requested DESC, id DESC LIMIT 1",
        (conn.uid(run_id),),
    )


def open_pause(
    conn: Conn,
    run_id: uuid.UUID | str,
    schema: dict[str, Any] | None,
    deadline: datetime,
    now: datetime,
) -> Row:
    """Record that the run waits for input until `deadline`; Conflict while another is open."""
    with conn.transaction():
        current = latest_pause(conn, run_id)
        if current is not None and pause_state(current, now) == "paused":
            raise Conflict(f"run {run_id} is paused already, until {current['deadline']}")
        pid = uuid.uuid4()
        conn.execute(
            f"INSERT INTO run_pauses ({PAUSE_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL)",
            (
                conn.uid(pid),
                conn.uid(run_id),
                None if schema is None else conn.json(schema),
                conn.time(now),
                conn.time(deadline),
            ),
        )
        row = latest_pause(conn, run_id)
    assert row is not None
    return row


def resume_pause(
    conn: Conn, pause_id: uuid.UUID | str, value: Any, by: str | None, now: datetime
) -> bool:
    """Claim an open pause with its input; False when it was resumed or timed out already."""
    with conn.transaction():
        claimed = conn.execute(
            "UPDATE run_pauses SET resumed = ?, resumed_by = ?, input = ? "
            "WHERE id = ? AND resumed IS NULL AND deadline >= ?",
            (
                conn.time(now),
                by,
                None if value is None else conn.json(value),
                conn.uid(pause_id),
                conn.time(now),
            ),
        )
    return claimed == 1


def pause_json(row: Row, now: datetime) -> dict[str, Any]:
    """A pause as the API shows it."""
    return {
        "pause_id": str(row["id"]),
        "run_id": str(row["run_id"]),
        "state": pause_state(row, now),
        "schema": row["schema"],
        "requested": row["requested"].isoformat(),
        "deadline": row["deadline"].isoformat(),
        "resumed": None if row["resumed"] is None else row["resumed"].isoformat(),
        "resumed_by": row["resumed_by"],
        "input": row["input"],
    }


def list_expired_paused_runs(conn: Conn, before: datetime) -> list[Row]:
    """Runs still `paused` whose latest pause ended unresumed before `before`, with the
    run's pipeline, run key and source and the pause's times."""
    return conn.query(
        "SELECT r.id, r.pipeline, r.run_key, r.source, p.requested, p.deadline "
        "FROM runs r JOIN run_pauses p ON p.run_id = r.id "
        "WHERE r.state = 'paused' AND p.resumed IS NULL AND p.deadline < ? "
        "AND p.requested = (SELECT MAX(q.requested) FROM run_pauses q WHERE q.run_id = r.id) "
        "ORDER BY p.deadline",
        (conn.time(before),),
    )
