"""Generic webhook channel against a fake receiver: the body, the signature, the answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from coplane.alerts.notifier import Action, Alert, IntegrationError
from coplane.integrations.webhook.config import WebhookChannel
from coplane.integrations.webhook.notifier import WebhookNotifier, build, verify_signature
from tests.fake_http import FakeService, Reply, Request

SECRET = "s3cret-shared-with-the-receiver"
INCIDENT = "5f0c6d6e-8b1a-4c57-9a8e-0d2b6f1e7a11"
OPENED = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 2, 7, 0, tzinfo=UTC)
RESOLVED = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
URL = "https://coplane.example.com/incidents/" + INCIDENT


def make_alert(action: Action = "trigger", **changes: Any) -> Alert:
    """An alert about one breached freshness SLA, to the channel 'hooks'."""
    alert = Alert(
        action=action,
        channel="hooks",
        incident_id=INCIDENT,
        sla="sales_fresh",
        kind="freshness",
        severity="warning",
        reason="no update of warehouse.sales since 2026-11-02T06:00:00+00:00",
        resource="warehouse.sales",
        affected=["dashboards.revenue"],
        due=DUE,
        opened=OPENED,
        url=URL,
        owners=["data-platform"],
        labels={"team": "data"},
    )
    return replace(alert, **changes)


def receiver(request: Request) -> Reply:
    """A receiver that takes any JSON POST."""
    assert request.method == "POST" and request.path == "/hooks/coplane"
    request.json()
    return Reply(204, b"")


@pytest.fixture
def service() -> Iterator[FakeService]:
    with FakeService(receiver) as fake:
        yield fake


def make_notifier(service: FakeService, **settings: Any) -> WebhookNotifier:
    return build(WebhookChannel(type="webhook", url=service.url + "/hooks/coplane", **settings))


@pytest.fixture
def notifier(service: FakeService) -> Iterator[WebhookNotifier]:
    sender = make_notifier(service, secret=SECRET)
    yield sender
    sender.close()


def test_trigger_body(service: FakeService, notifier: WebhookNotifier) -> None:
    assert notifier.send(make_alert("trigger")) is None

    request = service.requests[0]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "coplane"
    body = request.json()
    assert body["version"] == "1"
    assert body["status"] == "firing" and body["test"] is False
    assert body["receiver"] == "hooks"
    assert body["groupKey"] == INCIDENT
    assert body["incident"] == {
        "id": INCIDENT,
        "sla": "sales_fresh",
        "kind": "freshness",
        "severity": "warning",
        "reason": "no update of warehouse.sales since 2026-11-02T06:00:00+00:00",
        "resource": "warehouse.sales",
        "due": DUE.isoformat(),
        "opened": OPENED.isoformat(),
        "acked": None,
        "resolved": None,
        "url": URL,
    }
    assert body["sla"] == {
        "name": "sales_fresh",
        "kind": "freshness",
        "severity": "warning",
        "owners": ["data-platform"],
        "labels": {"team": "data"},
    }
    assert body["labels"] == {"sla": "sales_fresh", "severity": "warning", "team": "data"}
    assert body["annotations"] == {
        "summary": "[warning] sales_fresh breached",
        "description": "no update of warehouse.sales since 2026-11-02T06:00:00+00:00",
    }
    assert body["affected"] == ["dashboards.revenue"]
    assert body["startsAt"] == OPENED.isoformat()
    assert body["endsAt"] is None
    assert body["externalURL"] == URL


def test_resolve_is_resolved_with_its_end(service: FakeService, notifier: WebhookNotifier) -> None:
    notifier.send(make_alert("resolve", resolved=RESOLVED))

    body = service.requests[0].json()
    assert body["status"] == "resolved"
    assert body["endsAt"] == RESOLVED.isoformat()
    assert body["incident"]["resolved"] == RESOLVED.isoformat()


def test_repeat_and_test_are_firing(service: FakeService, notifier: WebhookNotifier) -> None:
    assert notifier.wants(make_alert("repeat")) and notifier.wants(make_alert("test"))
    notifier.send(make_alert("repeat"))
    notifier.send(make_alert("test"))

    repeat, test = (request.json() for request in service.requests)
    assert repeat["status"] == "firing" and repeat["test"] is False
    assert test["status"] == "firing" and test["test"] is True


def test_signature_verifies(service: FakeService, notifier: WebhookNotifier) -> None:
    notifier.send(make_alert("trigger"))

    request = service.requests[0]
    timestamp = request.headers["x-coplane-timestamp"]
    signature = request.headers["x-coplane-signature"]
    assert signature.startswith("sha256=")
    assert abs(int(timestamp) - time.time()) < 60
    assert verify_signature(SECRET, timestamp, request.body, signature)


def test_signature_fails_with_wrong_secret_tampered_body_or_stale_timestamp(
    service: FakeService, notifier: WebhookNotifier
) -> None:
    notifier.send(make_alert("trigger"))

    request = service.requests[0]
    timestamp = request.headers["x-coplane-timestamp"]
    signature = request.headers["x-coplane-signature"]
    tampered = request.body.replace(b'"warning"', b'"info"')
    assert tampered != request.body
    assert not verify_signature("another-secret", timestamp, request.body, signature)
    assert not verify_signature(SECRET, timestamp, tampered, signature)
    assert not verify_signature(SECRET, str(int(timestamp) - 1), request.body, signature)
    later = int(timestamp) + 301
    assert not verify_signature(SECRET, timestamp, request.body, signature, now=later)
    assert verify_signature(SECRET, timestamp, request.body, signature, now=later - 2)
    assert not verify_signature(SECRET, "not-a-time", request.body, signature)
    assert not verify_signature(SECRET, timestamp, request.body, "sha256=ü")


def test_custom_headers_are_sent_and_no_signature_without_secret(service: FakeService) -> None:
    sender = make_notifier(
        service, headers={"Authorization": "Bearer abc", "content-type": "text/plain"}
    )
    try:
        sender.send(make_alert("trigger"))
    finally:
        sender.close()

    headers = service.requests[0].headers
    assert headers["authorization"] == "Bearer abc"
    assert headers["content-type"] == "application/json"
    assert "x-coplane-signature" not in headers and "x-coplane-timestamp" not in headers


def test_gone_is_permanent(service: FakeService, notifier: WebhookNotifier) -> None:
    service.script(Reply(410, {"error": "this hook was deleted"}))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert("trigger"))
    assert caught.value.permanent
    assert "410" in caught.value.message


def test_bad_gateway_is_transient(service: FakeService, notifier: WebhookNotifier) -> None:
    service.script(Reply(502, b"<html>Bad Gateway</html>", {"content-type": "text/html"}))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert("trigger"))
    assert not caught.value.permanent
    notifier.send(make_alert("trigger"))  # the retry goes through
    assert len(service.requests) == 2


def test_redirect_is_not_success(service: FakeService, notifier: WebhookNotifier) -> None:
    service.script(Reply(301, b"", {"location": "https://elsewhere.example.com/"}))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert("trigger"))
    assert caught.value.permanent
    assert "elsewhere.example.com" in caught.value.message


def test_an_early_warning_is_a_warn_then_its_resolve(
    service: FakeService, notifier: WebhookNotifier
) -> None:
    assert notifier.wants(make_alert("warn", warning=True))
    notifier.send(make_alert("warn", warning=True))
    notifier.send(make_alert("resolve", warning=True, resolved=RESOLVED))

    warn, met = (request.json() for request in service.requests)
    assert (warn["action"], warn["status"], warn["warning"]) == ("warn", "firing", True)
    assert (met["action"], met["status"], met["warning"]) == ("resolve", "resolved", True)
    assert service.requests[0].json()["incident"]["reason"] == make_alert().reason
