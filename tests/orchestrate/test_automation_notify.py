"""The automation `notify` action: its message goes through the alert outbox to real notifiers
pointed at local fakes, once per firing, retried while a channel is down, never sent twice."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coplane.alerts.channels import ChannelConfig
from coplane.alerts.dispatcher import Dispatcher
from coplane.integrations.pagerduty.config import PagerDutyChannel
from coplane.integrations.slack.config import SlackChannel
from coplane.integrations.webhook.config import WebhookChannel
from coplane.orchestrate.automations import run_automations, sync_file_automations
from coplane.rules.automation import AutomationSpec
from coplane.slas.config import ConfigError, parse_config
from coplane.store import Store
from coplane.store.automations import list_firings, queue_automation_message
from coplane.store.events import insert_events
from coplane.store.incidents import NOTIFICATION_COLUMNS
from tests.factories import events
from tests.fake_http import FakeService, Reply, Request
from tests.integrations.test_pagerduty import ROUTING_KEY, events_api
from tests.integrations.test_slack import TOKEN as SLACK_TOKEN
from tests.integrations.test_slack import body_of, slack_api

PUBLIC = "https://coplane.example.com"
MESSAGE = "{{ event.resource.id }} failed: {{ event.payload.error }} ({{ automation.name }})"


def receiver(request: Request) -> Reply:
    """A webhook receiver that takes any JSON POST."""
    assert request.method == "POST" and request.path == "/hook"
    request.json()
    return Reply(204, b"")


class Fakes:
    """A webhook receiver, Slack's Web API and PagerDuty's Events API, started for one test."""

    def __init__(self) -> None:
        self.hook = FakeService(receiver).start()
        self.slack = FakeService(slack_api).start()
        self.pagerduty = FakeService(events_api).start()

    def stop(self) -> None:
        for fake in (self.hook, self.slack, self.pagerduty):
            fake.stop()

    def channels(self) -> dict[str, ChannelConfig]:
        slack = SlackChannel(
            type="slack", token=SLACK_TOKEN, channel="#data", base_url=self.slack.url + "/api/"
        )
        pager = PagerDutyChannel(
            type="pagerduty", routing_key=ROUTING_KEY, base_url=self.pagerduty.url
        )
        hooks = WebhookChannel(type="webhook", url=self.hook.url + "/hook")
        return {"hooks": hooks, "slack": slack, "pager": pager}

    def delivered(self) -> list[dict[str, Any]]:
        """The webhook bodies the receiver accepted."""
        return [r.json() for r in list(self.hook.requests) if r.answered == 204]


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    try:
        yield f
    finally:
        f.stop()


@pytest.fixture
def dispatchers(store: Store, fakes: Fakes) -> Iterator[list[Dispatcher]]:
    """Two dispatchers over one store and the same channels: two server replicas."""
    made = [Dispatcher(store, fakes.channels(), PUBLIC, max_backoff=1) for _ in range(2)]
    try:
        yield made
    finally:
        for d in made:
            d.stop()


def _automation(store: Store, *actions: dict[str, Any]) -> AutomationSpec:
    spec = AutomationSpec.model_validate({
        "name": "on-bad-data", "trigger": {"event": "check.failed", "resource": "wh.*"},
        "actions": list(actions),
    })  # fmt: skip
    sync_file_automations(store, [spec])
    return spec


def _fire(store: Store, error: str = "3 nulls") -> datetime:
    """Start the pass's cursor, store a matching event, and run the pass; when it ran."""
    now = datetime.now(UTC) - timedelta(seconds=10)  # so that what it queues is due now
    assert run_automations(store, now) == 0  # the first pass only sets the cursor
    event = {"id": str(uuid.uuid4()), "occurred": now.isoformat(), "event": "check.failed",
             "resource": {"id": "wh.orders"}, "payload": {"error": error}}  # fmt: skip
    with store.connect() as conn:
        insert_events(conn, events(event), now + timedelta(seconds=1), store.partitions)
    later = now + timedelta(seconds=2)
    assert run_automations(store, later) == 1
    return later


def _actions(store: Store) -> list[dict[str, Any]]:
    with store.connect() as conn:
        [firing] = list_firings(conn, "on-bad-data")
    return list(firing["actions"])


def _notifications(store: Store) -> list[dict[str, Any]]:
    with store.connect() as conn:
        rows = conn.query(f"SELECT {NOTIFICATION_COLUMNS} FROM notifications ORDER BY channel")
    return [dict(r) for r in rows]


