"""Automations: a trigger (events, incidents, run states) and actions, run by a pass every second.

The `automations` job reads the events received since its cursor (less an overlap, since a
transaction that took its `received` time earlier may commit later) whose names a trigger can
match (none at all while there is no automation: ingest at full speed pays nothing for the
pass), and the incidents opened
or resolved meanwhile (as `incident.opened` / `incident.resolved` events of `sla.<name>`).
Each matching event gets a decision, in words, kept for the automation's page; a firing is
recorded under a key unique per automation, so every server may run the pass and an event
still fires an automation once. Its actions then run, each recorded as an event
(`automation.triggered`, `automation.action.succeeded|failed`) through the store. Runs an
automation starts carry `{"role": "cause", "id": "automation:<name>"}`, and events bearing
that cause never trigger it again. At most `max_runs_per_hour` firings an hour each.

A `notify` action does not send anything itself: it renders its message and queues it, with a
notification per channel, in the alert outbox, in one transaction and under ids derived from
the firing and the action; the dispatcher then sends it as it sends incidents' alerts (retried
while a channel is down, claimed by one server), and running the action again queues nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from jinja2 import TemplateError

from coplane.alerts.urls import check_url
from coplane.events import names as n
from coplane.events.derive import run_uuid
from coplane.events.model import Event, RelatedResource, Resource
from coplane.jobs.scheduler import job
from coplane.orchestrate.deployments import DeploymentError
from coplane.orchestrate.remediation import render_parameters
from coplane.orchestrate.runs import cancel_flow_run, create_flow_run
from coplane.orchestrate.schedules import pause_schedules, resume_schedules
from coplane.rules.automation import (
    AutomationSpec,
    CallWebhook,
    CancelRun,
    Decision,
    EventTrigger,
    Notify,
    RunDeployment,
    ScheduleAction,
    decide,
    group_of,
    matches,
    trigger_event,
    trigger_filters,
)
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.automations import (
    count_firings,
    insert_decision,
    insert_firing,
    last_firing,
    list_automations,
    list_events_named,
    list_events_received,
    list_incident_changes,
    prune_decisions,
    queue_automation_message,
    read_cursor,
    record_firing_actions,
    replace_automations,
    save_cursor,
)
from coplane.store.deployments import read_deployment
from coplane.store.dialects import Conn, Row
from coplane.store.errors import StoreError
from coplane.store.events import event_json, insert_events

log = logging.getLogger(__name__)

CURSOR = "automations"
OVERLAP = timedelta(seconds=10)
BATCH = 5_000
WINDOW_EVENTS = 10_000


def parse_automation(definition: Any) -> AutomationSpec:
    """A stored definition as its model."""
    return AutomationSpec.model_validate(definition)


def automation_definition(spec: AutomationSpec) -> dict[str, Any]:
    """An automation as JSON its model reads back (durations in seconds)."""
    value: dict[str, Any] = json.loads(spec.model_dump_json())
    trigger = spec.trigger
    if isinstance(trigger, EventTrigger) and trigger.within is not None:
        value["trigger"]["within"] = trigger.within.total_seconds()
    return value


def sync_file_automations(store: Store, specs: list[AutomationSpec]) -> None:
    """Make the config file's automations the stored ones of origin `file`."""
    with store.connect() as conn, conn.transaction():
        replace_automations(conn, [automation_definition(s) for s in specs], "file",
                            datetime.now(UTC))  # fmt: skip


def _event_dict(row: Row) -> dict[str, Any]:
    event = event_json(row)
    run_key = next((r["id"] for r in event["related"] if r.get("role") == n.ROLE_RUN), None)
    event["run_id"] = run_uuid(event["resource"]["id"], run_key) if run_key else None
    return event


def _incident_events(rows: list[Row], after: datetime) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        for change, at in (("opened", r["opened"]), ("resolved", r["resolved"])):
            if at is None or at <= after:
                continue
            out.append({
                "id": str(uuid.uuid5(uuid.UUID(str(r["id"])), change)),
                "occurred": at.isoformat(),
                "event": f"incident.{change}",
                "resource": {"id": f"sla.{r['sla']}", "kind": "sla"},
                "related": [{"role": "incident", "id": str(r["id"])}],
                "payload": {"incident": str(r["id"]), "reason": r["reason"],
                            "resource": r["resource"]},
                "run_id": None,
            })  # fmt: skip
    return out


