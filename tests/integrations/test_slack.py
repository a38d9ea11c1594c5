"""The Slack channel against a fake Slack that checks the requests coplane sends, through the
checked HTTP client every channel uses."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from coplane.alerts.notifier import Action, Alert, IntegrationError
from coplane.integrations.slack.config import SlackChannel
from coplane.integrations.slack.notifier import SlackNotifier, build
from tests.fake_http import FakeService, Reply, Request

TOKEN = "xoxb-test-token"
CHANNEL_ID = "C123"
FIRST_TS = "1700000000.000100"
REPLY_TS = "1700000000.000200"
INCIDENT_URL = "https://coplane.example.com/incidents/0b7e"
WEBHOOK_PATH = "/services/T000/B000/XXXX"
THREAD = {"channel": CHANNEL_ID, "ts": FIRST_TS}

TEXT_TYPES = {"plain_text", "mrkdwn"}


def make_alert(action: Action = "trigger", **changes: Any) -> Alert:
    """An alert about a breached freshness SLA, with `changes` applied."""
    values: dict[str, Any] = {
        "action": action,
        "channel": "team-slack",
        "incident_id": "0b7e",
        "sla": "sales_fresh",
        "kind": "freshness",
        "severity": "critical",
        "reason": "no update of warehouse.sales since 2024-05-01T06:00:00+00:00",
        "resource": "warehouse.sales",
        "affected": ["dash.revenue", "ml.forecast"],
        "due": datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
        "opened": datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC),
        "url": INCIDENT_URL,
    }
    if action == "resolve":
        values["resolved"] = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    values.update(changes)
    return Alert(**values)


def _text_object(value: Any, limit: int) -> None:
    assert isinstance(value, dict) and value.get("type") in TEXT_TYPES, value
    assert isinstance(value.get("text"), str) and 0 < len(value["text"]) <= limit, value


def check_blocks(blocks: Any) -> None:
    """Block Kit's rules for the blocks we send (https://api.slack.com/reference/block-kit)."""
    assert isinstance(blocks, list) and 0 < len(blocks) <= 50, "blocks: a list of 1 to 50"
    for block in blocks:
        assert isinstance(block, dict), block
        kind = block.get("type")
        if kind == "section":
            assert "text" in block or "fields" in block, block
            if "text" in block:
                _text_object(block["text"], 3000)
            for item in block.get("fields", []):
                _text_object(item, 2000)
            assert len(block.get("fields", [])) <= 10, block
        elif kind == "header":
            assert block["text"]["type"] == "plain_text", block
            _text_object(block["text"], 150)
        elif kind == "context":
            assert 0 < len(block["elements"]) <= 10, block
            for item in block["elements"]:
                _text_object(item, 3000)
        elif kind == "actions":
            assert 0 < len(block["elements"]) <= 25, block
            for element in block["elements"]:
                assert element["type"] == "button", element
                assert element["text"]["type"] == "plain_text", element
                assert element["url"].startswith(("http://", "https://")), element
        else:
            raise AssertionError(f"unexpected block type {kind!r}")


