"""What differs between SQLite and PostgreSQL: connections, placeholders, a few SQL forms.

Queries elsewhere in `store/` are written once with `?` placeholders; the PostgreSQL
connection rewrites them to `%s`. Values cross the boundary as Python objects (datetime,
UUID, dict); SQLite keeps times as fixed-width UTC ISO text so that text order is time order.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, Protocol

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from coplane.store.errors import DatabaseUnavailable

DialectName = Literal["sqlite", "postgresql"]
Row = dict[str, Any]


class Conn(Protocol):
    """One database connection, as every store function sees it."""

    dialect: DialectName

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def transaction(self) -> Any: ...
    def pipeline(self) -> Any: ...

    def json(self, value: Any) -> Any:
        """Wrap a JSON-able value for a JSON column."""
        ...

    def time(self, value: datetime | None) -> Any:
        """Adapt a timezone-aware time for a time column."""
        ...

    def uid(self, value: uuid.UUID | str | None) -> Any:
        """Adapt a UUID (or its canonical text) for a UUID column."""
        ...


def least(a: str, b: str, dialect: DialectName) -> str:
    """SQL for the smaller of two nullable values (NULL only when both are)."""
    if dialect == "postgresql":
        return f"LEAST({a}, {b})"
    return f"COALESCE(MIN({a}, {b}), {a}, {b})"


def greatest(a: str, b: str, dialect: DialectName) -> str:
    """SQL for the larger of two nullable values (NULL only when both are)."""
    if dialect == "postgresql":
        return f"GREATEST({a}, {b})"
    return f"COALESCE(MAX({a}, {b}), {a}, {b})"


def json_merge(base: str, top: str, dialect: DialectName) -> str:
    """SQL for two flat JSON objects merged, `top`'s value winning for a key in both."""
    if dialect == "postgresql":
        return f"({base} || {top})"
    # RFC 7396 merge; labels are strings, never null, so no key is removed
    return f"json_patch({base}, {top})"


def lock_skipping_locked(dialect: DialectName, of: str) -> str:
    """The clause that makes a claim's SELECT lock the rows of table `of` and pass over rows
    another transaction holds: `FOR UPDATE OF <table> SKIP LOCKED` on PostgreSQL. SQLite needs
    none: a claim runs in a `BEGIN IMMEDIATE` transaction, which already excludes every other
    writer, and its UPDATE is conditional on the state it read."""
    return f" FOR UPDATE OF {of} SKIP LOCKED" if dialect == "postgresql" else ""


# --- SQLite -----------------------------------------------------------------------------


