"""`GET /api/slas/{name}/explain`: the latest evaluations with their inputs, newest first."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from coplane.rules.facts import Breach, Evaluation
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.evaluations import EvaluationRecord, insert_sla_evaluations
from coplane.store.incidents import apply_evaluation
from tests.slas.test_api import ADAPTER, FRESH, FakeEngine

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
LAST_UPDATE = {"kind": "freshness", "last_update": "2026-03-01T07:00:00+00:00"}


@pytest.fixture
def api(store: Store, db_url: str) -> Iterator[TestClient]:
    """The app with a stand-in engine: evaluations are written here, not by a live engine."""
    app = create_app(Settings(database_url=db_url, events_retention_days=0), store=store)
    with TestClient(app) as c:
        app.state.sla_engine = FakeEngine()  # after start-up, which installs the real one
        yield c


def seed(store: Store) -> tuple[EvaluationRecord, EvaluationRecord, str]:
    """An ok evaluation, then a breached one that opened an incident."""
    sla = ADAPTER.validate_python(FRESH)
    ok = EvaluationRecord(
        uuid.uuid4(), sla.name, NOW - timedelta(days=1),
        Evaluation("ok", explanation="updated in time"), LAST_UPDATE,
    )  # fmt: skip
    breach = Breach(
        "sales_fresh:2026-03-02T08:00:00Z", NOW - timedelta(minutes=90), "no update",
        window_start=NOW - timedelta(days=1, minutes=90), resource="asset:sales_daily",
    )  # fmt: skip
    evaluation = Evaluation(
        "breached", [breach], NOW + timedelta(days=1), None, "no update since yesterday"
    )
    late = EvaluationRecord(uuid.uuid4(), sla.name, NOW, evaluation, LAST_UPDATE)
    with store.connect() as conn:
        insert_sla_evaluations(conn, [ok, late])
        [incident], _ = apply_evaluation(
            conn, sla, late.evaluation, lambda _: [], NOW, evaluation_id=late.id
        )
    return ok, late, str(incident["id"])


def test_explain_lists_the_evaluations_newest_first(api: TestClient, store: Store) -> None:
    assert api.post("/api/slas", json=FRESH).status_code == 201
    ok, late, incident_id = seed(store)
    body = api.get("/api/slas/sales_fresh/explain").json()
    assert body["sla"] == "sales_fresh"
    assert [e["id"] for e in body["evaluations"]] == [str(late.id), str(ok.id)]
    newest = body["evaluations"][0]
    assert set(newest) == {"id", "evaluated", "status", "next_deadline", "explanation",
                           "inputs", "breaches"}  # fmt: skip
    assert (newest["status"], newest["explanation"]) == ("breached", "no update since yesterday")
    assert newest["inputs"]["last_update"] == "2026-03-01T07:00:00+00:00"
    assert newest["breaches"][0]["key"] == "sales_fresh:2026-03-02T08:00:00Z"
    assert newest["evaluated"] == NOW.isoformat()
    one = api.get("/api/slas/sales_fresh/explain", params={"limit": 1}).json()
    assert [e["id"] for e in one["evaluations"]] == [str(late.id)]
    # the incident names the evaluation that opened it
    [incident] = api.get("/api/incidents").json()["incidents"]
    assert (incident["id"], incident["evaluation_id"]) == (incident_id, str(late.id))


def test_explain_of_an_sla_never_evaluated_is_empty(api: TestClient) -> None:
    api.post("/api/slas", json=FRESH)
    assert api.get("/api/slas/sales_fresh/explain").json() == {
        "sla": "sales_fresh",
        "evaluations": [],
    }


def test_explain_of_an_unknown_sla_is_404_naming_it(api: TestClient) -> None:
    resp = api.get("/api/slas/nope/explain")
    assert resp.status_code == 404
    assert "nope" in resp.json()["detail"]


def test_explain_limit_is_bounded(api: TestClient) -> None:
    api.post("/api/slas", json=FRESH)
    for bad in ("0", "101", "x"):
        resp = api.get("/api/slas/sales_fresh/explain", params={"limit": bad})
        assert resp.status_code == 422, bad
        assert "limit" in resp.text
