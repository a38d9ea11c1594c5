"""Deployments' schedules: replaced with their deployment, paused and resumed, listed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound

COLUMNS = "id, deployment, cron, timezone, interval_s, anchor, paused, updated"


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """One schedule as stored: `cron` in `timezone`, or every `interval_s` from `anchor`."""

    id: uuid.UUID
    deployment: str
    cron: str | None
    timezone: str
    interval_s: float | None
    anchor: datetime


def replace_schedules(
    conn: Conn, deployment: str, schedules: list[ScheduleRow], now: datetime
) -> list[uuid.UUID]:
    """Make `schedules` the deployment's; those kept keep their paused state. The ids of the
    schedules removed."""
    existing = {str(r["id"]) for r in conn.query(
        "SELECT id FROM schedules WHERE deployment = ?", (deployment,))}  # fmt: skip
    wanted = {str(s.id) for s in schedules}
    removed = [uuid.UUID(i) for i in sorted(existing - wanted)]
    for sid in removed:
        conn.execute("DELETE FROM schedules WHERE id = ?", (conn.uid(sid),))
    for s in schedules:
        if str(s.id) in existing:
            continue
        conn.execute(
            f"INSERT INTO schedules ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (conn.uid(s.id), s.deployment, s.cron, s.timezone, s.interval_s,
             conn.time(s.anchor), False, conn.time(now)),
        )  # fmt: skip
    return removed


def list_schedules(conn: Conn, deployment: str | None = None, *, active: bool = False) -> list[Row]:
    """Schedules (of one deployment; only those not paused when `active`)."""
    where: list[str] = []
    params: list[object] = []
    if deployment is not None:
        where.append("deployment = ?")
        params.append(deployment)
    if active:
        where.append("paused = ?")
        params.append(False)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return conn.query(f"SELECT {COLUMNS} FROM schedules{clause} ORDER BY deployment, id", params)


def set_schedules_paused(conn: Conn, deployment: str, paused: bool, now: datetime) -> list[Row]:
    """Pause or resume every schedule of a deployment; NotFound when it has none."""
    changed = conn.execute(
        "UPDATE schedules SET paused = ?, updated = ? WHERE deployment = ?",
        (paused, conn.time(now), deployment),
    )
    if changed == 0:
        raise NotFound(f"deployment {deployment!r} has no schedule")
    return list_schedules(conn, deployment)


def last_scheduled_due(conn: Conn, schedule_id: uuid.UUID | str) -> datetime | None:
    """The latest due time a schedule has made a run for (whatever became of it)."""
    row = conn.one(
        "SELECT max(due) AS due FROM flow_runs WHERE schedule_id = ? "
        "AND idempotency_key IS NOT NULL",
        (conn.uid(schedule_id),),
    )
    if row is None or row["due"] is None:
        return None
    due = row["due"]
    if isinstance(due, str):  # SQLite gives an aggregate's value as stored: ISO text
        due = datetime.fromisoformat(due)
    return due  # type: ignore[no-any-return]


def count_waiting_runs(conn: Conn, schedule_id: uuid.UUID | str) -> int:
    """How many runs a schedule has made that no worker has claimed yet."""
    row = conn.one(
        "SELECT count(*) AS n FROM flow_runs WHERE schedule_id = ? AND state = 'scheduled'",
        (conn.uid(schedule_id),),
    )
    return 0 if row is None else int(row["n"])


def list_future_runs_of(conn: Conn, schedule_ids: list[uuid.UUID], after: datetime) -> list[Row]:
    """The still-scheduled runs these schedules made that are due after `after`."""
    if not schedule_ids:
        return []
    return conn.query(
        "SELECT id FROM flow_runs WHERE state = 'scheduled' AND due > ? "
        f"AND schedule_id IN ({', '.join('?' * len(schedule_ids))})",
        (conn.time(after), *(conn.uid(i) for i in schedule_ids)),
    )


def release_run_key(conn: Conn, run_id: uuid.UUID | str) -> None:
    """Forget a cancelled scheduled run's idempotency key, so that resuming its schedule can
    make a run for that time again."""
    conn.execute(
        "UPDATE flow_runs SET idempotency_key = NULL WHERE id = ? AND state = 'cancelled'",
        (conn.uid(run_id),),
    )


def schedule_json(row: Row, next_runs: list[datetime] | None = None) -> dict[str, Any]:
    """A schedule as the API shows it."""
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "cron": row["cron"],
        "timezone": row["timezone"],
        "interval_s": row["interval_s"],
        "paused": bool(row["paused"]),
    }
    if next_runs is not None:
        out["next_runs"] = [d.isoformat() for d in next_runs]
    return out
