"""Freshness: the target must be updated within `max_age`, or in every `deadline` window.

Semantics:
- an update is an asset.updated of the target (facts.updates, or matching events), or a
  completed run of a target pipeline; a glob target counts an update of any matching resource;
- `max_age`: stale from `last update + max_age` on (inclusive, so a trigger at
  `next_deadline` sees the change); one breach per staleness episode, keyed by the last update;
- `deadline`: window W = [previous deadline, due) opens at its midpoint, or `window` before
  `due`, or at the `not_before` tick (schedule.opens); it is met on time by an update in
  [opens, due]; a window without one breaches at `due` and stays breached until an update
  arrives at any later time, which resolves it (one late update resolves every open window
  before it); an update before a window opens does not count for it, so a load late every
  day breaches every day, while an early load for the next deadline meets it;
- every unmet window since `facts.created` is reported, bounded by schedule.MAX_LOOKBACK and
  schedule.MAX_WINDOWS, so deadlines missed while the server was down still breach;
- at_risk: no update yet in the current window, and the forecast ETA of the target's producer
  (coplane.rules.forecast: itself when a pipeline, else the asset's producers in the lineage)
  is after the deadline (`max_age`: after `last update + max_age`, running runs only) by more
  than forecast.MARGIN; the explanation names the ETA and the late upstream it waits on;
- unknown: no update seen and no deadline (or max_age) passed since `facts.created`.
"""

from __future__ import annotations

from datetime import datetime

from coplane.events.names import ASSET_UPDATED, RUN_COMPLETED
from coplane.rules import forecast
from coplane.rules.common import at_risk_text, deadline_evaluation, iso, local, local_due, span
from coplane.rules.facts import Breach, Evaluation, Facts
from coplane.rules.history import completions, matches_target, require_aware
from coplane.rules.model import FreshnessSLA


def updates(sla: FreshnessSLA, facts: Facts, now: datetime) -> list[datetime]:
    """Every time the target was updated by `now`, oldest first."""
    times = [t for t in facts.updates if t <= now]
    times += [
        e.occurred
        for e in facts.events
        if e.event in (ASSET_UPDATED, RUN_COMPLETED)
        and e.occurred <= now
        and matches_target(sla.target, e.resource)
    ]
    times += completions(sla.target, facts, now)
    return sorted(set(times))


def evaluate(sla: FreshnessSLA, facts: Facts, now: datetime) -> Evaluation:
    """Decide whether `sla.target` is fresh enough at `now`."""
    now = require_aware(now)
    seen = updates(sla, facts, now)
    last = seen[-1] if seen else None
    if sla.max_age is not None:
        return _max_age(sla, facts, now, last)
    return _deadline(sla, facts, now, last)


def _max_age(sla: FreshnessSLA, facts: Facts, now: datetime, last: datetime | None) -> Evaluation:
    assert sla.max_age is not None
    tz = sla.timezone
    since = last if last is not None else facts.created
    if since is None:
        return Evaluation(status="unknown", explanation=f"{sla.name}: no update seen yet")
    due = since + sla.max_age
    if now < due:
        if last is None:
            return Evaluation(
                status="unknown",
                next_deadline=due,
                explanation=f"{sla.name}: no update seen yet; due {local(due, tz)}",
            )
        risk = forecast.forecast(sla.target, facts, now, forecast.Window(last, due))
        watching = forecast.watched(sla.target, facts)
        if risk is not None:
            return Evaluation(
                status="at_risk",
                next_deadline=due,
                last_met=last,
                explanation=at_risk_text(sla.name, sla.target, risk, due, tz, now),
                watching=watching,
            )
        return Evaluation(
            status="ok",
            next_deadline=due,
            last_met=last,
            watching=watching,
            explanation=f"{sla.name}: updated {local(last, tz)}, {span(now - last)} ago "
            f"(max age {span(sla.max_age)})",
        )
    what = f"no update since {local(last, tz)}" if last else "never updated"
    reason = f"{sla.name}: {what}; due {local_due(due, tz, last)} (max age {span(sla.max_age)})"
    breach = Breach(
        key=f"{sla.name}:stale:{iso(last) if last else 'never'}",
        due=due,
        reason=reason,
        window_start=since,
        resource=sla.target,
    )
    return Evaluation(status="breached", breaches=[breach], last_met=last, explanation=reason)


def _deadline(sla: FreshnessSLA, facts: Facts, now: datetime, last: datetime | None) -> Evaluation:
    assert sla.deadline is not None
    return deadline_evaluation(
        sla.name, sla.deadline, sla.timezone, sla.target, facts, now, last, "update", "updated",
        lead=sla.window, not_before=sla.not_before, calendar=sla.calendar,
    )  # fmt: skip
