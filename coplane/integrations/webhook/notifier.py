"""Generic webhook channel: POSTs every alert of an incident (trigger, repeat, resolve, test) as
one JSON document to the configured URL, signed with the channel's secret when it has one.

The body is shaped like Alertmanager's webhook
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config): "status" is
"firing" or "resolved", "groupKey" is the incident's id, "startsAt"/"endsAt" bound it
("endsAt" is null while firing), and "labels"/"annotations" describe it; "incident", "sla"
and "affected" carry coplane's own facts. A test alert is "firing" with "test": true.

An automation's `notify` message has "action": "notify", "status": "firing", "groupKey"
the message's id, "message" its rendered text, "automation" its name and page, and "event"
the event that fired it, and neither "incident" nor "sla".

Signature (only when `secret` is set), for receivers to check that coplane sent the body:

    X-Coplane-Timestamp: <unix time in seconds>
    X-Coplane-Signature: sha256=<hex HMAC-SHA256, keyed with the secret, of
                                 the timestamp, a ".", then the raw body bytes>

A receiver recomputes the HMAC over the exact bytes it received (before parsing the JSON),
compares it in constant time and rejects timestamps older than a few minutes, which stops a
captured request from being replayed later; `verify_signature` does all of that.

Any 2xx answer is success. 408, 429 and 5xx are retried; other answers (a redirect included)
need the config changed and disable the channel.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from coplane.alerts.http import channel_client, request
from coplane.alerts.notifier import Alert
from coplane.integrations.webhook.config import WebhookChannel

SERVICE = "Webhook"
VERSION = "1"
USER_AGENT = "coplane"
TIMESTAMP_HEADER = "X-Coplane-Timestamp"
SIGNATURE_HEADER = "X-Coplane-Signature"
SIGNATURE_PREFIX = "sha256="
TOLERANCE_S = 300  # how old a signed timestamp may be: 5 minutes


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def notify_body(alert: Alert) -> dict[str, Any]:
    """The JSON document of an automation's `notify` message."""
    return {
        "version": VERSION,
        "status": "firing",
        "action": alert.action,
        "test": False,
        "warning": False,
        "receiver": alert.channel,
        "groupKey": alert.incident_id,
        "message": alert.reason,
        "automation": {"name": alert.automation, "url": alert.url},
        "event": {"event": alert.event, "resource": alert.resource},
        "labels": {"automation": alert.automation or ""},
        "annotations": {"summary": alert.title, "description": alert.reason},
        "startsAt": _iso(alert.opened),
        "endsAt": None,
        "externalURL": alert.url,
    }


def body(alert: Alert) -> dict[str, Any]:
    """The JSON document describing the alert."""
    if alert.action == "notify":
        return notify_body(alert)
    resolved = alert.action == "resolve"
    ends = (alert.resolved or datetime.now(UTC)) if resolved else None
    return {
        "version": VERSION,
        "status": "resolved" if resolved else "firing",
        "action": alert.action,
        "test": alert.action == "test",
        "warning": alert.warning,  # an early warning ("warn", or "resolve": met in time)
        "receiver": alert.channel,
        "groupKey": alert.incident_id,
        "incident": {
            "id": alert.incident_id,
            "sla": alert.sla,
            "kind": alert.kind,
            "severity": alert.severity,
            "reason": alert.reason,
            "resource": alert.resource,
            "due": _iso(alert.due),
            "opened": _iso(alert.opened),
            "acked": _iso(alert.acked),
            "resolved": _iso(alert.resolved),
            "url": alert.url,
        },
        "sla": {
            "name": alert.sla,
            "kind": alert.kind,
            "severity": alert.severity,
            "owners": alert.owners,
            "labels": alert.labels,
        },
        "labels": {"sla": alert.sla, "severity": alert.severity, **alert.labels},
        "annotations": {"summary": alert.title, "description": alert.reason},
        "affected": alert.affected,
        "startsAt": _iso(alert.opened),
        "endsAt": _iso(ends),
        "externalURL": alert.url,
    }


def sign(secret: str, timestamp: str, content: bytes) -> str:
    """The X-Coplane-Signature value for a body sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + content, hashlib.sha256)
    return SIGNATURE_PREFIX + digest.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when `signature` is the secret's signature of `body` at `timestamp`, and the
    timestamp is within `tolerance_s` seconds of `now` (the current time by default)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        return False  # stale (or from the future): possibly a replay
    expected = sign(secret, timestamp, body)
    return hmac.compare_digest(expected.encode(), signature.encode())


class WebhookNotifier:
    """POSTs alerts to one URL with the channel's extra headers."""

    def __init__(self, config: WebhookChannel, client: httpx.Client | None = None) -> None:
        self.url = config.url
        self.secret = config.secret
        self.headers = dict(config.headers)
        self.client = client or channel_client()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def wants(self, alert: Alert) -> bool:
        """Every alert: the receiver decides what to do with it."""
        return True

    def send(self, alert: Alert) -> dict[str, Any] | None:
        """POST the alert; the receiver's answer is not kept."""
        content = json.dumps(body(alert)).encode()  # serialised once: the signed bytes are sent
        headers = httpx.Headers(self.headers)  # case-insensitive: ours replace the user's
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        if self.secret is not None:
            timestamp = str(int(time.time()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, content)
        # redirects are not followed (request() fails them): a signed POST goes to one URL
        request(self.client, "POST", self.url, SERVICE, content=content, headers=headers)
        return None


def build(config: WebhookChannel) -> WebhookNotifier:
    """The notifier for a `type: webhook` channel."""
    return WebhookNotifier(config)
