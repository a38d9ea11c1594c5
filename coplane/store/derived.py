"""Upserts of the derived tables (runs, resources, assets, checks, lineage edges).

Each upsert merges by the same rules as `coplane.events.derive`, so the stored row is the
join of everything ever written for it. Rows are written in key order: concurrent writers
then take row locks in the same order and never deadlock.
"""

from __future__ import annotations

from coplane.events.derive import Derived
from coplane.store.dialects import Conn, greatest, least


def write_derived(conn: Conn, d: Derived) -> None:
    """Merge what a batch implies into the derived tables, in the caller's transaction."""
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


def _runs_sql(conn: Conn) -> str:
    newer = (
        "(excluded.state_at IS NOT NULL AND (runs.state_at IS NULL OR "
        "(excluded.state_rank, excluded.state_at, excluded.state) > "
        "(runs.state_rank, runs.state_at, runs.state)))"
    )
    on_newer = ", ".join(
        f"{col} = CASE WHEN {newer} THEN excluded.{col} ELSE runs.{col} END"
        for col in ("state", "state_rank", "state_at", "error", "ended")
    )
    return (
        "INSERT INTO runs (id, pipeline, run_key, source, state, state_rank, state_at, error, "
        "scheduled, started, ended, parent_run, nominal_start, first_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (id) DO UPDATE SET {on_newer}, "
        f"scheduled = {least('runs.scheduled', 'excluded.scheduled', conn.dialect)}, "
        f"started = {least('runs.started', 'excluded.started', conn.dialect)}, "
        f"first_seen = {least('runs.first_seen', 'excluded.first_seen', conn.dialect)}, "
        "parent_run = COALESCE(runs.parent_run, excluded.parent_run), "
        "nominal_start = COALESCE(runs.nominal_start, excluded.nominal_start), "
        "source = CASE WHEN runs.source = 'unknown' THEN excluded.source ELSE runs.source END"
    )


def upsert_runs(conn: Conn, d: Derived) -> None:
    """Merge run rows: highest-ranked state wins, earliest start wins."""
    t, u = conn.time, conn.uid
    conn.executemany(
        _runs_sql(conn),
        [
            (
                u(r.id),
                r.pipeline,
                r.run_key,
                r.source,
                r.state,
                r.state_rank,
                t(r.state_at),
                r.error,
                t(r.scheduled),
                t(r.started),
                t(r.ended),
                u(r.parent_run),
                t(r.nominal_start),
                t(r.first_seen),
            )
            for _, r in sorted(d.runs.items())
        ],
    )


def upsert_resources(conn: Conn, d: Derived) -> None:
    """Merge resources: the latest description wins, first/last seen widen."""
    newer = "excluded.last_seen >= resources.last_seen"
    latest = ", ".join(
        f"{col} = CASE WHEN {newer} THEN COALESCE(excluded.{col}, resources.{col}) "
        f"ELSE COALESCE(resources.{col}, excluded.{col}) END"
        for col in ("kind", "name", "parent")
    )
    sql = (
        "INSERT INTO resources (id, kind, name, labels, source, parent, first_seen, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (id) DO UPDATE SET {latest}, "
        f"labels = CASE WHEN {newer} AND ? THEN excluded.labels ELSE resources.labels END, "
        "source = CASE WHEN resources.source = 'unknown' OR "
        f"({newer} AND excluded.source <> 'unknown') THEN excluded.source "
        "ELSE resources.source END, "
        f"first_seen = {least('resources.first_seen', 'excluded.first_seen', conn.dialect)}, "
        f"last_seen = {greatest('resources.last_seen', 'excluded.last_seen', conn.dialect)}"
    )
    t = conn.time
    conn.executemany(
        sql,
        [
            (
                r.id,
                r.kind,
                r.name,
                conn.json(r.labels),
                r.source,
                r.parent,
                t(r.first_seen),
                t(r.last_seen),
                bool(r.labels),
            )
            for _, r in sorted(d.resources.items())
        ],
    )


def upsert_assets(conn: Conn, d: Derived) -> None:
    """Keep each asset's latest update."""
    conn.executemany(
        "INSERT INTO assets (id, updated, producer, run_id, event_id) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET updated = excluded.updated, producer = excluded.producer, "
        "run_id = excluded.run_id, event_id = excluded.event_id "
        "WHERE excluded.updated > assets.updated",
        [
            (a.id, conn.time(a.updated), a.producer, conn.uid(a.run_id), conn.uid(a.event_id))
            for _, a in sorted(d.assets.items())
        ],
    )


def upsert_checks(conn: Conn, d: Derived) -> None:
    """Keep each check's latest result per asset."""
    conn.executemany(
        "INSERT INTO checks (asset, check_name, passed, at, message, event_id) "
        "VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (asset, check_name) DO UPDATE SET passed = excluded.passed, "
        "at = excluded.at, message = excluded.message, event_id = excluded.event_id "
        "WHERE excluded.at > checks.at",
        [
            (c.asset, c.check, c.passed, conn.time(c.at), c.message, conn.uid(c.event_id))
            for _, c in sorted(d.checks.items())
        ],
    )


def upsert_edges(conn: Conn, d: Derived) -> None:
    """Record lineage edges with when they were first and last seen."""
    conn.executemany(
        "INSERT INTO lineage_edges (source, target, first_seen, last_seen) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (source, target) DO UPDATE SET "
        f"first_seen = {least('lineage_edges.first_seen', 'excluded.first_seen', conn.dialect)}, "
        f"last_seen = {greatest('lineage_edges.last_seen', 'excluded.last_seen', conn.dialect)}",
        [
            (e.source, e.target, conn.time(e.first_seen), conn.time(e.last_seen))
            for _, e in sorted(d.edges.items())
        ],
    )
