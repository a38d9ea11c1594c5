"""Stored connections: a type, the fields shown in clear, and the secret fields' token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound

COLUMNS = "name, type, fields, secrets, created, updated"


def put_connection(
    conn: Conn, name: str, kind: str, fields: dict[str, Any], token: str | None, now: datetime
) -> bool:
    """Store or replace a connection whole (setting it again is how it is rotated); True
    when it is new."""
    # one statement, so that two concurrent sets of one name leave one of them, whole
    [row] = conn.query(
        f"INSERT INTO connections ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET type = excluded.type, fields = excluded.fields, "
        "secrets = excluded.secrets, updated = excluded.updated RETURNING created",
        (name, kind, conn.json(fields), token, conn.time(now), conn.time(now)),
    )
    return bool(row["created"] == now)


def read_connection(conn: Conn, name: str) -> Row:
    """One connection with its secrets' token; NotFound when none has that name."""
    row = conn.one(f"SELECT {COLUMNS} FROM connections WHERE name = ?", (name,))
    if row is None:
        raise NotFound(f"no connection named {name!r}")
    return row


def list_connections(conn: Conn) -> list[Row]:
    """Every connection, by name."""
    return conn.query(f"SELECT {COLUMNS} FROM connections ORDER BY name")


def delete_connection(conn: Conn, name: str) -> None:
    """Forget a connection; NotFound when none has that name."""
    if not conn.execute("DELETE FROM connections WHERE name = ?", (name,)):
        raise NotFound(f"no connection named {name!r}")


def rewrap_connection_secrets(conn: Conn, rewrap: Callable[[str], str], now: datetime) -> int:
    """Replace every secrets token by `rewrap(token)` in one transaction; how many.

    An exception from `rewrap` (a token no key opens) changes nothing.
    """
    rows = conn.query("SELECT name, secrets FROM connections WHERE secrets IS NOT NULL")
    fresh = [(rewrap(r["secrets"]), r["name"]) for r in rows]
    with conn.transaction():
        for token, name in fresh:
            conn.execute(
                "UPDATE connections SET secrets = ?, updated = ? WHERE name = ?",
                (token, conn.time(now), name),
            )
    return len(fresh)
