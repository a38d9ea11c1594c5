"""What every channel implements: an Alert in, its answer out, IntegrationError on failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

Action = Literal["trigger", "repeat", "resolve", "test", "warn", "notify"]


class IntegrationError(Exception):
    """A failed send. Transient ones are retried with backoff (from `retry_after` seconds when
    the service said so); permanent ones disable the channel until its config changes."""

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Alert:
    """One message about one incident to one channel.

    `thread` is what this channel answered when it announced the incident (the `trigger`):
    Slack's channel and ts, a Jira issue key, a GitHub issue number. It is None for the
    trigger itself, and for a resolve of an incident whose trigger this channel never sent.

    An early warning (`warning`: an SLA with `warn_at_risk` forecast to miss its deadline) is
    announced with action `warn`, and `resolve` when the window was met in time; its
    `incident_id` is then the warning's id. A breach's `trigger` has the warning's `thread`
    when this channel announced the warning the breach continues.
    """

    action: Action
    channel: str  # the channel's name in coplane.yaml
    incident_id: str
    sla: str
    kind: str  # the SLA's kind: freshness, quality, ...
    severity: Literal["info", "warning", "critical"]
    reason: str
    resource: str | None
    affected: list[str]
    due: datetime
    opened: datetime
    url: str  # the incident's page
    acked: datetime | None = None
    resolved: datetime | None = None
    owners: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    attempt: int = 0  # earlier attempts of this notification: > 0 means a retry
    thread: dict[str, Any] | None = None
    warning: bool = False  # about an early warning, not an incident
    automation: str | None = None  # the automation a `notify` message comes from
    event: str | None = None  # the name of the event that fired it

    @property
    def title(self) -> str:
        """A one-line summary, such as '[critical] sales_fresh breached'; a `notify`
        message's first line."""
        if self.action == "notify":
            first = next((line for line in self.reason.splitlines() if line.strip()), "")
            return " ".join(first.split()) or f"automation {self.automation}"
        state = "resolved" if self.action == "resolve" else "breached"
        if self.warning:
            state = "met in time" if self.action == "resolve" else "at risk"
        if self.action == "test":
            state = "test alert"
        return f"[{self.severity}] {self.sla} {state}"


class Notifier(Protocol):
    """A channel. `send` returns what to keep for later alerts of the incident (the `thread`)."""

    def wants(self, alert: Alert) -> bool:
        """False when this channel has nothing to say about this alert (it is then skipped)."""
        ...

    def send(self, alert: Alert) -> dict[str, Any] | None:
        """Deliver the alert; raise IntegrationError when it could not be delivered."""
        ...
