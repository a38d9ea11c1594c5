"""Numbered SQL migrations per dialect, applied in order by `coplane db upgrade` and at start-up."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from coplane.store.dialects import Conn, Database, DialectName, SqliteConn

# Any fixed number: concurrent replicas starting together migrate one at a time.
_MIGRATION_LOCK = 7_406_117_220


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def list_migrations(dialect: DialectName) -> list[Migration]:
    """The migrations shipped for `dialect`, in order."""
    folder = resources.files("coplane.store") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def applied_versions(conn: Conn) -> set[int]:
    """The migration versions already applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version integer PRIMARY KEY, name text NOT NULL, applied text NOT NULL)"
    )
    return {int(r["version"]) for r in conn.query("SELECT version FROM schema_migrations")}


def upgrade_schema(conn: Conn) -> list[Migration]:
    """Apply every migration not yet applied; return those applied now."""
    if conn.dialect == "postgresql":
        conn.execute("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))
    try:
        done = applied_versions(conn)
        applied = []
        for migration in list_migrations(conn.dialect):
            if migration.version in done:
                continue
            with conn.transaction():
                _run_script(conn, migration.sql)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)",
                    (migration.version, migration.name, datetime.now(UTC).isoformat()),
                )
            applied.append(migration)
        return applied
    finally:
        if conn.dialect == "postgresql":
            conn.execute("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))


def _run_script(conn: Conn, sql: str) -> None:
    if conn.dialect == "sqlite":
        # executescript would commit the open transaction; run statement by statement
        assert isinstance(conn, SqliteConn)
        for statement in _split_sqlite(sql):
            conn.raw.execute(statement)
    else:
        conn.execute(sql)


def _split_sqlite(script: str) -> list[str]:
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


@contextmanager
def migrated_connection(url: str) -> Iterator[Conn]:
    """One connection to the database at `url`, its schema brought up to date first: for the
    CLI's commands and for scratch databases (`sqlite:///:memory:`)."""
    db = Database(url, pool_size=1)
    try:
        with db.connect() as conn:
            upgrade_schema(conn)
            yield conn
    finally:
        db.close()