def _recorded(store: Store, name: str) -> list[dict[str, Any]]:
    with store.connect() as conn:
        rows = conn.query("SELECT payload FROM events WHERE event = ?", (name,))
    return [r["payload"] for r in rows]


def test_a_notify_action_sends_its_rendered_message_once_to_each_channel(
    store: Store, fakes: Fakes, dispatchers: list[Dispatcher]
) -> None:
    _automation(store, {"type": "notify", "channels": ["hooks", "slack", "pager"],
                        "message": MESSAGE})  # fmt: skip
    fired = _fire(store)
    [action] = _actions(store)
    assert action["ok"] and action["type"] == "notify"
    assert [n["channel"] for n in action["notifications"]] == ["hooks", "pager", "slack"]
    assert action["detail"].startswith("queued to hooks, pager, slack (message ")
    assert action["detail"].endswith("): wh.orders failed: 3 nulls (on-bad-data)")
    [succeeded] = _recorded(store, "automation.action.succeeded")
    assert succeeded["notifications"] == action["notifications"]

    assert dispatchers[0].run_once() == 3
    [hook] = fakes.delivered()
    assert hook["action"] == "notify" and hook["status"] == "firing"
    assert hook["message"] == "wh.orders failed: 3 nulls (on-bad-data)"
    assert hook["automation"] == {"name": "on-bad-data", "url": f"{PUBLIC}/automations/on-bad-data"}
    assert hook["event"] == {"event": "check.failed", "resource": "wh.orders"}
    assert hook["groupKey"] == action["message"] and "incident" not in hook
    [post] = [body_of(r) for r in fakes.slack.requests]
    assert post["text"].startswith("wh.orders failed: 3 nulls (on-bad-data)")
    button = post["blocks"][-1]["elements"][0]
    assert button["url"] == f"{PUBLIC}/automations/on-bad-data"
    assert button["text"]["text"] == "Open automation"
    [change] = [r for r in fakes.pagerduty.requests]
    assert change.path == "/v2/change/enqueue"  # information: it pages nobody
    assert change.json()["payload"]["summary"] == "wh.orders failed: 3 nulls (on-bad-data)"
    assert [n["status"] for n in _notifications(store)] == ["sent", "sent", "sent"]

    # another pass over the same events, and both dispatchers again: nothing more is sent
    assert run_automations(store, fired + timedelta(seconds=1)) == 0
    assert dispatchers[0].run_once(datetime.now(UTC) + timedelta(minutes=5)) == 0
    assert dispatchers[1].run_once(datetime.now(UTC) + timedelta(minutes=5)) == 0
    assert len(fakes.hook.requests) == len(fakes.slack.requests) == 1
    assert len(fakes.pagerduty.requests) == 1


def test_a_channel_that_fails_transiently_gets_the_message_after_a_retry(
    store: Store, fakes: Fakes, dispatchers: list[Dispatcher]
) -> None:
    _automation(store, {"type": "notify", "channels": ["hooks"], "message": MESSAGE})
    _fire(store)
    fakes.hook.script(Reply(503, {"error": "down for maintenance"}))
    assert dispatchers[0].run_once() == 1
    [note] = _notifications(store)
    assert (note["status"], note["attempts"]) == ("pending", 1)
    assert "503" in note["last_error"]
    assert fakes.delivered() == []
    assert dispatchers[0].run_once(datetime.now(UTC) + timedelta(seconds=5)) == 1
    [hook] = fakes.delivered()
    assert hook["message"] == "wh.orders failed: 3 nulls (on-bad-data)"
    [note] = _notifications(store)
    assert (note["status"], note["attempts"], note["last_error"]) == ("sent", 2, None)


