"""Duration: runs of the target must not take longer than `max_duration` or `factor` x p95.

Semantics:
- a run breaches once its elapsed time reaches a bound (inclusive, so a trigger at
  `next_deadline` = start + bound sees it), while still running, not only after it ends;
- the relative bound is `factor` x the p95 (nearest rank) of the durations of the last
  `history` completed runs that started before it; with fewer than min(history, 5) such runs
  there is no relative bound (too little history to call anything abnormal);
- runs judged: every running run, and the newest ended run; an overlong run's breach
  (key per run id) resolves when it is no longer the newest ended run, i.e. once a later run
  ended (the expectation is met again when the next run keeps within its bounds).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from coplane.rules.common import local, span
from coplane.rules.facts import Breach, Evaluation, Facts, RunFact
from coplane.rules.history import durations, is_running, percentile, require_aware, target_runs
from coplane.rules.model import DurationSLA

MIN_HISTORY = 5  # completed runs needed (or `history`, if smaller) for the relative bound


def bound(
    sla: DurationSLA, run: RunFact, runs: list[RunFact], now: datetime
) -> tuple[timedelta, str] | None:
    """The tightest bound for `run` and how it was derived, or None when there is none."""
    bounds: list[tuple[timedelta, str]] = []
    if sla.max_duration is not None:
        bounds.append((sla.max_duration, f"limit {span(sla.max_duration)}"))
    if sla.factor is not None and run.started is not None:
        started = run.started
        earlier = [r for r in runs if r.id != run.id and r.started and r.started < started]
        past = durations(earlier, now)[: sla.history]  # runs are newest first
        p95 = percentile(past)
        if p95 is not None and len(past) >= min(sla.history, MIN_HISTORY):
            bounds.append(
                (p95 * sla.factor, f"{sla.factor:g} x p95 of {span(p95)} over {len(past)} runs")
            )
    return min(bounds, key=lambda b: b[0]) if bounds else None


def evaluate(sla: DurationSLA, facts: Facts, now: datetime) -> Evaluation:
    """Decide whether the target's current and latest runs keep within their duration bound."""
    now = require_aware(now)
    runs = target_runs(sla.target, facts, now)
    running = [r for r in runs if is_running(r, now)]
    ended = [r for r in runs if r.started and r.ended and r.ended <= now]
    newest_ended = max(ended, key=lambda r: r.ended or now, default=None)
    judged = running + ([newest_ended] if newest_ended is not None else [])
    breaches: list[Breach] = []
    pending: list[datetime] = []
    for run in judged:
        assert run.started is not None
        limit = bound(sla, run, runs, now)
        if limit is None:
            continue
        allowed, how = limit
        end = run.ended if run.ended is not None and run.ended <= now else None
        elapsed = (end or now) - run.started
        due = run.started + allowed
        if elapsed < allowed:
            if end is None:
                pending.append(due)
            continue
        state = f"ran {span(elapsed)}" if end else f"running for {span(elapsed)}"
        breaches.append(
            Breach(
                key=f"{sla.name}:run:{run.id}",
                due=due,
                reason=f"{sla.name}: run {run.label} {state} "
                f"since {local(run.started, 'UTC')}; {how}",
                window_start=run.started,
                resource=run.pipeline,
            )
        )
    breaches.sort(key=lambda b: b.due)
    upcoming = min(pending) if pending else None
    if breaches:
        return Evaluation(
            status="breached",
            breaches=breaches,
            next_deadline=upcoming,
            explanation=breaches[-1].reason,
        )
    if not judged:
        return Evaluation(status="unknown", explanation=f"{sla.name}: no run seen yet")
    last_met = newest_ended.ended if newest_ended is not None else None
    return Evaluation(
        status="ok",
        next_deadline=upcoming,
        last_met=last_met,
        explanation=f"{sla.name}: {len(running)} running, the latest runs within bounds",
    )
