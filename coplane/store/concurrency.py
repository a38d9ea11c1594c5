"""Concurrency limits: named slot counts, and leases that hold or wait for slots in arrival order.

Every change to a limit's leases runs in one transaction that first locks the limit's row
(`FOR UPDATE` on PostgreSQL; SQLite's transactions take the write lock up front), so two
server replicas on one database grant slots one at a time and never past the limit. Times
come from the caller (the server's clock), and a lease whose `expires` has passed is dropped
before anything is granted: that is how a crashed holder's slots come back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from coplane.store.dialects import Conn, Row, for_update
from coplane.store.errors import NotFound

MAX_NAME = 200
LEASE_COLUMNS = "id, limit_name, holder, occupy, position, granted, requested, expires"


@dataclass(frozen=True, slots=True)
class LeaseState:
    """Where one lease stands after a call: holding its slots, or waiting with some ahead."""

    id: uuid.UUID
    state: Literal["held", "waiting"]
    position: int
    ahead: int  # waiters before it
    expires: datetime

    def json(self) -> dict[str, Any]:
        return {
            "lease_id": str(self.id),
            "state": self.state,
            "position": self.position,
            "ahead": self.ahead,
            "expires": self.expires.isoformat(),
        }


def check_limit_name(name: str) -> str | None:
    """Why `name` cannot name a limit, or None."""
    if not name or len(name) > MAX_NAME:
        return f"must be 1 to {MAX_NAME} characters"
    if not all(c.isalnum() or c in "-_.:" for c in name):
        return "may hold only letters, digits and - _ . :"
    return None


def set_limit(conn: Conn, name: str, slots: int, now: datetime) -> bool:
    """Create the limit or change its slot count; True when it is new."""
    with conn.transaction():
        changed = conn.execute(
            "UPDATE concurrency_limits SET slots = ?, updated = ? WHERE name = ?",
            (slots, conn.time(now), name),
        )
        if changed:
            _grant(conn, name, slots, now)  # more slots may let waiters in
            return False
        conn.execute(
            "INSERT INTO concurrency_limits (name, slots, created, updated) VALUES (?, ?, ?, ?)",
            (name, slots, conn.time(now), conn.time(now)),
        )
        return True


def delete_limit(conn: Conn, name: str) -> None:
    """Forget a limit and its leases; NotFound when there is none."""
    with conn.transaction():
        conn.execute("DELETE FROM concurrency_leases WHERE limit_name = ?", (name,))
        if not conn.execute("DELETE FROM concurrency_limits WHERE name = ?", (name,)):
            raise NotFound(f"no concurrency limit named {name!r}")


def list_limits(conn: Conn, now: datetime) -> list[dict[str, Any]]:
    """Every limit with its live holders and its waiters in the order they will be served."""
    limits = conn.query(
        "SELECT name, slots, created, updated FROM concurrency_limits ORDER BY name"
    )
    leases = conn.query(
        f"SELECT {LEASE_COLUMNS} FROM concurrency_leases WHERE expires >= ? "
        "ORDER BY limit_name, position",
        (conn.time(now),),
    )
    by_limit: dict[str, list[Row]] = {}
    for lease in leases:
        by_limit.setdefault(lease["limit_name"], []).append(lease)
    out = []
    for row in limits:
        mine = by_limit.get(row["name"], [])
        holders = [_lease_json(x) for x in mine if x["granted"] is not None]
        out.append(
            {
                "name": row["name"],
                "limit": row["slots"],
                "used": sum(x["occupy"] for x in holders),
                "holders": holders,
                "waiters": [_lease_json(x) for x in mine if x["granted"] is None],
                "created": row["created"].isoformat(),
                "updated": row["updated"].isoformat(),
            }
        )
    return out


def _lease_json(row: Row) -> dict[str, Any]:
    return {
        "lease_id": str(row["id"]),
        "holder": row["holder"],
        "occupy": row["occupy"],
        "position": row["position"],
        "requested": row["requested"].isoformat(),
        "granted": None if row["granted"] is None else row["granted"].isoformat(),
        "expires": row["expires"].isoformat(),
    }


def _lock_limit(conn: Conn, name: str) -> Row:
    row = conn.one(
        "SELECT slots, next_position FROM concurrency_limits WHERE name = ?"
        + for_update(conn.dialect),
        (name,),
    )
    if row is None:
        raise NotFound(f"no concurrency limit named {name!r}")
    return row


def _grant(conn: Conn, name: str, slots: int, now: datetime) -> None:
    """Drop expired leases, then give free slots to waiters strictly in arrival order.

    The first waiter that does not fit stops the grants: a later, smaller request never
    overtakes it, so nobody waits forever behind a stream of small ones.
    """
    conn.execute(
        "DELETE FROM concurrency_leases WHERE limit_name = ? AND expires < ?",
        (name, conn.time(now)),
    )
    leases = conn.query(
        "SELECT id, occupy, granted FROM concurrency_leases WHERE limit_name = ? ORDER BY position",
        (name,),
    )
    used = sum(x["occupy"] for x in leases if x["granted"] is not None)
    for lease in leases:
        if lease["granted"] is not None:
            continue
        if used + lease["occupy"] > slots:
            break
        conn.execute(
            "UPDATE concurrency_leases SET granted = ? WHERE id = ?",
            (conn.time(now), conn.uid(lease["id"])),
        )
        used += lease["occupy"]


def _state(conn: Conn, name: str, lease_id: uuid.UUID) -> LeaseState:
    row = conn.one(
        "SELECT id, position, granted, expires FROM concurrency_leases "
        "WHERE id = ? AND limit_name = ?",
        (conn.uid(lease_id), name),
    )
    if row is None:
        raise NotFound(f"lease {lease_id} of {name!r} has expired or was released")
    ahead = 0
    if row["granted"] is None:
        found = conn.one(
            "SELECT COUNT(*) AS n FROM concurrency_leases "
            "WHERE limit_name = ? AND granted IS NULL AND position < ?",
            (name, row["position"]),
        )
        ahead = int(found["n"]) if found else 0
    return LeaseState(
        uuid.UUID(str(row["id"])),
        "held" if row["granted"] is not None else "waiting",
        int(row["position"]),
        ahead,
        row["expires"],
    )


def acquire_slots(
    conn: Conn,
    name: str,
    *,
    holder: str,
    occupy: int,
    lease_s: float,
    now: datetime,
    lease_id: uuid.UUID | None = None,
) -> LeaseState:
    """Join the queue of `name` (or, with `lease_id`, stay in it) and take slots if it is our turn.

    A new request is a waiter at the back; asking again with its `lease_id` renews it and
    grants it when the slots before it have been taken and enough are free. NotFound for an
    unknown limit, or for a lease that expired (the caller joins again, at the back);
    ValueError when `occupy` exceeds the limit, which could never be granted.
    """
    expires = now + timedelta(seconds=lease_s)
    with conn.transaction():
        limit = _lock_limit(conn, name)
        if occupy > limit["slots"]:
            raise ValueError(f"occupy {occupy} is more than the {limit['slots']} slots of {name!r}")
        if lease_id is None:
            lease_id = uuid.uuid4()
            conn.execute(
                f"INSERT INTO concurrency_leases ({LEASE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, NULL, ?, ?)",
                (conn.uid(lease_id), name, holder, occupy, limit["next_position"],
                 conn.time(now), conn.time(expires)),
            )  # fmt: skip
            conn.execute(
                "UPDATE concurrency_limits SET next_position = next_position + 1 WHERE name = ?",
                (name,),
            )
        else:
            _renew(conn, name, lease_id, now, expires)
        _grant(conn, name, limit["slots"], now)
        return _state(conn, name, lease_id)


def _renew(conn: Conn, name: str, lease_id: uuid.UUID, now: datetime, expires: datetime) -> None:
    renewed = conn.execute(
        "UPDATE concurrency_leases SET expires = ? "
        "WHERE id = ? AND limit_name = ? AND expires >= ?",
        (conn.time(expires), conn.uid(lease_id), name, conn.time(now)),
    )
    if not renewed:
        raise NotFound(f"lease {lease_id} of {name!r} has expired or was released")


def renew_lease(
    conn: Conn, name: str, lease_id: uuid.UUID, *, lease_s: float, now: datetime
) -> LeaseState:
    """Push a lease's expiry `lease_s` from now; NotFound when it has already expired."""
    with conn.transaction():
        limit = _lock_limit(conn, name)
        _renew(conn, name, lease_id, now, now + timedelta(seconds=lease_s))
        _grant(conn, name, limit["slots"], now)
        return _state(conn, name, lease_id)


def release_lease(conn: Conn, name: str, lease_id: uuid.UUID, now: datetime) -> bool:
    """Give back a lease's slots (or leave the queue) and let the next waiters in.

    False when the lease was gone already (expired): releasing twice is harmless.
    """
    with conn.transaction():
        limit = _lock_limit(conn, name)
        gone = conn.execute(
            "DELETE FROM concurrency_leases WHERE id = ? AND limit_name = ?",
            (conn.uid(lease_id), name),
        )
        _grant(conn, name, limit["slots"], now)
        return bool(gone)
