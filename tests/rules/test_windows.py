"""Deadline windows, as a user reads "updated daily by 09:00": late every day breaches every
day, a missed day breaches once, early loads meet the next deadline, `window` and
`not_before` bound how early a load counts; across DST in Berlin and New York."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from coplane.rules import evaluate, schedule
from coplane.rules.facts import Facts, RunFact
from coplane.rules.model import SLA, CompletionSLA, FreshnessSLA

ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
STEP = timedelta(minutes=5)
# Days around a DST change in each zone (and a plain November week in Berlin).
SPANS = [
    ("Europe/Berlin", datetime(2026, 3, 26)),  # CET -> CEST on the 29th
    ("Europe/Berlin", datetime(2026, 10, 22)),  # CEST -> CET on the 25th
    ("Europe/Berlin", datetime(2026, 11, 16)),
    ("America/New_York", datetime(2026, 3, 5)),  # EST -> EDT on the 8th
    ("America/New_York", datetime(2026, 10, 29)),  # EDT -> EST on 1 November
]
DAYS = 6


def sla(kind: str = "freshness", tz: str = "Europe/Berlin", **extra: Any) -> SLA:
    target = "warehouse.sales" if kind == "freshness" else "airflow.dag.sales"
    fields = {"name": "sales", "kind": kind, "target": target, "deadline": "0 9 * * *",
              "timezone": tz, **extra}  # fmt: skip
    return ADAPTER.validate_python(fields)


def loads(
    tz: str, first: datetime, hour: int, minute: int, skip: tuple[int, ...] = ()
) -> list[datetime]:
    """A load at hour:minute local on each of DAYS + 1 days from `first`, except `skip`."""
    zone = ZoneInfo(tz)
    return [
        (first + timedelta(days=d)).replace(hour=hour, minute=minute, tzinfo=zone)
        for d in range(DAYS + 1)
        if d not in skip
    ]


def facts_for(kind: str, times: list[datetime], created: datetime) -> Facts:
    if kind == "freshness":
        return Facts(updates=times, created=created)
    runs = [
        RunFact(f"r{i}", "airflow.dag.sales", "completed", t - timedelta(minutes=40), t)
        for i, t in enumerate(times)
    ]
    return Facts(runs=runs, created=created)


def sweep(
    rule: SLA, facts: Facts, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, datetime | None]]:
    """Each breach as (due, first seen, first gone) evaluating every STEP from start to end:
    what the engine, which wakes at deadlines and on ingest, would open and resolve."""
    opened: dict[str, tuple[datetime, datetime]] = {}
    done: list[tuple[datetime, datetime, datetime | None]] = []
    now = start
    while now <= end:
        keys = {b.key: b.due for b in evaluate(rule, facts, now).breaches}
        for key, due in keys.items():
            opened.setdefault(key, (due, now))
        for key in [k for k in opened if k not in keys]:
            due, at = opened.pop(key)
            done.append((due, at, now))
        now += STEP
    done += [(due, at, None) for due, at in opened.values()]
    return sorted(done)


def local(tz: str, first: datetime, day: int, hour: int, minute: int = 0) -> datetime:
    return (first + timedelta(days=day)).replace(hour=hour, minute=minute, tzinfo=ZoneInfo(tz))


def run(
    kind: str, tz: str, first: datetime, times: list[datetime], **extra: Any
) -> list[tuple[datetime, datetime, datetime | None]]:
    """Sweep from 10:00 on the first day (the SLA created then) to 12:00 on the last."""
    start = local(tz, first, 0, 10)
    return sweep(sla(kind, tz, **extra), facts_for(kind, times, start), start,
                 local(tz, first, DAYS, 12))  # fmt: skip


@pytest.mark.parametrize("kind", ["freshness", "completion"])
@pytest.mark.parametrize(("tz", "first"), SPANS)
def test_late_every_day_breaches_every_day(kind: str, tz: str, first: datetime) -> None:
    result = run(kind, tz, first, loads(tz, first, 9, 10))
    expected = [
        (local(tz, first, d, 9), local(tz, first, d, 9), local(tz, first, d, 9, 10))
        for d in range(1, DAYS + 1)
    ]
    assert [(due.astimezone(UTC), at, gone) for due, at, gone in result] == expected


@pytest.mark.parametrize("kind", ["freshness", "completion"])
@pytest.mark.parametrize(("tz", "first"), SPANS)
def test_one_missed_morning_breaches_once_and_the_next_morning_is_met(
    kind: str, tz: str, first: datetime
) -> None:
    result = run(kind, tz, first, loads(tz, first, 8, 0, skip=(3,)))
    # Breached at 09:00 on day 3, resolved by day 4's 08:00 load, which also meets day 4.
    assert result == [(local(tz, first, 3, 9), local(tz, first, 3, 9), local(tz, first, 4, 8))]


@pytest.mark.parametrize("kind", ["freshness", "completion"])
@pytest.mark.parametrize(("tz", "first"), SPANS)
def test_loads_the_evening_before_meet_every_day(kind: str, tz: str, first: datetime) -> None:
    assert run(kind, tz, first, loads(tz, first, 22, 0)) == []


@pytest.mark.parametrize(("tz", "first"), SPANS)
def test_late_then_on_time(tz: str, first: datetime) -> None:
    # Late on days 1 and 2 (09:40), on time from day 3 on (08:30).
    times = [local(tz, first, d, 9, 40) for d in (0, 1, 2)]
    times += [local(tz, first, d, 8, 30) for d in range(3, DAYS + 1)]
    result = run("freshness", tz, first, times)
    assert [(due, gone) for due, _, gone in result] == [
        (local(tz, first, 1, 9), local(tz, first, 1, 9, 40)),
        (local(tz, first, 2, 9), local(tz, first, 2, 9, 40)),
    ]


@pytest.mark.parametrize(("tz", "first"), SPANS)
def test_window_refuses_yesterdays_late_evening_load(tz: str, first: datetime) -> None:
    evening = loads(tz, first, 23, 0)
    assert run("freshness", tz, first, evening) == []  # nearer today's 09:00: it counts
    bounded = run("freshness", tz, first, evening, window="6h")
    # Each day breaches at 09:00; that evening's load, late for it, resolves it.
    assert [(due, gone) for due, _, gone in bounded] == [
        (local(tz, first, d, 9), local(tz, first, d, 23)) for d in range(1, DAYS)
    ] + [(local(tz, first, DAYS, 9), None)]  # the sweep ends before that evening
    assert run("freshness", tz, first, loads(tz, first, 4, 0), window="6h") == []


@pytest.mark.parametrize(("tz", "first"), SPANS)
def test_not_before_bounds_the_window_at_a_cron_tick(tz: str, first: datetime) -> None:
    early = run("completion", tz, first, loads(tz, first, 1, 30), not_before="0 3 * * *")
    assert [(due, gone) for due, _, gone in early] == [
        (local(tz, first, d, 9), local(tz, first, d + 1, 1, 30)) for d in range(1, DAYS)
    ] + [(local(tz, first, DAYS, 9), None)]
    assert run("completion", tz, first, loads(tz, first, 3, 30), not_before="0 3 * * *") == []


@pytest.mark.parametrize(("tz", "first"), SPANS)
def test_early_and_late_loads_on_one_day(tz: str, first: datetime) -> None:
    # On time at 08:00 every day, and a second, late load at 09:30 on day 2 changes nothing:
    # the next day still needs its own load.
    times = sorted([*loads(tz, first, 8, 0), local(tz, first, 2, 9, 30)])
    assert run("freshness", tz, first, times) == []
    missing_next = [t for t in times if t.date() != local(tz, first, 3, 8).date()]
    assert [due for due, _, _ in run("freshness", tz, first, missing_next)] == [
        local(tz, first, 3, 9)
    ]


def test_the_window_opens_halfway_between_deadlines() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    due = datetime(2026, 11, 23, 9, tzinfo=berlin)
    assert schedule.opens(due - timedelta(days=1), due) == datetime(2026, 11, 22, 21, tzinfo=berlin)
    # Spring forward: 23 hours between the deadlines, so it opens at 20:30 the evening before.
    spring = datetime(2026, 3, 29, 9, tzinfo=berlin)
    start = datetime(2026, 3, 28, 9, tzinfo=berlin)
    assert schedule.opens(start, spring) == datetime(2026, 3, 28, 20, 30, tzinfo=berlin)
    assert schedule.opens(start, spring, lead=timedelta(hours=6)) == spring - timedelta(hours=6)
    tick = schedule.opens(start, spring, not_before="0 3 * * *", timezone="Europe/Berlin")
    assert tick == datetime(2026, 3, 29, 3, tzinfo=berlin)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"window": "6h", "not_before": "0 3 * * *"}, "give window or not_before, not both"),
        ({"window": "soon"}, "is not a duration"),
        ({"not_before": "at three"}, "is not a cron expression"),
        ({"window": "8d"}, "window is at most 7d"),
    ],
)
def test_bad_window_settings_are_refused(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        sla(**extra)


@pytest.mark.parametrize("model", [FreshnessSLA, CompletionSLA])
def test_a_window_needs_a_deadline(model: type[FreshnessSLA] | type[CompletionSLA]) -> None:
    rule = {"max_age": "1d"} if model is FreshnessSLA else {"within": "1h"}
    kind = "freshness" if model is FreshnessSLA else "completion"
    with pytest.raises(ValidationError, match="window needs a deadline"):
        model(name="x", kind=kind, target="t", window="6h", **rule)


def test_the_forecast_watches_the_next_window_after_a_late_load() -> None:
    # Runs start at 08:00 and finish at 09:10 every day. Yesterday's late finish does not
    # meet today's window, so this morning's run, due to finish at 09:10, is at risk.
    tz, first = "Europe/Berlin", datetime(2026, 11, 16)
    runs = [
        RunFact(f"r{d}", "airflow.dag.sales", "completed", local(tz, first, d, 8),
                local(tz, first, d, 9, 10))
        for d in range(4)
    ] + [RunFact("r4", "airflow.dag.sales", "running", local(tz, first, 4, 8), None)]  # fmt: skip
    facts = Facts(runs=runs, created=local(tz, first, 0, 10))
    result = evaluate(sla("completion", tz), facts, local(tz, first, 4, 8, 30))
    assert result.status == "at_risk"
    assert result.explanation == (
        "sales: run r4 is expected to finish 2026-11-20 09:10 CET, after the deadline 09:00"
    )
