"""Slack alerts: Block Kit messages, one thread per incident with a bot token, flat with a webhook.

With a bot `token` the trigger is a top-level message in `channel`; its channel and ts become
the incident's `thread`, repeats are replies in it, and the resolve edits the first message
and replies once more. An incoming `webhook_url` cannot thread or edit, so every alert is a
new message there. Retries are the dispatcher's: the SDK's own retry handlers are turned off
and every failure becomes an IntegrationError, transient or permanent. Every call's URL is
checked by the outgoing-URL policy first (coplane.alerts.urls).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from typing import Any

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from coplane.alerts import text
from coplane.alerts.notifier import Alert, IntegrationError
from coplane.alerts.urls import check_url
from coplane.client import retry_after
from coplane.integrations.slack.config import SlackChannel

BASE_URL = "https://slack.com/api/"
TIMEOUT = 10  # seconds; a slow Slack must not hold the dispatcher

ICONS = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:"}
RESOLVED_ICON = ":white_check_mark:"
TEST_ICON = ":bell:"
WARN_ICON = ":hourglass_flowing_sand:"
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
    """A button to the incident's page; a plain line when the URL is not one Slack takes."""
    if alert.url.startswith(("http://", "https://")) and len(alert.url) <= BUTTON_URL_MAX:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open incident"},
            "url": alert.url,
            "action_id": "open_incident",
        }
        return [{"type": "actions", "elements": [button]}]
    line = f"Incident: {_mrkdwn(alert.url, SECTION_TEXT_MAX - 20)}"
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