def body_of(request: Request) -> dict[str, Any]:
    """The request's arguments, JSON- or form-encoded (blocks then being a JSON string)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        body: dict[str, Any] = request.json()
        return body
    form: dict[str, Any] = request.form()
    if "blocks" in form:
        form["blocks"] = json.loads(form["blocks"])
    return form


def slack_api(request: Request) -> Reply:
    """Slack's Web API for chat.postMessage and chat.update, checking the documented shapes.

    https://api.slack.com/methods/chat.postMessage, https://api.slack.com/methods/chat.update
    """
    assert request.method == "POST", request.method
    assert request.headers.get("authorization") == f"Bearer {TOKEN}", "bot token as Bearer"
    method = request.path.removeprefix("/api/")
    body = body_of(request)
    assert isinstance(body.get("channel"), str) and body["channel"], "channel is required"
    assert isinstance(body.get("text"), str) and body["text"], "text is the fallback"
    check_blocks(body.get("blocks"))
    message = {"type": "message", "text": body["text"], "blocks": body["blocks"]}
    if method == "chat.update":
        assert body.get("ts"), "chat.update needs the ts of the message"
        return Reply(body={"ok": True, "channel": body["channel"], "ts": body["ts"], **message})
    assert method == "chat.postMessage", f"unexpected method {method}"
    ts = FIRST_TS
    if "thread_ts" in body:
        message["thread_ts"] = body["thread_ts"]
        ts = REPLY_TS
    # Slack answers with the channel's ID, whatever name it was given
    return Reply(body={"ok": True, "channel": CHANNEL_ID, "ts": ts, "message": message})


def webhook(request: Request) -> Reply:
    """An incoming webhook (https://api.slack.com/messaging/webhooks): JSON in, "ok" out."""
    assert request.method == "POST" and request.path == WEBHOOK_PATH, request.path
    assert request.headers.get("content-type", "").startswith("application/json")
    body = request.json()
    assert isinstance(body.get("text"), str) and body["text"], "text is the fallback"
    check_blocks(body.get("blocks"))
    return Reply(body=b"ok", headers={"content-type": "text/plain"})


@pytest.fixture
def slack() -> Iterator[FakeService]:
    with FakeService(slack_api) as fake:
        yield fake


@pytest.fixture
def notifier(slack: FakeService) -> Iterator[SlackNotifier]:
    config = SlackChannel(
        type="slack", token=TOKEN, channel="#data-alerts", base_url=f"{slack.url}/api/"
    )
    made = build(config)
    yield made
    made.close()


@pytest.fixture
def hook() -> Iterator[FakeService]:
    with FakeService(webhook) as fake:
        yield fake


@contextmanager
def webhook_notifier(fake: FakeService) -> Iterator[SlackNotifier]:
    made = build(SlackChannel(type="slack", webhook_url=f"{fake.url}{WEBHOOK_PATH}"))
    try:
        yield made
    finally:
        made.close()


def sent(fake: FakeService) -> list[tuple[str, dict[str, Any]]]:
    """(method or path, arguments) of every request the fake received."""
    return [(r.path.removeprefix("/api/"), body_of(r)) for r in fake.requests]


def everything(body: dict[str, Any]) -> str:
    """All the text a reader can see: the fallback and the blocks."""
    return f"{body['text']}\n{json.dumps(body['blocks'], ensure_ascii=False)}"


def test_trigger_posts_the_alert_and_returns_its_thread(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    thread = notifier.send(make_alert())

    assert thread == {"channel": CHANNEL_ID, "ts": FIRST_TS}
    [(method, body)] = sent(slack)
    assert method == "chat.postMessage" and body["channel"] == "#data-alerts"
    assert "thread_ts" not in body
    shown = everything(body)
    for fact in ("no update of warehouse.sales", "sales_fresh", "dash.revenue", "ml.forecast"):
        assert fact in shown, fact
    assert INCIDENT_URL in body["text"]
    buttons = [e for b in body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [("Open incident", INCIDENT_URL)]
    assert ":rotating_light: critical" in shown


def test_resolve_edits_the_first_message_and_replies_in_its_thread(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    assert notifier.send(make_alert("resolve", thread=THREAD)) is None

    [(first, edit), (second, reply)] = sent(slack)
    assert first == "chat.update" and (edit["channel"], edit["ts"]) == (CHANNEL_ID, FIRST_TS)
    headline = edit["blocks"][0]["text"]["text"]
    assert headline.startswith(":white_check_mark:") and "Resolved" in headline
    assert "sales_fresh" in edit["text"] and "2024-05-01T09:30:00" in everything(edit)
    assert second == "chat.postMessage" and reply["channel"] == CHANNEL_ID
    assert reply["thread_ts"] == FIRST_TS and reply["reply_broadcast"] is False
    assert "Resolved" in reply["text"]


def test_repeat_replies_in_the_thread(notifier: SlackNotifier, slack: FakeService) -> None:
    assert notifier.send(make_alert("repeat", thread=THREAD)) is None

    [(method, body)] = sent(slack)
    assert method == "chat.postMessage" and body["channel"] == CHANNEL_ID
    assert body["thread_ts"] == FIRST_TS
    assert "Still open" in body["text"] and "no update of warehouse.sales" in body["text"]


def test_repeat_without_a_thread_starts_one(notifier: SlackNotifier, slack: FakeService) -> None:
    assert notifier.send(make_alert("repeat")) == {"channel": CHANNEL_ID, "ts": FIRST_TS}

    [(method, body)] = sent(slack)
    assert method == "chat.postMessage" and "thread_ts" not in body
    assert "Still open" in body["text"]


def test_resolve_without_a_thread_posts_a_message(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    notifier.send(make_alert("resolve"))

    [(method, body)] = sent(slack)
    assert method == "chat.postMessage" and "thread_ts" not in body
    assert body["channel"] == "#data-alerts" and "Resolved" in body["text"]


def test_resolve_of_a_deleted_message_is_still_announced(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    slack.script(Reply(body={"ok": False, "error": "message_not_found"}))

    notifier.send(make_alert("resolve", thread=THREAD))

    [(first, _), (second, body)] = sent(slack)
    assert first == "chat.update" and second == "chat.postMessage"
    assert "thread_ts" not in body and "Resolved" in body["text"]


def test_test_message_is_posted(notifier: SlackNotifier, slack: FakeService) -> None:
    notifier.send(make_alert("test", severity="info"))

    [(method, body)] = sent(slack)
    assert method == "chat.postMessage" and "thread_ts" not in body
    assert "Test alert from coplane" in body["text"]


def test_every_alert_is_wanted(notifier: SlackNotifier) -> None:
    actions: list[Action] = ["trigger", "repeat", "resolve", "test"]
    assert all(notifier.wants(make_alert(action)) for action in actions)


def test_user_text_is_escaped(notifier: SlackNotifier, slack: FakeService) -> None:
    notifier.send(make_alert(reason="rows <b>& more</b>", affected=["a<b>&c"]))

    [(_, body)] = sent(slack)
    shown = everything(body)
    assert "rows &lt;b&gt;&amp; more&lt;/b&gt;" in body["text"]
    assert "rows &lt;b&gt;&amp; more&lt;/b&gt;" in body["blocks"][0]["text"]["text"]
    assert "a&lt;b&gt;&amp;c" in shown
    assert "<b>" not in shown and "& " not in shown


def test_rate_limit_is_transient_after_retry_after(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    slack.script(Reply(429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "7"}))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert())

    assert not caught.value.permanent and caught.value.retry_after == 7
    assert len(slack.requests) == 1  # no retry behind the dispatcher's back


def test_server_error_is_transient(notifier: SlackNotifier, slack: FakeService) -> None:
    slack.script(Reply(500, {"ok": False, "error": "internal_error"}))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert())

    assert not caught.value.permanent
    assert len(slack.requests) == 1


@pytest.mark.parametrize("code", ["channel_not_found", "invalid_auth"])
def test_configuration_errors_are_permanent(
    notifier: SlackNotifier, slack: FakeService, code: str
) -> None:
    slack.script(Reply(body={"ok": False, "error": code}))

    with pytest.raises(IntegrationError) as caught:
        notifier.send(make_alert())

    assert caught.value.permanent and code in caught.value.message


def test_unreachable_slack_is_transient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the request
    config = SlackChannel(
        type="slack", token=TOKEN, channel="#data-alerts", base_url=f"http://127.0.0.1:{port}/api/"
    )

    with pytest.raises(IntegrationError) as caught, closing(build(config)) as notifier:
        notifier.send(make_alert())

    assert not caught.value.permanent and "could not be reached" in caught.value.message


def test_webhook_posts_every_alert_as_a_message(hook: FakeService) -> None:
    with webhook_notifier(hook) as notifier:
        assert notifier.send(make_alert()) is None
        assert notifier.send(make_alert("resolve", thread=THREAD)) is None

    trigger, resolve = (r.json() for r in hook.requests)
    assert [r.path for r in hook.requests] == [WEBHOOK_PATH, WEBHOOK_PATH]
    assert "no update of warehouse.sales" in trigger["text"] and INCIDENT_URL in trigger["text"]
    assert "dash.revenue" in everything(trigger)
    assert "Resolved" in resolve["text"] and "thread_ts" not in resolve


def test_webhook_gone_is_permanent(hook: FakeService) -> None:
    hook.script(Reply(404, b"no_service", headers={"content-type": "text/plain"}))

    with pytest.raises(IntegrationError) as caught, webhook_notifier(hook) as notifier:
        notifier.send(make_alert())

    assert caught.value.permanent and "no_service" in caught.value.message
    assert WEBHOOK_PATH not in caught.value.message  # the URL is the secret


def test_webhook_rate_limit_is_transient(hook: FakeService) -> None:
    hook.script(Reply(429, b"rate_limited", headers={"retry-after": "3"}))

    with pytest.raises(IntegrationError) as caught, webhook_notifier(hook) as notifier:
        notifier.send(make_alert())

    assert not caught.value.permanent and caught.value.retry_after == 3
    assert len(hook.requests) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_no_redirect_is_followed_and_the_token_stays_home(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Slack address the policy allows that redirects to one it refuses (127.0.0.2 here, with
    only 127.0.0.1 allowed): nothing reaches the refused one, least of all the token."""
    monkeypatch.setenv("COPLANE_OUTBOUND_ALLOW", "127.0.0.1/32")
    inside = FakeService(lambda r: Reply(body={"ok": False, "error": "internal secrets"}))
    inside.start(host="127.0.0.2")
    with closing(inside), FakeService(slack_api) as slack:
        slack.script(Reply(status, b"", headers={"location": f"{inside.url}/api/chat.postMessage"}))
        config = SlackChannel(
            type="slack", token=TOKEN, channel="#data-alerts", base_url=f"{slack.url}/api/"
        )
        with pytest.raises(IntegrationError) as caught, closing(build(config)) as notifier:
            notifier.send(make_alert())
        assert inside.requests == []
    assert caught.value.permanent
    assert f"answered {status}" in caught.value.message and "127.0.0.2" in caught.value.message
    assert "redirects are not followed" in caught.value.message


def test_a_webhook_redirect_is_not_followed(hook: FakeService) -> None:
    hook.script(Reply(302, b"", headers={"location": "http://169.254.169.254/latest/"}))

    with pytest.raises(IntegrationError) as caught, webhook_notifier(hook) as notifier:
        notifier.send(make_alert())

    assert caught.value.permanent and "redirects are not followed" in caught.value.message
    assert len(hook.requests) == 1


def test_errors_hold_no_answer_body(notifier: SlackNotifier, slack: FakeService) -> None:
    page = "<html>root:x:0:0 internal admin page</html>"
    slack.script(
        Reply(403, page.encode(), headers={"content-type": "text/html"}),
        Reply(body={"ok": False, "error": page, "response_metadata": {"messages": [page]}}),
    )
    for _ in range(2):
        with pytest.raises(IntegrationError) as caught:
            notifier.send(make_alert())
        assert "root:x" not in caught.value.message and "admin" not in caught.value.message
        assert caught.value.message.startswith(
            ("Slack chat.postMessage answered 403 Forbidden", "Slack chat.postMessage failed")
        )


def test_an_early_warning_is_a_message_of_its_own(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    assert notifier.wants(make_alert("warn", warning=True))
    thread = notifier.send(make_alert("warn", warning=True))

    [(method, body)] = sent(slack)
    assert method == "chat.postMessage" and "thread_ts" not in body
    assert body["text"].startswith("Early warning: no update of warehouse.sales")
    assert thread == THREAD  # the breach, if it comes, continues here


def test_a_breach_continues_its_warnings_thread(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    kept = notifier.send(make_alert("trigger", thread=THREAD))

    [(first, edit), (second, reply)] = sent(slack)
    assert first == "chat.update" and edit["ts"] == FIRST_TS
    assert edit["text"].startswith("Turned into a breach: no update of warehouse.sales")
    assert second == "chat.postMessage" and reply["thread_ts"] == FIRST_TS
    assert str(reply["reply_broadcast"]).lower() == "true"
    assert kept == THREAD  # reminders and the resolve follow in the same thread


def test_a_breach_whose_warning_was_deleted_is_a_new_message(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    slack.script(Reply(body={"ok": False, "error": "message_not_found"}))

    kept = notifier.send(make_alert("trigger", thread=THREAD))

    [(first, _), (second, body)] = sent(slack)
    assert first == "chat.update" and second == "chat.postMessage"
    assert "thread_ts" not in body and "no update of warehouse.sales" in body["text"]
    assert kept == {"channel": CHANNEL_ID, "ts": FIRST_TS}  # the new message is the thread


def test_a_warning_met_in_time_edits_its_message(
    notifier: SlackNotifier, slack: FakeService
) -> None:
    notifier.send(make_alert("resolve", warning=True, thread=THREAD))

    [(first, edit), (second, reply)] = sent(slack)
    assert first == "chat.update" and edit["text"].startswith("Met in time: sales_fresh")
    assert second == "chat.postMessage" and reply["thread_ts"] == FIRST_TS
