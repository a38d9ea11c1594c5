"""The web tests' app: the real one, with the SLA engine kept from re-evaluating hand-set states."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from coplane.integrations.slack.config import SlackChannel
from coplane.integrations.webhook.config import WebhookChannel
from coplane.store import Store


class FakeEngine:
    """Stands in for the SLA engine: the channels SLAs may notify, and no evaluations."""

    def __init__(self) -> None:
        self.channels = {
            "slack-data": SlackChannel(type="slack", webhook_url="https://hooks.invalid/x"),
            "email-oncall": WebhookChannel(type="webhook", url="https://mail.invalid/x"),
        }

    def request_evaluation(self, resources: object = None) -> None:
        pass


@pytest.fixture
def web(client: TestClient, store: Store) -> TestClient:
    """The app with its SLA engine out of the way: these tests set SLA states by hand, which
    the real engine would re-evaluate against the real clock after each write."""
    app: Any = client.app
    real = app.state.sla_engine
    store.writer.remove_listener(real.request_evaluation)
    app.state.sla_engine = FakeEngine()
    return client