def _wait(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a Retry-After header, whatever the case of its name.

    The SDK gives header values as strings or as lists of them, and on a 429 copies
    Retry-After under both spellings; the first value of the first spelling counts.
    """
    found: dict[str, str] = {}
    for name, value in (headers or {}).items():
        values = value if isinstance(value, list | tuple) else [value]
        if values:
            found.setdefault(str(name).lower(), str(values[0]))
    return retry_after(httpx.Headers(found))


def _error_code(exc: SlackApiError) -> str | None:
    """The `error` of a Web API answer, such as 'channel_not_found'."""
    data = exc.response.data
    return str(data["error"]) if isinstance(data, dict) and data.get("error") else None


def api_error(exc: SlackApiError, method: str) -> IntegrationError:
    """A Web API failure as an IntegrationError.

    Slack answers errors as HTTP 200 with {"ok": false, "error": code}, a rate limit as 429
    with Retry-After (https://api.slack.com/apis/rate-limits), an outage as 5xx.
    """
    response = exc.response
    status: int = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    code = _error_code(exc)
    detail = code or f"HTTP {status} {json.dumps(data)}"
    if data.get("needed"):  # missing_scope names the scope the token lacks
        detail += f" (needs scope {data['needed']})"
    notes = (data.get("response_metadata") or {}).get("messages") or []
    if notes:  # invalid_blocks and invalid_arguments say what was wrong here
        detail += f": {'; '.join(str(n) for n in notes)[:300]}"
    if code and status != 200:
        detail += f" (HTTP {status})"
    message = f"Slack {method} failed: {detail[:400]}"
    rate_limited = status == 429 or code in ("ratelimited", "rate_limited")
    transient = rate_limited or status == 408 or status >= 500 or code in TRANSIENT_ERRORS
    return IntegrationError(
        message,
        permanent=not transient,
        retry_after=_wait(response.headers) if transient else None,
    )


def _unreachable(exc: Exception, what: str) -> IntegrationError:
    """A network failure (refused, reset, timed out, DNS) as a transient IntegrationError."""
    reason = getattr(exc, "reason", None) or exc
    return IntegrationError(f"{what} could not be reached: {reason}")


class SlackNotifier:
    """Sends alerts through `client`: a WebClient posting to `channel`, or a WebhookClient."""

    def __init__(self, client: WebClient | WebhookClient, channel: str | None = None) -> None:
        if isinstance(client, WebClient) and not channel:
            raise ValueError("posting with a token needs a channel")
        self._client = client
        self._channel = channel or ""

    def wants(self, alert: Alert) -> bool:
        """Slack takes every action: trigger, repeat, resolve, test and warn."""
        return True

    def send(self, alert: Alert) -> dict[str, Any] | None:
        """Deliver `alert`; a new top-level message returns its {"channel", "ts"}."""
        if isinstance(self._client, WebhookClient):
            self._webhook(message_text(alert), message_blocks(alert))
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
        # a trigger or test; or a repeat or resolve whose trigger never reached this channel
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
        return {"channel": response["channel"], "ts": response["ts"]}

    def _call(
        self, method: str, *, tolerate: frozenset[str] = frozenset(), **arguments: Any
    ) -> dict[str, Any]:
        """One Web API call and its answer; IntegrationError when it failed.

        A failure whose error code is in `tolerate` is answered as {"ok": False, "error": code}.
        """
        assert isinstance(self._client, WebClient)
        # the SDK connects by itself: the policy is applied to its URL before each call
        check_url(self._client.base_url + method)
        try:
            if method == "chat.update":
                # https://api.slack.com/methods/chat.update: blocks and text replace the old ones
                response = self._client.chat_update(**arguments)
            else:
                response = self._client.chat_postMessage(**arguments)
        except SlackApiError as exc:
            if _error_code(exc) in tolerate:
                return {"ok": False, "error": _error_code(exc)}
            raise api_error(exc, method) from exc
        except SlackClientError as exc:  # e.g. a base_url that is not http(s)
            raise IntegrationError(f"Slack {method} failed: {exc}", permanent=True) from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            raise _unreachable(exc, "Slack") from exc
        data = response.data
        if not isinstance(data, dict):
            raise IntegrationError(f"Slack {method} answered something that is not JSON")
        return data

    def _webhook(self, fallback: str, blocks: Blocks) -> None:
        """POST to the incoming webhook (https://api.slack.com/messaging/webhooks).

        It answers 200 "ok", or a status with a plain-text code: 400 invalid_payload, 403
        invalid_token or action_prohibited, 404 no_service or channel_not_found, 410
        channel_is_archived (all permanent), 429 rate limited, 5xx outages (transient).
        """
        assert isinstance(self._client, WebhookClient)
        check_url(self._client.url)  # names only the host: the URL itself is a secret
        try:
            response = self._client.send(text=fallback, blocks=blocks)
        except SlackClientError as exc:  # the URL is a secret: not in the message
            raise IntegrationError("Slack webhook: invalid webhook URL", permanent=True) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _unreachable(exc, "Slack webhook") from exc
        status = response.status_code
        if status == 200:
            return
        body = (response.body or "").strip()[:300]
        transient = status in (408, 429) or status >= 500
        raise IntegrationError(
            f"Slack webhook answered {status}: {body or 'no reason given'}",
            permanent=not transient,
            retry_after=_wait(response.headers) if transient else None,
        )


def _thread(thread: dict[str, Any] | None, channel: str) -> tuple[str, str] | None:
    """(channel, ts) of the incident's first message, when the trigger recorded one."""
    if not thread or not thread.get("ts"):
        return None
    return str(thread.get("channel") or channel), str(thread["ts"])


def build(config: SlackChannel) -> SlackNotifier:
    """The notifier for a configured Slack channel.

    `retry_handlers=[]`: the SDK would otherwise retry connection errors itself (and, with
    more handlers, 429s), behind the dispatcher that owns retries and their backoff.
    """
    if config.webhook_url is not None:
        return SlackNotifier(WebhookClient(config.webhook_url, timeout=TIMEOUT, retry_handlers=[]))
    client = WebClient(
        token=config.token,
        base_url=config.base_url or BASE_URL,
        timeout=TIMEOUT,
        retry_handlers=[],
    )
    return SlackNotifier(client, config.channel)
