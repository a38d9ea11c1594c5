"""Which runs an SLA's target names, and what their history says: states, durations, percentiles."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

from coplane.events.names import RUN_COMPLETED
from coplane.rules.facts import Facts, RunFact

_GLOB_CHARS = frozenset("*?[")


def matches_target(pattern: str, resource: str) -> bool:
    """True when `resource` is `pattern`, or matches it as an fnmatch glob (`*`, `?`)."""
    if _GLOB_CHARS.isdisjoint(pattern):
        return pattern == resource
    return fnmatchcase(resource, pattern)


def matches_resource(pattern: str | None, resource: str) -> bool:
    """Like `matches_target`, where no pattern matches every resource."""
    return pattern is None or matches_target(pattern, resource)


def require_aware(now: datetime) -> datetime:
    """`now` in UTC; a naive datetime is a programming error, not an SLA outcome."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("SLA rules need a timezone-aware `now`")
    return now.astimezone(UTC)


def target_runs(target: str, facts: Facts, now: datetime) -> list[RunFact]:
    """The target's runs that had started by `now` (or are only scheduled), newest first."""
    runs = [
        r
        for r in facts.runs
        if matches_target(target, r.pipeline) and (r.started is None or r.started <= now)
    ]
    return sorted(runs, key=lambda r: r.started or datetime.min.replace(tzinfo=UTC), reverse=True)


def is_running(run: RunFact, now: datetime) -> bool:
    """True when the run has started and not ended at `now`."""
    if run.started is None or run.started > now:
        return False
    if run.ended is not None and run.ended <= now:
        return False
    return run.state in (None, "running")


def completed_at(run: RunFact, now: datetime) -> datetime | None:
    """When the run completed successfully, if it had by `now`."""
    if run.state == "completed" and run.ended is not None and run.ended <= now:
        return run.ended
    return None


def completions(target: str, facts: Facts, now: datetime) -> list[datetime]:
    """Times the target pipeline completed a run by `now` (runs and run.completed events)."""
    times = [t for r in target_runs(target, facts, now) if (t := completed_at(r, now))]
    times += [
        e.occurred
        for e in facts.events
        if e.event == RUN_COMPLETED and e.occurred <= now and matches_target(target, e.resource)
    ]
    return sorted(times)


def percentile(values: Iterable[timedelta], q: float = 0.95) -> timedelta | None:
    """The nearest-rank q-quantile of `values` (None when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def durations(runs: Iterable[RunFact], now: datetime) -> list[timedelta]:
    """How long each successfully completed run took."""
    result: list[timedelta] = []
    for r in runs:
        end = completed_at(r, now)
        if end is not None and r.started is not None and end >= r.started:
            result.append(end - r.started)
    return result


RECENT_RUNS = 20  # how many completed runs a forecast looks at
