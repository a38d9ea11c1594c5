"""A PostgreSQL outage: coplane says so (503, health), loses nothing, and recovers by itself."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import open_store
from tests.conftest import throwaway_database
from tests.factories import event_dict

pytestmark = pytest.mark.postgresql


@pytest.fixture
def own_database(pg_url: str) -> Iterator[str]:
    """A database of this test's own, which it can close to connections."""
    with throwaway_database(pg_url) as url:
        yield url


def _set_outage(url: str, down: bool) -> None:
    admin_url, name = url.rsplit("/", 1)
    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'false' if down else 'true'}")
        if down:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def test_outage_is_reported_and_recovered_from(own_database: str) -> None:
    store = open_store(own_database, pool_size=2, timeout=1.0)
    app = create_app(Settings(database_url=own_database), store=store)
    try:
        with TestClient(app) as client:
            first = event_dict("run.started", "airflow.prod.sales", run="r1")
            assert client.post("/api/events", json=[first]).status_code == 202

            _set_outage(own_database, down=True)
            health = client.get("/api/health")
            assert health.status_code == 503
            assert "database" in health.json()["detail"]
            during = client.post(
                "/api/events", json=[event_dict("run.completed", "airflow.prod.sales", run="r1")]
            )
            assert during.status_code == 503
            assert during.headers["retry-after"]
            assert client.get("/api/runs").status_code == 503

            _set_outage(own_database, down=False)
            # the pool reconnects with backoff: health turns green by itself, within seconds
            deadline = time.monotonic() + 30
            while client.get("/api/health").status_code != 200:
                assert time.monotonic() < deadline, "no recovery within 30 s"
                time.sleep(0.2)
            again = client.post("/api/events", json=[first])
            assert again.json() == {"accepted": 0, "duplicates": 1}  # nothing accepted was lost
    finally:
        store.close()
