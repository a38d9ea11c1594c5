"""Log lines of flow and task runs: written in batches, read per run in time order, expired."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row

LOG_COLUMNS = "id, run_id, task_run_id, at, level, logger, message"


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log record as a producer sent it."""

    run_id: uuid.UUID
    task_run_id: str | None  # the task run's id as the SDK knows it (a UUID when it is ours)
    at: datetime
    level: str
    logger: str
    message: str


def insert_logs(conn: Conn, lines: Sequence[LogLine], received: datetime) -> int:
    """Store `lines` in one transaction; how many were stored."""
    if not lines:
        return 0
    t, u = conn.time, conn.uid
    with conn.transaction():
        conn.executemany(
            "INSERT INTO logs (run_id, task_run_id, at, level, logger, message, received) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (u(x.run_id), x.task_run_id, t(x.at), x.level, x.logger, x.message, t(received))
                for x in lines
            ],
        )
    return len(lines)


def _cursor(row: Row) -> str:
    raw = f"{row['at'].isoformat()}|{row['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, key = raw.partition("|")
        parsed, number = datetime.fromisoformat(at), int(key)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this server returned") from exc
    if parsed.tzinfo is None:
        raise ValueError("cursor is not one this server returned")
    return parsed, number


def list_run_logs(
    conn: Conn,
    run_id: uuid.UUID,
    *,
    since: datetime | None = None,
    limit: int = 200,
    cursor: str | None = None,
) -> tuple[list[Row], str | None]:
    """A run's log lines (its tasks' included) oldest first, from `since`, and the next cursor.

    ValueError for a cursor this module did not make.
    """
    where = ["run_id = ?"]
    params: list[Any] = [conn.uid(run_id)]
    if since is not None:
        where.append("at >= ?")
        params.append(conn.time(since))
    if cursor is not None:
        at, key = _decode_cursor(cursor)
        where.append("(at, id) > (?, ?)")
        params += [conn.time(at), key]
    rows = conn.query(
        f"SELECT {LOG_COLUMNS} FROM logs WHERE {' AND '.join(where)} ORDER BY at, id LIMIT ?",
        (*params, limit + 1),
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, _cursor(rows[-1])


def latest_run_logs(conn: Conn, run_id: uuid.UUID, limit: int) -> list[Row]:
    """The newest `limit` log lines of a run, oldest of them first (as a log reads)."""
    rows = conn.query(
        f"SELECT {LOG_COLUMNS} FROM logs WHERE run_id = ? ORDER BY at DESC, id DESC LIMIT ?",
        (conn.uid(run_id), limit),
    )
    return rows[::-1]


def delete_logs_before(conn: Conn, cutoff: datetime) -> int:
    """Drop log lines older than `cutoff`; how many went."""
    with conn.transaction():
        return conn.execute("DELETE FROM logs WHERE at < ?", (conn.time(cutoff),))


def log_json(row: Row) -> dict[str, Any]:
    """A log line as the API shows it."""
    return {
        "run_id": str(row["run_id"]),
        "task_run_id": row["task_run_id"],
        "timestamp": row["at"].isoformat(),
        "level": row["level"],
        "logger": row["logger"],
        "message": row["message"],
    }
