"""Breach forecasts: when a target's producing pipeline should finish, and which upstream to blame.

Pure, like the rules: runs and lineage come from `Facts`, `now` is passed in.

ETA model:
- the producer is the target itself when it is a pipeline with runs, else the pipelines that
  feed it in `facts.lineage` (an asset's producers) with runs in `facts.history`;
- running run: ETA = started + the median (p50) duration of the RECENT_RUNS newest completed
  runs that lasted longer than it has so far (all of them while it is younger than the
  fastest), so an overrunning run's ETA moves out instead of into the past; one that ran
  longer than all of them has no ETA (an upstream in that state counts as finishing now);
- not started in the current window: the usual start is `due` + the p50 of past start offsets
  (each past window's first start, relative to that window's due), the spread the p95 minus
  the p50 of those offsets. Until `usual start + spread` nothing is forecast: a run that is
  not late yet is no risk. After it, ETA = now + p50 duration; each upstream pipeline (the
  producers of the producer's inputs, through `facts.lineage`, two hops at most) that has not
  completed in the window and is past its usual finish (`due` + p50 of its completion
  offsets) is late: ETA = its own ETA + the producer's p50 duration, and the latest such
  upstream is blamed with how late it is (now - its usual finish);
- at risk when the ETA is after the deadline by more than MARGIN.

Why the p50 and not the p95: the p50 is the likely finish, the ETA a user can act on; flagging
whenever the p95 crosses the deadline would flag a high-variance pipeline on most runs, long
before it is actually late. The variance is honoured where it matters instead: a run that has
not started is only suspect once past its usual start by more than its usual spread.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from coplane.rules import schedule
from coplane.rules.facts import Facts, RunFact
from coplane.rules.history import (
    RECENT_RUNS,
    completed_at,
    durations,
    is_running,
    percentile,
    target_runs,
)

if TYPE_CHECKING:
    from coplane.rules.model import Calendar

MARGIN = timedelta(minutes=5)  # an ETA this close to the deadline is noise, not a risk
HOPS = 2  # upstream pipelines walked from the producer
_MIN = datetime.min.replace(tzinfo=UTC)
_TICK = timedelta(seconds=1)  # a wake-up just after a boundary sees it passed


@dataclass(frozen=True, slots=True)
class Forecast:
    """When the producing pipeline should finish, and why."""

    pipeline: str
    eta: datetime
    run: RunFact | None = None  # its running run
    usual_start: datetime | None = None  # not started: when it usually starts
    blame: str | None = None  # the upstream pipeline it waits on
    late: timedelta | None = None  # how late that upstream is (now - its usual finish)


@dataclass(frozen=True, slots=True)
class Window:
    """The SLA's current deadline window and how to find the due of any past instant."""

    start: datetime | None
    due: datetime
    cron: str | None = None  # None (max_age): only running runs are forecast
    tz: str = "UTC"
    calendar: Calendar | None = None  # the SLA's business days: past windows skip the rest


def watched(target: str, facts: Facts) -> tuple[str, ...]:
    """The pipelines (other than the target) whose runs a forecast of `target` reads."""
    return tuple(sorted(p for p in facts.history if p != target))


def runs_of(pipeline: str, target: str, facts: Facts, now: datetime) -> list[RunFact]:
    """The pipeline's runs started by `now`, newest first (the target's own, or history)."""
    if pipeline == target:
        return target_runs(target, facts, now)
    runs = [r for r in facts.history.get(pipeline, []) if r.started is None or r.started <= now]
    return sorted(runs, key=lambda r: r.started or _MIN, reverse=True)


def producers(target: str, facts: Facts, now: datetime) -> list[str]:
    """The pipelines whose runs produce `target`: itself when it has runs, else its feeders."""
    if target_runs(target, facts, now):
        return [target]
    return [p for p in facts.lineage.get(target, ()) if facts.history.get(p)]


def upstream(pipeline: str, facts: Facts) -> list[str]:
    """The pipelines producing `pipeline`'s inputs (lineage: input asset <- producer)."""
    found = {
        u
        for asset in facts.lineage.get(pipeline, ())
        for u in facts.lineage.get(asset, ())
        if u != pipeline and facts.history.get(u)
    }
    return sorted(found)


def running_eta(run: RunFact, runs: list[RunFact], now: datetime) -> datetime | None:
    """When a running run should end: started + p50 of the recent durations longer than its
    elapsed time (None without history, or when it already ran longer than any of them)."""
    if run.started is None:
        return None
    past = durations((r for r in runs if r.id != run.id), now)[:RECENT_RUNS]
    if not past:
        return None
    elapsed = now - run.started
    longer = [d for d in past if d > elapsed] if elapsed > min(past) else past
    p50 = percentile(longer, 0.5)
    return None if p50 is None else run.started + p50


