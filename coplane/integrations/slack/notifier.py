"""Slack alerts: Block Kit messages, one thread per incident with a bot token, flat with a webhook.

With a bot `token` the trigger is a top-level message in `channel`; its channel and ts become
the incident's `thread`, repeats are replies in it, and the resolve edits the first message
and replies once more. An incoming `webhook_url` cannot thread or edit, so every alert is a
new message there. Retries are the dispatcher's: every failure becomes an IntegrationError,
transient or permanent. Calls go through coplane's checked HTTP client, like every channel's:
the outgoing-URL policy applies to the addresses connected to, and redirects are refused.
"""

from __future__ import annotations

from typing import Any

import httpx

from coplane.alerts import text
from coplane.alerts.http import channel_client, error_code, request
from coplane.alerts.notifier import Alert, IntegrationError
from coplane.integrations.slack.config import SlackChannel

BASE_URL = "https://slack.com/api/"

ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
RESOLVED_ICON = ":white_check_mark:"
TEST_ICON = ":bell:"
WARN_ICON = ":hourglass_flowing_sand:"
NOTIFY_ICON = ":robot_face:"  # an automation's message
BREACHED_WARNING = "Turned into a breach"  # how an early warning's message is edited

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks#section): longer text is
# rejected with invalid_blocks, a permanent error, so it is shortened instead.
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
BUTTON_URL_MAX = 3000
# https://api.slack.com/methods/chat.postMessage: `text` beyond 40,000 characters is cut off.
FALLBACK_TEXT_MAX = 39000

# Error codes of https://api.slack.com/methods/chat.postMessage and chat.update that a later
# try can get past. Every other code (invalid_auth, channel_not_found, not_in_channel,
# missing_scope, invalid_blocks, ...) needs the config or the app changed, and so is permanent,
# unknown codes included.
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "team_added_to_org",
    }
)
# chat.update errors that mean the first message cannot be edited any more (deleted, posted
# by another app, too old); the resolve is then still announced, without the edit.
UNEDITABLE_ERRORS = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})

Blocks = list[dict[str, Any]]


def escape(value: str) -> str:
    """`value` safe inside mrkdwn: Slack reads &, < and > as markup and wants them as entities.

    https://api.slack.com/reference/surfaces/formatting#escaping
    """
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(mrkdwn: str, limit: int) -> str:
    """Escaped mrkdwn cut to `limit` characters, never inside an entity such as &amp;."""
    if len(mrkdwn) <= limit:
        return mrkdwn
    cut = mrkdwn[: limit - 1]
    amp = cut.rfind("&", len(cut) - 5)
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def _mrkdwn(value: str, limit: int) -> str:
    """`value` escaped and cut to `limit` characters."""
    return _clip(escape(value), limit)


def _icon(alert: Alert) -> str:
    if alert.action == "notify":
        return NOTIFY_ICON
    if alert.action == "warn":
        return WARN_ICON
    if alert.action == "resolve":
        return RESOLVED_ICON
    if alert.action == "test":
        return TEST_ICON
    return ICONS.get(alert.severity, ICONS["warning"])


def _headline_block(alert: Alert) -> dict[str, Any]:
    line = f"{_icon(alert)} *{_mrkdwn(text.headline(alert), SECTION_TEXT_MAX - 40)}*"
    return {"type": "section", "text": {"type": "mrkdwn", "text": line}}


def _warning_breached_block(alert: Alert) -> dict[str, Any]:
    """An early warning's message once its window was missed."""
    line = f"{_icon(alert)} *{BREACHED_WARNING}:* {_mrkdwn(alert.reason, SECTION_TEXT_MAX - 60)}"
    return {"type": "section", "text": {"type": "mrkdwn", "text": line}}


