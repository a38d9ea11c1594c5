"""SLA backtests: calendar cases on the simulated clock, late and unordered events, and the
`POST /api/slas/backtest` endpoint with its errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from coplane.events.model import Event, RelatedResource, Resource, decode_events
from coplane.rules.model import SLA
from coplane.slas import backtest
from coplane.slas.backtest import BacktestError, decode_given_events, run_backtest
from coplane.store import Store
from coplane.store.events import insert_events
from coplane.store.health import compliance

ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
DAG = "airflow.dag.sales_daily"


def completion(deadline: str = "0 9 * * *", timezone: str = "Europe/Berlin") -> dict[str, Any]:
    return {"name": "sales_done", "kind": "completion", "target": DAG,
            "deadline": deadline, "timezone": timezone}  # fmt: skip


def run_events(
    day: datetime, hour: int, minutes: int = 30, received: datetime | None = None
) -> list[dict[str, Any]]:
    """A run of DAG starting at `hour`:00 local on `day` and completing `minutes` later."""
    started = day.replace(hour=hour, minute=0)
    key = f"run-{started:%Y%m%d}"
    out = [
        {"id": str(uuid.uuid4()), "occurred": at.isoformat(), "event": name,
         "resource": {"id": DAG, "kind": "pipeline"}, "related": [{"role": "run", "id": key}]}
        for name, at in (("run.started", started), ("run.completed",
                                                     started + timedelta(minutes=minutes)))
    ]  # fmt: skip
    if received is not None:
        out[1]["received"] = received.isoformat()
    return out


def replay(
    sla: dict[str, Any], start: datetime, end: datetime, events: list[dict[str, Any]]
) -> backtest.BacktestResult:
    return run_backtest(ADAPTER.validate_python(sla), start, end, decode_given_events(events))


def dues(result: backtest.BacktestResult) -> list[datetime]:
    return [b.due.astimezone(UTC) for b in result.breaches]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timezone", "first", "expected"),
    [
        # 2026-03-29: Berlin goes from CET (+1) to CEST (+2); 09:00 is 08:00Z, then 07:00Z
        ("Europe/Berlin", datetime(2026, 3, 27),
         [utc(2026, 3, 27, 8), utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7)]),
        ("Europe/Berlin", datetime(2026, 10, 23),
         [utc(2026, 10, 23, 7), utc(2026, 10, 24, 7), utc(2026, 10, 25, 8),
          utc(2026, 10, 26, 8)]),
        # 2026-03-08 and 2026-11-01: New York's changes
        ("America/New_York", datetime(2026, 3, 6),
         [utc(2026, 3, 6, 14), utc(2026, 3, 7, 14), utc(2026, 3, 8, 13), utc(2026, 3, 9, 13)]),
        ("America/New_York", datetime(2026, 10, 30),
         [utc(2026, 10, 30, 13), utc(2026, 10, 31, 13), utc(2026, 11, 1, 14),
          utc(2026, 11, 2, 14)]),
    ],
)  # fmt: skip
def test_no_runs_breach_once_per_day_across_dst(
    timezone: str, first: datetime, expected: list[datetime]
) -> None:
    start = first.replace(tzinfo=ZoneInfo(timezone))
    result = replay(completion(timezone=timezone), start, start + timedelta(days=3, hours=12), [])
    assert dues(result) == expected
    assert [b.breached_at for b in result.breaches] == expected  # evaluated at each deadline
    assert len({b.key for b in result.breaches}) == 4


def test_one_breach_for_the_one_missed_day_across_dst() -> None:
    tz = ZoneInfo("Europe/Berlin")
    days = [datetime(2026, 3, d, tzinfo=tz) for d in (27, 28, 30, 31)]  # not the 29th
    events = [e for day in days for e in run_events(day, 7)]
    start = datetime(2026, 3, 27, tzinfo=tz)
    result = replay(completion(), start, datetime(2026, 4, 1, tzinfo=tz), events)
    [breach] = result.breaches
    assert breach.due == utc(2026, 3, 29, 7) and breach.breached_at == utc(2026, 3, 29, 7)
    # the run of the 30th completes at 07:30 CEST: the engine would resolve it then
    assert breach.resolved_at == utc(2026, 3, 30, 5, 30)
    assert "sales_done" in breach.reason and breach.key.startswith("sales_done:")


def test_deadline_at_midnight() -> None:
    tz = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, 12, tzinfo=tz)
    result = replay(completion("0 0 * * *"), start, start + timedelta(days=2), [])
    # midnight of the 29th is 23:00Z on the 28th (CET); of the 30th, 22:00Z on the 29th (CEST)
    assert dues(result) == [utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)]


def test_late_event_breaches_then_resolves_when_it_arrives() -> None:
    tz = ZoneInfo("Europe/Berlin")
    day = datetime(2026, 11, 23, tzinfo=tz)
    start = day.replace(hour=6)
    # the run completed at 08:30 but the event was received at 09:40, after the deadline
    late = run_events(day, 8, received=day.replace(hour=9, minute=40))
    [breach] = replay(completion(), start, day.replace(hour=12), late).breaches
    assert breach.due == day.replace(hour=9) and breach.breached_at == day.replace(hour=9)
    assert breach.resolved_at == day.replace(hour=9, minute=40)
    # without `received`, an event arrives when it occurred: on time, no breach
    assert replay(completion(), start, day.replace(hour=12), run_events(day, 8)).breaches == []


def test_events_out_of_order_give_the_same_result() -> None:
    tz = ZoneInfo("Europe/Berlin")
    days = [datetime(2026, 11, d, tzinfo=tz) for d in (20, 22, 23)]
    events = [e for day in days for e in run_events(day, 7)]
    start, end = datetime(2026, 11, 20, tzinfo=tz), datetime(2026, 11, 24, tzinfo=tz)
    ordered = replay(completion(), start, end, events)
    shuffled = replay(completion(), start, end, list(reversed(events)))
    assert dues(ordered) == dues(shuffled) == [utc(2026, 11, 21, 8)]
    assert [b.resolved_at for b in shuffled.breaches] == [utc(2026, 11, 22, 6, 30)]


def test_no_events_at_all() -> None:
    sla = {"name": "f", "kind": "freshness", "target": "wh.orders", "max_age": "1h"}
    start = utc(2026, 11, 23)
    result = replay(sla, start, start + timedelta(days=1), [])
    # never updated: stale max_age after the SLA's creation, which is `start`, and stays so
    [breach] = result.breaches
    assert breach.key == "f:stale:never" and breach.due == start + timedelta(hours=1)
    assert breach.resolved_at is None and result.events == 0


def test_freshness_max_age_breaches_and_resolves() -> None:
    sla = {"name": "f", "kind": "freshness", "target": "wh.orders", "max_age": "1h"}
    start = utc(2026, 11, 23)
    updates = [start + timedelta(minutes=m) for m in (10, 30, 200)]
    events = [{"occurred": t.isoformat(), "event": "asset.updated",
               "resource": {"id": "wh.orders"}} for t in updates]  # fmt: skip
    first, second = replay(sla, start, start + timedelta(hours=5), events).breaches
    assert first.key == "f:stale:2026-11-23T00:30:00Z"  # one per staleness episode
    assert first.due == first.breached_at == start + timedelta(minutes=90)
    assert first.resolved_at == start + timedelta(minutes=200)
    assert second.due == second.breached_at == start + timedelta(minutes=260)
    assert second.resolved_at is None  # still stale at the end


def test_limits() -> None:
    sla = ADAPTER.validate_python(completion())
    start = utc(2026, 1, 1)
    with pytest.raises(BacktestError) as exc:
        run_backtest(sla, start, start, [])
    assert exc.value.where == "end"
    with pytest.raises(BacktestError, match="90 days"):
        run_backtest(sla, start, start + timedelta(days=91), [])
    good = {"occurred": "2026-01-01T00:00:00Z", "event": "x", "resource": {"id": "r"}}
    with pytest.raises(BacktestError) as exc:
        decode_given_events([good, {"event": "x", "resource": {"id": "r"}}])
    assert exc.value.where == "events[1].occurred"


# --- the endpoint -------------------------------------------------------------------------


def _body(**overrides: Any) -> dict[str, Any]:
    body = {"sla": completion(), "start": "2026-11-20T00:00:00+01:00",
            "end": "2026-11-23T00:00:00+01:00", "events": []}  # fmt: skip
    body.update(overrides)
    return body


def test_endpoint_answers_the_breaches(client: TestClient) -> None:
    r = client.post("/api/slas/backtest", json=_body())
    assert r.status_code == 200, r.text
    result = r.json()
    assert [b["due"] for b in result["breaches"]] == [
        "2026-11-20T08:00:00+00:00", "2026-11-21T08:00:00+00:00", "2026-11-22T08:00:00+00:00"
    ]  # fmt: skip
    first = result["breaches"][0]
    assert set(first) >= {"due", "breached_at", "resolved_at", "window_start", "reason", "key"}
    assert first["breached_at"] == first["due"] and first["resolved_at"] is None
    assert result["evaluations"] >= 4


def test_endpoint_uses_stored_events_as_received(client: TestClient, store: Store) -> None:
    tz = ZoneInfo("Europe/Berlin")
    days = [datetime(2026, 11, d, tzinfo=tz) for d in (20, 22)]
    stored = decode_events(msgspec.json.encode([e for d in days for e in run_events(d, 7)]))
    on_time: dict[datetime, list[Event]] = {}
    for e in stored:  # each event received when it occurred
        on_time.setdefault(e.occurred, []).append(e)
    with store.connect() as conn:
        for received, batch in on_time.items():
            insert_events(conn, batch, received, store.partitions)
    r = client.post("/api/slas/backtest", json=_body(events=None))
    assert r.status_code == 200, r.text
    [breach] = r.json()["breaches"]
    assert breach["due"] == "2026-11-21T08:00:00+00:00"
    assert breach["resolved_at"] == "2026-11-22T06:30:00+00:00"
    assert r.json()["events"] == 4


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sla": {**completion(), "deadline": "not cron"}}, "sla.deadline"),
        ({"sla": {**completion(), "kind": "nope"}}, "sla.kind"),
        ({"sla": None}, "sla"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2026-11-20T00:00:00"}, "start"),
        ({"end": None}, "end"),
        ({"end": "2026-11-19T00:00:00Z"}, "end"),
        ({"end": "2027-11-19T00:00:00Z"}, "end"),
        ({"events": {"not": "a list"}}, "events"),
        ({"events": [{"occurred": "2026-11-20T00:00:00Z", "event": "a.b",
                      "resource": {"id": "r"}}] * 3
          + [{"occurred": "soon", "event": "a.b", "resource": {"id": "r"}}]},
         "events[3].occurred"),
        ({"events": [{"occurred": "2026-11-20T00:00:00Z", "event": "a.b",
                      "resource": {"id": "r"}, "received": "2026-11-19T00:00:00Z"}]},
         "events[0].received"),
    ],
)  # fmt: skip
def test_endpoint_errors_name_the_field(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    r = client.post("/api/slas/backtest", json=_body(**change))
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(f"{field}:"), r.json()


def test_endpoint_refuses_too_many_events(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backtest, "MAX_EVENTS", 2)
    event = {"occurred": "2026-11-20T00:00:00Z", "event": "a.b", "resource": {"id": "r"}}
    r = client.post("/api/slas/backtest", json=_body(events=[event] * 3))
    assert r.status_code == 422
    assert r.json()["detail"] == "events: 3 events; the limit is 2"


def test_endpoint_refuses_too_many_evaluations(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backtest, "MAX_EVALUATIONS", 2)
    r = client.post("/api/slas/backtest", json=_body())
    assert r.status_code == 422
    assert "evaluations" in r.json()["detail"]


def test_stored_events_are_those_about_the_watched_resources(store: Store) -> None:
    at = utc(2026, 11, 23, 8)
    events = [
        Event(occurred=at, event="asset.updated", resource=Resource(id="wh.orders")),
        Event(occurred=at, event="asset.updated", resource=Resource(id="wh.other")),
        Event(occurred=at, event="run.completed", resource=Resource(id="load", kind="pipeline"),
              related=[RelatedResource(id="wh.orders", role="output")]),
    ]  # fmt: skip
    with store.connect() as conn:
        insert_events(conn, events, at, store.partitions)
        sla = ADAPTER.validate_python(
            {"name": "f", "kind": "freshness", "target": "wh.orders", "max_age": "1h"}
        )
        found = backtest.read_stored_events(conn, sla, at, at + timedelta(hours=1))
        assert sorted(e.resource.id for _, e in found) == ["load", "wh.orders"]
        assert all(received == at for received, _ in found)
        glob = ADAPTER.validate_python(
            {"name": "g", "kind": "freshness", "target": "wh.*", "max_age": "1h"}
        )
        assert len(backtest.read_stored_events(conn, glob, at, at + timedelta(hours=1))) == 3


def asset_updates(times: list[datetime]) -> list[dict[str, Any]]:
    """asset.updated of the sales table at each time."""
    return [
        {"id": str(uuid.uuid4()), "occurred": at.isoformat(), "event": "asset.updated",
         "resource": {"id": "warehouse.sales", "kind": "asset"}}
        for at in times
    ]  # fmt: skip


FRESH = {"name": "sales_fresh", "kind": "freshness", "target": "warehouse.sales",
         "deadline": "0 9 * * *", "timezone": "Europe/Berlin"}  # fmt: skip


def test_updated_at_0910_daily_breaches_every_day_until_0910() -> None:
    tz = ZoneInfo("Europe/Berlin")
    days = [datetime(2026, 3, 26, tzinfo=tz) + timedelta(days=d) for d in range(7)]  # spring DST
    events = asset_updates([d.replace(hour=9, minute=10) for d in days])
    start, end = days[0].replace(hour=10), days[-1].replace(hour=12)
    result = replay(FRESH, start, end, events)
    assert [(b.breached_at, b.resolved_at) for b in result.breaches] == [
        (d.replace(hour=9), d.replace(hour=9, minute=10)) for d in days[1:]
    ]
    # What the SLA page shows from these incidents: 10 minutes a day breached.
    windows = [(b.breached_at, b.resolved_at) for b in result.breaches]
    share = compliance(windows, start, end)
    assert share == pytest.approx(1 - 6 * 600 / (end - start).total_seconds())


def test_completion_finishing_at_0910_daily_breaches_every_day() -> None:
    tz = ZoneInfo("America/New_York")
    days = [datetime(2026, 10, d, tzinfo=tz) for d in range(29, 32)] + [
        datetime(2026, 11, d, tzinfo=tz) for d in (1, 2, 3)
    ]  # across fall back
    events = [e for d in days for e in run_events(d, 8, minutes=70)]
    start, end = days[0].replace(hour=10), days[-1].replace(hour=12)
    result = replay(completion(timezone="America/New_York"), start, end, events)
    assert [(b.breached_at, b.resolved_at) for b in result.breaches] == [
        (d.replace(hour=9), d.replace(hour=9, minute=10)) for d in days[1:]
    ]


def test_one_missing_morning_load_and_evening_loads() -> None:
    tz = ZoneInfo("Europe/Berlin")
    days = [datetime(2026, 11, d, tzinfo=tz) for d in range(16, 23)]
    start, end = days[0].replace(hour=10), days[-1].replace(hour=12)
    mornings = asset_updates([d.replace(hour=8) for d in days if d.day != 19])
    [breach] = replay(FRESH, start, end, mornings).breaches
    assert (breach.breached_at, breach.resolved_at) == (days[3].replace(hour=9),
                                                         days[4].replace(hour=8))  # fmt: skip
    evenings = asset_updates([d.replace(hour=22) for d in days])
    assert replay(FRESH, start, end, evenings).breaches == []
    bounded = replay({**FRESH, "window": "6h"}, start, end, evenings).breaches
    # each evening load, late for that morning, resolves it (the last after the end)
    assert [b.resolved_at for b in bounded] == [d.replace(hour=22) for d in days[1:-1]] + [None]


def test_a_business_calendar_skips_the_easter_deadlines_in_a_backtest() -> None:
    tz = ZoneInfo("Europe/Berlin")
    # Loads at 08:00 on business days only: Thursday 25 March, then Tuesday 30 March 2027.
    start, end = datetime(2027, 3, 24, 10, tzinfo=tz), datetime(2027, 4, 1, 12, tzinfo=tz)
    days = [datetime(2027, 3, d, 8, tzinfo=tz) for d in (24, 25, 30, 31)]
    days.append(datetime(2027, 4, 1, 8, tzinfo=tz))
    events = asset_updates(days)
    plain = replay(FRESH, start, end, events)
    # Without a calendar: Good Friday, the weekend (and its DST change) and Easter Monday.
    assert len(plain.breaches) == 4
    berlin = {**FRESH, "calendar": {"country": "DE", "subdivision": "BE"}}
    assert replay(berlin, start, end, events).breaches == []
    # Closed on the 31st: no load then, and no breach.
    shut = [e for e in events if "03-31" not in e["occurred"]]
    assert [b.due for b in replay(berlin, start, end, shut).breaches] == [
        datetime(2027, 3, 31, 9, tzinfo=tz)
    ]
    closed = {**FRESH, "calendar": {"country": "DE", "days_off": ["2027-03-31"]}}
    assert replay(closed, start, end, shut).breaches == []
    no_tuesday = [e for e in events if "03-30" not in e["occurred"]]
    [missed] = replay(berlin, start, end, no_tuesday).breaches
    assert missed.due == datetime(2027, 3, 30, 9, tzinfo=tz)
    assert missed.resolved_at == datetime(2027, 3, 31, 8, tzinfo=tz)


def test_a_replay_past_its_time_budget_stops_with_413() -> None:
    sla = ADAPTER.validate_python(completion())
    ticks = iter(range(1000))  # a clock that advances one second per look
    with pytest.raises(BacktestError) as exc:
        run_backtest(
            sla, utc(2026, 1, 1), utc(2026, 3, 1), [], budget=5, clock=lambda: next(ticks)
        )
    assert exc.value.status == 413 and "took over 5 s" in exc.value.message


def test_the_endpoint_answers_413_past_the_budget(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backtest, "TIME_BUDGET_S", -1.0)  # spent before the first evaluation
    r = client.post("/api/slas/backtest", json=_body())
    assert r.status_code == 413 and "choose a shorter window" in r.json()["detail"]


def test_more_backtests_at_once_than_the_slots_are_429(client: TestClient) -> None:
    with backtest.backtest_slot(), backtest.backtest_slot():
        busy = client.post("/api/slas/backtest", json=_body())
        assert busy.status_code == 429
        assert busy.headers["retry-after"] == str(backtest.BUSY_RETRY_S)
        assert "backtests are running already" in busy.json()["detail"]
        page = client.get("/backtest")  # the UI's preview says the same, in words
        assert page.status_code == 200
    assert client.post("/api/slas/backtest", json=_body()).status_code == 200  # free again


def test_warn_at_risk_reports_each_warning_and_what_became_of_it() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    days = [datetime(2026, 11, d, tzinfo=berlin) for d in (19, 20, 21, 22, 23)]
    history = [e for day in days[:3] for e in run_events(day, 7, 90)]  # 07:00-08:30 as a rule
    in_time = run_events(days[3], 8, 50)  # late, but quicker than usual: done 08:50
    too_late = run_events(days[4], 8, 100)  # done 09:40, after the 09:00 deadline
    sla = {**completion(), "warn_at_risk": True}
    result = replay(sla, days[0], days[4].replace(hour=12), history + in_time + too_late)
    warned = [(w.due.astimezone(UTC), w.outcome) for w in result.warnings]
    assert warned == [(utc(2026, 11, 22, 8), "met"), (utc(2026, 11, 23, 8), "breached")]
    first = result.warnings[0]
    # not started 35 minutes after its usual start: 90 minutes from then is after 09:05
    assert first.warned_at == utc(2026, 11, 22, 6, 35) + timedelta(seconds=1)
    assert first.settled_at == utc(2026, 11, 22, 7, 50)
    assert "has not started" in first.reason
    assert backtest.backtest_json(result)["warnings"][1]["outcome"] == "breached"
    # without the setting the same history warns nothing, and breaches the same
    plain = replay(completion(), days[0], days[4].replace(hour=12), history + in_time + too_late)
    assert plain.warnings == [] and dues(plain) == dues(result) == [utc(2026, 11, 23, 8)]
