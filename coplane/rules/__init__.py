"""Pure SLA evaluation rules: `evaluate(sla, facts, now)` dispatching on the SLA's kind."""

from __future__ import annotations

from datetime import datetime

from coplane.rules import (
    completion,
    duration,
    expected_event,
    freshness,
    heartbeat,
    quality,
)
from coplane.rules.facts import Evaluation, Facts
from coplane.rules.model import (
    CompletionSLA,
    DurationSLA,
    ExpectedEventSLA,
    FreshnessSLA,
    HeartbeatSLA,
    QualitySLA,
)

__all__ = ["evaluate"]

AnySLA = FreshnessSLA | CompletionSLA | DurationSLA | ExpectedEventSLA | HeartbeatSLA | QualitySLA


def evaluate(sla: AnySLA, facts: Facts, now: datetime) -> Evaluation:
    """What `sla` looks like at `now` given `facts` (no clock, no database)."""
    match sla:
        case FreshnessSLA():
            return freshness.evaluate(sla, facts, now)
        case CompletionSLA():
            return completion.evaluate(sla, facts, now)
        case DurationSLA():
            return duration.evaluate(sla, facts, now)
        case ExpectedEventSLA():
            return expected_event.evaluate(sla, facts, now)
        case HeartbeatSLA():
            return heartbeat.evaluate(sla, facts, now)
        case QualitySLA():
            return quality.evaluate(sla, facts, now)
    raise TypeError(f"not an SLA: {type(sla).__name__}")
