"""The dispatcher's decisions are logged, one line each, with the alert's fields."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest

from coplane.alerts.notifier import IntegrationError
from tests.alerts.test_dispatcher import Harness, channel, harness_of

__all__ = ["harness_of"]  # the fixture, shared


def decisions(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    return [
        (r.__dict__["decision"], r.__dict__) for r in caplog.records if "decision" in r.__dict__
    ]


def test_sent_retried_and_dead_alerts_and_a_disabled_channel_are_logged(
    harness_of: Callable[..., Harness], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coplane.alerts.dispatcher")
    h = harness_of(ops=channel(), backup=channel(headers={"x": "1"}))
    h.recorders["ops"].fail = [IntegrationError("500 internal error")]
    h.recorders["backup"].fail = [IntegrationError("invalid_auth", permanent=True)]
    h.breach(h.sla())
    h.run()
    h.run(timedelta(seconds=61))
    found = decisions(caplog)
    names = [name for name, _ in found]
    assert names.count("alert.retried") == 1 and names.count("alert.sent") == 1
    assert "alert.dead" in names and "channel.disabled" in names
    [(_, retried)] = [d for d in found if d[0] == "alert.retried"]
    assert retried["channel"] == "ops" and retried["error"] == "500 internal error"
    [(_, disabled)] = [d for d in found if d[0] == "channel.disabled"]
    assert disabled["channel"] == "backup" and "invalid_auth" in str(disabled["error"])
    [(_, sent)] = [d for d in found if d[0] == "alert.sent"]
    assert sent["action"] == "trigger" and sent["incident"] == str(h.incidents()[0]["id"])