def run_automations(store: Store, now: datetime | None = None) -> int:
    """One pass over what happened since the cursor; how many firings it made."""
    now = now or datetime.now(UTC)
    with store.connect() as conn:
        cursor = read_cursor(conn, CURSOR)
        if cursor is None:  # the first pass ever: from now on, not over all history
            save_cursor(conn, CURSOR, now)
            return 0
        since = cursor - OVERLAP
        automations = [parse_automation(r["definition"]) for r in list_automations(conn)]
        if not automations:  # nothing to decide: skip reading what arrived
            save_cursor(conn, CURSOR, now)
            return 0
        filters = [f for a in automations for f in trigger_filters(a)]
        rows = list_events_received(conn, since, now, BATCH, filters)
        incidents = _incident_events(list_incident_changes(conn, since, now), since)
    events = [_event_dict(r) for r in rows] + incidents
    fired = 0
    for automation in automations:
        for event in events:
            if event["event"].startswith("automation.") or not matches(automation, event):
                continue
            fired += _consider(store, automation, event, now)
    # a full batch: go on from its last event next time, else everything up to now was read
    position: datetime = rows[-1]["received"] if len(rows) == BATCH else now
    with store.connect() as conn:
        save_cursor(conn, CURSOR, position)
        for automation in automations:
            prune_decisions(conn, automation.name)
    return fired


def _window_events(
    conn: Conn, automation: AutomationSpec, event: dict[str, Any]
) -> list[dict[str, Any]]:
    trigger = automation.trigger
    if not isinstance(trigger, EventTrigger) or trigger.within is None:
        return []
    at = datetime.fromisoformat(event["occurred"])
    rows = list_events_named(conn, trigger.event, at - trigger.within, at, WINDOW_EVENTS)
    group = group_of(automation, event)
    return [
        e for e in (_event_dict(r) for r in rows)
        if e["id"] != event["id"] and matches(automation, e) and group_of(automation, e) == group
    ]  # fmt: skip


def _consider(store: Store, automation: AutomationSpec, event: dict[str, Any], now: datetime
              ) -> int:  # fmt: skip
    group = group_of(automation, event)
    with store.connect() as conn, conn.transaction():
        decision = decide(automation, event, _window_events(conn, automation, event),
                          last_firing(conn, automation.name, group))  # fmt: skip
        if decision.fired and count_firings(conn, automation.name, now - timedelta(hours=1)) \
                >= automation.max_runs_per_hour:  # fmt: skip
            decision = Decision(False, f"{decision.reason}: not fired, max_runs_per_hour "
                                f"({automation.max_runs_per_hour}) reached", "")  # fmt: skip
        insert_decision(conn, automation.name, event, decision.fired, decision.reason, now)
        if not decision.fired or not insert_firing(
            conn, automation.name, decision.key, group, event["id"], decision.reason, now
        ):
            return 0  # fmt: skip
        _record(
            store,
            conn,
            automation,
            decision.key,
            n.AUTOMATION_TRIGGERED,
            event,
            {"reason": decision.reason, "event": event["event"]},
            now,
        )
    results = []
    for index, action in enumerate(automation.actions):
        outcome = _act(store, automation, decision.key, index, action, event, now)
        results.append(outcome)
    with store.connect() as conn, conn.transaction():
        record_firing_actions(conn, automation.name, decision.key, results)
        for index, outcome in enumerate(results):
            name = n.AUTOMATION_ACTION_SUCCEEDED if outcome["ok"] else n.AUTOMATION_ACTION_FAILED
            _record(store, conn, automation, f"{decision.key}:{index}", name, event,
                    outcome, now)  # fmt: skip
    log.info("automation %s fired: %s", automation.name, decision.reason)
    return 1


def _record(store: Store, conn: Conn, automation: AutomationSpec, key: str, name: str,
            cause: dict[str, Any], payload: dict[str, Any], now: datetime) -> None:  # fmt: skip
    event = Event(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"coplane:{automation.name}:{key}:{name}"),
        occurred=now,
        event=name,
        resource=Resource(
            id=f"automation.{automation.name}", name=automation.name, kind="automation"
        ),
        related=[RelatedResource(id=str(cause["id"]), role="cause")],
        payload=payload,
    )
    insert_events(conn, [event], now, store.partitions)


