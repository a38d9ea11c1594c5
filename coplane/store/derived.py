"""Upserts of the derived tables (runs, resources, assets, checks, lineage edges).

Each upsert merges by the same rules as `coplane.events.derive`, so the stored row is the
join of everything ever written for it. On PostgreSQL each table is one statement whose
rows arrive as one JSON parameter (`json_to_recordset`), encoded by msgspec in C: adapting
Python lists to array parameters cost more than the statements themselves. SQLite runs the
same upsert per row, in process. Rows are written in key order: concurrent writers take row
locks in the same order and never deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from coplane.events.derive import AssetRow, CheckRow, Derived, EdgeRow, ResourceRow, RunRow
from coplane.events.model import encode_json
from coplane.events.names import TERMINAL_RANK
from coplane.store.dialects import Conn, greatest, json_merge, least

# (column, PostgreSQL type) of each table, in the order rows are given
RUN_COLUMNS = (
    ("id", "uuid"), ("pipeline", "text"), ("run_key", "text"), ("source", "text"),
    ("state", "text"), ("state_rank", "integer"), ("state_at", "timestamptz"),
    ("error", "text"), ("scheduled", "timestamptz"), ("started", "timestamptz"),
    ("ended", "timestamptz"), ("parent_run", "uuid"), ("nominal_start", "timestamptz"),
    ("first_seen", "timestamptz"),
)  # fmt: skip
RESOURCE_COLUMNS = (
    ("id", "text"), ("kind", "text"), ("name", "text"), ("labels", "jsonb"), ("source", "text"),
    ("parent", "text"), ("first_seen", "timestamptz"), ("last_seen", "timestamptz"),
)  # fmt: skip
ASSET_COLUMNS = (
    ("id", "text"), ("updated", "timestamptz"), ("producer", "text"), ("run_id", "uuid"),
    ("event_id", "uuid"),
)  # fmt: skip
CHECK_COLUMNS = (
    ("asset", "text"), ("check_name", "text"), ("passed", "boolean"), ("at", "timestamptz"),
    ("message", "text"), ("event_id", "uuid"),
)  # fmt: skip
EDGE_COLUMNS = (
    ("source", "text"), ("target", "text"), ("first_seen", "timestamptz"),
    ("last_seen", "timestamptz"),
)  # fmt: skip


def write_derived(conn: Conn, d: Derived) -> None:
    """Merge what a batch implies into the derived tables, in the caller's transaction."""
    # Nothing below reads a result: on PostgreSQL one round trip carries all the upserts.
    with conn.pipeline():
        if d.resources:
            upsert_resources(conn, d)
        if d.runs:
            upsert_runs(conn, d)
        if d.assets:
            upsert_assets(conn, d)
        if d.checks:
            upsert_checks(conn, d)
        if d.edges:
            upsert_edges(conn, d)


def _upsert(
    conn: Conn,
    table: str,
    columns: Sequence[tuple[str, str]],
    objects: Sequence[Any],
    to_row: Callable[[Any], tuple[Any, ...]],
    conflict: str,
    computed: dict[str, str] | None = None,
) -> None:
    """Upsert `objects` (dataclasses whose fields are named like the columns) into `table`.

    `computed` gives SQL for columns that are not fields (PostgreSQL); `to_row` builds the
    SQLite parameters, which carry those columns too.
    """
    names = ", ".join(f'"{name}"' for name, _ in columns)
    if conn.dialect == "postgresql":
        types = ", ".join(f'"{name}" {kind}' for name, kind in columns)
        select = ", ".join((computed or {}).get(name, f'"{name}"') for name, _ in columns)
        conn.execute(
            f"INSERT INTO {table} ({names}) SELECT {select} "
            f"FROM json_to_recordset(?::json) AS t({types}) {conflict}",
            (encode_json(objects).decode(),),
        )
    else:
        marks = ", ".join("?" * len(columns))
        conn.executemany(
            f"INSERT INTO {table} ({names}) VALUES ({marks}) {conflict}",
            [to_row(o) for o in objects],
        )


