"""Error budgets: compliance against the objective, minutes left, and burn rates, from the
times incidents were open; and from a backtest's breaches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from coplane.events.model import decode_events
from coplane.rules.budget import breached_seconds, error_budget
from coplane.rules.model import SLA
from coplane.slas.backtest import run_backtest

ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_overlapping_incidents_count_once() -> None:
    spans = [(NOW - 3 * HOUR, NOW - HOUR), (NOW - 2 * HOUR, NOW - HOUR / 2), (NOW - HOUR / 4, None)]
    assert breached_seconds(spans, NOW - 4 * HOUR, NOW) == 2.5 * 3600 + 900


def test_budget_left_and_compliance_over_the_period() -> None:
    # 99.5% over 30 days allows 216 minutes; one 60-minute incident a week ago spent 60.
    spans = [(NOW - timedelta(days=7), NOW - timedelta(days=7) + HOUR)]
    b = error_budget(99.5, None, spans, NOW - timedelta(days=90), NOW)
    assert (b.budget_s / 60, b.spent_s / 60, b.left_s / 60) == pytest.approx((216, 60, 156))
    assert b.compliance == pytest.approx(1 - 3600 / (30 * 86400))
    assert b.burn_rates == {HOUR: 0.0, 6 * HOUR: 0.0}
    # An incident older than the period no longer counts.
    old = error_budget(99.5, timedelta(days=5), spans, NOW - timedelta(days=90), NOW)
    assert old.spent_s == 0 and old.compliance == 1.0


def test_burn_rates_show_how_fast_the_budget_goes() -> None:
    # Open for the last 30 minutes: half of the last hour, 1/12 of the last six.
    spans = [(NOW - HOUR / 2, None)]
    b = error_budget(99.5, None, spans, NOW - timedelta(days=90), NOW)
    assert b.burn_rates[HOUR] == pytest.approx(0.5 / 0.005)
    assert b.burn_rates[6 * HOUR] == pytest.approx((1 / 12) / 0.005)


def test_a_young_sla_is_measured_since_it_was_created() -> None:
    spans = [(NOW - HOUR, NOW - HOUR / 2)]
    b = error_budget(99.0, None, spans, NOW - 2 * HOUR, NOW)
    assert b.compliance == pytest.approx(0.75)
    assert b.burn_rates[6 * HOUR] == pytest.approx(0.25 / 0.01)  # over its 2 hours
    fresh = error_budget(99.0, None, [], NOW, NOW)
    assert fresh.compliance is None and fresh.burn_rates[HOUR] is None
    overspent = error_budget(99.99, None, [(NOW - 2 * HOUR, None)], NOW - timedelta(days=40), NOW)
    assert overspent.left_s < 0


def test_budget_of_a_table_late_every_day_in_a_backtest() -> None:
    tz = ZoneInfo("Europe/Berlin")
    sla = ADAPTER.validate_python({
        "name": "sales", "kind": "freshness", "target": "wh.sales", "deadline": "0 9 * * *",
        "timezone": "Europe/Berlin", "objective": "99.5%", "objective_period": "7d",
    })  # fmt: skip
    start = datetime(2026, 11, 16, 10, tzinfo=tz)
    loads = [(start + timedelta(days=d)).replace(hour=9, minute=10) for d in range(8)]
    events = decode_events(
        b"["
        + b",".join(
            b'{"occurred": "%s", "event": "asset.updated", "resource": {"id": "wh.sales"}}'
            % at.isoformat().encode()
            for at in loads
        )
        + b"]"
    )
    end = start + timedelta(days=7)
    result = run_backtest(sla, start, end, [(e.occurred, e) for e in events])
    spans = [(b.breached_at, b.resolved_at) for b in result.breaches]
    assert sla.objective is not None
    budget = error_budget(sla.objective, sla.objective_period, spans, start, end)
    # Seven 10-minute breaches of a 7-day budget of 50.4 minutes.
    assert budget.spent_s == 7 * 600
    assert budget.left_s / 60 == pytest.approx(50.4 - 70)
    assert budget.compliance == pytest.approx(1 - 4200 / (7 * 86400))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"objective": "105%"}, "less than 100"),
        ({"objective": "most"}, "'most' is not a percentage"),
        ({"objective": True}, "an objective is a percentage"),
        ({"objective_period": "7d"}, "objective_period needs an objective"),
        ({"objective": 99, "objective_period": "120d"}, "an objective_period is at most 90d"),
    ],
)
def test_bad_objectives_are_refused(fields: dict[str, object], message: str) -> None:
    base = {"name": "q", "kind": "quality", "target": "wh.sales"}
    with pytest.raises(ValidationError, match=message):
        ADAPTER.validate_python({**base, **fields})