def _act(store: Store, automation: AutomationSpec, key: str, index: int, action: Any,
         event: dict[str, Any], now: datetime) -> dict[str, Any]:  # fmt: skip
    """Run one action; what it did, as recorded."""
    context = {"event": event, "automation": {"name": automation.name}}
    base: dict[str, Any] = {"action": index, "type": action.type}
    try:
        if isinstance(action, RunDeployment):
            causes = [{"role": "cause", "id": f"automation:{automation.name}"},
                      {"role": "cause", "id": f"event:{event['id']}"}]  # fmt: skip
            causes += [r for r in event.get("related", []) if r.get("role") == "cause"
                       and r not in causes]  # fmt: skip
            with store.connect() as conn, conn.transaction():
                deployment = read_deployment(conn, action.deployment)
                run, _ = create_flow_run(
                    store, conn, deployment, render_parameters(action.parameters, context),
                    idempotency_key=f"automation:{automation.name}:{key}:{index}",
                    related=causes, now=now,
                )  # fmt: skip
            return {**base, "ok": True, "run": str(run["id"]),
                    "detail": f"run {run['id']} of {action.deployment}"}  # fmt: skip
        if isinstance(action, ScheduleAction):
            act = pause_schedules if action.type == "pause_schedule" else resume_schedules
            act(store, action.deployment)
            verb = "paused" if action.type == "pause_schedule" else "resumed"
            return {**base, "ok": True, "detail": f"{action.deployment}'s schedules {verb}"}
        if isinstance(action, CancelRun):
            run_id = render_parameters(action.run, context)
            row = cancel_flow_run(store, str(run_id))
            return {**base, "ok": True, "detail": f"run {run_id}: {row['state']}"}
        if isinstance(action, CallWebhook):
            check_url(action.url)
            body = render_parameters(action.body, context)
            resp = httpx.post(action.url, json=body, timeout=10)
            if resp.status_code >= 300:
                return {**base, "ok": False, "detail": f"{action.url} answered "
                        f"{resp.status_code}"}  # fmt: skip
            return {**base, "ok": True, "detail": f"{action.url} answered {resp.status_code}"}
        if isinstance(action, Notify):
            return {**base, **_notify(store, automation, key, index, action, event, context, now)}
    except (StoreError, DeploymentError, TemplateError, httpx.HTTPError, ValueError) as exc:
        return {**base, "ok": False, "detail": str(exc)}
    except Exception as exc:  # an integration's error: recorded, never fatal to the pass
        return {**base, "ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    return {**base, "ok": False, "detail": "unknown action"}


def _notify(store: Store, automation: AutomationSpec, key: str, index: int, action: Notify,
            event: dict[str, Any], context: dict[str, Any], now: datetime
            ) -> dict[str, Any]:  # fmt: skip
    """Queue a `notify` action's message to its channels; what it queued, as recorded."""
    try:
        message = str(render_parameters(action.message, context)).strip()
    except TemplateError as exc:
        return {"ok": False, "detail": f"the message template failed: {exc}"}
    if not message:
        return {"ok": False, "detail": "the message is empty once rendered"}
    with store.connect() as conn:
        mid, rows = queue_automation_message(conn, automation.name, key, index, message, event,
                                             action.channels, now)  # fmt: skip
    queued = [{"channel": r["channel"], "notification": str(r["id"])} for r in rows]
    channels = ", ".join(q["channel"] for q in queued)
    return {"ok": True, "message": str(mid), "notifications": queued,
            "detail": f"queued to {channels} (message {mid}): {_excerpt(message)}"}  # fmt: skip


def _excerpt(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def backtest(automation: AutomationSpec, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The firings `automation` would have had over `events` (oldest first), with no action
    run: the same decision as the live pass, over events given or read from the store."""
    seen: dict[str, list[dict[str, Any]]] = {}
    last: dict[str, datetime] = {}
    firings = []
    for event in sorted(events, key=lambda e: (e["occurred"], e["id"])):
        if event["event"].startswith("automation.") or not matches(automation, event):
            continue
        group = group_of(automation, event)
        decision = decide(automation, event, seen.get(group, []), last.get(group))
        seen.setdefault(group, []).append(event)
        if decision.fired:
            last[group] = datetime.fromisoformat(event["occurred"])
            firings.append({"event": event["id"], "occurred": event["occurred"],
                            "reason": decision.reason})  # fmt: skip
    return firings


def events_for_backtest(store: Store, automation: AutomationSpec, since: datetime,
                        until: datetime) -> list[dict[str, Any]]:  # fmt: skip
    """The stored events (and incident changes) an automation's trigger would have seen."""
    pattern = trigger_event(automation.trigger).event
    with store.connect() as conn:
        rows = list_events_named(conn, pattern, since, until, 100_000)
        incidents = _incident_events(list_incident_changes(conn, since, until), since)
    return [_event_dict(r) for r in rows] + incidents


@job("automations", every_s=1)
def automations_job(store: Store, settings: Settings) -> int:
    """Decide on what happened since the last pass, and run the actions of what fired."""
    return run_automations(store)
