"""Heartbeat: a cron monitor must ping per `schedule` or `period` plus `grace` (Healthchecks.io).

Semantics, after Healthchecks.io:
- after the last success ping L (or `facts.created` before any), the next ping is expected at
  L + `period`, or at the first `schedule` tick after L (on a business day of `calendar`);
  from that time + `grace` on (inclusive) it breaches, keyed by the expected ping time: one
  breach per silent stretch, resolved by the next success ping;
- a fail ping, when it is the latest success/fail ping, breaches at once (key per fail time)
  until a success ping follows;
- a start ping without a matching end (success or fail with the same rid; without a rid, any
  end at or after it, and only the latest rid-less start counts; the latest start of all is
  also ended by an end without rid, or a fail with a rid no start had) breaches from start +
  `max_runtime` (or + `grace` when no max_runtime is set, as Healthchecks.io does); a late end
  resolves it; starts older than schedule.MAX_LOOKBACK are not judged;
- start pings do not count as pings for the schedule.
"""

from __future__ import annotations

from datetime import datetime

from coplane.rules import schedule
from coplane.rules.common import iso, local, local_due, span
from coplane.rules.facts import Breach, Evaluation, Facts, PingFact
from coplane.rules.history import require_aware
from coplane.rules.model import HeartbeatSLA


def expected_ping(sla: HeartbeatSLA, since: datetime) -> datetime | None:
    """When the ping after one at `since` is expected (before grace)."""
    if sla.period is not None:
        return since + sla.period
    assert sla.schedule is not None
    return schedule.next_deadline(sla.schedule, sla.timezone, since, sla.calendar)


def _open_starts(pings: list[PingFact], now: datetime) -> list[PingFact]:
    ends = [p for p in pings if p.kind != "start"]
    starts = [p for p in pings if p.kind == "start" and p.at > now - schedule.MAX_LOOKBACK]
    latest_plain = max((p.at for p in starts if p.rid is None), default=None)
    latest = max((p.at for p in starts), default=None)
    start_rids = {p.rid for p in pings if p.kind == "start" and p.rid is not None}

    def ends_latest(end: PingFact) -> bool:
        # as the collector pairs them (collector/ping.py): an end without rid, or a fail
        # whose rid no start had, finishes the latest start
        return end.rid is None or (end.kind == "fail" and end.rid not in start_rids)

    result: list[PingFact] = []
    for start in starts:
        if start.rid is None:
            if start.at != latest_plain or any(e.at >= start.at for e in ends):
                continue
        else:
            own_end = any(e.rid == start.rid and e.at >= start.at for e in ends)
            if own_end or (
                start.at == latest and any(e.at >= start.at and ends_latest(e) for e in ends)
            ):
                continue
        result.append(start)
    return result


def evaluate(sla: HeartbeatSLA, facts: Facts, now: datetime) -> Evaluation:
    """Decide whether the monitor pinged when it should have and its jobs finish, as of `now`."""
    now = require_aware(now)
    tz = sla.timezone
    pings = sorted((p for p in facts.pings if p.at <= now), key=lambda p: p.at)
    successes = [p.at for p in pings if p.kind == "success"]
    last_success = successes[-1] if successes else None
    last_end = next((p for p in reversed(pings) if p.kind != "start"), None)
    breaches: list[Breach] = []
    pending: list[datetime] = []

    if last_end is not None and last_end.kind == "fail":
        breaches.append(
            Breach(
                key=f"{sla.name}:fail:{iso(last_end.at)}",
                due=last_end.at,
                reason=f"{sla.name}: the job reported failure at {local(last_end.at, tz)}",
                window_start=last_end.at,
                resource=f"cron.{sla.target}",
            )
        )
    else:
        since = last_success if last_success is not None else facts.created
        expected = expected_ping(sla, since) if since is not None else None
        if expected is not None:
            due = expected + sla.grace
            if now >= due:
                what = f"last ping {local(last_success, tz)}" if last_success else "no ping yet"
                breaches.append(
                    Breach(
                        key=f"{sla.name}:ping:{iso(expected)}",
                        due=due,
                        reason=f"{sla.name}: {what}; expected {local(expected, tz)}, "
                        f"due {local_due(due, tz, expected)} (grace {span(sla.grace)})",
                        window_start=since,
                        resource=f"cron.{sla.target}",
                    )
                )
            else:
                pending.append(due)

    runtime = sla.max_runtime or sla.grace
    for start in _open_starts(pings, now):
        due = start.at + runtime
        if now < due:
            pending.append(due)
            continue
        run = f"run {start.rid} " if start.rid else ""
        breaches.append(
            Breach(
                key=f"{sla.name}:start:{start.rid or iso(start.at)}",
                due=due,
                reason=f"{sla.name}: {run}started {local(start.at, tz)} and has not ended; "
                f"due {local_due(due, tz, start.at)} (max runtime {span(runtime)})",
                window_start=start.at,
                resource=f"cron.{sla.target}",
            )
        )

    upcoming = min(pending) if pending else None
    breaches.sort(key=lambda b: b.due)
    if breaches:
        return Evaluation(
            status="breached",
            breaches=breaches,
            next_deadline=upcoming,
            last_met=last_success,
            explanation=breaches[-1].reason
            + (f" ({len(breaches)} open)" if len(breaches) > 1 else ""),
        )
    if not pings:
        return Evaluation(
            status="unknown",
            next_deadline=upcoming,
            explanation=f"{sla.name}: no ping yet",
        )
    return Evaluation(
        status="ok",
        next_deadline=upcoming,
        last_met=last_success,
        explanation=f"{sla.name}: last ping {local(pings[-1].at, tz)}",
    )
