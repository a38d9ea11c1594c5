"""Cron monitors: whether a slug is one, and the open run an end ping belongs to."""

from __future__ import annotations

from coplane.events.derive import run_uuid
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


def open_start(conn: Conn, pipeline: str, recent: int) -> str | None:
    """The run key of the run begun by the latest start ping (with or without rid), if it is
    still running (looking at the pipeline's `recent` newest runs): the one start an end
    that names no start of its own finishes, as Healthchecks.io keeps one `last_start`."""
    row = conn.one(
        "SELECT r.run_key, r.state FROM (SELECT id, run_key, state, sort_at FROM runs "
        "WHERE pipeline = ? ORDER BY sort_at DESC, id DESC LIMIT ?) r "
        "WHERE EXISTS (SELECT 1 FROM events e WHERE e.run_id = r.id AND e.event = ?) "
        "ORDER BY r.sort_at DESC, r.id DESC LIMIT 1",
        (pipeline, recent, RUN_STARTED),
    )
    if row is None or row["state"] != "running":
        return None
    key: str = row["run_key"]
    return key


def has_run(conn: Conn, pipeline: str, run_key: str) -> bool:
    """Whether the pipeline has a run with this key."""
    row = conn.one(
        "SELECT 1 AS found FROM runs WHERE id = ?", (conn.uid(run_uuid(pipeline, run_key)),)
    )
    return row is not None
