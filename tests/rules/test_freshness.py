"""Freshness rules: deadlines met, missed, resolved late, max_age, globs, DST and midnight."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from coplane.rules import evaluate, schedule
from coplane.rules.facts import EventFact, Facts, RunFact
from coplane.rules.model import FreshnessSLA

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def daily(**extra: Any) -> FreshnessSLA:
    fields: dict[str, Any] = {
        "name": "sales_daily",
        "kind": "freshness",
        "target": "warehouse.sales",
        "deadline": "0 9 * * *",
        "timezone": "Europe/Berlin",
    }
    fields.update(extra)
    return FreshnessSLA(**fields)


CREATED = berlin(2026, 11, 20, 12)


def test_update_before_the_deadline_meets_it() -> None:
    facts = Facts(updates=[berlin(2026, 11, 22, 8, 57)], created=CREATED)
    result = evaluate(daily(), facts, berlin(2026, 11, 22, 9, 30))
    assert result.status == "ok" and result.breaches == []
    assert result.last_met == berlin(2026, 11, 22, 8, 57)
    assert result.next_deadline == berlin(2026, 11, 23, 9)


def test_missed_deadline_breaches_with_local_times_in_words() -> None:
    facts = Facts(updates=[berlin(2026, 11, 21, 8, 57)], created=CREATED)
    result = evaluate(daily(), facts, berlin(2026, 11, 22, 9, 5))
    assert result.status == "breached"
    [breach] = result.breaches
    assert breach.key == "sales_daily:2026-11-22T08:00:00Z"
    # The window opened halfway since the previous deadline: 21:00 the evening before.
    assert breach.due == utc(2026, 11, 22, 8) and breach.window_start == utc(2026, 11, 21, 20)
    assert (
        breach.reason
        == "sales_daily: no update since 2026-11-21 08:57 CET; due 2026-11-22 09:00 CET"
    )
    assert result.next_deadline == berlin(2026, 11, 23, 9)


def test_due_on_the_same_day_as_the_last_update_reads_as_a_time() -> None:
    sla = daily(deadline="0 9,12 * * *")
    facts = Facts(updates=[berlin(2026, 11, 22, 8, 57)], created=CREATED)
    [breach] = evaluate(sla, facts, berlin(2026, 11, 22, 12, 1)).breaches
    assert breach.reason == "sales_daily: no update since 2026-11-22 08:57 CET; due 12:00"


def test_update_after_the_due_time_resolves_the_breach() -> None:
    facts = Facts(
        updates=[berlin(2026, 11, 21, 8, 0), berlin(2026, 11, 22, 9, 20)], created=CREATED
    )
    before = evaluate(daily(), facts, berlin(2026, 11, 22, 9, 10))
    assert [b.key for b in before.breaches] == ["sales_daily:2026-11-22T08:00:00Z"]
    after = evaluate(daily(), facts, berlin(2026, 11, 22, 9, 30))
    assert after.status == "ok" and after.breaches == []
    assert after.last_met == berlin(2026, 11, 22, 9, 20)


def test_late_then_early_update() -> None:
    facts = Facts(
        updates=[
            berlin(2026, 11, 21, 8, 0),
            berlin(2026, 11, 22, 9, 20),
            berlin(2026, 11, 23, 8, 30),
        ],
        created=CREATED,
    )
    assert evaluate(daily(), facts, berlin(2026, 11, 22, 9, 10)).status == "breached"
    assert evaluate(daily(), facts, berlin(2026, 11, 22, 10)).status == "ok"
    next_day = evaluate(daily(), facts, berlin(2026, 11, 23, 9, 5))
    assert next_day.status == "ok" and next_day.breaches == []
    assert next_day.last_met == berlin(2026, 11, 23, 8, 30)


def test_a_late_update_is_that_days_and_not_the_next() -> None:
    # 09:20 on the 22nd resolves the 22nd's breach; the 23rd's window opens at 21:00 on the
    # 22nd, halfway between the deadlines, so the 23rd needs its own update.
    facts = Facts(
        updates=[berlin(2026, 11, 21, 8, 0), berlin(2026, 11, 22, 9, 20)], created=CREATED
    )
    assert evaluate(daily(), facts, berlin(2026, 11, 22, 9, 30)).status == "ok"
    result = evaluate(daily(), facts, berlin(2026, 11, 23, 9, 5))
    assert [b.key for b in result.breaches] == ["sales_daily:2026-11-23T08:00:00Z"]
    assert result.breaches[0].reason == (
        "sales_daily: no update since 2026-11-22 09:20 CET; due 2026-11-23 09:00 CET"
    )


def test_deadlines_missed_while_down_each_breach() -> None:
    facts = Facts(updates=[berlin(2026, 11, 19, 8)], created=berlin(2026, 11, 19, 7))
    result = evaluate(daily(), facts, berlin(2026, 11, 22, 12))
    assert [b.key for b in result.breaches] == [
        "sales_daily:2026-11-20T08:00:00Z",
        "sales_daily:2026-11-21T08:00:00Z",
        "sales_daily:2026-11-22T08:00:00Z",
    ]
    assert "3 open" in result.explanation


def test_missed_windows_are_bounded_without_a_creation_time() -> None:
    sla = daily(deadline="0 * * * *")
    result = evaluate(sla, Facts(), berlin(2026, 11, 22, 12))
    assert len(result.breaches) == schedule.MAX_WINDOWS
    assert result.breaches[-1].reason == "sales_daily: no update yet; due 2026-11-22 12:00 CET"


def test_before_any_deadline_and_update_the_status_is_unknown() -> None:
    facts = Facts(created=berlin(2026, 11, 22, 9, 30))
    result = evaluate(daily(), facts, berlin(2026, 11, 22, 10))
    assert result.status == "unknown" and result.breaches == []
    assert result.next_deadline == berlin(2026, 11, 23, 9)


def test_spring_forward_deadline_fires_once_at_three() -> None:
    sla = daily(deadline="30 2 * * *")
    facts = Facts(updates=[berlin(2026, 3, 28, 2)], created=berlin(2026, 3, 28, 12))
    assert evaluate(sla, facts, berlin(2026, 3, 29, 1, 30)).next_deadline == berlin(2026, 3, 29, 3)
    result = evaluate(sla, facts, berlin(2026, 3, 29, 3, 5))
    [breach] = result.breaches
    assert breach.due == utc(2026, 3, 29, 1)
    assert (
        breach.reason
        == "sales_daily: no update since 2026-03-28 02:00 CET; due 2026-03-29 03:00 CEST"
    )
    assert result.next_deadline == berlin(2026, 3, 30, 2, 30)


def test_fall_back_deadline_fires_once() -> None:
    sla = daily(deadline="30 2 * * *")
    facts = Facts(updates=[berlin(2026, 10, 24, 2)], created=berlin(2026, 10, 24, 12))
    now = datetime(2026, 10, 25, 2, 45, fold=1, tzinfo=BERLIN)  # the second 02:45, in CET
    result = evaluate(sla, facts, now)
    assert [b.due for b in result.breaches] == [utc(2026, 10, 25, 0, 30)]
    assert result.next_deadline == utc(2026, 10, 26, 1, 30)


def test_midnight_deadline_late_then_resolved() -> None:
    sla = daily(deadline="0 0 * * *")
    facts = Facts(
        updates=[berlin(2026, 11, 21, 23, 50), berlin(2026, 11, 23, 0, 5)], created=CREATED
    )
    assert evaluate(sla, facts, berlin(2026, 11, 22, 0, 1)).status == "ok"
    missed = evaluate(sla, facts, berlin(2026, 11, 23, 0, 2))
    [breach] = missed.breaches
    assert breach.due == utc(2026, 11, 22, 23)
    assert (
        breach.reason
        == "sales_daily: no update since 2026-11-21 23:50 CET; due 2026-11-23 00:00 CET"
    )
    assert evaluate(sla, facts, berlin(2026, 11, 23, 0, 6)).breaches == []


def test_max_age_fresh_then_stale_then_fresh_again() -> None:
    sla = FreshnessSLA(name="orders", kind="freshness", target="warehouse.orders", max_age="1h")
    facts = Facts(updates=[utc(2026, 11, 22, 10), utc(2026, 11, 22, 11, 10)], created=CREATED)
    fresh = evaluate(sla, facts, utc(2026, 11, 22, 10, 30))
    assert fresh.status == "ok" and fresh.next_deadline == utc(2026, 11, 22, 11)
    stale = evaluate(sla, facts, utc(2026, 11, 22, 11))
    [breach] = stale.breaches
    assert breach.key == "orders:stale:2026-11-22T10:00:00Z"
    assert breach.reason == "orders: no update since 2026-11-22 10:00 UTC; due 11:00 (max age 1h)"
    again = evaluate(sla, facts, utc(2026, 11, 22, 11, 20))
    assert again.status == "ok" and again.next_deadline == utc(2026, 11, 22, 12, 10)


def test_max_age_never_updated() -> None:
    sla = FreshnessSLA(name="orders", kind="freshness", target="warehouse.orders", max_age="2h")
    facts = Facts(created=utc(2026, 11, 22, 8))
    waiting = evaluate(sla, facts, utc(2026, 11, 22, 9))
    assert waiting.status == "unknown" and waiting.next_deadline == utc(2026, 11, 22, 10)
    [breach] = evaluate(sla, facts, utc(2026, 11, 22, 10, 1)).breaches
    assert breach.key == "orders:stale:never"


def test_glob_target_counts_updates_of_matching_assets_only() -> None:
    sla = daily(target="warehouse.sales_*")
    other = EventFact("asset.updated", "warehouse.orders", berlin(2026, 11, 22, 8))
    match = EventFact("asset.updated", "warehouse.sales_eu", berlin(2026, 11, 22, 8))
    now = berlin(2026, 11, 22, 9, 30)
    assert evaluate(sla, Facts(events=[other], created=CREATED), now).status == "breached"
    assert evaluate(sla, Facts(events=[other, match], created=CREATED), now).status == "ok"
    exact = daily(target="warehouse.sales")
    assert evaluate(exact, Facts(events=[match], created=CREATED), now).status == "breached"


def test_pipeline_run_running_past_the_deadline_is_at_risk() -> None:
    sla = daily(target="airflow.dag.sales_daily")
    history = [
        RunFact(
            f"r{d}",
            "airflow.dag.sales_daily",
            "completed",
            berlin(2026, 11, d, 7),
            berlin(2026, 11, d, 8),
        )
        for d in (19, 20, 21)
    ]
    running = RunFact(
        "r22", "airflow.dag.sales_daily", "running", berlin(2026, 11, 22, 8, 30), None
    )
    facts = Facts(runs=[running, *reversed(history)], created=CREATED)
    result = evaluate(sla, facts, berlin(2026, 11, 22, 8, 40))
    assert result.status == "at_risk" and result.breaches == []
    assert "09:30" in result.explanation
    early = RunFact("r22", "airflow.dag.sales_daily", "running", berlin(2026, 11, 22, 7, 30), None)
    facts = Facts(runs=[early, *reversed(history)], created=CREATED)
    assert evaluate(sla, facts, berlin(2026, 11, 22, 8, 40)).status == "ok"
