"""read_facts reads what each SLA rule needs, and downstream walks lineage, on both backends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from coplane.events.derive import run_uuid
from coplane.rules import AnySLA, evaluate
from coplane.rules.model import SLA
from coplane.store import Conn, Store
from coplane.store.events import insert_events
from coplane.store.sla_facts import downstream, glob_like, read_facts, read_facts_many
from tests.factories import at, event_dict, events

DAY = 24 * 60  # minutes
NOW = at(90)  # 2026-11-02 09:30 UTC
CREATED = at(-30)  # 07:30 UTC, so the 09:00 UTC deadline of this day is the only window


def put(conn: Conn, store: Store, *dicts: dict[str, Any]) -> None:
    """Store events as the collector would."""
    insert_events(conn, events(*dicts), at(10 * DAY), store.partitions)


def sla(**fields: Any) -> AnySLA:
    """An SLA from its JSON fields."""
    parsed: AnySLA = TypeAdapter(SLA).validate_python({"name": "s", **fields})
    return parsed


def updated(asset: str, minutes: float, producer: str = "airflow.etl") -> dict[str, Any]:
    """An asset.updated event of `asset` by `producer`'s run r1."""
    return event_dict(
        "asset.updated",
        asset,
        minutes=minutes,
        run="r1",
        related=[{"role": "producer", "id": producer}],
    )


def run(
    pipeline: str, key: str, start: float, end: float | None, how: str = "completed"
) -> list[dict[str, Any]]:
    """The events of one run: started at `start`, ended `how` at `end` (still running if None)."""
    out = [event_dict("run.started", pipeline, minutes=start, run=key)]
    if end is not None:
        out.append(event_dict(f"run.{how}", pipeline, minutes=end, run=key))
    return out


def check(name: str, asset: str, minutes: float, column: str | None = None, msg: str = "") -> Any:
    """A check.passed or check.failed event (`name` is the event name) with its payload."""
    check_name, _, event = name.partition(":")
    payload: dict[str, Any] = {"check": check_name}
    if msg:
        payload["message"] = msg
    if column:
        payload["column"] = column
    return event_dict(event, asset, minutes=minutes, payload=payload)


def with_labels(event: dict[str, Any], **labels: str) -> dict[str, Any]:
    """The event with labels on its resource."""
    event["resource"]["labels"] = labels
    return event


def test_glob_like_translates_and_escapes() -> None:
    assert glob_like("warehouse.sales") is None
    assert glob_like("warehouse.*") == "warehouse.%"
    assert glob_like("a_b?*") == "a\\_b_%"
    assert glob_like("50%*") == "50\\%%"
    assert glob_like("x\\y*") == "x\\\\y%"
    assert glob_like("[ab]x*") == "_x%"
    assert glob_like("[ab*") == "[ab%"


def test_freshness_updates_exact_and_glob_target(conn: Conn, store: Store) -> None:
    put(
        conn,
        store,
        updated("warehouse.sales", 10),
        updated("warehouse.sales", 20),
        updated("warehouse.sales_eu", 15),
        updated("warehouse.salesXeu", 16),
        updated("lake.orders", 12),
    )
    exact = read_facts(conn, sla(kind="freshness", target="warehouse.sales", max_age="1h"), NOW,
                       CREATED)  # fmt: skip
    assert exact.updates == [at(10), at(20)]
    assert exact.created == CREATED
    glob = read_facts(conn, sla(kind="freshness", target="warehouse.*", max_age="1h"), NOW, None)
    assert glob.updates == [at(10), at(15), at(16), at(20)]
    # `_` is literal and SQLite's case-insensitive LIKE does not leak through
    literal = sla(kind="freshness", target="warehouse.sales_E*", max_age="1h")
    assert read_facts(conn, literal, NOW, None).updates == []
    literal = sla(kind="freshness", target="warehouse.sales_e*", max_age="1h")
    assert read_facts(conn, literal, NOW, None).updates == [at(15)]


