"""The engine on a real store: breaches open incidents and queue alerts, fixes resolve them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from coplane.rules import evaluate
from coplane.rules.model import SLA
from coplane.slas.engine import SlaEngine
from coplane.store import Store, sla_facts
from coplane.store.events import EventFilter, event_json, insert_events, list_events
from coplane.store.health import breach_windows
from coplane.store.incidents import list_incidents
from coplane.store.slas import read_sla, upsert_slas
from tests.factories import event_dict, events

# Monday 2026-11-02; the SLA exists from 06:00 UTC, due daily at 09:00 Berlin (08:00 UTC)
CREATED = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
TABLE = "wh.sales"


def _sla(**fields: Any) -> SLA:
    base = {"name": "sales_fresh", "kind": "freshness", "target": TABLE,
            "deadline": "0 9 * * *", "timezone": "Europe/Berlin", "notify": ["team"]}  # fmt: skip
    return TypeAdapter(SLA).validate_python({**base, **fields})


def _update(store: Store, at: datetime, asset: str = TABLE) -> None:
    e = {**event_dict("asset.updated", asset, related=[{"role": "producer", "id": "p"}]),
         "occurred": at.isoformat()}  # fmt: skip
    with store.connect() as conn:
        insert_events(conn, events(e), at, store.partitions)


_ENGINES: list[SlaEngine] = []


@pytest.fixture(autouse=True)
def _stop_engines() -> Iterator[None]:
    """Each engine gives up the evaluation lock it took, as a server does at shutdown."""
    yield
    while _ENGINES:
        _ENGINES.pop().stop()


def _new_engine(*args: Any, **kwargs: Any) -> SlaEngine:
    engine = SlaEngine(*args, **kwargs)
    _ENGINES.append(engine)
    return engine


def _engine(store: Store, *slas: SLA) -> SlaEngine:
    with store.connect() as conn:
        upsert_slas(conn, list(slas), "api", CREATED)
    return _new_engine(store, None, None)


def _incidents(store: Store, state: str) -> list[dict[str, Any]]:
    with store.connect() as conn:
        return list_incidents(conn, state, 100)  # type: ignore[arg-type]


def test_missed_deadline_opens_one_incident_and_queues_its_alert(store: Store) -> None:
    engine = _engine(store, _sla())
    result = engine.evaluate_all(CREATED + timedelta(hours=3))  # 09:00 CET passed at 08:00 UTC
    assert (result.evaluated, result.opened) == (1, 1)
    [incident] = _incidents(store, "open")
    assert incident["sla"] == "sales_fresh"
    assert "09:00" in incident["reason"]
    assert [(n["channel"], n["action"]) for n in incident["notifications"]] == [("team", "trigger")]
    # evaluating again does not open a second incident or alert twice
    assert engine.evaluate_all(CREATED + timedelta(hours=4)).opened == 0
    assert len(_incidents(store, "open")[0]["notifications"]) == 1


def test_a_late_update_resolves_and_queues_the_resolve_message(store: Store) -> None:
    engine = _engine(store, _sla())
    engine.evaluate_all(CREATED + timedelta(hours=3))
    _update(store, CREATED + timedelta(hours=3, minutes=20))
    result = engine.evaluate_all(CREATED + timedelta(hours=3, minutes=30))
    assert result.resolved == 1
    [incident] = _incidents(store, "resolved")
    actions = sorted(n["action"] for n in incident["notifications"])
    assert actions == ["resolve", "trigger"]
    assert _incidents(store, "open") == []


def test_an_update_in_time_raises_nothing(store: Store) -> None:
    engine = _engine(store, _sla())
    _update(store, CREATED + timedelta(hours=1))
    result = engine.evaluate_all(CREATED + timedelta(hours=3))
    assert (result.opened, _incidents(store, "open")) == (0, [])
    # the engine will wake at the next deadline: tomorrow 09:00 Berlin
    assert result.next_wake == datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


def test_deadlines_missed_while_down_are_raised_at_the_first_pass(store: Store) -> None:
    engine = _engine(store, _sla())
    # down from Monday 06:00 to Thursday 09:00 UTC: Monday to Thursday 09:00 Berlin passed
    result = engine.evaluate_all(CREATED + timedelta(days=3, hours=3))
    assert result.opened == 4
    assert len(_incidents(store, "open")) == 4


def test_affected_lists_what_is_downstream(store: Store) -> None:
    engine = _engine(store, _sla())
    downstream = {**event_dict("run.completed", "dbt.marts", run="r1",
                               related=[{"role": "input", "id": TABLE},
                                        {"role": "output", "id": "bi.dashboard"}]),
                  "occurred": (CREATED - timedelta(days=1)).isoformat()}  # fmt: skip
    with store.connect() as conn:
        insert_events(conn, events(downstream), CREATED, store.partitions)
    engine.evaluate_all(CREATED + timedelta(hours=3))
    [incident] = _incidents(store, "open")
    assert incident["affected"] == ["bi.dashboard", "dbt.marts"]


def test_quality_failures_open_one_incident_per_check(store: Store) -> None:
    quality = TypeAdapter(SLA).validate_python(
        {"name": "sales_quality", "kind": "quality", "target": TABLE, "notify": ["team"]}
    )
    engine = _engine(store, quality)
    failed = [
        {**event_dict("check.failed", TABLE, payload={"check": c, "message": f"{c} broke"}),
         "occurred": (CREATED + timedelta(minutes=5)).isoformat()}
        for c in ("not_null", "unique")
    ]  # fmt: skip
    with store.connect() as conn:
        insert_events(conn, events(*failed), CREATED, store.partitions)
    assert engine.evaluate_all(CREATED + timedelta(minutes=10)).opened == 2
    fixed = {**event_dict("check.passed", TABLE, payload={"check": "unique"}),
             "occurred": (CREATED + timedelta(minutes=20)).isoformat()}  # fmt: skip
    with store.connect() as conn:
        insert_events(conn, events(fixed), CREATED, store.partitions)
    assert engine.evaluate_all(CREATED + timedelta(minutes=30)).resolved == 1
    [still] = _incidents(store, "open")
    assert "not_null broke" in still["reason"]


def test_reload_takes_slas_from_the_config_file(store: Store, tmp_path: Path) -> None:
    config = tmp_path / "coplane.yaml"
    config.write_text(
        "slas:\n  - name: from_file\n    kind: freshness\n    target: t\n    max_age: 1h\n"
    )
    engine = _new_engine(store, None, config)
    assert engine.reload().evaluated == 1
    config.write_text("slas: []\n")
    assert engine.reload().evaluated == 0


class RecordingScheduler:
    """Records what the engine asks to run, instead of running it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime]] = []

    def run_at(self, job_id: str, when: datetime, func: Any) -> None:
        self.calls.append((job_id, when))


