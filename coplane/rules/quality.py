"""Quality: every check on the target assets must pass; one breach per failing asset and check.

Semantics: the latest result of each (asset, check) counts; a failed one breaches (key per
SLA, asset and check, due when it failed, with the check's message), and the breach resolves
when that check passes again. `checks` limits the SLA to those check names.
"""

from __future__ import annotations

from datetime import datetime

from coplane.rules.common import local
from coplane.rules.facts import Breach, CheckFact, Evaluation, Facts
from coplane.rules.history import matches_target, require_aware
from coplane.rules.model import QualitySLA


def latest_results(
    sla: QualitySLA, facts: Facts, now: datetime
) -> dict[tuple[str, str], CheckFact]:
    """The latest result by `now` of each (asset, check) the SLA covers."""
    latest: dict[tuple[str, str], CheckFact] = {}
    for result in facts.checks:
        if result.at > now or not matches_target(sla.target, result.asset):
            continue
        if sla.checks is not None and result.check not in sla.checks:
            continue
        seen = latest.get((result.asset, result.check))
        if seen is None or result.at >= seen.at:
            latest[(result.asset, result.check)] = result
    return latest


def evaluate(sla: QualitySLA, facts: Facts, now: datetime) -> Evaluation:
    """Decide whether the latest check results on the target assets all passed."""
    now = require_aware(now)
    latest = latest_results(sla, facts, now)
    if not latest:
        return Evaluation(status="unknown", explanation=f"{sla.name}: no check result yet")
    breaches = [
        Breach(
            key=f"{sla.name}:{asset}:{check}",
            due=result.at,
            reason=f"{sla.name}: check {check} failed on {asset} at {local(result.at, 'UTC')}"
            + (f": {result.message}" if result.message else ""),
            window_start=result.at,
            resource=asset,
        )
        for (asset, check), result in sorted(latest.items())
        if not result.passed
    ]
    passed = [r.at for r in latest.values() if r.passed]
    last_met = max(passed) if passed else None
    if breaches:
        return Evaluation(
            status="breached",
            breaches=breaches,
            last_met=last_met,
            explanation=f"{sla.name}: {len(breaches)} of {len(latest)} checks failing; "
            + breaches[0].reason,
        )
    return Evaluation(
        status="ok",
        last_met=last_met,
        explanation=f"{sla.name}: all {len(latest)} checks passed",
    )
