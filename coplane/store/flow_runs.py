"""Flow runs of deployments as workers see them: created, claimed, heartbeaten, ended; workers.

A flow run's id is the id of its row in `runs` (what `/api/runs/{id}` takes): `runs` holds what
was observed (folded from events), `flow_runs` the orchestration state a worker moves on.
Every change here is conditional on the state it expects, so two workers, two servers or a
restart never claim, crash or cancel one run twice: the caller acts only when a row changed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row, lock_skipping_locked
from coplane.store.errors import Conflict, NotFound

COLUMNS = (
    "id, flow, run_key, deployment, work_pool, state, parameters, related, due, "
    "idempotency_key, attempt, retry_of, worker, claimed, started, ended, heartbeat, "
    "cancel_requested, error, created, schedule_id"
)
ACTIVE = ("pending", "running")
TERMINAL = ("completed", "failed", "cancelled", "crashed")


@dataclass(frozen=True, slots=True)
class NewFlowRun:
    """A flow run to create; `idempotency_key` makes creating it twice create it once."""

    id: uuid.UUID
    flow: str
    run_key: str
    deployment: str
    work_pool: str
    parameters: dict[str, Any]
    due: datetime
    idempotency_key: str | None = None
    related: list[dict[str, str]] = field(default_factory=list)
    attempt: int = 1
    retry_of: uuid.UUID | None = None
    schedule_id: uuid.UUID | None = None


def insert_flow_run(conn: Conn, run: NewFlowRun, now: datetime) -> bool:
    """Create a scheduled run; False (and nothing written) when its idempotency key exists."""
    changed = conn.execute(
        f"INSERT INTO flow_runs ({COLUMNS}) VALUES "
        "(?, ?, ?, ?, ?, 'scheduled', ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL, "
        "NULL, ?, ?) ON CONFLICT DO NOTHING",
        (
            conn.uid(run.id), run.flow, run.run_key, run.deployment, run.work_pool,
            conn.json(run.parameters), conn.json(run.related), conn.time(run.due),
            run.idempotency_key, run.attempt, conn.uid(run.retry_of), conn.time(now),
            conn.uid(run.schedule_id),
        ),
    )  # fmt: skip
    return changed == 1


def read_flow_run(conn: Conn, run_id: uuid.UUID | str) -> Row:
    """One flow run; NotFound when that run is not a deployment's."""
    row = find_flow_run(conn, run_id)
    if row is None:
        raise NotFound(f"run {run_id} is not a run of a deployment")
    return row


def find_flow_run(conn: Conn, run_id: uuid.UUID | str) -> Row | None:
    """One flow run, or None when that run is not a deployment's (nor a run id at all)."""
    try:
        uid = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(run_id)
    except ValueError:
        return None  # PostgreSQL would refuse the text for its uuid column
    return conn.one(f"SELECT {COLUMNS} FROM flow_runs WHERE id = ?", (conn.uid(uid),))


def list_flow_runs(
    conn: Conn, *, deployment: str | None = None, state: str | None = None, limit: int = 50
) -> list[Row]:
    """Flow runs, latest due first."""
    where, params = [], []
    if deployment is not None:
        where.append("deployment = ?")
        params.append(deployment)
    if state is not None:
        where.append("state = ?")
        params.append(state)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return conn.query(
        f"SELECT {COLUMNS} FROM flow_runs{clause} ORDER BY due DESC, id DESC LIMIT ?",
        (*params, limit),
    )


def has_due_flow_run(conn: Conn, pool: str, now: datetime) -> bool:
    """Whether `pool` has a scheduled run due: a read, so that an idle worker's poll takes no
    write lock (SQLite has one for the whole database)."""
    return (
        conn.one(
            "SELECT 1 AS due FROM flow_runs WHERE work_pool = ? AND state = 'scheduled' "
            "AND due <= ? LIMIT 1",
            (pool, conn.time(now)),
        )
        is not None
    )


def claim_flow_run(conn: Conn, pool: str, worker: str, now: datetime) -> Row | None:
    """Claim the earliest due scheduled run of `pool` (state `pending`, owned by `worker`).

    A deployment at its concurrency limit is passed over. Call it inside a transaction: on
    PostgreSQL the candidate is locked with SKIP LOCKED, so concurrent workers each take a
    different run; on SQLite the transaction holds the write lock. The UPDATE is conditional
    on the run still being scheduled either way.
    """
    candidate = conn.one(
        "SELECT f.id, f.deployment FROM flow_runs f JOIN deployments d ON d.name = f.deployment "
        "WHERE f.work_pool = ? AND f.state = 'scheduled' AND f.due <= ? "
        "AND (d.concurrency_limit IS NULL OR d.concurrency_limit > (SELECT count(*) "
        "FROM flow_runs a WHERE a.deployment = f.deployment AND a.state IN (?, ?))) "
        f"ORDER BY f.due, f.id LIMIT 1{lock_skipping_locked(conn.dialect, 'f')}",
        (pool, conn.time(now), *ACTIVE),
    )
    if candidate is None:
        return None
    if conn.dialect == "postgresql":
        # two workers may each pass the limit check on different runs of one deployment:
        # serialise claims of a limited deployment on its row, then count again
        limit = conn.one(
            "SELECT concurrency_limit FROM deployments WHERE name = ? FOR UPDATE",
            (candidate["deployment"],),
        )
        if limit is not None and limit["concurrency_limit"] is not None:
            active = conn.one(
                "SELECT count(*) AS n FROM flow_runs WHERE deployment = ? AND state IN (?, ?)",
                (candidate["deployment"], *ACTIVE),
            )
            if active is not None and active["n"] >= limit["concurrency_limit"]:
                return None
    changed = conn.execute(
        "UPDATE flow_runs SET state = 'pending', worker = ?, claimed = ?, heartbeat = ? "
        "WHERE id = ? AND state = 'scheduled'",
        (worker, conn.time(now), conn.time(now), conn.uid(candidate["id"])),
    )
    return read_flow_run(conn, candidate["id"]) if changed == 1 else None


