"""A PostgreSQL outage: coplane says so (503, health), loses nothing, and recovers by itself."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import open_store
from tests.conftest import set_database_outage
from tests.factories import event_dict

pytestmark = pytest.mark.postgresql


def test_outage_is_reported_and_recovered_from(own_database: str) -> None:
    store = open_store(own_database, pool_size=2, timeout=1.0)
    app = create_app(Settings(database_url=own_database), store=store)
    try:
        with TestClient(app) as client:
            first = event_dict("run.started", "airflow.prod.sales", run="r1")
            assert client.post("/api/events", json=[first]).status_code == 202

            set_database_outage(own_database, down=True)
            health = client.get("/api/health")
            assert health.status_code == 503
            assert "database" in health.json()["detail"]
            during = client.post(
                "/api/events", json=[event_dict("run.completed", "airflow.prod.sales", run="r1")]
            )
            assert during.status_code == 503
            assert during.headers["retry-after"]
            assert client.get("/api/runs").status_code == 503

            set_database_outage(own_database, down=False)
            # the pool reconnects with backoff: health turns green by itself, within seconds
            deadline = time.monotonic() + 30
            while client.get("/api/health").status_code != 200:
                assert time.monotonic() < deadline, "no recovery within 30 s"
                time.sleep(0.2)
            again = client.post("/api/events", json=[first])
            assert again.json() == {"accepted": 0, "duplicates": 1}  # nothing accepted was lost
    finally:
        store.close()
