"""`evaluate` dispatches an SLA parsed from configuration to its kind's rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import TypeAdapter

from coplane.rules import evaluate
from coplane.rules.facts import Facts
from coplane.rules.model import SLA

ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)


def test_an_sla_parsed_from_yaml_like_data_is_evaluated_by_its_kind() -> None:
    sla = ADAPTER.validate_python(
        {"name": "orders", "kind": "freshness", "target": "warehouse.orders", "max_age": "1h"}
    )
    facts = Facts(updates=[datetime(2026, 11, 22, 8, tzinfo=UTC)])
    result = evaluate(sla, facts, datetime(2026, 11, 22, 10, tzinfo=UTC))
    assert result.status == "breached"
    assert result.breaches[0].key == "orders:stale:2026-11-22T08:00:00Z"


def test_a_naive_now_is_refused() -> None:
    sla = ADAPTER.validate_python({"name": "q", "kind": "quality", "target": "warehouse.*"})
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(sla, Facts(), datetime(2026, 11, 22, 10))
