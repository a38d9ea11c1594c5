"""Keyset pages, newest first on (time, id): stable under inserts, no OFFSET scans."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row


def encode_cursor(at: datetime, key: object) -> str:
    """An opaque cursor for the page after the row at (`at`, `key`)."""
    raw = json.dumps([at.isoformat(), str(key)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Undo `encode_cursor`; raise ValueError when the cursor was not made by us."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, key = json.loads(base64.urlsafe_b64decode(padded))
        parsed, uid = datetime.fromisoformat(at), uuid.UUID(key)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError("cursor is not one this server returned") from exc
    if parsed.tzinfo is None:
        raise ValueError("cursor is not one this server returned")
    return parsed, uid


def newest_first(
    conn: Conn,
    select: str,
    time_column: str,
    where: list[str],
    params: list[Any],
    limit: int,
    cursor: str | None,
) -> tuple[list[Row], str | None]:
    """One page of `select` ordered by (`time_column`, id) descending, and the next cursor."""
    if cursor is not None:
        at, key = decode_cursor(cursor)
        where = [*where, f"({time_column}, id) < (?, ?)"]
        params = [*params, conn.time(at), conn.uid(key)]
    sql = (
        select
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY {time_column} DESC, id DESC LIMIT ?"
    )
    rows = conn.query(sql, (*params, limit + 1))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1][time_column], rows[-1]["id"])
