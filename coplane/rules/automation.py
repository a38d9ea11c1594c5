"""What an automation says (a trigger and actions), and the pure decision whether events fire it.

`decide(automation, event, window)` reads neither the clock nor the database: the live pass
and the backtest call it alike, with the event and the earlier matching events in its window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from coplane.events.names import event_name_matches
from coplane.rules.history import matches_target
from coplane.rules.model import Duration, Name

RUN_EVENT_STATES = {
    "completed": "run.completed",
    "failed": "run.failed",
    "cancelled": "run.cancelled",
    "crashed": "run.crashed",
    "running": "run.started",
    "scheduled": "run.scheduled",
}


class EventTrigger(BaseModel):
    """Events of a name (trailing `*`), on resources matching a glob, with labels; `threshold`
    of them within `within` (counted per value of the `for_each` label) fire it."""

    model_config = ConfigDict(extra="forbid")
    event: str = Field(min_length=1)
    resource: str | None = None
    labels: dict[str, str] = {}
    threshold: int = Field(1, ge=1, le=10_000)
    within: Duration | None = None
    for_each: str | None = None

    @model_validator(mode="after")
    def _window(self) -> EventTrigger:
        if self.threshold > 1 and self.within is None:
            raise ValueError("a threshold above 1 needs `within`")
        return self


class IncidentTrigger(BaseModel):
    """An SLA's incident opened or resolved (`sla`: a name or glob, default any)."""

    model_config = ConfigDict(extra="forbid")
    incident: Literal["opened", "resolved"]
    sla: str | None = None


class RunStateTrigger(BaseModel):
    """A run of a deployment reaching one of `states`."""

    model_config = ConfigDict(extra="forbid")
    deployment: Name
    states: list[Literal["completed", "failed", "cancelled", "crashed", "running", "scheduled"]]


class RunDeployment(BaseModel):
    """Start a run; string parameters are Jinja2 templates over the event."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["run_deployment"]
    deployment: Name
    parameters: dict[str, Any] = {}


class ScheduleAction(BaseModel):
    """Pause or resume a deployment's schedules."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["pause_schedule", "resume_schedule"]
    deployment: Name


class CancelRun(BaseModel):
    """Cancel a run: its id, a template over the event (default: the event's own run)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["cancel_run"]
    run: str = "{{ event.run_id }}"


class CallWebhook(BaseModel):
    """POST JSON (strings templated over the event) to a URL the outbound policy allows."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["call_webhook"]
    url: str = Field(pattern=r"^https?://")
    body: dict[str, Any] = {}


DEFAULT_MESSAGE = (
    "Automation {{ automation.name }} fired on {{ event.event }} of {{ event.resource.id }}"
)


class Notify(BaseModel):
    """Send `message` (a Jinja2 template over the event) to alert channels of `channels:`,
    through the alert outbox as incidents are announced."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["notify"]
    channels: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    message: str = Field(DEFAULT_MESSAGE, min_length=1)


Action = Annotated[
    RunDeployment | ScheduleAction | CancelRun | CallWebhook | Notify, Field(discriminator="type")
]


class AutomationSpec(BaseModel):
    """One automation as declared under `automations:` or sent to the API."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    description: str = ""
    enabled: bool = True
    trigger: EventTrigger | IncidentTrigger | RunStateTrigger
    actions: list[Action] = Field(min_length=1)
    max_runs_per_hour: int = Field(10, ge=1, le=10_000)


