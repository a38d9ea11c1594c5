"""Cron monitors: whether a slug is one, and the open run a ping without rid belongs to."""

from __future__ import annotations

from coplane.events.names import RUN_STARTED
from coplane.store.dialects import Conn


def _json_text(conn: Conn, column: str, field: str) -> str:
    """SQL for a JSON column's top-level text field (SQLite before 3.38 has no ->>)."""
    if conn.dialect == "postgresql":
        return f"{column} ->> '{field}'"
    return f"json_extract({column}, '$.{field}')"


def is_monitor(conn: Conn, slug: str, pipeline: str) -> bool:
    """Whether `slug` is a known monitor: its pipeline exists or a heartbeat SLA watches it."""
    if conn.one("SELECT 1 AS found FROM resources WHERE id = ?", (pipeline,)):
        return True
    kind, target = _json_text(conn, "definition", "kind"), _json_text(conn, "definition", "target")
    row = conn.one(
        f"SELECT 1 AS found FROM slas WHERE {kind} = 'heartbeat' AND {target} = ? LIMIT 1",
        (slug,),
    )
    return row is not None


def open_plain_start(conn: Conn, pipeline: str, recent: int) -> str | None:
    """The run key of the latest run begun by a start ping without rid, if still running
    (looking at the pipeline's `recent` newest runs)."""
    rid = _json_text(conn, "e.payload", "rid")
    row = conn.one(
        "SELECT r.run_key, r.state FROM (SELECT id, run_key, state, sort_at FROM runs "
        "WHERE pipeline = ? ORDER BY sort_at DESC, id DESC LIMIT ?) r "
        "WHERE EXISTS (SELECT 1 FROM events e WHERE e.run_id = r.id AND e.event = ? "
        f"AND {rid} IS NULL) ORDER BY r.sort_at DESC, r.id DESC LIMIT 1",
        (pipeline, recent, RUN_STARTED),
    )
    if row is None or row["state"] != "running":
        return None
    key: str = row["run_key"]
    return key
