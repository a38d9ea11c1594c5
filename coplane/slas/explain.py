"""Explaining an evaluation: a small JSON summary, per kind, of the facts the rule used.

`explain_inputs(sla, facts, evaluation, now)` is pure like the rules: the engine stores its
result with each evaluation that changed something (see `store/evaluations.py`), and the
explain API and the SLA page show it. Times are UTC ISO text, durations seconds (the keys in
DURATION_KEYS), and lists are cut to the few newest items so that a row stays small.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from coplane.rules import freshness, quality, schedule
from coplane.rules.common import event_matches
from coplane.rules.duration import MIN_HISTORY
from coplane.rules.facts import Evaluation, EventFact, Facts, PingFact, RunFact
from coplane.rules.heartbeat import expected_ping
from coplane.rules.history import completions, durations, is_running, percentile, target_runs
from coplane.rules.model import (
    SLA,
    Calendar,
    CompletionSLA,
    DurationSLA,
    EventMatch,
    ExpectedEventSLA,
    FreshnessSLA,
    HeartbeatSLA,
    QualitySLA,
)

RUNS_SHOWN = 5  # runs listed per evaluation
CHECKS_SHOWN = 10  # failing checks listed per evaluation
# Keys whose values are times (UTC ISO text, the web page shows them as times); any other
# string, such as a producer's check message or run key, stays a string however it starts.
TIME_KEYS = frozenset(
    {"started", "ended", "window_start", "window_due", "sla_created", "last_update", "due",
     "last_completed", "at", "expected_ping"}
)  # fmt: skip
# Keys whose values are durations in seconds (the web page shows them in words).
DURATION_KEYS = frozenset(
    {"max_age", "within", "max_duration", "p95", "bound", "elapsed", "grace", "period",
     "max_runtime", "window"}
)  # fmt: skip


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _run(run: RunFact) -> dict[str, Any]:
    return {
        "run": run.label,
        "state": run.state,
        "started": _iso(run.started),
        "ended": _iso(run.ended),
    }


def _window(
    cron: str,
    tz: str,
    now: datetime,
    lead: timedelta | None = None,
    not_before: str | None = None,
    calendar: Calendar | None = None,
) -> dict[str, Any]:
    """The deadline window `now` lies in: from the previous deadline to the next, and from
    when an update counts for the next (`schedule.opens`, as the rules use it)."""
    start = schedule.previous_deadline(cron, tz, now, calendar)
    due = schedule.next_deadline(cron, tz, now, calendar)
    opening = None
    if due is not None:
        opening = schedule.opens(start, due, lead=lead, not_before=not_before, timezone=tz)
    out: dict[str, Any] = {
        "deadline": cron,
        "timezone": tz,
        "window_start": _iso(start),
        "window_due": _iso(due),
        "window_opens": _iso(opening),
    }
    if lead is not None:
        out["window"] = _seconds(lead)
    if not_before is not None:
        out["not_before"] = not_before
    if calendar is not None:
        out["calendar"] = calendar.model_dump(mode="json", exclude_defaults=True)
    return out


def explain_inputs(sla: SLA, facts: Facts, evaluation: Evaluation, now: datetime) -> dict[str, Any]:
    """The facts `evaluate(sla, facts, now)` decided `evaluation` from, as small JSON."""
    now = now.astimezone(UTC)
    inputs: dict[str, Any] = {"kind": sla.kind}
    match sla:
        case FreshnessSLA():
            inputs |= _freshness(sla, facts, now)
        case CompletionSLA():
            inputs |= _completion(sla, facts, now)
        case DurationSLA():
            inputs |= _duration(sla, facts, now)
        case ExpectedEventSLA():
            inputs |= _expected_event(sla, facts, now)
        case HeartbeatSLA():
            inputs |= _heartbeat(sla, facts, now)
        case QualitySLA():
            inputs |= _quality(sla, facts, now)
    if facts.created is not None:
        inputs["sla_created"] = _iso(facts.created)
    inputs["open_breaches"] = len(evaluation.breaches)
    return inputs


def _freshness(sla: FreshnessSLA, facts: Facts, now: datetime) -> dict[str, Any]:
    seen = freshness.updates(sla, facts, now)
    last = seen[-1] if seen else None
    out: dict[str, Any] = {"target": sla.target, "last_update": _iso(last)}
    if sla.max_age is not None:
        since = last if last is not None else facts.created
        out["max_age"] = _seconds(sla.max_age)
        out["due"] = _iso(None if since is None else since + sla.max_age)
    else:
        assert sla.deadline is not None
        out |= _window(sla.deadline, sla.timezone, now, sla.window, sla.not_before, sla.calendar)
    return out


def _completion(sla: CompletionSLA, facts: Facts, now: datetime) -> dict[str, Any]:
    runs = target_runs(sla.target, facts, now)
    done = completions(sla.target, facts, now)
    out: dict[str, Any] = {"target": sla.target, "last_completed": _iso(done[-1] if done else None)}
    if sla.within is not None:
        out["within"] = _seconds(sla.within)
    else:
        assert sla.deadline is not None
        out |= _window(sla.deadline, sla.timezone, now, sla.window, sla.not_before, sla.calendar)
    out["runs"] = [_run(r) for r in runs[:RUNS_SHOWN]]
    out["runs_seen"] = len(runs)
    return out


def _duration(sla: DurationSLA, facts: Facts, now: datetime) -> dict[str, Any]:
    runs = target_runs(sla.target, facts, now)
    running = [r for r in runs if is_running(r, now)]
    ended = [r for r in runs if r.started and r.ended and r.ended <= now]
    newest_ended = max(ended, key=lambda r: r.ended or now, default=None)
    judged = running + ([newest_ended] if newest_ended is not None else [])
    measured: list[dict[str, Any]] = []
    for run in judged[:RUNS_SHOWN]:
        assert run.started is not None
        end = run.ended if run.ended is not None and run.ended <= now else None
        item = _run(run) | {"elapsed": _seconds((end or now) - run.started)}
        if sla.factor is not None:  # as `duration.bound` derives it
            earlier = [r for r in runs if r.id != run.id and r.started and r.started < run.started]
            past = durations(earlier, now)[: sla.history]
            p95 = percentile(past)
            item["history_size"] = len(past)
            item["p95"] = _seconds(p95)
            enough = p95 is not None and len(past) >= min(sla.history, MIN_HISTORY)
            item["relative_bound"] = _seconds(p95 * sla.factor) if enough and p95 else None
        measured.append(item)
    return {
        "target": sla.target,
        "max_duration": _seconds(sla.max_duration),
        "factor": sla.factor,
        "history": sla.history,
        "measured": measured,
    }


def _last_match(events: list[EventFact], match: EventMatch, now: datetime) -> dict[str, Any]:
    last = max(
        (e for e in events if e.occurred <= now and event_matches(e, match.event, match.resource)),
        key=lambda e: e.occurred,
        default=None,
    )
    out: dict[str, Any] = {"event": match.event, "resource": match.resource, "last": None}
    if last is not None:
        out["last"] = {"event": last.event, "resource": last.resource, "at": _iso(last.occurred)}
    return out


def _expected_event(sla: ExpectedEventSLA, facts: Facts, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if sla.after is not None:
        out["after"] = _last_match(facts.events, sla.after, now)
    else:
        assert sla.deadline is not None
        out |= _window(sla.deadline, sla.timezone, now, calendar=sla.calendar)
    out["expect"] = _last_match(facts.events, sla.expect, now)
    out["within"] = _seconds(sla.within)
    if sla.for_each is not None:
        out["for_each"] = sla.for_each
    return out


def _heartbeat(sla: HeartbeatSLA, facts: Facts, now: datetime) -> dict[str, Any]:
    pings = sorted((p for p in facts.pings if p.at <= now), key=lambda p: p.at)
    last: dict[str, PingFact] = {p.kind: p for p in pings}  # the newest of each kind
    successes = [p.at for p in pings if p.kind == "success"]
    since = successes[-1] if successes else facts.created
    expected = expected_ping(sla, since) if since is not None else None
    out: dict[str, Any] = {"monitor": sla.target}
    for kind in ("start", "success", "fail"):
        ping = last.get(kind)
        out[f"last_{kind}"] = None if ping is None else {"at": _iso(ping.at), "rid": ping.rid}
    if sla.period is not None:
        out["period"] = _seconds(sla.period)
    else:
        out["schedule"], out["timezone"] = sla.schedule, sla.timezone
    out["grace"] = _seconds(sla.grace)
    out["max_runtime"] = _seconds(sla.max_runtime)
    out["expected_ping"] = _iso(expected)
    return out


def _quality(sla: QualitySLA, facts: Facts, now: datetime) -> dict[str, Any]:
    latest = quality.latest_results(sla, facts, now)  # as the rule picks them
    failing = [r for _, r in sorted(latest.items()) if not r.passed]
    return {
        "target": sla.target,
        "checks": sla.checks,
        "checks_seen": len(latest),
        "failing": [
            {"asset": r.asset, "check": r.check, "at": _iso(r.at), "message": r.message}
            for r in failing[:CHECKS_SHOWN]
        ],
        "failing_count": len(failing),
    }
