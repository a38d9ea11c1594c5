"""The engine records an evaluation when the result changes, and links incidents to it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from coplane.rules.model import SLA
from coplane.slas.engine import SlaEngine
from coplane.store import Store
from coplane.store.evaluations import evaluation_json, list_sla_evaluations
from coplane.store.events import insert_events
from coplane.store.incidents import list_incidents
from coplane.store.slas import upsert_slas
from tests.factories import event_dict, events

# Monday 2026-11-02 06:00 UTC; due daily at 09:00 Berlin (08:00 UTC)
CREATED = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
TABLE = "wh.sales"
FRESH: dict[str, Any] = {"name": "sales_fresh", "kind": "freshness", "target": TABLE,
                         "deadline": "0 9 * * *", "timezone": "Europe/Berlin"}  # fmt: skip


@pytest.fixture
def engine(store: Store) -> Iterator[SlaEngine]:
    with store.connect() as conn:
        upsert_slas(conn, [TypeAdapter(SLA).validate_python(FRESH)], "api", CREATED)
    e = SlaEngine(store, None, None)
    yield e
    e.stop()  # gives up the evaluation lock, as a server does at shutdown


def _update(store: Store, at: datetime) -> None:
    e = {**event_dict("asset.updated", TABLE, related=[{"role": "producer", "id": "p"}]),
         "occurred": at.isoformat()}  # fmt: skip
    with store.connect() as conn:
        insert_events(conn, events(e), at, store.partitions)


def _evaluations(store: Store, limit: int = 100) -> list[dict[str, Any]]:
    with store.connect() as conn:
        return [evaluation_json(r) for r in list_sla_evaluations(conn, "sales_fresh", limit)]


def test_an_evaluation_is_recorded_when_the_result_changes_only(
    store: Store, engine: SlaEngine
) -> None:
    engine.evaluate_all(CREATED + timedelta(hours=3))  # 09:00 Berlin passed: breached
    engine.evaluate_all(CREATED + timedelta(hours=4))  # nothing new: the same result
    engine.evaluate_changed(CREATED + timedelta(hours=5))
    [breached] = _evaluations(store)
    assert breached["status"] == "breached"
    assert breached["evaluated"] == (CREATED + timedelta(hours=3)).isoformat()
    assert "09:00" in breached["explanation"]
    assert [b["due"] for b in breached["breaches"]] == ["2026-11-02T08:00:00+00:00"]
    _update(store, CREATED + timedelta(hours=5, minutes=10))  # late: resolves
    engine.evaluate_all(CREATED + timedelta(hours=6))
    ok, first = _evaluations(store)
    assert (ok["status"], ok["breaches"], first["id"]) == ("ok", [], breached["id"])
    assert ok["inputs"]["last_update"] == (CREATED + timedelta(hours=5, minutes=10)).isoformat()
    assert ok["next_deadline"] == "2026-11-03T08:00:00+00:00"


def test_the_incident_links_to_the_evaluation_that_opened_it(
    store: Store, engine: SlaEngine
) -> None:
    updated = CREATED + timedelta(minutes=30)  # meets Monday's window, not Tuesday's
    _update(store, updated)
    engine.evaluate_all(CREATED + timedelta(hours=1))
    engine.evaluate_all(CREATED + timedelta(days=1, hours=3))
    with store.connect() as conn:
        [incident] = list_incidents(conn, "open", 10)
    breached, ok = _evaluations(store)
    assert ok["status"] == "ok" and breached["status"] == "breached"
    assert incident["evaluation_id"] == breached["id"]
    assert breached["inputs"]["last_update"] == updated.isoformat()
    assert breached["inputs"]["window_start"] == "2026-11-03T08:00:00+00:00"
    assert [b["key"] for b in breached["breaches"]] == [incident["key"]]


def test_old_evaluations_are_pruned_in_the_pass(store: Store, engine: SlaEngine) -> None:
    engine.evaluations_kept = 3
    day = timedelta(days=1)
    for i in range(6):  # each day: an update in time, then a pass that sees it
        _update(store, CREATED + i * day + timedelta(minutes=10))
        engine.evaluate_all(CREATED + i * day + timedelta(minutes=20))
    kept = _evaluations(store)
    assert [e["evaluated"] for e in kept] == [
        (CREATED + i * day + timedelta(minutes=20)).isoformat() for i in (5, 4, 3)
    ]
