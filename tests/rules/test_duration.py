"""Duration rules: absolute and history-relative bounds, judged while runs are still running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coplane.rules import evaluate
from coplane.rules.facts import Facts, RunFact
from coplane.rules.model import DurationSLA

DAG = "airflow.dag.warehouse_refresh"
T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


def run(rid: str, started: datetime, took: timedelta | None, state: str = "completed") -> RunFact:
    if took is None:
        return RunFact(rid, DAG, "running", started, None)
    return RunFact(rid, DAG, state, started, started + took)


def history(*minutes: int) -> list[RunFact]:
    """Completed runs on the days before T0, newest first."""
    return [
        run(f"h{i}", T0 - timedelta(days=i + 1), timedelta(minutes=m))
        for i, m in enumerate(minutes)
    ]


MAX = DurationSLA(name="refresh_time", kind="duration", target=DAG, max_duration="1h")
RELATIVE = DurationSLA(name="refresh_time", kind="duration", target=DAG, factor=2.0, history=5)


def test_running_past_max_duration_breaches_before_it_ends() -> None:
    facts = Facts(runs=[run("r1", T0, None)])
    waiting = evaluate(MAX, facts, T0 + timedelta(minutes=30))
    assert waiting.status == "ok" and waiting.next_deadline == T0 + timedelta(hours=1)
    result = evaluate(MAX, facts, T0 + timedelta(hours=1, minutes=5))
    [breach] = result.breaches
    assert breach.key == "refresh_time:run:r1" and breach.due == T0 + timedelta(hours=1)
    assert breach.reason == (
        "refresh_time: run r1 running for 1h 5m since 2026-11-22 10:00 UTC; limit 1h"
    )


def test_overlong_finished_run_breaches_until_a_later_run_keeps_within() -> None:
    slow = run("r1", T0, timedelta(minutes=90))
    result = evaluate(MAX, Facts(runs=[slow]), T0 + timedelta(hours=2))
    assert [b.key for b in result.breaches] == ["refresh_time:run:r1"]
    assert "ran 1h 30m" in result.breaches[0].reason
    quick = run("r2", T0 + timedelta(hours=3), timedelta(minutes=20))
    after = evaluate(MAX, Facts(runs=[quick, slow]), T0 + timedelta(hours=4))
    assert after.status == "ok" and after.breaches == []


def test_factor_times_p95_of_history() -> None:
    # p95 (nearest rank) of 10, 10, 10, 10, 20 minutes is 20 minutes: the bound is 40 minutes.
    facts = Facts(runs=[run("r1", T0, None), *history(10, 10, 20, 10, 10)])
    ok = evaluate(RELATIVE, facts, T0 + timedelta(minutes=39))
    assert ok.status == "ok" and ok.next_deadline == T0 + timedelta(minutes=40)
    result = evaluate(RELATIVE, facts, T0 + timedelta(minutes=45))
    [breach] = result.breaches
    assert breach.reason == (
        "refresh_time: run r1 running for 45m since 2026-11-22 10:00 UTC; "
        "2 x p95 of 20m over 5 runs"
    )


def test_only_the_last_history_runs_count() -> None:
    # Older, slower runs beyond `history` do not widen the bound.
    facts = Facts(runs=[run("r1", T0, None), *history(10, 10, 10, 10, 10, 120, 120)])
    assert evaluate(RELATIVE, facts, T0 + timedelta(minutes=25)).status == "breached"


def test_too_little_history_means_no_relative_breach() -> None:
    facts = Facts(runs=[run("r1", T0, None), *history(10, 10, 10)])
    result = evaluate(RELATIVE, facts, T0 + timedelta(hours=5))
    assert result.status == "ok" and result.breaches == []


def test_both_bounds_use_the_tighter_one() -> None:
    sla = DurationSLA(
        name="refresh_time", kind="duration", target=DAG, max_duration="2h", factor=3.0, history=3
    )
    facts = Facts(runs=[run("r1", T0, None), *history(10, 10, 10)])
    result = evaluate(sla, facts, T0 + timedelta(minutes=31))
    assert [b.due for b in result.breaches] == [T0 + timedelta(minutes=30)]


def test_no_runs_is_unknown() -> None:
    assert evaluate(MAX, Facts(), T0).status == "unknown"
