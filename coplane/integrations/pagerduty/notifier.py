"""PagerDuty channel: triggers an alert (and so an incident) when an SLA breaks and resolves it
when the SLA is met again, through the Events API v2 and an integration's routing key.

Every event of one coplane incident carries the same dedup_key, "coplane-" + the incident id,
so the resolve finds the trigger without any stored state and a retried trigger does not open
a second incident. Repeats are not sent: PagerDuty re-notifies by its own escalation policy.

An automation's `notify` message is sent as a change event, which shows on the service's
timeline and pages nobody: a message is information, and paging belongs to incidents.

Events API v2: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/,
https://developer.pagerduty.com/docs/events-api-v2/resolve-events/ and
https://developer.pagerduty.com/docs/events-api-v2/send-change-events/
"""

from __future__ import annotations

from typing import Any

import httpx

from coplane.alerts import text
from coplane.alerts.http import channel_client, request
from coplane.alerts.notifier import Alert
from coplane.integrations.pagerduty.config import PagerDutyChannel

SERVICE = "PagerDuty"
BASE_URL = "https://events.pagerduty.com"
ENQUEUE = "/v2/enqueue"
CHANGE_ENQUEUE = "/v2/change/enqueue"
AUTOMATION_LINK_TEXT = "coplane automation"
DEDUP_PREFIX = "coplane-"
TEST_DEDUP_PREFIX = "coplane-test-"  # + the channel's name
MAX_SUMMARY = 1024  # payload.summary: "a maximum of 1024 characters"
CLIENT = "coplane"
LINK_TEXT = "coplane incident"
# payload.severity must be one of critical, error, warning, info
SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def dedup_key(alert: Alert) -> str:
    """The key shared by every event of the alert's incident (of the channel, for a test)."""
    if alert.action == "test":
        return TEST_DEDUP_PREFIX + alert.channel
    return DEDUP_PREFIX + alert.incident_id


def summary(alert: Alert) -> str:
    """The alert's one-line summary (what PagerDuty shows as the incident's title), cut to fit."""
    words = (
        text.headline(alert) if alert.action == "test" else f"{alert.sla} breached: {alert.reason}"
    )
    line = " ".join(words.split())
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…"


def trigger_event(routing_key: str, alert: Alert) -> dict[str, Any]:
    """The trigger event for the alert: the breach, its details and a link to the incident."""
    payload: dict[str, Any] = {
        "summary": summary(alert),
        "source": alert.resource or alert.sla,
        "severity": SEVERITY[alert.severity],
        "timestamp": alert.opened.isoformat(),
        "component": alert.sla,
        "class": alert.kind,
        "custom_details": {
            "sla": alert.sla,
            "reason": alert.reason,
            "due": alert.due.isoformat(),
            "affected": alert.affected,
            "owners": alert.owners,
            "labels": alert.labels,
        },
    }
    if alert.owners:
        payload["group"] = ", ".join(alert.owners)
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(alert),
        "payload": payload,
        "links": [{"href": alert.url, "text": LINK_TEXT}],
        "client": CLIENT,
        "client_url": alert.url,
    }


def change_event(routing_key: str, alert: Alert) -> dict[str, Any]:
    """The change event for an automation's message: its summary, source and a link back."""
    return {
        "routing_key": routing_key,
        "payload": {
            "summary": _cut(alert.title),
            "source": alert.resource or f"automation.{alert.automation}",
            "timestamp": alert.opened.isoformat(),
            "custom_details": {
                "message": alert.reason,
                "automation": alert.automation,
                "event": alert.event,
            },
        },
        "links": [{"href": alert.url, "text": AUTOMATION_LINK_TEXT}],
    }


def _cut(line: str) -> str:
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…"


def resolve_event(routing_key: str, key: str) -> dict[str, Any]:
    """The resolve event: only the key of the alert to resolve (a payload would be ignored)."""
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}


class PagerDutyNotifier:
    """Sends events for one PagerDuty integration (one service's routing key)."""

    def __init__(self, config: PagerDutyChannel, client: httpx.Client | None = None) -> None:
        self.routing_key = config.routing_key
        self.url = (config.base_url or BASE_URL).rstrip("/") + ENQUEUE
        self.change_url = (config.base_url or BASE_URL).rstrip("/") + CHANGE_ENQUEUE
        self.client = client or channel_client()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def wants(self, alert: Alert) -> bool:
        """Everything but repeats, which PagerDuty's escalation policy handles itself, and
        early warnings: paging someone for a forecast wakes them for what may not happen."""
        return alert.action != "repeat" and not alert.warning

    def send(self, alert: Alert) -> dict[str, Any] | None:
        """Trigger or resolve the incident's alert; a test triggers one and resolves it at once;
        an automation's message is a change event."""
        if alert.action == "notify":
            # 202 as for alerts; the same answers are transient or permanent (request() maps them)
            request(self.client, "POST", self.change_url, SERVICE,
                    json=change_event(self.routing_key, alert))  # fmt: skip
            return None
        key = dedup_key(alert)
        if alert.action == "trigger":
            self._enqueue(trigger_event(self.routing_key, alert))
        elif alert.action == "resolve":
            # sent even without a thread: the key is known, and PagerDuty ignores an unknown one
            self._enqueue(resolve_event(self.routing_key, key))
        elif alert.action == "test":
            self._enqueue(trigger_event(self.routing_key, alert))
            self._enqueue(resolve_event(self.routing_key, key))  # leave nothing open
            return None
        else:
            return None  # repeat: not wanted
        return {"dedup_key": key}

    def _enqueue(self, event: dict[str, Any]) -> None:
        # 202 is success; 400 (invalid event) is permanent; 429 ("too many API calls", back
        # off) and 5xx are transient; a redirect (a wrong base_url) is permanent: request()
        # maps them all.
        request(self.client, "POST", self.url, SERVICE, json=event)


def build(config: PagerDutyChannel) -> PagerDutyNotifier:
    """The notifier for a `type: pagerduty` channel."""
    return PagerDutyNotifier(config)
