"""Expected event: after a trigger (an `after` event or a `deadline`), `expect` within `within`.

Semantics:
- a trigger at time T (the `after` event's time, or a cron deadline on a business day of
  `calendar`) is met by an `expect`
  event at or after T: on time by T + `within`, late afterwards (which resolves the breach);
  an `expect` event before T does not count for it;
- it breaches from T + `within` on (inclusive) while unmet; one key per trigger (event time and
  resource, or deadline) and per `for_each` label value;
- `for_each`: triggers and expected events pair only with the same value of that label on
  their resource; events without the label are ignored; with a deadline trigger each value
  seen on any matching event (by `now`) is expected at every deadline;
- lookback: triggers in the last schedule.MAX_LOOKBACK, at most schedule.MAX_WINDOWS of them
  (deadlines: after `facts.created` too), so triggers missed while the server was down count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from coplane.rules import schedule
from coplane.rules.common import event_matches, iso, local, local_due, span
from coplane.rules.facts import Breach, Evaluation, EventFact, Facts
from coplane.rules.history import require_aware
from coplane.rules.model import ExpectedEventSLA


@dataclass(frozen=True, slots=True)
class _Trigger:
    at: datetime
    group: str | None  # the for_each label value
    what: str  # the trigger in words
    key: str
    resource: str | None


def _group(sla: ExpectedEventSLA, event: EventFact) -> tuple[bool, str | None]:
    """Whether the event takes part, and its for_each value."""
    if sla.for_each is None:
        return True, None
    value = event.labels.get(sla.for_each)
    return value is not None, value


def _triggers(sla: ExpectedEventSLA, facts: Facts, now: datetime) -> list[_Trigger]:
    tz = sla.timezone
    floor = now - schedule.MAX_LOOKBACK
    found: list[_Trigger] = []
    if sla.after is not None:
        for event in facts.events:
            if not (floor < event.occurred <= now):
                continue
            if not event_matches(event, sla.after.event, sla.after.resource):
                continue
            ok, value = _group(sla, event)
            if not ok:
                continue
            key = f"{sla.name}:after:{iso(event.occurred)}:{event.resource}"
            found.append(
                _Trigger(
                    at=event.occurred,
                    group=value,
                    what=f"{event.event} of {event.resource} at {local(event.occurred, tz)}",
                    key=key if value is None else f"{key}:{value}",
                    resource=event.resource,
                )
            )
    else:
        assert sla.deadline is not None
        start = floor if facts.created is None else max(floor, facts.created)
        # A trigger is still interesting while its wait for `expect` may be running.
        deadlines = schedule.deadlines_between(
            sla.deadline, tz, start - sla.within, now, calendar=sla.calendar
        )
        groups: list[str | None] = [None]
        if sla.for_each is not None:
            values = {
                v
                for e in facts.events
                if e.occurred <= now
                and (v := e.labels.get(sla.for_each)) is not None
                and event_matches(e, sla.expect.event, sla.expect.resource)
            }
            groups = [*sorted(values)]
        for at in deadlines:
            if facts.created is not None and at < facts.created:
                continue
            for value in groups:
                key = f"{sla.name}:{iso(at)}"
                found.append(
                    _Trigger(
                        at=at,
                        group=value,
                        what=f"the deadline {local(at, tz)}",
                        key=key if value is None else f"{key}:{value}",
                        resource=None,
                    )
                )
    found.sort(key=lambda t: t.at)
    return found[-schedule.MAX_WINDOWS :]


def evaluate(sla: ExpectedEventSLA, facts: Facts, now: datetime) -> Evaluation:
    """Decide whether every trigger was followed by the expected event in time, as of `now`."""
    now = require_aware(now)
    tz = sla.timezone
    expected: list[EventFact] = [
        e
        for e in facts.events
        if e.occurred <= now
        and event_matches(e, sla.expect.event, sla.expect.resource)
        and _group(sla, e)[0]
    ]
    last_met = max((e.occurred for e in expected), default=None)
    breaches: list[Breach] = []
    pending: list[datetime] = []
    triggers = _triggers(sla, facts, now)
    for trigger in triggers:
        due = trigger.at + sla.within
        met = any(e.occurred >= trigger.at and _group(sla, e)[1] == trigger.group for e in expected)
        if met:
            continue
        if now < due:
            pending.append(due)
            continue
        label = f" for {sla.for_each}={trigger.group}" if trigger.group is not None else ""
        breaches.append(
            Breach(
                key=trigger.key,
                due=due,
                reason=f"{sla.name}: no {sla.expect.event}{label} since {trigger.what}; "
                f"due {local_due(due, tz, trigger.at)} (within {span(sla.within)})",
                window_start=trigger.at,
                resource=trigger.resource,
            )
        )
    upcoming = min(pending) if pending else None
    if sla.deadline is not None:
        following = schedule.next_deadline(sla.deadline, tz, now, sla.calendar)
        if following is not None:
            upcoming = min(upcoming or following + sla.within, following + sla.within)
    if breaches:
        return Evaluation(
            status="breached",
            breaches=breaches,
            next_deadline=upcoming,
            last_met=last_met,
            explanation=breaches[-1].reason
            + (f" ({len(breaches)} open)" if len(breaches) > 1 else ""),
        )
    if not triggers and last_met is None:
        return Evaluation(
            status="unknown",
            next_deadline=upcoming,
            explanation=f"{sla.name}: no trigger and no {sla.expect.event} seen yet",
        )
    explanation = f"{sla.name}: every trigger was followed by {sla.expect.event}"
    if pending:
        explanation = f"{sla.name}: waiting for {sla.expect.event}, due {local(min(pending), tz)}"
    return Evaluation(
        status="ok", next_deadline=upcoming, last_met=last_met, explanation=explanation
    )
