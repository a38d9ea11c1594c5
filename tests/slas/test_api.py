"""The SLA and incident API: CRUD of SLAs with their status, and acking and resolving incidents."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from coplane.integrations.slack.config import SlackChannel
from coplane.integrations.webhook.config import WebhookChannel
from coplane.rules.facts import Breach, Evaluation
from coplane.rules.model import SLA
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.incidents import apply_evaluation
from coplane.store.slas import save_sla_state, upsert_slas

ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

FRESH: dict[str, Any] = {
    "name": "sales_fresh",
    "kind": "freshness",
    "target": "asset:sales_daily",
    "deadline": "0 9 * * *",
    "timezone": "Europe/Berlin",
    "notify": ["slack-data", "email-oncall"],
}


class FakeEngine:
    """Counts evaluation requests."""

    def __init__(self) -> None:
        self.requests = 0
        # the channels of the config file the SLAs notify
        self.channels = {
            "slack-data": SlackChannel(type="slack", webhook_url="https://hooks.invalid/x"),
            "email-oncall": WebhookChannel(type="webhook", url="https://mail.invalid/x"),
        }

    def request_evaluation(self, resources: object = None) -> None:
        self.requests += 1


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def api(store: Store, db_url: str, engine: FakeEngine) -> Iterator[TestClient]:
    app = create_app(Settings(database_url=db_url, events_retention_days=0), store=store)
    with TestClient(app) as c:
        app.state.sla_engine = engine  # after start-up, which installs the real one
        yield c


def field_errors(resp: Any) -> list[list[Any]]:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["detail"]
    return [e["loc"] for e in body["errors"]]


# --- SLAs -------------------------------------------------------------------------------------


def test_create_then_list_and_get(api: TestClient, engine: FakeEngine) -> None:
    resp = api.post("/api/slas", json=FRESH)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["name"] == "sales_fresh"
    assert created["deadline"] == "0 9 * * *"
    assert created["notify"] == ["slack-data", "email-oncall"]
    assert created["origin"] == "api"
    assert created["status"] == "unknown"
    assert created["next_deadline"] is None and created["last_met"] is None
    assert engine.requests == 1

    listed = api.get("/api/slas").json()["slas"]
    assert [s["name"] for s in listed] == ["sales_fresh"]
    assert listed[0] == created
    assert api.get("/api/slas/sales_fresh").json() == created


def test_definition_round_trips_with_durations_in_seconds(api: TestClient) -> None:
    sla = {"name": "hb", "kind": "heartbeat", "target": "nightly", "period": "1h", "grace": "90s"}
    got = api.post("/api/slas", json=sla).json()
    assert got["period"] == 3600 and got["grace"] == 90
    # What GET shows (status fields included) can be PUT back as it is, and is the same SLA.
    shown = api.get("/api/slas/hb").json()
    resp = api.put("/api/slas/hb", json=shown)
    assert resp.status_code == 200, resp.text
    assert resp.json() == shown
    resp = api.post("/api/slas", json={**shown, "name": "hb2"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["period"] == 3600 and resp.json()["grace"] == 90


def test_status_comes_from_the_latest_evaluation(api: TestClient, store: Store) -> None:
    api.post("/api/slas", json=FRESH)
    deadline = NOW + timedelta(days=1)
    met = NOW - timedelta(hours=1)
    with store.connect() as conn:
        save_sla_state(
            conn,
            "sales_fresh",
            Evaluation(status="at_risk", next_deadline=deadline, last_met=met, explanation="late"),
            NOW,
        )
    got = api.get("/api/slas/sales_fresh").json()
    assert got["status"] == "at_risk"
    assert datetime.fromisoformat(got["next_deadline"]) == deadline
    assert datetime.fromisoformat(got["last_met"]) == met
    assert got["explanation"] == "late"
    assert api.get("/api/slas").json()["slas"][0]["status"] == "at_risk"


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"deadline": "99 9 * * *"}, ["body", "deadline"]),
        ({"kind": "bogus"}, ["body", "kind"]),
        ({"target": None}, ["body", "target"]),
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"]),
        ({"name": "has space"}, ["body", "name"]),
    ],
)
def test_create_rejects_bad_fields_naming_them(
    api: TestClient, engine: FakeEngine, change: dict[str, Any], loc: list[Any]
) -> None:
    body = {k: v for k, v in {**FRESH, **change}.items() if v is not None}
    assert loc in field_errors(api.post("/api/slas", json=body))
    assert api.get("/api/slas").json()["slas"] == []
    assert engine.requests == 0


def test_create_rejects_missing_kind_and_non_objects(api: TestClient) -> None:
    assert ["body", "kind"] in field_errors(api.post("/api/slas", json={"name": "x"}))
    assert field_errors(api.post("/api/slas", json=[FRESH]))
    assert field_errors(api.post("/api/slas", content=b"{not json"))


def test_create_rejects_a_duplicate_name(api: TestClient) -> None:
    assert api.post("/api/slas", json=FRESH).status_code == 201
    resp = api.post("/api/slas", json={**FRESH, "deadline": "0 10 * * *"})
    assert resp.status_code == 409
    assert "sales_fresh" in resp.json()["detail"]
    assert api.get("/api/slas/sales_fresh").json()["deadline"] == "0 9 * * *"


def test_get_unknown_sla_is_404(api: TestClient) -> None:
    resp = api.get("/api/slas/nope")
    assert resp.status_code == 404
    assert "nope" in resp.json()["detail"]


def test_put_replaces(api: TestClient, engine: FakeEngine) -> None:
    api.post("/api/slas", json=FRESH)
    resp = api.put("/api/slas/sales_fresh", json={**FRESH, "deadline": "30 8 * * 1-5"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["deadline"] == "30 8 * * 1-5"
    assert api.get("/api/slas/sales_fresh").json()["deadline"] == "30 8 * * 1-5"
    assert engine.requests == 2


def test_put_errors(api: TestClient) -> None:
    assert api.put("/api/slas/sales_fresh", json=FRESH).status_code == 404
    api.post("/api/slas", json=FRESH)
    resp = api.put("/api/slas/sales_fresh", json={**FRESH, "name": "other"})
    assert ["body", "name"] in field_errors(resp)
    bad = api.put("/api/slas/sales_fresh", json={**FRESH, "deadline": "x"})
    assert ["body", "deadline"] in field_errors(bad)
    assert api.get("/api/slas/other").status_code == 404
    assert api.get("/api/slas/sales_fresh").json()["deadline"] == "0 9 * * *"


def test_delete(api: TestClient, engine: FakeEngine) -> None:
    api.post("/api/slas", json=FRESH)
    resp = api.delete("/api/slas/sales_fresh")
    assert resp.status_code == 204
    assert api.get("/api/slas/sales_fresh").status_code == 404
    assert api.get("/api/slas").json()["slas"] == []
    assert api.delete("/api/slas/sales_fresh").status_code == 404


def test_file_slas_cannot_be_changed_or_deleted(api: TestClient, store: Store) -> None:
    with store.connect() as conn:
        upsert_slas(conn, [ADAPTER.validate_python(FRESH)], "file", NOW)
    assert api.get("/api/slas/sales_fresh").json()["origin"] == "file"
    for resp in (
        api.delete("/api/slas/sales_fresh"),
        api.put("/api/slas/sales_fresh", json={**FRESH, "deadline": "0 10 * * *"}),
        api.post("/api/slas", json=FRESH),
    ):
        assert resp.status_code == 409, resp.text
    assert "config file" in api.delete("/api/slas/sales_fresh").json()["detail"]
    kept = api.get("/api/slas/sales_fresh").json()
    assert kept["deadline"] == "0 9 * * *" and kept["origin"] == "file"


def test_without_an_engine_writes_still_work(store: Store, db_url: str) -> None:
    app = create_app(Settings(database_url=db_url, events_retention_days=0), store=store)
    with TestClient(app) as c:
        app.state.sla_engine = None
        assert c.post("/api/slas", json=FRESH).status_code == 201
        assert c.delete("/api/slas/sales_fresh").status_code == 204


# --- incidents --------------------------------------------------------------------------------


def open_incident(store: Store, key: str = "2026-03-02") -> str:
    sla = ADAPTER.validate_python(FRESH)
    breach = Breach(key=key, due=NOW - timedelta(minutes=30), reason="sales_daily: no update")
    with store.connect() as conn:
        opened, _ = apply_evaluation(
            conn,
            sla,
            Evaluation(status="breached", breaches=[breach]),
            lambda _: ["asset:sales_report"],
            NOW,
        )
    return str(opened[0]["id"])


def test_list_open_incidents(api: TestClient, store: Store) -> None:
    api.post("/api/slas", json=FRESH)
    iid = open_incident(store)
    incidents = api.get("/api/incidents", params={"state": "open"}).json()["incidents"]
    assert [i["id"] for i in incidents] == [iid]
    inc = incidents[0]
    assert inc["sla"] == "sales_fresh"
    assert inc["reason"] == "sales_daily: no update"
    assert inc["affected"] == ["asset:sales_report"]
    assert inc["resolved"] is None
    assert sorted((n["channel"], n["action"], n["status"]) for n in inc["notifications"]) == [
        ("email-oncall", "trigger", "pending"),
        ("slack-data", "trigger", "pending"),
    ]
    assert api.get("/api/incidents", params={"state": "resolved"}).json()["incidents"] == []
    assert len(api.get("/api/incidents").json()["incidents"]) == 1


def test_list_incidents_rejects_bad_state_and_limit(api: TestClient) -> None:
    assert ["query", "state"] in field_errors(api.get("/api/incidents?state=closed"))
    assert ["query", "limit"] in field_errors(api.get("/api/incidents?limit=0"))


def test_list_incidents_limit(api: TestClient, store: Store) -> None:
    open_incident(store, "a")
    open_incident(store, "b")
    assert len(api.get("/api/incidents?limit=1").json()["incidents"]) == 1
    assert len(api.get("/api/incidents?limit=5").json()["incidents"]) == 2


def test_ack_then_resolve(api: TestClient, store: Store) -> None:
    api.post("/api/slas", json=FRESH)
    iid = open_incident(store)
    acked = api.post(f"/api/incidents/{iid}/ack")
    assert acked.status_code == 200, acked.text
    assert acked.json()["id"] == iid and acked.json()["acked"] is not None
    assert acked.json()["resolved"] is None

    resp = api.post(f"/api/incidents/{iid}/resolve")
    assert resp.status_code == 200, resp.text
    resolved = resp.json()
    assert resolved["resolved"] is not None
    actions = sorted((n["channel"], n["action"]) for n in resolved["notifications"])
    assert actions == [
        ("email-oncall", "resolve"),
        ("email-oncall", "trigger"),
        ("slack-data", "resolve"),
        ("slack-data", "trigger"),
    ]
    assert api.get("/api/incidents?state=open").json()["incidents"] == []
    listed = api.get("/api/incidents?state=resolved").json()["incidents"]
    assert [i["id"] for i in listed] == [iid]
    assert len(listed[0]["notifications"]) == 4

    again = api.post(f"/api/incidents/{iid}/resolve")
    assert again.status_code == 409
    assert api.post(f"/api/incidents/{iid}/ack").status_code == 409
    # no second round of resolve alerts
    after = api.get("/api/incidents?state=resolved").json()["incidents"][0]
    assert len(after["notifications"]) == 4


def test_resolve_after_the_sla_was_deleted_queues_nothing(api: TestClient, store: Store) -> None:
    api.post("/api/slas", json=FRESH)
    iid = open_incident(store)
    assert api.delete("/api/slas/sales_fresh").status_code == 204
    resolved = api.post(f"/api/incidents/{iid}/resolve").json()
    assert resolved["resolved"] is not None
    assert {n["action"] for n in resolved["notifications"]} == {"trigger"}


def test_unknown_and_malformed_incident_ids(api: TestClient) -> None:
    unknown = uuid.uuid4()
    for action in ("ack", "resolve"):
        resp = api.post(f"/api/incidents/{unknown}/{action}")
        assert resp.status_code == 404, resp.text
        assert str(unknown) in resp.json()["detail"]
        assert ["path", "incident_id"] in field_errors(api.post(f"/api/incidents/nope/{action}"))


def test_reload_without_an_engine_is_409(store: Store, db_url: str) -> None:
    app = create_app(Settings(database_url=db_url, events_retention_days=0), store=store)
    with TestClient(app) as c:
        app.state.sla_engine = None
        r = c.post("/api/slas/reload")
    assert r.status_code == 409
    assert "no SLA engine" in r.json()["detail"]


def test_an_sla_notifying_an_unknown_channel_is_a_422_naming_the_entry(api: TestClient) -> None:
    resp = api.post("/api/slas", json={**FRESH, "notify": ["slack-data", "slack-typo"]})
    assert resp.status_code == 422
    assert resp.json()["errors"] == [
        {
            "loc": ["body", "notify", 1],
            "msg": "no channel named 'slack-typo' in channels: (email-oncall, slack-data)",
        }
    ]
    assert api.get("/api/slas").json()["slas"] == []


def test_channels_show_their_type_and_state(api: TestClient) -> None:
    resp = api.get("/api/channels")
    assert resp.status_code == 200
    assert resp.json()["channels"] == [
        {"name": "email-oncall", "type": "webhook", "status": "enabled", "disabled": None,
         "last_error": None},
        {"name": "slack-data", "type": "slack", "status": "enabled", "disabled": None,
         "last_error": None},
    ]  # fmt: skip


def test_a_calendar_and_window_round_trip_and_a_calendar_name_is_refused(
    api: TestClient,
) -> None:
    calendar = {"country": "DE", "subdivision": "BE", "days_off": ["2027-12-24"]}
    body = {**FRESH, "window": "6h", "calendar": calendar}
    got = api.post("/api/slas", json=body)
    assert got.status_code == 201, got.text
    assert got.json()["window"] == 6 * 3600
    assert got.json()["calendar"] == {"country": "DE", "subdivision": "BE",
                                      "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                                      "days_off": ["2027-12-24"], "working": []}  # fmt: skip
    shown = api.get("/api/slas/sales_fresh").json()
    assert api.put("/api/slas/sales_fresh", json=shown).json()["calendar"] == shown["calendar"]
    named = api.post("/api/slas", json={**FRESH, "name": "other", "calendar": "berlin"})
    assert named.status_code == 422
    assert ["body", "calendar"] in field_errors(named)
    bad = api.post("/api/slas", json={**FRESH, "name": "other", "calendar": {"country": "XX"}})
    assert ["body", "calendar"] in field_errors(bad)


def test_an_sla_with_an_objective_shows_its_error_budget(api: TestClient, store: Store) -> None:
    now = datetime.now(UTC)
    sla = ADAPTER.validate_python({**FRESH, "objective": "99.5%", "objective_period": "10d"})
    with store.connect() as conn:
        upsert_slas(conn, [sla], "api", now - timedelta(days=2))
        breach = Breach(key="k", due=now - timedelta(hours=2), reason="late")
        opened = Evaluation("breached", breaches=[breach])
        apply_evaluation(conn, sla, opened, lambda _: [], now - timedelta(hours=2))
        apply_evaluation(conn, sla, Evaluation("ok"), lambda _: [], now - timedelta(hours=1))
    got = api.get("/api/slas/sales_fresh").json()
    budget = got["budget"]
    # 0.5% of 10 days is 72 minutes; the hour-long incident spent 60 of them.
    assert (budget["objective"], budget["period"]) == (99.5, 10 * 86400)
    assert (budget["budget_minutes"], budget["spent_minutes"]) == (72, pytest.approx(60, abs=0.1))
    assert budget["left_minutes"] == pytest.approx(12, abs=0.1)
    assert budget["compliance"] == pytest.approx(100 * (1 - 1 / 48), abs=0.01)
    assert budget["burn_rate_1h"] == pytest.approx(0, abs=0.1)
    assert budget["burn_rate_6h"] == pytest.approx((1 / 6) / 0.005, abs=0.1)
    assert api.get("/api/slas").json()["slas"][0]["budget"] == budget
    # what GET shows can be PUT back: the budget is read-only
    assert api.put("/api/slas/sales_fresh", json=got).status_code == 200
    page = api.get("/slas/sales_fresh").text
    assert "Error budget" in page and "99.5% over 10d" in page and "of 72 minutes" in page


def test_an_sla_without_an_objective_has_no_budget(api: TestClient) -> None:
    assert api.post("/api/slas", json=FRESH).json()["budget"] is None
    assert "Error budget" not in api.get("/slas/sales_fresh").text
    bad = api.post("/api/slas", json={**FRESH, "name": "x", "objective": "200%"})
    assert ["body", "objective"] in field_errors(bad)