def upsert_runs(conn: Conn, d: Derived) -> None:
    """Merge run rows: highest-ranked state wins, earliest start wins."""
    newer = (
        "(excluded.state_at IS NOT NULL AND (runs.state_at IS NULL OR "
        "(excluded.state_rank, excluded.state_at, excluded.state) > "
        "(runs.state_rank, runs.state_at, runs.state)))"
    )
    on_newer = ", ".join(
        f"{col} = CASE WHEN {newer} THEN excluded.{col} ELSE runs.{col} END"
        for col in ("state", "state_rank", "state_at", "error", "ended")
    )
    conflict = (
        f"ON CONFLICT (id) DO UPDATE SET {on_newer}, "
        f"scheduled = {least('runs.scheduled', 'excluded.scheduled', conn.dialect)}, "
        f"started = {least('runs.started', 'excluded.started', conn.dialect)}, "
        f"first_seen = {least('runs.first_seen', 'excluded.first_seen', conn.dialect)}, "
        "parent_run = COALESCE(runs.parent_run, excluded.parent_run), "
        "nominal_start = COALESCE(runs.nominal_start, excluded.nominal_start), "
        "source = CASE WHEN runs.source = 'unknown' THEN excluded.source ELSE runs.source END"
    )
    t, u = conn.time, conn.uid

    def to_row(r: RunRow) -> tuple[Any, ...]:
        return (u(r.id), r.pipeline, r.run_key, r.source, r.state, r.state_rank, t(r.state_at),
                r.error, t(r.scheduled), t(r.started), t(r.ended), u(r.parent_run),
                t(r.nominal_start), t(r.first_seen))  # fmt: skip

    ended = {"ended": f"CASE WHEN state_rank = {TERMINAL_RANK} THEN state_at END"}
    runs = [r for _, r in sorted(d.runs.items())]
    _upsert(conn, "runs", RUN_COLUMNS, runs, to_row, conflict, ended)


def upsert_resources(conn: Conn, d: Derived) -> None:
    """Merge resources: the latest description wins (labels key by key), first/last seen
    widen."""
    newer = "excluded.last_seen >= resources.last_seen"
    latest = ", ".join(
        f"{col} = CASE WHEN {newer} THEN COALESCE(excluded.{col}, resources.{col}) "
        f"ELSE COALESCE(resources.{col}, excluded.{col}) END"
        for col in ("kind", "name", "parent")
    )
    # labels key by key, the newer write's winning: `merge_labels` of events/derive.py
    newer_labels = json_merge("resources.labels", "excluded.labels", conn.dialect)
    older_labels = json_merge("excluded.labels", "resources.labels", conn.dialect)
    conflict = (
        f"ON CONFLICT (id) DO UPDATE SET {latest}, "
        f"labels = CASE WHEN {newer} THEN {newer_labels} ELSE {older_labels} END, "
        "source = CASE WHEN resources.source = 'unknown' OR "
        f"({newer} AND excluded.source <> 'unknown') THEN excluded.source "
        "ELSE resources.source END, "
        f"first_seen = {least('resources.first_seen', 'excluded.first_seen', conn.dialect)}, "
        f"last_seen = {greatest('resources.last_seen', 'excluded.last_seen', conn.dialect)}"
    )
    t = conn.time

    def to_row(r: ResourceRow) -> tuple[Any, ...]:
        return (r.id, r.kind, r.name, conn.json(r.labels), r.source, r.parent,
                t(r.first_seen), t(r.last_seen))  # fmt: skip

    resources = [r for _, r in sorted(d.resources.items())]
    _upsert(conn, "resources", RESOURCE_COLUMNS, resources, to_row, conflict)


def upsert_assets(conn: Conn, d: Derived) -> None:
    """Keep each asset's latest update."""

    def to_row(a: AssetRow) -> tuple[Any, ...]:
        return (a.id, conn.time(a.updated), a.producer, conn.uid(a.run_id), conn.uid(a.event_id))

    conflict = (
        "ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, "
        "producer = excluded.producer, run_id = excluded.run_id, event_id = excluded.event_id "
        "WHERE excluded.updated > assets.updated"
    )
    assets = [a for _, a in sorted(d.assets.items())]
    _upsert(conn, "assets", ASSET_COLUMNS, assets, to_row, conflict)


def upsert_checks(conn: Conn, d: Derived) -> None:
    """Keep each check's latest result per asset."""

    def to_row(c: CheckRow) -> tuple[Any, ...]:
        return (c.asset, c.check_name, c.passed, conn.time(c.at), c.message, conn.uid(c.event_id))

    conflict = (
        "ON CONFLICT (asset, check_name) DO UPDATE SET passed = excluded.passed, "
        "at = excluded.at, message = excluded.message, event_id = excluded.event_id "
        "WHERE excluded.at > checks.at"
    )
    checks = [c for _, c in sorted(d.checks.items())]
    _upsert(conn, "checks", CHECK_COLUMNS, checks, to_row, conflict)


def upsert_edges(conn: Conn, d: Derived) -> None:
    """Record lineage edges with when they were first and last seen."""

    def to_row(e: EdgeRow) -> tuple[Any, ...]:
        return (e.source, e.target, conn.time(e.first_seen), conn.time(e.last_seen))

    conflict = (
        "ON CONFLICT (source, target) DO UPDATE SET "
        f"first_seen = {least('lineage_edges.first_seen', 'excluded.first_seen', conn.dialect)}, "
        f"last_seen = {greatest('lineage_edges.last_seen', 'excluded.last_seen', conn.dialect)}"
    )
    edges = [e for _, e in sorted(d.edges.items())]
    _upsert(conn, "lineage_edges", EDGE_COLUMNS, edges, to_row, conflict)
