"""`GET /api/slas/{name}/warnings`: an SLA's early warnings and what became of them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from coplane.rules.facts import Evaluation
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.warnings import apply_warning
from tests.slas.test_api import ADAPTER, FRESH, FakeEngine

NOW = datetime(2026, 3, 2, 7, 40, tzinfo=UTC)
DUE = datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest.fixture
def api(store: Store, db_url: str) -> Iterator[TestClient]:
    """The app with a stand-in engine: warnings are written here, not by a live engine."""
    app = create_app(Settings(database_url=db_url, events_retention_days=0), store=store)
    with TestClient(app) as c:
        app.state.sla_engine = FakeEngine()  # after start-up, which installs the real one
        yield c


def test_warnings_newest_first_with_their_outcome(api: TestClient, store: Store) -> None:
    api.post("/api/slas", json={**FRESH, "warn_at_risk": True})
    sla = ADAPTER.validate_python({**FRESH, "warn_at_risk": True})
    with store.connect() as conn:
        for day in (0, 1):
            at_risk = Evaluation(
                "at_risk", next_deadline=DUE + timedelta(days=day), explanation=f"late {day}"
            )
            apply_warning(conn, sla, at_risk, "wh.sales", NOW + timedelta(days=day))
        met = Evaluation("ok", next_deadline=DUE + timedelta(days=1), last_met=NOW)
        apply_warning(conn, sla, met, "wh.sales", NOW + timedelta(minutes=10))
    body = api.get(f"/api/slas/{sla.name}/warnings").json()
    assert body["sla"] == sla.name
    assert [(w["reason"], w["outcome"]) for w in body["warnings"]] == [
        ("late 1", None), ("late 0", "met")
    ]  # fmt: skip
    first = body["warnings"][1]
    assert first["due"] == DUE.isoformat() and first["incident_id"] is None
    assert first["key"] == f"{sla.name}:2026-03-02T08:00:00Z"
    one = api.get(f"/api/slas/{sla.name}/warnings", params={"limit": 1}).json()
    assert [w["reason"] for w in one["warnings"]] == ["late 1"]


def test_warnings_of_an_unknown_sla_is_404_naming_it(api: TestClient) -> None:
    resp = api.get("/api/slas/nope/warnings")
    assert resp.status_code == 404 and "nope" in resp.json()["detail"]


def test_warnings_limit_is_bounded(api: TestClient) -> None:
    api.post("/api/slas", json=FRESH)
    for bad in ("0", "101", "x"):
        resp = api.get(f"/api/slas/{FRESH['name']}/warnings", params={"limit": bad})
        assert resp.status_code == 422 and "limit" in resp.text, bad