def _link_blocks(alert: Alert) -> Blocks:
    """A button to the incident's (or automation's) page; a plain line when the URL is not
    one Slack takes."""
    label = text.link_label(alert)
    if alert.url.startswith(("http://", "https://")) and len(alert.url) <= BUTTON_URL_MAX:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": f"Open {label.lower()}"},
            "url": alert.url,
            "action_id": f"open_{label.lower()}",
        }
        return [{"type": "actions", "elements": [button]}]
    line = f"{label}: {_mrkdwn(alert.url, SECTION_TEXT_MAX - 20)}"
    return [{"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}]


def message_blocks(alert: Alert) -> Blocks:
    """The full message: headline, the incident's fields, the link."""
    fields: Blocks = []
    for label, value in text.fields(alert):
        if label == "Severity":
            value = f"{ICONS.get(alert.severity, '')} {value}".strip()
        else:
            value = escape(value)
        body = f"*{label}*\n{value}"
        fields.append({"type": "mrkdwn", "text": _clip(body, FIELD_TEXT_MAX)})
    # a section holds at most 10 fields (https://api.slack.com/reference/block-kit/blocks#section)
    sections = [
        {"type": "section", "fields": fields[i : i + 10]} for i in range(0, len(fields), 10)
    ]
    return [_headline_block(alert), *sections, *_link_blocks(alert)]


def message_text(alert: Alert) -> str:
    """The `text` fallback, shown in notifications and by clients that cannot render blocks."""
    return _mrkdwn(text.plain(alert), FALLBACK_TEXT_MAX)


def reply_blocks(alert: Alert) -> Blocks:
    """A short reply in the incident's thread: headline and link; the fields are above it."""
    return [_headline_block(alert), *_link_blocks(alert)]


def reply_text(alert: Alert) -> str:
    return _mrkdwn(f"{text.headline(alert)}\nIncident: {alert.url}", FALLBACK_TEXT_MAX)


def api_error(data: dict[str, Any], method: str, status: int = 200) -> IntegrationError:
    """A Web API failure as an IntegrationError.

    Slack answers errors as HTTP 200 with {"ok": false, "error": code}
    (https://api.slack.com/web#responses); only the code is kept, and only when it is one:
    the rest of the answer is not echoed into the channel's stored error.
    """
    code = error_code(str(data.get("error", "")))
    detail = code or "no error code"
    needed = error_code(str(data.get("needed", "")))
    if needed:  # missing_scope names the scope the token lacks
        detail += f" (needs scope {needed})"
    transient = code in TRANSIENT_ERRORS
    return IntegrationError(f"Slack {method} failed: {detail}", permanent=not transient)


class SlackNotifier:
    """Sends alerts through `client`: with a bot token to `channel`, or to an incoming webhook.

    The client is coplane's checked one (coplane.alerts.http): it connects only to addresses
    the outgoing-URL policy allows and follows no redirect, so the token never goes anywhere
    but the configured Slack.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        token: str | None = None,
        channel: str | None = None,
        base_url: str = BASE_URL,
        webhook_url: str | None = None,
    ) -> None:
        if webhook_url is None and not (token and channel):
            raise ValueError("posting with a token needs a channel")
        self._client = client
        self._token = token or ""
        self._channel = channel or ""
        self._base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._webhook_url = webhook_url

    def close(self) -> None:
        """Release the connections."""
        self._client.close()

    def wants(self, alert: Alert) -> bool:
        """Slack takes every action: trigger, repeat, resolve, test, warn and notify."""
        return True

    def send(self, alert: Alert) -> dict[str, Any] | None:
        """Deliver `alert`; a new top-level message returns its {"channel", "ts"}."""
        if self._webhook_url is not None:
            self._webhook(self._webhook_url, message_text(alert), message_blocks(alert))
            return None
        thread = _thread(alert.thread, self._channel)
        if alert.action == "repeat" and thread is not None:
            self._post(thread[0], reply_text(alert), reply_blocks(alert), thread_ts=thread[1])
            return None
        if alert.action == "resolve" and thread is not None:
            self._resolve(alert, *thread)
            return None
        if alert.action == "trigger" and thread is not None:
            return self._breach_of_warning(alert, *thread)
        # a trigger, test or an automation's message (a new top-level message each); or a
        # repeat or resolve whose trigger never reached this channel
        return self._post(self._channel, message_text(alert), message_blocks(alert))

    def _resolve(self, alert: Alert, channel: str, ts: str) -> None:
        """Edit the first message to show the incident resolved, and say so in its thread.

        The edit comes first: when the reply then fails, the retry repeats an edit, which is
        harmless, and never a reply.
        """
        edited = self._call(
            "chat.update",
            tolerate=UNEDITABLE_ERRORS,
            channel=channel,
            ts=ts,
            text=message_text(alert),
            blocks=message_blocks(alert),
        )
        if edited.get("error") == "message_not_found":  # deleted, and its thread with it
            self._post(self._channel, message_text(alert), message_blocks(alert))
            return
        # reply_broadcast False: the edited first message already tells the channel
        self._post(channel, reply_text(alert), reply_blocks(alert), thread_ts=ts, broadcast=False)

    def _breach_of_warning(self, alert: Alert, channel: str, ts: str) -> dict[str, Any]:
        """Continue an early warning's thread with its breach: the warning's message is edited
        to say it turned into a breach, and the breach is a reply also shown in the channel.
        The warning's message stays the incident's thread, for its repeats and resolve."""
        edited = self._call(
            "chat.update",
            tolerate=UNEDITABLE_ERRORS,
            channel=channel,
            ts=ts,
            text=_mrkdwn(f"{BREACHED_WARNING}: {alert.reason}", FALLBACK_TEXT_MAX),
            blocks=[_warning_breached_block(alert), *_link_blocks(alert)],
        )
        if edited.get("error") == "message_not_found":  # the thread is gone: start afresh
            return self._post(self._channel, message_text(alert), message_blocks(alert))
        blocks = message_blocks(alert)
        self._post(channel, message_text(alert), blocks, thread_ts=ts, broadcast=True)
        return {"channel": channel, "ts": ts}

    def _post(
        self,
        channel: str,
        fallback: str,
        blocks: Blocks,
        *,
        thread_ts: str | None = None,
        broadcast: bool | None = None,
    ) -> dict[str, Any]:
        """chat.postMessage (https://api.slack.com/methods/chat.postMessage); where it went."""
        response = self._call(
            "chat.postMessage",
            channel=channel,
            text=fallback,
            blocks=blocks,
            thread_ts=thread_ts,
            reply_broadcast=broadcast,
        )
        if not isinstance(response.get("channel"), str) or not isinstance(response.get("ts"), str):
            raise IntegrationError("Slack chat.postMessage answered without channel and ts")
        return {"channel": response["channel"], "ts": response["ts"]}

    def _call(
        self, method: str, *, tolerate: frozenset[str] = frozenset(), **arguments: Any
    ) -> dict[str, Any]:
        """One Web API call, as JSON (https://api.slack.com/web#posting_json), and its answer;
        IntegrationError when it failed.

        A failure whose error code is in `tolerate` is answered as {"ok": False, "error": code}.
        HTTP failures (429 with Retry-After, https://api.slack.com/apis/rate-limits; 5xx) are
        read as for every channel, by coplane.alerts.http.
        """
        body = {name: value for name, value in arguments.items() if value is not None}
        response = request(
            self._client,
            "POST",
            self._base_url + method,
            f"Slack {method}",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise IntegrationError(f"Slack {method} answered something that is not JSON")
        if data.get("ok") is True:
            return data
        code = error_code(str(data.get("error", "")))
        if code in tolerate:
            return {"ok": False, "error": code}
        raise api_error(data, method)

    def _webhook(self, url: str, fallback: str, blocks: Blocks) -> None:
        """POST to the incoming webhook (https://api.slack.com/messaging/webhooks).

        It answers 200 "ok", or a status with a plain-text code: 400 invalid_payload, 403
        invalid_token or action_prohibited, 404 no_service or channel_not_found, 410
        channel_is_archived (all permanent), 429 rate limited, 5xx outages (transient). Its
        URL is a secret, so no error names more of it than the host.
        """
        request(
            self._client, "POST", url, "Slack webhook", json={"text": fallback, "blocks": blocks}
        )


def _thread(thread: dict[str, Any] | None, channel: str) -> tuple[str, str] | None:
    """(channel, ts) of the incident's first message, when the trigger recorded one."""
    if not thread or not thread.get("ts"):
        return None
    return str(thread.get("channel") or channel), str(thread["ts"])


def build(config: SlackChannel) -> SlackNotifier:
    """The notifier for a configured Slack channel."""
    if config.webhook_url is not None:
        return SlackNotifier(channel_client(), webhook_url=config.webhook_url)
    return SlackNotifier(
        channel_client(),
        token=config.token,
        channel=config.channel,
        base_url=config.base_url or BASE_URL,
    )