def set_flow_run_state(
    conn: Conn,
    run_id: uuid.UUID | str,
    state: str,
    now: datetime,
    *,
    expect: tuple[str, ...],
    error: str | None = None,
) -> bool:
    """Move a run to `state` if it is in one of `expect`; whether it moved."""
    ends = state in TERMINAL
    changed = conn.execute(
        "UPDATE flow_runs SET state = ?, error = COALESCE(?, error), "
        "started = CASE WHEN ? = 'running' THEN ? ELSE started END, "
        "ended = CASE WHEN ? THEN ? ELSE ended END "
        f"WHERE id = ? AND state IN ({', '.join('?' * len(expect))})",
        (state, error, state, conn.time(now), ends, conn.time(now), conn.uid(run_id), *expect),
    )
    return changed == 1


def request_cancel(conn: Conn, run_id: uuid.UUID | str, now: datetime) -> Row:
    """Ask for a run to stop: one not yet started ends `cancelled` now; a running one is
    marked for its worker to stop. Conflict when it has ended already."""
    row = read_flow_run(conn, run_id)
    if row["state"] in TERMINAL:
        raise Conflict(f"run {run_id} has already ended ({row['state']})")
    conn.execute(
        "UPDATE flow_runs SET cancel_requested = COALESCE(cancel_requested, ?) WHERE id = ?",
        (conn.time(now), conn.uid(run_id)),
    )
    if row["state"] == "scheduled":
        set_flow_run_state(conn, run_id, "cancelled", now, expect=("scheduled",))
    return read_flow_run(conn, run_id)


def beat_flow_runs(conn: Conn, worker: str, ids: list[uuid.UUID], now: datetime) -> None:
    """Record that `worker` still runs `ids`."""
    if ids:
        conn.execute(
            f"UPDATE flow_runs SET heartbeat = ? WHERE worker = ? "
            f"AND id IN ({', '.join('?' * len(ids))})",
            (conn.time(now), worker, *(conn.uid(i) for i in ids)),
        )


def list_stopping_flow_runs(conn: Conn, ids: list[uuid.UUID]) -> list[Row]:
    """Those of `ids` that were asked to stop, or that another server declared crashed."""
    if not ids:
        return []
    return conn.query(
        f"SELECT {COLUMNS} FROM flow_runs WHERE id IN ({', '.join('?' * len(ids))}) "
        "AND (cancel_requested IS NOT NULL OR state IN ('cancelled', 'crashed'))",
        [conn.uid(i) for i in ids],
    )


def list_stale_flow_runs(conn: Conn, before: datetime) -> list[Row]:
    """Claimed or running runs whose worker last heartbeat before `before`."""
    return conn.query(
        f"SELECT {COLUMNS} FROM flow_runs WHERE state IN (?, ?) AND heartbeat < ? "
        "ORDER BY heartbeat",
        (*ACTIVE, conn.time(before)),
    )


def queue_depths(conn: Conn, now: datetime) -> dict[str, int]:
    """Per work pool, the scheduled runs that are due now."""
    rows = conn.query(
        "SELECT work_pool, count(*) AS n FROM flow_runs WHERE state = 'scheduled' AND due <= ? "
        "GROUP BY work_pool",
        (conn.time(now),),
    )
    return {r["work_pool"]: int(r["n"]) for r in rows}


# --- workers ----------------------------------------------------------------------------


def beat_worker(conn: Conn, worker: str, pool: str, hostname: str, pid: int, now: datetime) -> None:
    """Record a worker's heartbeat (registering it on the first)."""
    changed = conn.execute(
        "UPDATE workers SET heartbeat = ?, stopped = NULL WHERE id = ?",
        (conn.time(now), worker),
    )
    if changed == 0:
        conn.execute(
            "INSERT INTO workers (id, pool, hostname, pid, started, heartbeat) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (worker, pool, hostname, pid, conn.time(now), conn.time(now)),
        )


def stop_worker(conn: Conn, worker: str, now: datetime) -> None:
    """Record that a worker stopped on purpose."""
    conn.execute("UPDATE workers SET stopped = ? WHERE id = ?", (conn.time(now), worker))


def list_workers(conn: Conn, since: datetime) -> list[Row]:
    """Workers that heartbeat since `since` or stopped after it, by pool and id."""
    return conn.query(
        "SELECT id, pool, hostname, pid, started, heartbeat, stopped FROM workers "
        "WHERE heartbeat >= ? ORDER BY pool, id",
        (conn.time(since),),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def flow_run_json(row: Row) -> dict[str, Any]:
    """A flow run's orchestration state as the API shows it."""
    return {
        "id": str(row["id"]),
        "deployment": row["deployment"],
        "flow": row["flow"],
        "work_pool": row["work_pool"],
        "state": row["state"],
        "parameters": row["parameters"],
        "related": row["related"],
        "due": _iso(row["due"]),
        "attempt": row["attempt"],
        "retry_of": None if row["retry_of"] is None else str(row["retry_of"]),
        "worker": row["worker"],
        "claimed": _iso(row["claimed"]),
        "started": _iso(row["started"]),
        "ended": _iso(row["ended"]),
        "heartbeat": _iso(row["heartbeat"]),
        "cancel_requested": _iso(row["cancel_requested"]),
        "error": row["error"],
        "schedule": None if row["schedule_id"] is None else str(row["schedule_id"]),
    }
