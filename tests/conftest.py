"""Fixtures: every store test runs on SQLite and on a real PostgreSQL; live servers on loopback."""

from __future__ import annotations

import fcntl
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Conn, Store, open_store
from tests.chromium import browser  # noqa: F401  (the browser tests' fixture)

# The fake services alerts go to listen on loopback, which the outgoing-URL policy refuses;
# set at import, so servers started as subprocesses inherit it.
os.environ.setdefault("COPLANE_OUTBOUND_ALLOW", "127.0.0.0/8,::1,localhost")
# FastAPI's test client asks for the host "testserver", which is no loopback name.
os.environ.setdefault("COPLANE_ALLOWED_HOSTS", "testserver")

# The server holding throwaway test databases when COPLANE_TEST_DATABASE_URL is not set.
DEFAULT_PG_SERVER = "postgresql://127.0.0.1:5432/postgres"
DERIVED_AND_EVENTS = (
    "events, runs, resources, assets, checks, lineage_edges, "
    "slas, sla_states, sla_evaluations, incidents, notifications, channel_states, api_keys, "
    "users, sessions, secrets, ping_keys, openlineage_runs, logs, concurrency_leases, "
    "concurrency_limits, run_pauses, connections, deployments, flow_runs, workers, schedules, "
    "remediations, automations, automation_firings, automation_decisions, automation_cursor, "
    "sla_warnings, automation_messages"
)


@contextmanager
def default_port() -> Iterator[None]:
    """Hold coplane's default port (4200) for a while: tests that start a server there (as a
    reader would) take turns across test workers."""
    with (Path(tempfile.gettempdir()) / "coplane-tests-port-4200.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _reachable(url: str) -> str | None:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        return str(exc).strip()
    return None


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of our own for this test session.

    COPLANE_TEST_DATABASE_URL names a disposable database (CI creates a fresh one per run);
    run by several workers, each makes a database of its own on that server. Without it, a
    fresh database is created on the local server and dropped afterwards.
    Unreachable PostgreSQL fails the tests that need it: it is never skipped.
    """
    given = os.environ.get("COPLANE_TEST_DATABASE_URL")
    if given:
        problem = _reachable(given)
        if problem:
            pytest.fail(f"COPLANE_TEST_DATABASE_URL is set but unreachable: {problem}")
        if os.environ.get("PYTEST_XDIST_WORKER"):
            # each of several workers empties its database between tests: one each, beside it
            with throwaway_database(given) as url:
                yield url
            return
        yield given
        return
    problem = _reachable(DEFAULT_PG_SERVER)
    if problem:
        pytest.fail(
            f"PostgreSQL is needed at {DEFAULT_PG_SERVER} (or set COPLANE_TEST_DATABASE_URL): "
            f"{problem}. To run only the SQLite half: pytest -m 'not postgresql'"
        )
    with throwaway_database(DEFAULT_PG_SERVER) as url:
        yield url


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    """A new database on the server of `server_url`, dropped afterwards (open to connections)."""
    admin_url = server_url.rsplit("/", 1)[0] + "/postgres"
    name = f"coplane_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _clean_postgresql(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('events') IS NOT NULL").fetchone()
        if exists and exists[0]:
            # only the tables there: a database migrated by an older checkout lacks newer ones
            names = [t.strip() for t in DERIVED_AND_EVENTS.split(",")]
            present = [
                t
                for t in names
                if (row := conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()) and row[0]
            ]
            conn.execute(f"TRUNCATE {', '.join(present)}")
            # partitions too, so each test starts with the layout a new database has
            parts = conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'events'::regclass"
            ).fetchall()
            for (name,) in parts:
                conn.execute(f"DROP TABLE {name}")


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'coplane.sqlite'}"
    url: str = request.getfixturevalue("pg_url")
    _clean_postgresql(url)
    return url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An open store on an empty database, with migrations applied."""
    s = open_store(db_url, pool_size=4)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def conn(store: Store) -> Iterator[Conn]:
    """A connection of the store."""
    with store.connect() as c:
        yield c


@pytest.fixture
def client(store: Store, db_url: str) -> Iterator[TestClient]:
    """The app over `store`, through FastAPI's test client (lifespan included)."""
    app = create_app(Settings(database_url=db_url, events_retention_days=0), store=store)
    with TestClient(app) as c:
        yield c


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """A real `coplane server` process on loopback, restartable."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.config = config
        self.env = env or {}
        self.port = free_port()
        cert = self.env.get("COPLANE_TLS_CERT")
        self.url = f"{'https' if cert else 'http'}://127.0.0.1:{self.port}"
        # what clients check the server's certificate against: the test's own, when it has one
        self.verify: ssl.SSLContext | bool = True
        if cert:
            self.verify = ssl.create_default_context(cafile=cert)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "COPLANE_DATABASE_URL": self.database_url, **self.env}
        args = [sys.executable, "-m", "coplane", "server", "--port", str(self.port)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                health = httpx.get(f"{self.url}/api/health", timeout=1, verify=self.verify)
                if health.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextmanager
def sqlite_server(folder: Path) -> Iterator[LiveServer]:
    """A running `coplane server` over a new SQLite file in `folder`, stopped afterwards."""
    server = LiveServer(f"sqlite:///{folder / 'coplane.sqlite'}", folder / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A running `coplane server` over an empty database."""
    server = LiveServer(db_url, tmp_path / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_database(pg_url: str) -> Iterator[str]:
    """A database of this test's own, which it can close to connections."""
    with throwaway_database(pg_url) as url:
        yield url


def set_database_outage(url: str, down: bool) -> None:
    """Close (or reopen) a database to connections, ending the open ones: an outage."""
    admin_url, name = url.rsplit("/", 1)
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if down else 'true'}")
        if down:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
