"""Completion rules: by a deadline (met, missed, at risk) and within a duration of a start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from coplane.rules import evaluate
from coplane.rules.facts import Facts, RunFact
from coplane.rules.model import CompletionSLA

BERLIN = ZoneInfo("Europe/Berlin")
DAG = "airflow.dag.sales_daily"


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def run(rid: str, state: str, started: datetime, ended: datetime | None = None) -> RunFact:
    return RunFact(rid, DAG, state, started, ended)


BY_NINE = CompletionSLA(
    name="sales_done", kind="completion", target=DAG, deadline="0 9 * * *", timezone="Europe/Berlin"
)
WITHIN = CompletionSLA(name="sales_done", kind="completion", target=DAG, within="1h")
CREATED = berlin(2026, 11, 18)
# Three earlier days with one-hour runs: p95 of the durations is one hour.
HISTORY = [
    run(f"r{d}", "completed", berlin(2026, 11, d, 7), berlin(2026, 11, d, 8)) for d in (21, 20, 19)
]


def test_completed_before_the_deadline_is_ok() -> None:
    facts = Facts(
        runs=[run("r22", "completed", berlin(2026, 11, 22, 7), berlin(2026, 11, 22, 8)), *HISTORY],
        created=CREATED,
    )
    result = evaluate(BY_NINE, facts, berlin(2026, 11, 22, 9, 5))
    assert result.status == "ok" and result.last_met == berlin(2026, 11, 22, 8)
    # It looks again just after the run's usual start (07:00), when a no-show becomes a risk.
    assert result.next_deadline == berlin(2026, 11, 23, 7) + timedelta(seconds=1)


def test_failed_run_misses_the_deadline() -> None:
    facts = Facts(
        runs=[run("r22", "failed", berlin(2026, 11, 22, 7), berlin(2026, 11, 22, 7, 30)), *HISTORY],
        created=CREATED,
    )
    result = evaluate(BY_NINE, facts, berlin(2026, 11, 22, 9, 5))
    [breach] = result.breaches
    assert breach.key == "sales_done:2026-11-22T08:00:00Z"
    assert (
        breach.reason
        == "sales_done: no completed run since 2026-11-21 08:00 CET; due 2026-11-22 09:00 CET"
    )


def test_running_with_an_expected_finish_after_the_deadline_is_at_risk() -> None:
    facts = Facts(
        runs=[run("r22", "running", berlin(2026, 11, 22, 8, 30)), *HISTORY], created=CREATED
    )
    result = evaluate(BY_NINE, facts, berlin(2026, 11, 22, 8, 40))
    assert result.status == "at_risk" and result.breaches == []
    assert result.explanation == (
        "sales_done: run r22 is expected to finish 2026-11-22 09:30 CET, after the deadline 09:00"
    )
    # Once the deadline passes without completion, at risk becomes a breach.
    assert evaluate(BY_NINE, facts, berlin(2026, 11, 22, 9)).status == "breached"


def test_running_with_an_expected_finish_before_the_deadline_is_ok() -> None:
    facts = Facts(
        runs=[run("r22", "running", berlin(2026, 11, 22, 7, 50)), *HISTORY], created=CREATED
    )
    assert evaluate(BY_NINE, facts, berlin(2026, 11, 22, 8)).status == "ok"


def test_within_a_start_met() -> None:
    facts = Facts(runs=[run("r1", "completed", utc(2026, 11, 22, 10), utc(2026, 11, 22, 10, 40))])
    result = evaluate(WITHIN, facts, utc(2026, 11, 22, 12))
    assert result.status == "ok" and result.breaches == []


def test_within_a_start_breaches_while_still_running_then_resolves() -> None:
    still = Facts(runs=[run("r1", "running", utc(2026, 11, 22, 10))])
    waiting = evaluate(WITHIN, still, utc(2026, 11, 22, 10, 30))
    assert waiting.status == "ok" and waiting.next_deadline == utc(2026, 11, 22, 11)
    late = evaluate(WITHIN, still, utc(2026, 11, 22, 11))
    [breach] = late.breaches
    assert breach.key == "sales_done:run:r1" and breach.due == utc(2026, 11, 22, 11)
    assert breach.reason == (
        "sales_done: run r1 started 2026-11-22 10:00 UTC is still running; due 11:00 (within 1h)"
    )
    done = Facts(runs=[run("r1", "completed", utc(2026, 11, 22, 10), utc(2026, 11, 22, 11, 20))])
    assert evaluate(WITHIN, done, utc(2026, 11, 22, 11, 30)).breaches == []


def test_within_a_failed_run_stays_breached_until_a_rerun_completes() -> None:
    failed = run("r1", "failed", utc(2026, 11, 22, 10), utc(2026, 11, 22, 10, 10))
    result = evaluate(WITHIN, Facts(runs=[failed]), utc(2026, 11, 22, 11, 5))
    assert [b.key for b in result.breaches] == ["sales_done:run:r1"]
    assert "ended failed at 2026-11-22 10:10 UTC" in result.breaches[0].reason
    rerun = run("r2", "completed", utc(2026, 11, 22, 11, 15), utc(2026, 11, 22, 11, 45))
    assert evaluate(WITHIN, Facts(runs=[rerun, failed]), utc(2026, 11, 22, 12)).status == "ok"


def test_within_a_start_at_risk_from_history() -> None:
    long_runs = [
        run(f"h{i}", "completed", utc(2026, 11, 20 - i, 10), utc(2026, 11, 20 - i, 11, 30))
        for i in range(3)
    ]
    facts = Facts(runs=[run("r1", "running", utc(2026, 11, 22, 10)), *long_runs])
    result = evaluate(WITHIN, facts, utc(2026, 11, 22, 10, 10))
    assert result.status == "at_risk" and result.next_deadline == utc(2026, 11, 22, 11)


def test_no_runs_at_all_is_unknown() -> None:
    assert evaluate(WITHIN, Facts(), utc(2026, 11, 22)).status == "unknown"
