"""Completion: the target pipeline must complete a run by each `deadline`, or `within` a start.

Semantics:
- a completion is a run of the target ending in state `completed` (or a run.completed event);
- `deadline`: windows as in freshness (opening at their midpoint, or per `window` or
  `not_before`): window [previous deadline, due) is met on time by a completion in
  [opens, due]; a miss breaches at `due` and resolves when a completion arrives
  later; unmet windows since `facts.created` are reported within the schedule lookback bound;
- `within`: each run started in the lookback (schedule.MAX_LOOKBACK, newest
  schedule.MAX_WINDOWS runs) must be followed by a completed run (itself or a later-started
  one) by `started + within`; it breaches at that instant even while still running, and a late
  completion resolves it; a failed run stays breached until a later run completes;
- at_risk: see coplane.rules.forecast: the producing run's ETA (a running run's start + p50 of
  recent durations; a late start blamed on a late upstream) is after the next deadline (or a
  running run's after its own `started + within`) by more than forecast.MARGIN.
"""

from __future__ import annotations

from datetime import datetime

from coplane.rules import (
    forecast,  # a module: it imports these rules' helpers in turn
    schedule,
)
from coplane.rules.common import deadline_evaluation, local, local_due, span, summarise
from coplane.rules.facts import Breach, Evaluation, Facts
from coplane.rules.history import completed_at, completions, is_running, require_aware, target_runs
from coplane.rules.model import CompletionSLA


def evaluate(sla: CompletionSLA, facts: Facts, now: datetime) -> Evaluation:
    """Decide whether `sla.target` completed when it had to, as of `now`."""
    now = require_aware(now)
    if sla.within is not None:
        return _within(sla, facts, now)
    return _deadline(sla, facts, now)


def _deadline(sla: CompletionSLA, facts: Facts, now: datetime) -> Evaluation:
    assert sla.deadline is not None
    done = completions(sla.target, facts, now)
    last = done[-1] if done else None
    return deadline_evaluation(
        sla.name, sla.deadline, sla.timezone, sla.target, facts, now, last,
        "completed run", "completed", lead=sla.window, not_before=sla.not_before,
        calendar=sla.calendar,
    )  # fmt: skip


def _within(sla: CompletionSLA, facts: Facts, now: datetime) -> Evaluation:
    assert sla.within is not None
    tz = sla.timezone
    runs = target_runs(sla.target, facts, now)
    started = [
        r for r in runs if r.started is not None and r.started > now - schedule.MAX_LOOKBACK
    ][: schedule.MAX_WINDOWS]
    done = completions(sla.target, facts, now)
    breaches: list[Breach] = []
    pending: list[datetime] = []
    risky: list[str] = []
    for run in reversed(started):  # oldest first, like the windows of the other rules
        assert run.started is not None
        due = run.started + sla.within
        # Its own completion, or a rerun started after it completing, meets the expectation.
        met = completed_at(run, now) is not None or any(
            completed_at(r, now) is not None
            for r in started
            if r.started is not None and r.started >= run.started
        )
        if met:
            continue
        if now < due:
            pending.append(due)
            finish = forecast.running_eta(run, runs, now) if is_running(run, now) else None
            if finish is not None and finish > due + forecast.MARGIN:
                risky.append(
                    f"{sla.name}: run {run.label} is expected to finish {local(finish, tz)}, "
                    f"after {local_due(due, tz, finish)}"
                )
            continue
        if is_running(run, now):
            state = "is still running"
        elif run.ended is not None:
            state = f"ended {run.state or 'without completing'} at {local(run.ended, tz)}"
        else:
            state = f"has not completed (state {run.state or 'unknown'})"
        breaches.append(
            Breach(
                key=f"{sla.name}:run:{run.id}",
                due=due,
                reason=f"{sla.name}: run {run.label} started {local(run.started, tz)} {state}; "
                f"due {local_due(due, tz, run.started)} (within {span(sla.within)})",
                window_start=run.started,
                resource=run.pipeline,
            )
        )
    last = done[-1] if done else None
    upcoming = min(pending) if pending else None
    if breaches:
        return Evaluation(
            status="breached",
            breaches=breaches,
            next_deadline=upcoming,
            last_met=last,
            explanation=summarise(breaches),
        )
    if risky:
        return Evaluation(
            status="at_risk", next_deadline=upcoming, last_met=last, explanation=risky[0]
        )
    if not runs:
        return Evaluation(status="unknown", explanation=f"{sla.name}: no run seen yet")
    explanation = f"{sla.name}: every run completed within {span(sla.within)}"
    if pending:
        explanation = (
            f"{sla.name}: {len(pending)} run(s) in progress, next due {local(min(pending), tz)}"
        )
    return Evaluation(status="ok", next_deadline=upcoming, last_met=last, explanation=explanation)