def forecast(target: str, facts: Facts, now: datetime, window: Window) -> Forecast | None:
    """The latest-finishing producer of `target` that is at risk of missing `window.due`."""
    worst: Forecast | None = None
    for pipeline in producers(target, facts, now):
        found = _pipeline(pipeline, target, facts, now, window, HOPS)
        late = found is not None and found.eta > window.due + MARGIN
        if late and (worst is None or (found is not None and found.eta > worst.eta)):
            worst = found
    return worst


def wake_at(target: str, facts: Facts, now: datetime, window: Window) -> datetime | None:
    """When the forecast of a not-started producer can change by the clock alone: just after
    its usual start + spread, and just after the last start that still meets the deadline."""
    if window.cron is None:
        return None
    times: list[datetime] = []
    for pipeline in producers(target, facts, now):
        runs = runs_of(pipeline, target, facts, now)
        if _started_in(runs, window, now):
            continue
        usual = _usual(runs, window, now, completion=False)
        p50 = percentile(durations(runs, now)[:RECENT_RUNS], 0.5)
        if usual is None or p50 is None:
            continue
        for at in (usual[0] + usual[1], window.due + MARGIN - p50):
            if now <= at < window.due:
                times.append(at + _TICK)
    return min(times, default=None)


def _started_in(runs: list[RunFact], window: Window, now: datetime) -> bool:
    return any(
        is_running(r, now)
        or (r.started is not None and window.start is not None and r.started >= window.start)
        for r in runs
    )


def _pipeline(
    pipeline: str, target: str, facts: Facts, now: datetime, window: Window, hops: int
) -> Forecast | None:
    """The forecast for one pipeline that has not completed in the window (None: no basis)."""
    runs = runs_of(pipeline, target, facts, now)
    for run in runs:
        if is_running(run, now):
            eta = running_eta(run, runs, now)
            return None if eta is None else Forecast(pipeline, eta, run=run)
    if window.cron is None or _started_in(runs, window, now):
        return None
    usual = _usual(runs, window, now, completion=False)
    p50 = percentile(durations(runs, now)[:RECENT_RUNS], 0.5)
    if usual is None or p50 is None:
        return None
    start, spread = usual
    if now <= start + spread:
        return None  # not late to start yet, whatever its history says
    best = Forecast(pipeline, now + p50, usual_start=start)
    if hops <= 0:
        return best
    for up in upstream(pipeline, facts):
        up_runs = runs_of(up, target, facts, now)
        if any((t := completed_at(r, now)) is not None and window.start is not None
               and t >= window.start for r in up_runs):  # fmt: skip
            continue
        finish = _usual(up_runs, window, now, completion=True)
        if finish is None or now <= finish[0]:
            continue
        ahead = _pipeline(up, target, facts, now, window, hops - 1)
        up_eta = ahead.eta if ahead is not None else now
        eta = up_eta + p50
        if eta >= best.eta:
            best = Forecast(pipeline, eta, usual_start=start, blame=up, late=now - finish[0])
    return best


def _usual(
    runs: list[RunFact], window: Window, now: datetime, *, completion: bool
) -> tuple[datetime, timedelta] | None:
    """The usual start (or completion) in the current window and its spread (p95 - p50), from
    the past windows' first start (or first completion), relative to each window's due."""
    assert window.cron is not None
    past = [r for r in runs if r.started is not None and
            (window.start is None or r.started < window.start)][: 2 * RECENT_RUNS]  # fmt: skip
    if not past:
        return None
    oldest = min(r.started for r in past if r.started is not None)
    dues = schedule.deadlines_between(
        window.cron, window.tz, oldest - timedelta(days=1), window.due, limit=10 * RECENT_RUNS,
        calendar=window.calendar,
    )  # fmt: skip
    firsts: dict[datetime, timedelta] = {}
    for r in past:
        assert r.started is not None
        i = bisect_right(dues, r.started)
        if i >= len(dues):
            continue
        due = dues[i]
        at = completed_at(r, now) if completion else r.started
        if at is None:
            continue
        offset = at - due
        if due not in firsts or offset < firsts[due]:
            firsts[due] = offset
    offsets = list(firsts.values())
    p50, p95 = percentile(offsets, 0.5), percentile(offsets, 0.95)
    if p50 is None or p95 is None:
        return None
    return window.due + p50, p95 - p50
