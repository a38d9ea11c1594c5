"""Explaining evaluations: per kind, the inputs name the facts the rule decided from."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from coplane.rules import evaluate
from coplane.rules.facts import CheckFact, EventFact, Facts, PingFact, RunFact
from coplane.rules.model import SLA
from coplane.slas.explain import explain_inputs

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)
DAG = "airflow.dag.refresh"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat()


def sla(**fields: Any) -> SLA:
    return TypeAdapter(SLA).validate_python({"name": "s", **fields})


def explain(s: SLA, facts: Facts, now: datetime) -> dict[str, Any]:
    inputs = explain_inputs(s, facts, evaluate(s, facts, now), now)
    assert json.loads(json.dumps(inputs)) == inputs  # plain JSON, as stored
    return inputs


def run(rid: str, started: float, ended: float | None, state: str = "completed") -> RunFact:
    end = None if ended is None else at(ended)
    return RunFact(rid, DAG, "running" if ended is None else state, at(started), end, key=rid)


def test_freshness_by_max_age_names_the_last_update_and_when_it_was_due() -> None:
    s = sla(kind="freshness", target="wh.sales", max_age="1h")
    inputs = explain(s, Facts(updates=[at(0), at(10)]), at(90))
    assert inputs["kind"] == "freshness"
    assert inputs["last_update"] == iso(10)
    assert (inputs["max_age"], inputs["due"], inputs["open_breaches"]) == (3600.0, iso(70), 1)


def test_freshness_by_deadline_names_the_window_checked() -> None:
    s = sla(kind="freshness", target="wh.sales", deadline="0 9 * * *", timezone="Europe/Berlin")
    inputs = explain(s, Facts(updates=[at(-60)], created=at(-600)), at(0))
    assert inputs["last_update"] == iso(-60)
    assert inputs["window_start"] == "2026-11-22T08:00:00+00:00"  # 09:00 Berlin
    assert inputs["window_due"] == "2026-11-23T08:00:00+00:00"
    # an update counts for the next deadline from halfway there: 21:00 Berlin
    assert inputs["window_opens"] == "2026-11-22T20:00:00+00:00"
    assert (inputs["deadline"], inputs["timezone"]) == ("0 9 * * *", "Europe/Berlin")
    assert inputs["sla_created"] == iso(-600)


def test_freshness_with_a_window_names_when_it_opens() -> None:
    s = sla(kind="freshness", target="wh.sales", deadline="0 9 * * *", timezone="Europe/Berlin",
            window="6h")  # fmt: skip
    inputs = explain(s, Facts(updates=[at(-60)], created=at(-600)), at(0))
    assert inputs["window_opens"] == "2026-11-23T02:00:00+00:00"  # 03:00 Berlin
    assert inputs["window"] == 6 * 3600.0


def test_completion_lists_the_newest_runs_considered() -> None:
    s = sla(kind="completion", target=DAG, within="30m")
    runs = [run(f"r{i}", i * 60, i * 60 + 20) for i in range(8)] + [run("r9", 600, None)]
    inputs = explain(s, Facts(runs=runs), at(640))
    assert inputs["within"] == 1800.0
    assert inputs["runs_seen"] == 9
    assert [r["run"] for r in inputs["runs"]] == ["r9", "r7", "r6", "r5", "r4"]
    assert inputs["runs"][0] == {"run": "r9", "state": "running", "started": iso(600),
                                 "ended": None}  # fmt: skip
    assert inputs["last_completed"] == iso(440)


def test_duration_names_the_threshold_and_the_run_measured() -> None:
    s = sla(kind="duration", target=DAG, factor=2, history=5, max_duration="3h")
    past = [run(f"h{i}", -(i + 1) * 1440, -(i + 1) * 1440 + 10 * (i + 1)) for i in range(5)]
    inputs = explain(s, Facts(runs=[run("now", 0, None), *past]), at(120))
    assert (inputs["factor"], inputs["history"], inputs["max_duration"]) == (2.0, 5, 10800.0)
    [measured] = [m for m in inputs["measured"] if m["run"] == "now"]
    assert measured["elapsed"] == 7200.0
    assert (measured["history_size"], measured["p95"]) == (5, 3000.0)  # 50 minutes
    assert measured["relative_bound"] == 6000.0
    assert inputs["open_breaches"] == 1


def test_expected_event_names_the_last_match_of_each_matcher() -> None:
    s = sla(
        kind="expected_event",
        after={"event": "file.landed", "resource": "s3.in"},
        expect={"event": "run.completed", "resource": DAG},
        within="1h",
    )
    events = [
        EventFact("file.landed", "s3.in", at(0)),
        EventFact("file.landed", "s3.in", at(30)),
        EventFact("run.completed", DAG, at(20)),
    ]
    inputs = explain(s, Facts(events=events), at(120))
    assert inputs["after"] == {"event": "file.landed", "resource": "s3.in",
                               "last": {"event": "file.landed", "resource": "s3.in",
                                        "at": iso(30)}}  # fmt: skip
    assert inputs["expect"]["last"]["at"] == iso(20)
    assert inputs["within"] == 3600.0


def test_expected_event_by_deadline_without_matches() -> None:
    s = sla(kind="expected_event", deadline="0 * * * *", expect={"event": "x"}, within="10m")
    inputs = explain(s, Facts(created=at(-5)), at(5))
    assert inputs["expect"]["last"] is None
    assert inputs["window_start"] == iso(0) and inputs["window_due"] == iso(60)


def test_heartbeat_names_the_last_ping_of_each_kind() -> None:
    s = sla(kind="heartbeat", target="backup", period="1h", grace="10m")
    pings = [PingFact("start", at(0), "a"), PingFact("success", at(5), "a"),
             PingFact("start", at(60), "b")]  # fmt: skip
    inputs = explain(s, Facts(pings=pings), at(70))
    assert inputs["monitor"] == "backup"
    assert inputs["last_start"] == {"at": iso(60), "rid": "b"}
    assert inputs["last_success"] == {"at": iso(5), "rid": "a"}
    assert inputs["last_fail"] is None
    assert (inputs["period"], inputs["grace"], inputs["max_runtime"]) == (3600.0, 600.0, None)
    assert inputs["expected_ping"] == iso(65)


def test_quality_lists_the_failing_checks() -> None:
    s = sla(kind="quality", target="wh.*")
    checks = [
        CheckFact("wh.a", "not_null", False, at(0), "3 nulls"),
        CheckFact("wh.a", "not_null", True, at(-10)),
        CheckFact("wh.b", "unique", True, at(0)),
        CheckFact("other", "unique", False, at(0)),
    ]
    inputs = explain(s, Facts(checks=checks), at(1))
    assert inputs["checks_seen"] == 2 and inputs["failing_count"] == 1
    assert inputs["failing"] == [{"asset": "wh.a", "check": "not_null", "at": iso(0),
                                  "message": "3 nulls"}]  # fmt: skip
