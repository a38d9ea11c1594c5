"""Breach forecasts on synthetic histories: late pipelines are at risk, noisy ones are not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coplane.rules import evaluate
from coplane.rules.facts import Facts, RunFact
from coplane.rules.forecast import Window, forecast
from coplane.rules.model import CompletionSLA, FreshnessSLA
from coplane.slas.engine import watched_resources

DAG = "airflow.dag.sales_daily"
TABLE = "snowflake://acct/analytics.sales"
INGEST = "airflow.dag.ingest_orders"
ORDERS = "snowflake://acct/raw.orders"
DAY = datetime(2026, 11, 22, tzinfo=UTC)  # the day forecast; the deadline is 09:00 UTC
CREATED = DAY - timedelta(days=30)


def hm(hours: int, minutes: int = 0, day: int = 0) -> datetime:
    """A UTC time on DAY (or `day` days before it)."""
    return DAY - timedelta(days=day) + timedelta(hours=hours, minutes=minutes)


def daily(pipeline: str, start: tuple[int, int], ends: list[tuple[int, int]]) -> list[RunFact]:
    """Completed runs on the days before DAY, newest first: day i ends at ends[i-1]."""
    return [
        RunFact(f"{pipeline}-{i}", pipeline, "completed", hm(*start, day=i), hm(*end, day=i))
        for i, end in enumerate(ends, start=1)
    ]


def by_nine(kind: str = "completion", target: str = DAG) -> FreshnessSLA | CompletionSLA:
    if kind == "freshness":
        return FreshnessSLA(
            name="sales_fresh", kind="freshness", target=target, deadline="0 9 * * *"
        )
    return CompletionSLA(name="sales_done", kind="completion", target=target, deadline="0 9 * * *")


def test_reliably_ten_minutes_late_is_at_risk_before_the_deadline() -> None:
    # 70-minute runs from 08:00: 09:10, 10 minutes late, on 19 of the last 20 days. (Yesterday
    # was on time: a late completion counts for the window it lands in, today's, and would
    # meet it.)
    history = daily(DAG, (8, 0), [(8, 50)] + [(9, 10)] * 19)
    running = RunFact("today", DAG, "running", hm(8), None)
    result = evaluate(by_nine(), Facts(runs=[running, *history], created=CREATED), hm(8, 20))
    assert result.status == "at_risk" and result.breaches == []
    assert result.explanation == (
        "sales_done: run today is expected to finish 2026-11-22 09:10 UTC, after the deadline 09:00"
    )
    window = Window(hm(9, day=1), hm(9), "0 9 * * *", "UTC")
    risk = forecast(DAG, Facts(runs=[running, *history]), hm(8, 20), window)
    assert risk is not None and risk.eta == hm(9, 10)


def test_high_variance_within_its_usual_range_is_not_flagged() -> None:
    # Runs start at 06:00 and finish anywhere from 07:00 to 08:55.
    ends = [(7 + (i * 7 % 115) // 60, (i * 7 % 115) % 60) for i in range(20)]
    history = daily(DAG, (6, 0), ends)
    running = RunFact("today", DAG, "running", hm(6), None)
    for now in (hm(6, 30), hm(7, 30), hm(8, 30)):
        result = evaluate(by_nine(), Facts(runs=[running, *history], created=CREATED), now)
        assert result.status == "ok", (now, result.explanation)
    # Not started yet, but still within its usual start: no forecast either.
    starts = [RunFact(f"s{i}", DAG, "completed", hm(5, i * 3, day=i), hm(8, day=i))
              for i in range(1, 21)]  # fmt: skip
    assert evaluate(by_nine(), Facts(runs=starts, created=CREATED), hm(5, 40)).status == "ok"


def test_not_started_and_waiting_on_a_late_upstream_names_it() -> None:
    # ingest_orders runs 06:00-07:00 and feeds raw.orders; sales_daily runs from 07:05 for
    # 1h30 and produces the sales table. Today ingest_orders has not finished at 07:38.
    ingest = daily(INGEST, (6, 0), [(7, 0)] * 20)
    sales = daily(DAG, (7, 5), [(8, 35)] * 20)
    ingest_today = RunFact("ingest-today", INGEST, "running", hm(6, 0), None)
    lineage: dict[str, tuple[str, ...]] = {TABLE: (DAG,), DAG: (ORDERS,), ORDERS: (INGEST,)}
    facts = Facts(
        updates=[hm(8, 35, day=1)],
        created=CREATED,
        lineage=lineage,
        history={DAG: sales, INGEST: [ingest_today, *ingest]},
    )
    sla = by_nine("freshness", TABLE)
    result = evaluate(sla, facts, hm(7, 38))
    assert result.status == "at_risk"
    # The running ingest has already run longer than any past run, so it has no ETA of its
    # own: now, 07:38, plus sales_daily's p50 of 1h30.
    assert result.explanation == (
        "sales_fresh: ETA 2026-11-22 09:08 UTC, after the deadline 09:00: "
        "airflow.dag.sales_daily has not started (usually by 07:05); "
        "waiting on airflow.dag.ingest_orders, 38m late"
    )
    # Early in the morning, before sales_daily's usual start, nothing is forecast.
    assert evaluate(sla, facts, hm(7, 0)).status == "ok"


def test_not_started_upstream_eta_from_its_own_history() -> None:
    # Upstream not started at all: its ETA is its usual start (or now) + its p50 duration.
    ingest = daily(INGEST, (6, 0), [(7, 0)] * 20)
    sales = daily(DAG, (7, 5), [(8, 35)] * 20)
    lineage: dict[str, tuple[str, ...]] = {DAG: (ORDERS,), ORDERS: (INGEST,)}
    facts = Facts(runs=sales, created=hm(0), lineage=lineage, history={INGEST: ingest})
    result = evaluate(by_nine(), facts, hm(7, 20))
    assert result.status == "at_risk"
    assert result.explanation.endswith("waiting on airflow.dag.ingest_orders, 20m late")
    assert "ETA 2026-11-22 09:50 UTC" in result.explanation  # 07:20 + 1h + 1h30


def test_no_history_means_no_forecast() -> None:
    running = RunFact("today", DAG, "running", hm(8), None)
    result = evaluate(by_nine(), Facts(runs=[running], created=hm(0)), hm(8, 50))
    assert result.status == "unknown" and result.next_deadline == hm(9)
    assert evaluate(by_nine(), Facts(created=hm(0)), hm(8, 50)).status == "unknown"


def test_max_age_running_run_forecast_against_last_update_plus_max_age() -> None:
    sla = FreshnessSLA(name="sales_fresh", kind="freshness", target=DAG, max_age="90m")
    history = daily(DAG, (8, 0), [(9, 10)] * 20)
    running = RunFact("today", DAG, "running", hm(8), None)
    # Updated at 07:30, so due 09:00; the run's ETA is 09:10.
    facts = Facts(runs=[running, *history], updates=[hm(7, 30)], created=CREATED)
    result = evaluate(sla, facts, hm(8, 20))
    assert result.status == "at_risk" and "09:10" in result.explanation


def test_the_engine_also_watches_the_pipelines_an_open_window_forecast_read() -> None:
    sla = by_nine("freshness", TABLE)
    facts = Facts(
        updates=[hm(8, 0, day=1)],
        created=CREATED,
        lineage={TABLE: (DAG,)},
        history={DAG: daily(DAG, (7, 0), [(8, 0)] * 3)},
    )
    assert watched_resources(sla) == frozenset({TABLE})
    waiting = evaluate(sla, facts, hm(6))  # today's window is open
    assert waiting.watching == (DAG,)
    assert watched_resources(sla, waiting) == frozenset({TABLE, DAG})
    done = Facts(updates=[hm(8)], lineage=facts.lineage, history=facts.history, created=CREATED)
    met = evaluate(sla, done, hm(8, 30))  # met: nothing upstream can change it
    assert met.watching == () and watched_resources(sla, met) == frozenset({TABLE})