def sqlite_time(value: datetime | None) -> str | None:
    """A UTC time as fixed-width ISO text, so that SQLite's text order is time order."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # most producers send UTC already
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def _convert_time(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode())


def _convert_uuid(raw: bytes) -> uuid.UUID:
    return uuid.UUID(raw.decode())


def _convert_json(raw: bytes) -> Any:
    return json.loads(raw)


# Declared column types UTCTIME, UUID and JSON are converted when read (PARSE_DECLTYPES).
sqlite3.register_converter("UTCTIME", _convert_time)
sqlite3.register_converter("UUID", _convert_uuid)
sqlite3.register_converter("JSON", _convert_json)
sqlite3.register_converter("BOOL", lambda raw: raw not in (b"0", b""))


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}


class SqliteConn:
    """A SQLite connection in autocommit mode; `transaction()` takes the write lock up front."""

    dialect: DialectName = "sqlite"

    def __init__(self, path: str) -> None:
        self.raw = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            detect_types=sqlite3.PARSE_DECLTYPES,
            timeout=30.0,
        )
        self.raw.row_factory = _dict_factory
        self.raw.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash of the process (not of the OS).
        self.raw.execute("PRAGMA synchronous=NORMAL")
        self.raw.execute("PRAGMA wal_autocheckpoint=10000")
        self.raw.execute("PRAGMA foreign_keys=ON")
        self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.raw.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.raw.executemany(sql, rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self.raw.execute(sql, params).fetchall()
        return rows

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self.raw.execute(sql, params).fetchone()
        return row

    @contextmanager
    def pipeline(self) -> Iterator[None]:
        """In-process: nothing to pipeline."""
        yield

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.raw.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self.raw.execute("ROLLBACK")
            raise
        else:
            self.raw.execute("COMMIT")
        finally:
            self._depth = 0

    def json(self, value: Any) -> Any:
        return json.dumps(value, separators=(",", ":"))

    def time(self, value: datetime | None) -> Any:
        return sqlite_time(value)

    def uid(self, value: uuid.UUID | str | None) -> Any:
        return None if value is None else str(value)

    def close(self) -> None:
        self.raw.close()


# --- PostgreSQL -------------------------------------------------------------------------


# temp tables made on each pooled connection; forgotten with the connection
_TEMP_TABLES: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    # Queries are written with `?`; none of ours uses `?` or `%` in a literal.
    return sql.replace("%", "%%").replace("?", "%s")


class PgConn:
    """A pooled psycopg connection; `transaction()` nests as savepoints."""

    dialect: DialectName = "postgresql"

    def __init__(self, raw: psycopg.Connection[Row]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self.raw.cursor() as cur:
            cur.execute(_pg_sql(sql) if params else sql, params or None)
            return cur.rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(_pg_sql(sql), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self.raw.cursor() as cur:
            cur.execute(_pg_sql(sql) if params else sql, params or None)
            return cur.fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        with self.raw.cursor() as cur:
            cur.execute(_pg_sql(sql) if params else sql, params or None)
            return cur.fetchone()

    def transaction(self) -> Any:
        return self.raw.transaction()

    def pipeline(self) -> Any:
        """Send the statements of the block without waiting for each result (one sync)."""
        return self.raw.pipeline()

    def query_tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples: cheaper than dicts when many come back."""
        with self.raw.cursor(row_factory=tuple_row) as cur:
            cur.execute(_pg_sql(sql) if params else sql, params or None)
            return cur.fetchall()

    def ensure_temp_table(self, name: str, create_sql: str) -> None:
        """Create a session temp table once per connection (it lives as long as the session)."""
        made = _TEMP_TABLES.setdefault(self.raw, set())
        if name not in made:
            self.execute(f"DROP TABLE IF EXISTS {name}")
            self.execute(create_sql)
            made.add(name)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Write rows with COPY, the fastest way into PostgreSQL."""
        with (
            self.raw.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def json(self, value: Any) -> Any:
        return Jsonb(value)

    def time(self, value: datetime | None) -> Any:
        return value

    def uid(self, value: uuid.UUID | str | None) -> Any:
        return value


# --- Opening a store --------------------------------------------------------------------


class Database:
    """A connection source for one database URL: a pool on PostgreSQL, one per thread on SQLite."""

    def __init__(self, url: str, *, pool_size: int = 10, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self.dialect: DialectName
        self._local = threading.local()
        self._sqlite_conns: list[SqliteConn] = []
        self._lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[Row]] | None = None
        if url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self._pool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs={"row_factory": dict_row, "autocommit": True, "options": "-c TimeZone=UTC"},
                open=False,
                name="coplane",
                # a connection broken by a PostgreSQL restart is replaced, not handed out
                check=ConnectionPool.check_connection,
            )
            self._pool.open(wait=False)
        elif url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self.sqlite_path = url.removeprefix("sqlite:///")
            if not self.sqlite_path:
                raise ValueError("a sqlite URL needs a path: sqlite:///path/to/coplane.sqlite")
        else:
            raise ValueError(
                f"unsupported database URL {url.split('://')[0]!r}://...: "
                "use postgresql://... or sqlite:///path"
            )

    @contextmanager
    def connect(self, timeout: float | None = None) -> Iterator[Conn]:
        """A connection for this thread; on PostgreSQL, borrowed from the pool for the block."""
        if self._pool is not None:
            wait = self.timeout if timeout is None else timeout
            try:
                with self._pool.connection(timeout=wait) as raw:
                    yield PgConn(raw)
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(str(exc).strip()) from exc
            except PoolTimeout:
                raise DatabaseUnavailable(f"no database connection within {wait:g} s") from None
            return
        conn: SqliteConn | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = SqliteConn(self.sqlite_path)
            self._local.conn = conn
            with self._lock:
                self._sqlite_conns.append(conn)
        yield conn

    def close(self) -> None:
        """Close every connection this database opened."""
        if self._pool is not None:
            self._pool.close()
        with self._lock:
            for conn in self._sqlite_conns:
                conn.close()
            self._sqlite_conns.clear()
        self._local = threading.local()


def for_update(dialect: DialectName) -> str:
    """The clause that locks the rows a SELECT reads until the transaction ends.

    SQLite needs none: `transaction()` takes the database's write lock before the first read.
    """
    return " FOR UPDATE" if dialect == "postgresql" else ""


def check_database(url: str, timeout: float = 3.0) -> None:
    """Connect once, raising DatabaseUnavailable with the server's answer on one line.

    Run before the pool opens: the pool would retry a wrong port or database name for its
    whole timeout and then fail with its own message, not the server's."""
    if not url.startswith(("postgresql://", "postgres://")):
        return
    try:
        psycopg.connect(url, connect_timeout=max(1, round(timeout))).close()
    except psycopg.Error as exc:
        answer = " ".join(str(exc).split()).removeprefix("connection failed: ")
        raise DatabaseUnavailable(answer or type(exc).__name__) from None