def test_continuous_ingest_does_not_postpone_evaluation(store: Store) -> None:
    scheduler = RecordingScheduler()
    engine = _new_engine(store, scheduler, None)
    assert engine.leadership.try_lead()  # the only replica: it evaluates
    before = datetime.now(UTC)
    for _ in range(100):  # a commit every moment
        engine.request_evaluation()
    soon = [when for job, when in scheduler.calls if job == "sla-evaluate-soon"]
    assert len(soon) == 1  # one pass requested, not pushed back by each commit
    assert soon[0] - before < timedelta(seconds=2)
    engine.evaluate_all()  # the pass runs; the next commit asks again, a debounce later
    engine.request_evaluation()
    soon = [when for job, when in scheduler.calls if job == "sla-evaluate-soon"]
    assert len(soon) == 2 and soon[1] - soon[0] <= timedelta(seconds=2)


def test_one_failing_sla_does_not_stop_the_others(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(store, _sla(), _sla(name="broken"))
    real = sla_facts.read_facts

    def read_facts(conn: Any, sla: SLA, now: datetime, created: datetime | None) -> Any:
        if sla.name == "broken":
            raise RuntimeError("facts unreadable")
        return real(conn, sla, now, created)

    def read_facts_many(*args: Any) -> Any:
        raise RuntimeError("one of them is unreadable")

    monkeypatch.setattr("coplane.slas.engine.read_facts", read_facts)
    monkeypatch.setattr("coplane.slas.engine.read_facts_many", read_facts_many)
    result = engine.evaluate_all(CREATED + timedelta(hours=3))
    assert (result.evaluated, result.opened) == (2, 1)
    with store.connect() as conn:
        broken = read_sla(conn, "broken").state
    assert broken is not None and broken["status"] == "unknown"
    assert "evaluation failed: facts unreadable" in broken["explanation"]


def test_a_breach_with_remediate_records_one_remediation_request(store: Store) -> None:
    remediate = {"flow": "reload_sales", "parameters": {"full": True}}
    engine = _engine(store, _sla(remediate=remediate))
    engine.evaluate_all(CREATED + timedelta(hours=3))
    engine.evaluate_all(CREATED + timedelta(hours=4))  # the same incident: no second request
    with store.connect() as conn:
        rows, _ = list_events(conn, EventFilter(event="remediation.requested"), 10)
    [incident] = _incidents(store, "open")
    [request] = [event_json(row) for row in rows]
    assert request["resource"]["id"] == "flow.reload_sales"
    assert request["payload"] == {
        "flow": "reload_sales",
        "parameters": {"full": True},
        "sla": "sales_fresh",
        "incident": incident["id"],
        "reason": incident["reason"],
    }


def test_after_ingest_only_the_slas_watching_the_changed_resources_are_evaluated(
    store: Store,
) -> None:
    engine = _engine(store, _sla(), _sla(name="orders_fresh", target="wh.orders"))
    now = CREATED + timedelta(hours=3)
    assert engine.evaluate_all(now).evaluated == 2
    _update(store, now)  # wh.sales is updated
    engine.request_evaluation({TABLE, "airflow.etl"})  # as the writer reports it
    result = engine.evaluate_changed(now + timedelta(minutes=1))
    assert (result.evaluated, result.resolved) == (1, 1)  # sales only, and it resolves
    # nothing changed and nothing is due: nothing to evaluate
    assert engine.evaluate_changed(now + timedelta(minutes=2)).evaluated == 0
    # the next deadline (09:00 Berlin the next day) makes both due again
    assert engine.evaluate_changed(now + timedelta(days=1)).evaluated == 2


def test_an_sla_changed_through_the_api_is_evaluated_without_any_event(store: Store) -> None:
    engine = _engine(store, _sla())
    now = CREATED + timedelta(hours=3)
    engine.evaluate_all(now)
    with store.connect() as conn:
        upsert_slas(conn, [_sla(name="orders_fresh", target="wh.orders")], "api", now)
    engine.request_evaluation(())
    result = engine.evaluate_changed(now + timedelta(minutes=1))
    assert result.evaluated == 1
    assert {i["sla"] for i in _incidents(store, "open")} == {"sales_fresh"}


def test_incremental_passes_agree_with_evaluating_everything(store: Store) -> None:
    """After any mix of events and clock steps, what an incremental pass keeps for an SLA it
    skipped equals a fresh evaluation of that SLA."""
    import random

    rng = random.Random(9)
    targets = [f"wh.t{i}" for i in range(4)]
    pipes = [f"airflow.p{i}" for i in range(4)]
    slas = [
        *(_sla(name=f"fresh_{i}", target=t) for i, t in enumerate(targets)),
        *(TypeAdapter(SLA).validate_python({"name": f"age_{i}", "kind": "freshness",
                                            "target": t, "max_age": "3h"})
          for i, t in enumerate(targets)),
        *(_sla(name=f"done_{i}", kind="completion", target=p, deadline="30 7 * * *",
               timezone="UTC") for i, p in enumerate(pipes)),
        *(TypeAdapter(SLA).validate_python({"name": f"dur_{i}", "kind": "duration",
                                            "target": p, "max_duration": "45m"})
          for i, p in enumerate(pipes)),
    ]  # fmt: skip
    engine = _engine(store, *slas)
    now = CREATED
    engine.evaluate_all(now)
    runs = 0
    for _ in range(40):
        now += timedelta(minutes=rng.choice([5, 20, 90, 300]))
        touched: set[str] = set()
        for _ in range(rng.randint(0, 2)):
            if rng.random() < 0.5:
                asset = rng.choice(targets)
                _update(store, now - timedelta(minutes=rng.randint(0, 30)), asset)
                touched |= {asset, "p"}
            else:
                pipe, runs = rng.choice(pipes), runs + 1
                name = rng.choice(["run.started", "run.completed", "run.failed"])
                e = {**event_dict(name, pipe, run=f"r{runs % 3}"), "occurred": now.isoformat()}
                with store.connect() as conn:
                    insert_events(conn, events(e), now, store.partitions)
                touched.add(pipe)
        engine.request_evaluation(touched)
        engine.evaluate_changed(now)
        with store.connect() as conn:
            for known in engine._known:
                fresh = evaluate(known.sla, sla_facts.read_facts(conn, known.sla, now,
                                                                 known.created), now)  # fmt: skip
                kept = known.last
                assert kept is not None
                assert (kept.status, sorted(b.key for b in kept.breaches)) == (
                    fresh.status,
                    sorted(b.key for b in fresh.breaches),
                ), f"{known.sla.name} at {now}"


def test_a_stored_definition_this_version_cannot_read_is_skipped(store: Store) -> None:
    engine = _engine(store, _sla())
    with store.connect() as conn:
        conn.execute(
            "INSERT INTO slas (name, definition, origin, created, updated) VALUES (?, ?, ?, ?, ?)",
            ("from_the_future", conn.json({"name": "from_the_future", "kind": "teleport"}),
             "api", conn.time(CREATED), conn.time(CREATED)),
        )  # fmt: skip
    result = engine.evaluate_all(CREATED + timedelta(hours=3))
    assert (result.evaluated, result.opened) == (1, 1)  # the readable one still is


def test_a_fast_burning_error_budget_alerts_once_and_resolves_when_it_slows(
    store: Store,
) -> None:
    # Created a day earlier, so that every burn-rate span has history (a younger SLA's spans
    # reach back only to its creation).
    with store.connect() as conn:
        upsert_slas(conn, [_sla(objective="99.5%")], "api", CREATED - timedelta(days=1))
    engine = _new_engine(store, None, None)
    due = CREATED + timedelta(hours=2)  # 09:00 Berlin, missed: no update since yesterday's
    _update(store, due - timedelta(days=1, hours=1))
    budget_opened: datetime | None = None
    for minute in range(0, 6):  # the engine wakes every BUDGET_TICK while it burns
        now = due + timedelta(minutes=minute)
        result = engine.evaluate_all(now)
        assert result.next_wake is not None and result.next_wake <= now + timedelta(minutes=1)
        keys = {i["key"]: i for i in _incidents(store, "open")}
        if budget_opened is None and "sales_fresh:budget" in keys:
            budget_opened = now
    # 14.4 x (1 - 99.5%) of the last hour is 4.32 minutes breached: open after 5 minutes.
    assert budget_opened == due + timedelta(minutes=5)
    [alert] = [i for i in _incidents(store, "open") if i["key"] == "sales_fresh:budget"]
    # 5 of the last 60 minutes breached: 5/60 / 0.5% = 16.7x; the reason is as it opened
    assert alert["reason"] == (
        "sales_fresh: error budget burning 16.7x over 1h (alert above 14.4x); "
        "211 of 216 minutes left"
    )
    assert [(n["channel"], n["action"]) for n in alert["notifications"]] == [("team", "trigger")]

    _update(store, due + timedelta(minutes=5, seconds=30))  # the late load ends the breach
    resolved_at = None
    for minute in range(6, 20):
        now = due + timedelta(minutes=minute)
        engine.evaluate_all(now)
        if resolved_at is None and not any(
            i["key"] == "sales_fresh:budget" for i in _incidents(store, "open")
        ):
            resolved_at = now
    # The breach lasted until 08:06. Resolved once the last 5 minutes burn below 14.4x (under
    # 21.6 s of them breached): at 08:11. (Had it lasted over 10.8 minutes, 5% of the budget
    # in 6 hours, the slow-burn condition would keep it open for the next half hour.)
    assert resolved_at == due + timedelta(minutes=11)
    [done] = [i for i in _incidents(store, "resolved") if i["key"] == "sales_fresh:budget"]
    assert [n["action"] for n in done["notifications"]] == ["trigger", "resolve"]
    # The alert is not a breach of the SLA: the budget counts the SLA's own incident only.
    with store.connect() as conn:
        windows = breach_windows(conn, due - timedelta(days=1))
    assert len(windows["sales_fresh"]) == 1


def test_without_an_objective_no_budget_alert_and_no_extra_wakes(store: Store) -> None:
    engine = _engine(store, _sla())
    due = CREATED + timedelta(hours=2)
    for minute in range(0, 11):
        result = engine.evaluate_all(due + timedelta(minutes=minute))
    assert result.next_wake == due + timedelta(days=1)
    assert [i["key"] for i in _incidents(store, "open")] == ["sales_fresh:2026-11-02T08:00:00Z"]


def test_a_reload_is_logged_with_what_it_loaded(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "coplane.yaml"
    config.write_text(
        "slas:\n  - name: from_file\n    kind: freshness\n    target: t\n    max_age: 1h\n"
    )
    engine = _new_engine(store, None, config)
    caplog.set_level(logging.INFO, logger="coplane.slas.engine")
    engine.reload()
    [line] = [r for r in caplog.records if r.__dict__.get("decision") == "config.reloaded"]
    assert line.__dict__["slas"] == 1 and "1 SLAs, 0 channels" in line.getMessage()