def test_freshness_counts_completed_runs_of_a_pipeline_target(conn: Conn, store: Store) -> None:
    put(
        conn,
        store,
        *run("airflow.etl", "r1", 0, 30),
        *run("airflow.etl", "r2", 40, 50, how="failed"),
        *run("airflow.etl", "r3", 60, None),
        *run("airflow.other", "x1", 0, 20),
    )
    facts = read_facts(conn, sla(kind="freshness", target="airflow.etl", max_age="1h"), NOW, None)
    assert facts.updates == [at(30)]
    assert [r.id for r in facts.runs] == [run_uuid("airflow.etl", k) for k in ("r3", "r2", "r1")]
    assert [r.state for r in facts.runs] == ["running", "failed", "completed"]
    assert facts.runs[2].started == at(0) and facts.runs[2].ended == at(30)


def test_freshness_lookback_bounds_and_latest_update_kept(conn: Conn, store: Store) -> None:
    put(
        conn,
        store,
        updated("warehouse.sales", -9 * DAY),
        updated("warehouse.sales", -8 * DAY),
        updated("warehouse.sales", 0),
        updated("warehouse.sales", 120),  # after `now`: a backtest must not see it
        updated("warehouse.stale", -10 * DAY),
    )
    deadline = sla(kind="freshness", target="warehouse.sales", deadline="0 9 * * *")
    assert read_facts(conn, deadline, NOW, None).updates == [at(0)]
    aged = sla(kind="freshness", target="warehouse.sales", max_age="2d")  # lookback 9 days
    assert read_facts(conn, aged, NOW, None).updates == [at(-8 * DAY), at(0)]
    # an asset's latest update is known past the lookback (from the assets table)
    stale = sla(kind="freshness", target="warehouse.stale", max_age="1d")
    facts = read_facts(conn, stale, NOW, CREATED)
    assert facts.updates == [at(-10 * DAY)]
    result = evaluate(stale, facts, NOW)
    assert result.status == "breached"
    assert result.breaches[0].key == "s:stale:2026-10-23T08:00:00Z"


def test_freshness_deadline_end_to_end(conn: Conn, store: Store) -> None:
    rule = sla(kind="freshness", target="warehouse.sales", deadline="0 9 * * *")
    assert evaluate(rule, read_facts(conn, rule, NOW, CREATED), NOW).status == "breached"
    put(conn, store, updated("warehouse.sales", 50))  # 08:50, before the 09:00 deadline
    assert evaluate(rule, read_facts(conn, rule, NOW, CREATED), NOW).status == "ok"


def test_completion_runs_newest_first_end_to_end(conn: Conn, store: Store) -> None:
    rule = sla(kind="completion", target="airflow.etl", deadline="0 9 * * *")
    put(conn, store, *run("airflow.etl", "r1", 0, 20, how="failed"), *run("airflow.x", "x", 0, 5))
    facts = read_facts(conn, rule, NOW, CREATED)
    assert [r.id for r in facts.runs] == [run_uuid("airflow.etl", "r1")]
    assert evaluate(rule, facts, NOW).status == "breached"
    put(conn, store, *run("airflow.etl", "r2", 30, 50))
    facts = read_facts(conn, rule, NOW, CREATED)
    assert [r.id for r in facts.runs] == [run_uuid("airflow.etl", k) for k in ("r2", "r1")]
    assert evaluate(rule, facts, NOW).status == "ok"


