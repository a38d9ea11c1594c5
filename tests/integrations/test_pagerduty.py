"""PagerDuty channel against a fake Events API v2 that checks the documented event shape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from coplane.alerts.notifier import Action, Alert, IntegrationError
from coplane.integrations.pagerduty.config import PagerDutyChannel
from coplane.integrations.pagerduty.notifier import PagerDutyNotifier, build
from tests.fake_http import FakeService, Reply, Request

ROUTING_KEY = "R0UT1NGKEY0123456789012345678901"
INCIDENT = "5f0c6d6e-8b1a-4c57-9a8e-0d2b6f1e7a11"
OPENED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)
# https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
SEVERITIES = {"critical", "error", "warning", "info"}
INVALID = {
    "status": "invalid event",
    "message": "Event object is invalid",
    "errors": ["'payload.severity' is invalid (must be one of the following: ...)"],
}


def make_alert(action: Action = "trigger", **changes: Any) -> Alert:
    """An alert about one breached freshness SLA, to the channel 'oncall'."""
    alert = Alert(
        action=action,
        channel="oncall",
        incident_id=INCIDENT,
        sla="sales_fresh",
        kind="freshness",
        severity="critical",
        reason="no update of warehouse.sales since 2026-11-02T06:00:00+00:00",
        resource="warehouse.sales",
        affected=["dashboards.revenue", "exports.finance"],
        due=DUE,
        opened=OPENED,
        url="https://coplane.example.com/incidents/" + INCIDENT,
        owners=["data-platform"],
        labels={"team": "data"},
    )
    return replace(alert, **changes)


def change_events(request: Request) -> Reply:
    """The change events endpoint as documented: a summary, a source, a timestamp, then 202.

    https://developer.pagerduty.com/docs/events-api-v2/send-change-events/
    """
    event = request.json()
    assert event["routing_key"] == ROUTING_KEY
    assert "event_action" not in event and "dedup_key" not in event
    payload = event["payload"]
    assert isinstance(payload["summary"], str) and 0 < len(payload["summary"]) <= 1024
    assert isinstance(payload.get("source", ""), str)
    datetime.fromisoformat(payload["timestamp"])
    for link in event.get("links", []):
        assert set(link) <= {"href", "text"} and link["href"]
    return Reply(202, {"status": "success", "message": "Change event processed"})


def events_api(request: Request) -> Reply:
    """Events API v2 as documented: the shape it requires, then 202 with the dedup_key."""
    assert request.method == "POST"
    if request.path == "/v2/change/enqueue":
        return change_events(request)
    assert request.path == "/v2/enqueue"
    assert request.headers["content-type"].startswith("application/json")
    event = request.json()
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] in {"trigger", "acknowledge", "resolve"}
    assert isinstance(event["dedup_key"], str) and 0 < len(event["dedup_key"]) <= 255
    if event["event_action"] == "trigger":
        payload = event["payload"]
        assert isinstance(payload["summary"], str) and 0 < len(payload["summary"]) <= 1024
        assert isinstance(payload["source"], str) and payload["source"]
        assert payload["severity"] in SEVERITIES
        datetime.fromisoformat(payload["timestamp"])
        for link in event.get("links", []):
            assert set(link) <= {"href", "text"} and link["href"]
    return Reply(
        202, {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]}
    )


@pytest.fixture
def pagerduty() -> Iterator[FakeService]:
    with FakeService(events_api) as service:
        yield service


@pytest.fixture
def notifier(pagerduty: FakeService) -> Iterator[PagerDutyNotifier]:
    sender = build(
        PagerDutyChannel(type="pagerduty", routing_key=ROUTING_KEY, base_url=pagerduty.url)
    )
    yield sender
    sender.close()


def test_trigger_then_resolve_share_one_dedup_key(
    pagerduty: FakeService, notifier: PagerDutyNotifier
) -> None:
    thread = notifier.send(make_alert("trigger"))
    notifier.send(make_alert("resolve", resolved=datetime(2026, 11, 2, 9, 0, tzinfo=UTC)))

    trigger, resolve = (request.json() for request in pagerduty.requests)
    assert thread == {"dedup_key": "coplane-" + INCIDENT}
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "coplane-" + INCIDENT
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "coplane-" + INCIDENT,
    }


def test_trigger_describes_the_breach(pagerduty: FakeService, notifier: PagerDutyNotifier) -> None:
    notifier.send(make_alert("trigger"))

    event = pagerduty.requests[0].json()
    payload = event["payload"]
    assert "sales_fresh" in payload["summary"] and "no update" in payload["summary"]
    assert payload["source"] == "warehouse.sales"
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == OPENED.isoformat()
    assert payload["class"] == "freshness"
    assert payload["custom_details"]["affected"] == ["dashboards.revenue", "exports.finance"]
    assert payload["custom_details"]["owners"] == ["data-platform"]
    assert payload["custom_details"]["labels"] == {"team": "data"}
    assert payload["custom_details"]["due"] == DUE.isoformat()
    assert event["links"] == [
        {"href": "https://coplane.example.com/incidents/" + INCIDENT, "text": "coplane incident"}
    ]
    assert event["client"] == "coplane"
    assert event["client_url"] == "https://coplane.example.com/incidents/" + INCIDENT


@pytest.mark.parametrize("severity", ["info", "warning", "critical"])
def test_severity_is_one_pagerduty_knows(
    pagerduty: FakeService, notifier: PagerDutyNotifier, severity: str
) -> None:
    notifier.send(make_alert("trigger", severity=severity))

    assert pagerduty.requests[0].json()["payload"]["severity"] == severity


def test_long_reason_is_cut_to_pagerdutys_limit_and_sla_is_the_source_without_resource(
    pagerduty: FakeService, notifier: PagerDutyNotifier
) -> None:
    notifier.send(make_alert("trigger", reason="x" * 5000, resource=None))

    payload = pagerduty.requests[0].json()["payload"]
    assert len(payload["summary"]) == 1024
    assert payload["source"] == "sales_fresh"


def test_repeat_is_not_wanted(notifier: PagerDutyNotifier) -> None:
    assert not notifier.wants(make_alert("repeat"))
    assert all(notifier.wants(make_alert(action)) for action in ("trigger", "resolve", "test"))


def test_test_alert_triggers_and_resolves_so_nothing_stays_open(
    pagerduty: FakeService, notifier: PagerDutyNotifier
) -> None:
    notifier.send(make_alert("test"))

    events = [request.json() for request in pagerduty.requests]
    assert [event["event_action"] for event in events] == ["trigger", "resolve"]
    assert {event["dedup_key"] for event in events} == {"coplane-test-oncall"}
    assert "Test alert" in events[0]["payload"]["summary"]


def test_rate_limit_is_transient_with_retry_after(
    pagerduty: FakeService, notifier: PagerDutyNotifier
) -> None:
    pagerduty.script(Reply(429, {"status": "throttle"}, {"Retry-After": "30"}))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert("trigger"))
    assert not caught.value.permanent
    assert caught.value.retry_after == 30
    notifier.send(make_alert("trigger"))  # the retry goes through
    assert len(pagerduty.requests) == 2


def test_invalid_event_is_permanent_with_the_status_only(
    pagerduty: FakeService, notifier: PagerDutyNotifier
) -> None:
    pagerduty.script(Reply(400, INVALID))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert("trigger"))
    assert caught.value.permanent
    assert caught.value.message == "PagerDuty answered 400 Bad Request"  # no body echoed


def test_outage_is_transient(pagerduty: FakeService, notifier: PagerDutyNotifier) -> None:
    pagerduty.script(Reply(503, b"Service Unavailable", {"content-type": "text/plain"}))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert("resolve"))
    assert not caught.value.permanent


def test_unreachable_is_transient() -> None:
    with FakeService(events_api) as gone:
        url = gone.url
    sender = build(PagerDutyChannel(type="pagerduty", routing_key=ROUTING_KEY, base_url=url))
    try:
        with pytest.raises(IntegrationError) as caught:
            sender.send(make_alert("trigger"))
    finally:
        sender.close()
    assert not caught.value.permanent
    assert "could not be reached" in caught.value.message


def test_default_endpoint_is_pagerdutys_events_api() -> None:
    sender = build(PagerDutyChannel(type="pagerduty", routing_key=ROUTING_KEY))
    sender.close()
    assert sender.url == "https://events.pagerduty.com/v2/enqueue"


def test_an_early_warning_pages_nobody(notifier: PagerDutyNotifier) -> None:
    assert not notifier.wants(make_alert("warn", warning=True))
    assert not notifier.wants(make_alert("resolve", warning=True))
