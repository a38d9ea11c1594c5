"""Error budgets: compliance against an SLA's objective, the budget left and its burn rates.

Pure, like the rules: it reads the times the SLA's incidents were open (from the store) and
`now`. Over the objective's period P (30 days unless set) with objective O:
- compliance: the share of [max(now - P, created), now) with no incident open (overlapping
  incidents count once);
- budget: (1 - O) x P of breached time is allowed; spent: the breached time in the last P;
  left: budget - spent (negative once overspent);
- burn rate over a recent span W: the breached share of W divided by (1 - O), so 1 spends the
  budget exactly over the period and 14.4 spends 2% of a 30-day budget in one hour (the
  fast-burn threshold of Google's SRE workbook, "Alerting on SLOs"). Spans reach no further
  back than the SLA's creation;
- the `budget` alert (Google's SRE workbook, "Alerting on SLOs", multiwindow multi-burn-rate):
  it fires while the burn rate over 1 hour and over the last 5 minutes both exceed 14.4
  (2% of a 30-day budget in an hour), or over 6 hours and 30 minutes both exceed 6 (5% in
  six hours). The long span makes it significant, the short one lets it resolve within
  minutes once the burning stops. It is an incident of its own (key `<sla>:budget`) that
  compliance and the budget do not count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_PERIOD = timedelta(days=30)
BUDGET_SUFFIX = ":budget"  # the budget alert's incident key is the SLA's name and this
BURN_SPANS = (timedelta(hours=1), timedelta(hours=6))  # the burn rates shown

OpenSpan = tuple[datetime, datetime | None]  # an incident's opened and resolved (None: open)


@dataclass(frozen=True, slots=True)
class ErrorBudget:
    """An SLA's standing against its objective at one instant (seconds, shares 0..1)."""

    objective: float  # percent, e.g. 99.5
    period: timedelta
    compliance: float | None  # None before any time has passed
    budget_s: float
    spent_s: float
    left_s: float
    burn_rates: dict[timedelta, float | None]


def breached_seconds(spans: Sequence[OpenSpan], start: datetime, end: datetime) -> float:
    """Seconds of [start, end) during which at least one of the incidents was open."""
    clipped = sorted((max(o, start), min(r or end, end)) for o, r in spans)
    total, cursor = 0.0, start
    for opened, resolved in clipped:
        opened = max(opened, cursor)
        if resolved > opened:
            total += (resolved - opened).total_seconds()
            cursor = resolved
    return total


def error_budget(
    objective: float,
    period: timedelta | None,
    spans: Sequence[OpenSpan],
    created: datetime,
    now: datetime,
) -> ErrorBudget:
    """The error budget of an SLA with `objective` over `period` whose incidents were open
    during `spans`, as of `now`."""
    period = period or DEFAULT_PERIOD
    allowed = 1 - objective / 100
    start = max(now - period, created)
    measured = (now - start).total_seconds()
    spent = breached_seconds(spans, start, now) if measured > 0 else 0.0
    budget = allowed * period.total_seconds()
    rates = {span: burn_rate(objective, spans, created, now, span) for span in BURN_SPANS}
    return ErrorBudget(
        objective=objective,
        period=period,
        compliance=None if measured <= 0 else 1 - spent / measured,
        budget_s=budget,
        spent_s=spent,
        left_s=budget - spent,
        burn_rates=rates,
    )


@dataclass(frozen=True, slots=True)
class BurnAlert:
    """One multiwindow condition: both spans burning faster than `threshold`."""

    long: timedelta
    short: timedelta
    threshold: float


BURN_ALERTS = (
    BurnAlert(timedelta(hours=1), timedelta(minutes=5), 14.4),
    BurnAlert(timedelta(hours=6), timedelta(minutes=30), 6.0),
)
ALERT_LOOKBACK = max(a.long for a in BURN_ALERTS)  # the incident history an alert reads


def burn_rate(
    objective: float, spans: Sequence[OpenSpan], created: datetime, now: datetime, span: timedelta
) -> float | None:
    """The burn rate over the last `span` (no further back than `created`)."""
    since = max(now - span, created)
    seconds = (now - since).total_seconds()
    if seconds <= 0:
        return None
    return breached_seconds(spans, since, now) / seconds / (1 - objective / 100)


def burning(
    objective: float, spans: Sequence[OpenSpan], created: datetime, now: datetime
) -> tuple[BurnAlert, float] | None:
    """The first condition of BURN_ALERTS that holds, with its long span's burn rate."""
    for alert in BURN_ALERTS:
        long = burn_rate(objective, spans, created, now, alert.long)
        short = burn_rate(objective, spans, created, now, alert.short)
        if long is not None and short is not None and min(long, short) > alert.threshold:
            return alert, long
    return None
