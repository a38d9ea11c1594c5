"""Quality rules: one breach per failing asset and check, resolving when it passes again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coplane.rules import evaluate
from coplane.rules.facts import CheckFact, Facts
from coplane.rules.model import QualitySLA

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)
SLA = QualitySLA(name="sales_quality", kind="quality", target="warehouse.sales*")


def test_failing_checks_breach_once_per_asset_and_check_with_message() -> None:
    checks = [
        CheckFact("warehouse.sales", "not_null_id", False, T0, "3 rows with null id"),
        CheckFact("warehouse.sales_eu", "not_null_id", False, T0),
        CheckFact("warehouse.sales", "unique_id", True, T0),
        CheckFact("warehouse.orders", "unique_id", False, T0),  # not a target
    ]
    result = evaluate(SLA, Facts(checks=checks), T0 + timedelta(minutes=1))
    assert result.status == "breached"
    assert [b.key for b in result.breaches] == [
        "sales_quality:warehouse.sales:not_null_id",
        "sales_quality:warehouse.sales_eu:not_null_id",
    ]
    assert result.breaches[0].reason == (
        "sales_quality: check not_null_id failed on warehouse.sales at 2026-11-22 10:00 UTC: "
        "3 rows with null id"
    )
    assert result.breaches[0].resource == "warehouse.sales"


def test_passing_again_resolves() -> None:
    checks = [
        CheckFact("warehouse.sales", "not_null_id", False, T0, "3 rows with null id"),
        CheckFact("warehouse.sales", "not_null_id", True, T0 + timedelta(hours=1)),
    ]
    assert evaluate(SLA, Facts(checks=checks), T0 + timedelta(minutes=5)).status == "breached"
    result = evaluate(SLA, Facts(checks=checks), T0 + timedelta(hours=2))
    assert result.status == "ok" and result.breaches == []
    assert result.last_met == T0 + timedelta(hours=1)


def test_checks_filter_limits_the_sla() -> None:
    sla = QualitySLA(name="q", kind="quality", target="warehouse.sales", checks=["unique_id"])
    checks = [
        CheckFact("warehouse.sales", "not_null_id", False, T0),
        CheckFact("warehouse.sales", "unique_id", True, T0),
    ]
    assert evaluate(sla, Facts(checks=checks), T0).status == "ok"


def test_no_results_is_unknown() -> None:
    assert evaluate(SLA, Facts(), T0).status == "unknown"
