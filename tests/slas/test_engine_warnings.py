"""Early warnings end to end: the engine on a real store, the dispatcher, a local fake Slack."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter

from coplane.alerts.dispatcher import Dispatcher
from coplane.integrations.slack.config import SlackChannel
from coplane.rules.model import SLA
from coplane.slas.engine import SlaEngine
from coplane.store import Store
from coplane.store.events import insert_events
from coplane.store.incidents import list_incidents
from coplane.store.slas import upsert_slas
from tests.factories import event_dict, events
from tests.fake_http import FakeService
from tests.integrations.test_slack import CHANNEL_ID, FIRST_TS, TOKEN, body_of, slack_api

PIPE = "airflow.prod.sales_daily"
CREATED = datetime(2026, 11, 18, 10, tzinfo=UTC)
DAY = datetime(2026, 11, 22, tzinfo=UTC)  # due at 09:00 UTC; it usually runs 07:00-08:00


def _at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute, second=second)


def _sla(**fields: Any) -> SLA:
    base = {"name": "sales_done", "kind": "completion", "target": PIPE, "deadline": "0 9 * * *",
            "notify": ["slack"], "warn_at_risk": True}  # fmt: skip
    return TypeAdapter(SLA).validate_python({**base, **fields})


def _run(store: Store, name: str, run: str, at: datetime) -> None:
    e = {**event_dict(name, PIPE, run=run), "occurred": at.isoformat()}
    with store.connect() as conn:
        insert_events(conn, events(e), at, store.partitions)


@pytest.fixture
def slack() -> Iterator[FakeService]:
    with FakeService(slack_api) as fake:
        yield fake


@pytest.fixture
def setup(store: Store, slack: FakeService) -> Iterator[tuple[SlaEngine, Dispatcher]]:
    for day in (19, 20, 21):
        started = _at(7).replace(day=day)
        _run(store, "run.started", f"r{day}", started)
        _run(store, "run.completed", f"r{day}", started + timedelta(hours=1))
    with store.connect() as conn:
        upsert_slas(conn, [_sla()], "api", CREATED)
    config = SlackChannel(
        type="slack", token=TOKEN, channel="#data-alerts", base_url=f"{slack.url}/api/"
    )
    dispatcher = Dispatcher(store, {"slack": config}, "http://coplane.test")
    engine = SlaEngine(store, None, None, dispatcher=dispatcher)
    try:
        yield engine, dispatcher
    finally:
        engine.stop()
        dispatcher.stop()


def _calls(slack: FakeService) -> list[tuple[str, dict[str, Any]]]:
    return [(r.path.removeprefix("/api/"), body_of(r)) for r in list(slack.requests)]


def _warnings(store: Store) -> list[dict[str, Any]]:
    with store.connect() as conn:
        rows = conn.query("SELECT key, outcome, incident_id FROM sla_warnings ORDER BY opened")
    return [dict(r) for r in rows]


def test_a_warning_is_sent_once_then_the_breach_continues_its_thread(
    store: Store, slack: FakeService, setup: tuple[SlaEngine, Dispatcher]
) -> None:
    engine, dispatcher = setup
    _run(store, "run.started", "r22", _at(8, 30))  # an hour's run: done 09:30, after 09:00
    engine.evaluate_all(_at(8, 40))
    assert dispatcher.run_once(_at(8, 40)) == 1
    [(method, warn)] = _calls(slack)
    assert method == "chat.postMessage" and "thread_ts" not in warn
    assert warn["text"].startswith("Early warning: sales_done: run r22")
    assert "after the deadline 09:00" in warn["text"]
    # still at risk, later in the same window: no second warning
    engine.evaluate_all(_at(8, 50))
    assert dispatcher.run_once(_at(8, 50)) == 0
    # the deadline passes: the breach opens an incident, and continues the warning's thread
    engine.evaluate_all(_at(9, 0, 1))
    assert dispatcher.run_once(_at(9, 0, 1)) == 1
    [_, (edit_method, edit), (reply_method, reply)] = _calls(slack)
    assert edit_method == "chat.update" and edit["ts"] == FIRST_TS
    assert edit["channel"] == CHANNEL_ID
    assert edit["text"].startswith("Turned into a breach: sales_done: no completed run")
    assert reply_method == "chat.postMessage" and reply["thread_ts"] == FIRST_TS
    assert str(reply["reply_broadcast"]).lower() == "true"  # the channel sees the breach
    [incident] = list_incidents_open(store)
    assert [(w["outcome"], str(w["incident_id"])) for w in _warnings(store)] == [
        ("breached", incident["id"])
    ]
    # the warning is no incident: the only one is the breach
    assert incident["key"] == "sales_done:2026-11-22T09:00:00Z"


def test_a_warning_met_in_time_is_resolved_in_its_thread(
    store: Store, slack: FakeService, setup: tuple[SlaEngine, Dispatcher]
) -> None:
    engine, dispatcher = setup
    _run(store, "run.started", "r22", _at(8, 30))
    engine.evaluate_all(_at(8, 40))
    dispatcher.run_once(_at(8, 40))
    _run(store, "run.completed", "r22", _at(8, 55))  # quicker than usual: in time
    engine.evaluate_all(_at(8, 56))
    assert dispatcher.run_once(_at(8, 56)) == 1
    [_, (edit_method, edit), (reply_method, reply)] = _calls(slack)
    assert edit_method == "chat.update" and edit["ts"] == FIRST_TS
    assert edit["text"].startswith("Met in time: sales_done made its deadline")
    assert reply_method == "chat.postMessage" and reply["thread_ts"] == FIRST_TS
    assert [w["outcome"] for w in _warnings(store)] == ["met"]
    # nothing breached: no incident, and nothing more is sent after the deadline
    engine.evaluate_all(_at(9, 5))
    assert dispatcher.run_once(_at(9, 5)) == 0
    with store.connect() as conn:
        assert list_incidents(conn, None, 10) == []


def test_without_warn_at_risk_nothing_is_sent_before_the_breach(
    store: Store, slack: FakeService, setup: tuple[SlaEngine, Dispatcher]
) -> None:
    engine, dispatcher = setup
    with store.connect() as conn:
        upsert_slas(conn, [_sla(warn_at_risk=False)], "api", CREATED)
    _run(store, "run.started", "r22", _at(8, 30))
    engine.evaluate_all(_at(8, 40))
    assert dispatcher.run_once(_at(8, 40)) == 0
    assert _calls(slack) == [] and _warnings(store) == []


def list_incidents_open(store: Store) -> list[dict[str, Any]]:
    with store.connect() as conn:
        return list_incidents(conn, "open", 10)


def test_a_warning_open_when_warn_at_risk_is_turned_off_still_ends(
    store: Store, slack: FakeService, setup: tuple[SlaEngine, Dispatcher]
) -> None:
    engine, dispatcher = setup
    _run(store, "run.started", "r22", _at(8, 30))
    engine.evaluate_all(_at(8, 40))
    dispatcher.run_once(_at(8, 40))
    with store.connect() as conn:
        upsert_slas(conn, [_sla(warn_at_risk=False)], "api", _at(8, 45))
    _run(store, "run.completed", "r22", _at(8, 55))
    engine.evaluate_all(_at(8, 56))
    dispatcher.run_once(_at(8, 56))
    assert [w["outcome"] for w in _warnings(store)] == ["met"]
    [_, (method, edit), _] = _calls(slack)
    assert method == "chat.update" and edit["text"].startswith("Met in time")