def test_duration_reads_history_past_the_lookback(conn: Conn, store: Store) -> None:
    daily = [e for d in range(1, 11) for e in run("airflow.etl", f"d{d}", -d * DAY, -d * DAY + 10)]
    put(conn, store, *daily, *run("airflow.etl", "now", 50, None))
    rule = sla(kind="duration", target="airflow.etl", factor=2.0, history=9)
    facts = read_facts(conn, rule, NOW, None)
    completed = [r for r in facts.runs if r.state == "completed"]
    assert len(completed) == 9  # only 6 daily runs lie in the 7-day lookback
    assert facts.runs[0].id == run_uuid("airflow.etl", "now")
    # running 40 min against 2 x p95 of 10 min
    assert evaluate(rule, facts, NOW).status == "breached"
    later = sla(kind="duration", target="airflow.etl", factor=5.0, history=9)
    assert evaluate(later, read_facts(conn, later, NOW, None), NOW).status == "ok"


def test_expected_event_events_with_labels_end_to_end(conn: Conn, store: Store) -> None:
    rule = sla(
        kind="expected_event",
        after={"event": "run.completed", "resource": "airflow.load_*"},
        expect={"event": "report.*"},
        within="1h",
        for_each="region",
    )
    put(
        conn,
        store,
        with_labels(event_dict("run.completed", "airflow.load_eu", minutes=0), region="eu"),
        with_labels(event_dict("run.completed", "airflow.other", minutes=5), region="eu"),
        with_labels(event_dict("asset.updated", "warehouse.eu", minutes=6), region="eu"),
        with_labels(event_dict("run.completed", "airflow.load_eu", minutes=-8 * DAY), region="eu"),
    )
    facts = read_facts(conn, rule, NOW, None)
    assert [(e.event, e.resource, e.occurred) for e in facts.events] == [
        ("run.completed", "airflow.load_eu", at(0))
    ]
    assert facts.events[0].labels == {"region": "eu"}
    assert evaluate(rule, facts, NOW).status == "breached"
    put(conn, store, with_labels(event_dict("report.sent", "mail.eu", minutes=30), region="eu"))
    facts = read_facts(conn, rule, NOW, None)
    assert [(e.event, e.labels) for e in facts.events] == [
        ("run.completed", {"region": "eu"}),
        ("report.sent", {"region": "eu"}),
    ]
    assert evaluate(rule, facts, NOW).status == "ok"


def test_quality_latest_check_per_asset_and_filter(conn: Conn, store: Store) -> None:
    put(
        conn,
        store,
        check("not_null:check.failed", "warehouse.sales", 10, column="id", msg="3 nulls"),
        check("not_null:check.passed", "warehouse.sales", 20, column="id"),
        check("row_count:check.failed", "warehouse.sales", 15, msg="0 rows"),
        check("unique:check.passed", "warehouse.orders", 5),
        check("unique:check.failed", "lake.orders", 5),
    )
    rule = sla(kind="quality", target="warehouse.*")
    facts = read_facts(conn, rule, NOW, None)
    got = sorted((c.asset, c.check, c.passed, c.at, c.message) for c in facts.checks)
    assert got == [
        ("warehouse.orders", "unique", True, at(5), None),
        ("warehouse.sales", "not_null(id)", True, at(20), None),
        ("warehouse.sales", "row_count", False, at(15), "0 rows"),
    ]
    result = evaluate(rule, facts, NOW)
    assert result.status == "breached"
    assert [b.key for b in result.breaches] == ["s:warehouse.sales:row_count"]
    only = sla(kind="quality", target="warehouse.sales", checks=["not_null(id)"])
    facts = read_facts(conn, only, NOW, None)
    assert [(c.check, c.passed) for c in facts.checks] == [("not_null(id)", True)]
    assert evaluate(only, facts, NOW).status == "ok"
    assert read_facts(conn, sla(kind="quality", target="x", checks=[]), NOW, None).checks == []


def test_heartbeat_has_no_pings_yet(conn: Conn) -> None:
    rule = sla(kind="heartbeat", target="backup", period="1h")
    facts = read_facts(conn, rule, NOW, CREATED)
    assert facts.pings == [] and facts.created == CREATED
    assert evaluate(rule, facts, NOW).status == "breached"  # expected 08:30, grace 5m
    assert evaluate(rule, read_facts(conn, rule, NOW, None), NOW).status == "unknown"