def test_two_dispatchers_at_once_send_the_message_once(
    store: Store, fakes: Fakes, dispatchers: list[Dispatcher]
) -> None:
    _automation(store, {"type": "notify", "channels": ["hooks"]})
    _fire(store)
    start = threading.Barrier(2)
    claimed: list[int] = []

    def replica(d: Dispatcher) -> None:
        start.wait()
        claimed.append(d.run_once())

    threads = [threading.Thread(target=replica, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [0, 1]
    [hook] = fakes.delivered()
    # the default message names the automation and the event that fired it
    assert hook["message"] == "Automation on-bad-data fired on check.failed of wh.orders"


def test_queueing_the_same_firings_message_again_adds_nothing(store: Store) -> None:
    event = {"id": "e1", "event": "check.failed", "resource": {"id": "wh.orders"}}
    now = datetime.now(UTC)
    with store.connect() as conn:
        first, rows = queue_automation_message(conn, "a", "event:e1", 0, "hello", event,
                                               ["ops", "pager", "ops"], now)  # fmt: skip
        # an action run anew after a crash, even with another text: the first message stands
        again, again_rows = queue_automation_message(conn, "a", "event:e1", 0, "hello 2", event,
                                                     ["ops", "pager"], now)  # fmt: skip
        other, _ = queue_automation_message(conn, "a", "event:e1", 1, "x", event, ["ops"], now)
        messages = conn.query("SELECT id, message FROM automation_messages ORDER BY message")
    assert first == again != other
    assert [r["channel"] for r in rows] == ["ops", "pager"]
    assert [r["id"] for r in again_rows] == [r["id"] for r in rows]
    assert [m["message"] for m in messages] == ["hello", "x"]


@pytest.mark.parametrize(
    ("message", "detail"),
    [
        ("{{ event.nothing.here }}", "the message template failed: 'dict object' has no "
         "attribute 'nothing'"),
        ("{{ event.resource.id", "the message template failed: unexpected end of template"),
        ("{{ ''.__class__.__mro__ }}", "the message template failed: access to attribute "
         "'__class__' of 'str' object is unsafe."),
        ("{{ '  ' }}", "the message is empty once rendered"),
    ],
)  # fmt: skip
def test_a_message_that_does_not_render_is_a_recorded_failure(
    store: Store, message: str, detail: str
) -> None:
    _automation(store, {"type": "notify", "channels": ["hooks"], "message": message},
                {"type": "notify", "channels": ["hooks"], "message": "next"})  # fmt: skip
    _fire(store)
    failed, next_one = _actions(store)
    assert failed["ok"] is False and failed["detail"].startswith(detail)
    assert next_one["ok"] is True  # the actions after it still run
    [recorded] = _recorded(store, "automation.action.failed")
    assert recorded["detail"] == failed["detail"]
    assert [n["channel"] for n in _notifications(store)] == ["hooks"]  # the second's only


def test_a_channel_gone_from_the_config_since_leaves_the_message_dead_naming_it(
    store: Store, fakes: Fakes
) -> None:
    _automation(store, {"type": "notify", "channels": ["hooks"]})
    _fire(store)
    dispatcher = Dispatcher(store, {}, PUBLIC)  # the channel was removed from the file
    try:
        assert dispatcher.run_once() == 1
    finally:
        dispatcher.stop()
    [note] = _notifications(store)
    assert note["status"] == "dead"
    assert note["last_error"] == "no channel named 'hooks' in the configuration"


def test_the_config_file_refuses_a_notify_channel_it_does_not_define() -> None:
    text = """\
channels:
  hooks: {type: webhook, url: "https://hooks.example.com/x"}
automations:
  - name: a
    trigger: {event: check.failed}
    actions:
      - type: notify
        channels: [hooks, pager]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "coplane.yaml")
    assert str(caught.value) == (
        "coplane.yaml:8: automations[0].actions[0].channels[1]: no channel named 'pager' in "
        "channels: (hooks)"
    )
    parse_config(text.replace("hooks, pager", "hooks"), "coplane.yaml")


def test_a_notify_action_needs_a_channel() -> None:
    spec = {"name": "a", "trigger": {"event": "x"}, "actions": [{"type": "notify", "channels": []}]}
    with pytest.raises(ValueError, match="at least 1 item"):
        AutomationSpec.model_validate(spec)


def test_the_api_refuses_a_notify_channel_the_config_does_not_define(client: TestClient) -> None:
    notify: dict[str, Any] = {"type": "notify", "channels": ["hooks", "pager"]}
    body = {"name": "a", "trigger": {"event": "check.failed"},
            "actions": [{"type": "pause_schedule", "deployment": "d"}, notify]}  # fmt: skip
    client.app.state.sla_engine.channels = {  # type: ignore[attr-defined]
        "hooks": WebhookChannel(type="webhook", url="https://hooks.example.com/x")
    }
    answer = client.post("/api/automations", json=body)
    assert answer.status_code == 422
    where = ["body", "actions", 1, "channels", 1]
    msg = "no channel named 'pager' in channels: (hooks)"
    assert answer.json() == {"detail": f"body.actions.1.channels.1: {msg}",
                             "errors": [{"loc": where, "msg": msg}]}  # fmt: skip
    assert client.put("/api/automations/a", json=body).status_code == 422
    notify["channels"] = ["hooks"]
    assert client.post("/api/automations", json=body).status_code == 201