def notify_channels(spec: AutomationSpec) -> list[tuple[tuple[int | str, ...], str]]:
    """Each channel name the automation's `notify` actions give, at its place in the spec
    (`("actions", 0, "channels", 1)`): what is checked against the configured channels."""
    return [
        (("actions", i, "channels", j), channel)
        for i, action in enumerate(spec.actions) if isinstance(action, Notify)
        for j, channel in enumerate(action.channels)
    ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether one event fires an automation, and why, in words."""

    fired: bool
    reason: str
    key: str  # what a firing is unique by: two servers deciding alike fire once


def trigger_event(trigger: EventTrigger | IncidentTrigger | RunStateTrigger) -> EventTrigger:
    """Every trigger as an event trigger: incidents and run states arrive as events too."""
    if isinstance(trigger, EventTrigger):
        return trigger
    if isinstance(trigger, IncidentTrigger):
        return EventTrigger(event=f"incident.{trigger.incident}", resource=trigger.sla and
                            f"sla.{trigger.sla}")  # fmt: skip
    return EventTrigger(event="run.*", resource=None)


def trigger_filters(automation: AutomationSpec) -> list[tuple[str, str | None]]:
    """What an event must have for the trigger to match it: a name (exact, or with a
    trailing `*`) and a related resource id (or None). The pass reads only such events."""
    trigger = automation.trigger
    if isinstance(trigger, RunStateTrigger):
        deployment = f"deployment.{trigger.deployment}"
        names = sorted({RUN_EVENT_STATES[s] for s in trigger.states})
        return [(name, deployment) for name in names]
    return [(trigger_event(trigger).event, None)]


def _related_ids(event: dict[str, Any], role: str) -> list[str]:
    return [r["id"] for r in event.get("related", []) if r.get("role") == role]


def matches(automation: AutomationSpec, event: dict[str, Any]) -> bool:
    """Whether `event` is one the trigger counts (before any threshold), and not one the
    automation itself caused."""
    if f"automation:{automation.name}" in _related_ids(event, "cause"):
        return False  # its own run's events never re-trigger it
    trigger = automation.trigger
    if isinstance(trigger, RunStateTrigger):
        names = {RUN_EVENT_STATES[s] for s in trigger.states}
        return event["event"] in names and (
            f"deployment.{trigger.deployment}" in _related_ids(event, "deployment")
        )
    t = trigger_event(trigger)
    if not event_name_matches(t.event, event["event"]):
        return False
    resource = event["resource"]
    if t.resource is not None and not matches_target(t.resource, resource["id"]):
        return False
    labels = resource.get("labels") or {}
    return all(labels.get(k) == v for k, v in t.labels.items())


def group_of(automation: AutomationSpec, event: dict[str, Any]) -> str:
    """The `for_each` label's value the event counts under ('' without for_each)."""
    trigger = automation.trigger
    if isinstance(trigger, EventTrigger) and trigger.for_each:
        return str((event["resource"].get("labels") or {}).get(trigger.for_each, ""))
    return ""


def decide(
    automation: AutomationSpec,
    event: dict[str, Any],
    earlier: list[dict[str, Any]],
    last_fired: datetime | None,
) -> Decision:
    """Whether matching `event` fires the automation. `earlier`: the matching events of its
    group before it, within the window; `last_fired`: its group's last firing."""
    trigger = automation.trigger
    group = group_of(automation, event)
    where = f" for {trigger.for_each}={group!r}" if isinstance(trigger, EventTrigger) and \
        trigger.for_each else ""  # fmt: skip
    if not automation.enabled:
        return Decision(False, f"{event['event']} on {event['resource']['id']}: disabled", "")
    if not isinstance(trigger, EventTrigger) or trigger.threshold == 1:
        return Decision(True, f"{event['event']} on {event['resource']['id']}{where}",
                        f"event:{event['id']}")  # fmt: skip
    assert trigger.within is not None
    at = datetime.fromisoformat(event["occurred"])
    start = at - trigger.within
    if last_fired is not None and last_fired > start:
        start = last_fired  # events counted towards the last firing do not count again
    count = 1 + sum(1 for e in earlier if start < datetime.fromisoformat(e["occurred"]) <= at)
    window = _words(trigger.within)
    if count < trigger.threshold:
        return Decision(False, f"{count} of {trigger.threshold} {trigger.event} within {window}"
                        f"{where}: not yet", "")  # fmt: skip
    return Decision(True, f"{count} {trigger.event} within {window}{where} (threshold "
                    f"{trigger.threshold})", f"group:{group}:{event['id']}")  # fmt: skip


def _words(d: timedelta) -> str:
    seconds = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