def test_read_facts_needs_an_aware_now(conn: Conn) -> None:
    rule = sla(kind="quality", target="x")
    with pytest.raises(ValueError, match="timezone-aware"):
        read_facts(conn, rule, datetime(2026, 11, 2), None)


def test_downstream_walks_lineage_with_depth_and_limit(conn: Conn, store: Store) -> None:
    def lineage(pipeline: str, source: str, target: str, minutes: float) -> dict[str, Any]:
        return event_dict(
            "run.started",
            pipeline,
            minutes=minutes,
            run="r1",
            related=[{"role": "input", "id": source}, {"role": "output", "id": target}],
        )

    put(conn, store, lineage("p", "a", "b", 0), lineage("q", "b", "c", 1))
    assert downstream(conn, ["a"]) == ["b", "c", "p", "q"]
    assert downstream(conn, ["a"], depth=1) == ["p"]
    assert downstream(conn, ["a"], depth=2) == ["b", "p"]
    assert downstream(conn, ["a"], limit=2) == ["b", "p"]
    assert downstream(conn, ["b"]) == ["c", "q"]
    assert downstream(conn, ["a", "b"]) == ["c", "p", "q"]
    assert downstream(conn, ["c"]) == []
    assert downstream(conn, []) == []


def test_reading_many_slas_at_once_equals_reading_each(conn: Conn, store: Store) -> None:
    import random

    rng = random.Random(5)
    dicts: list[dict[str, Any]] = []
    for p in range(12):
        pipeline, asset = f"airflow.p{p}", f"wh.t{p}"
        for r in range(rng.randint(0, 30)):
            start = rng.uniform(-12 * DAY, 80)
            end = None if rng.random() < 0.1 else start + rng.uniform(1, 300)
            how = rng.choice(["completed", "completed", "failed"])
            dicts += run(pipeline, f"r{r}", start, end, how)
            if r == 0 and p > 0:  # lineage: p{p-1} -> t{p-1} -> p{p} -> t{p}
                source = [{"role": "input", "id": f"wh.t{p - 1}"}]
                dicts.append(event_dict("run.started", pipeline, minutes=start, run=f"r{r}",
                                        related=source))  # fmt: skip
            if end is not None and how == "completed":
                dicts.append(updated(asset, end, pipeline))
        for c in range(rng.randint(0, 3)):
            name = rng.choice(["check.passed", "check.failed"])
            dicts.append(event_dict(name, asset, minutes=rng.uniform(-DAY, 80),
                                    payload={"check": f"c{c}"}))  # fmt: skip
    put(conn, store, *dicts)
    slas: list[tuple[AnySLA, datetime | None]] = []
    for p in range(14):  # two targets with nothing stored
        pipeline, asset = f"airflow.p{p}", f"wh.t{p}"
        slas += [
            (sla(kind="freshness", target=asset, max_age="2h"), CREATED),
            (sla(kind="freshness", target=asset, deadline="0 9 * * *"), None),
            (sla(kind="completion", target=pipeline, deadline="0 9 * * *"), CREATED),
            (sla(kind="completion", target=pipeline, within="1h"), CREATED),
            (sla(kind="duration", target=pipeline, factor=2, history=5), None),
            (sla(kind="duration", target=pipeline, max_duration="2h"), None),
            (sla(kind="quality", target=asset), None),
            (sla(kind="quality", target=asset, checks=["c1"]), None),
        ]
    slas.append((sla(kind="freshness", target="wh.t*", max_age="1h"), CREATED))  # one by one
    many = read_facts_many(conn, slas, NOW)
    assert many == [read_facts(conn, s, NOW, created) for s, created in slas]
    assert any(f.runs for f in many) and any(f.updates for f in many)
    assert any(f.checks for f in many)
    assert any(f.history and f.lineage for f in many)
