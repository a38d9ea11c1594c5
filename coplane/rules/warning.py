"""Early warnings: when an SLA with `warn_at_risk` warns, and what becomes of the warning.

Pure, like the rules. The forecast itself is `coplane.rules.forecast` (through the rule's
`at_risk` status); this module only decides about the warning that status raises:
- due: the evaluation is `at_risk` with a deadline ahead; its key names the SLA and that
  deadline (`name:due`, the key a missed deadline window's incident gets), so a forecast that
  flips between at_risk and ok within one window still warns once;
- breached: a breach of that window (its key, or any breach due at or after the warning's
  deadline, such as a `within` run's) is open: the warning turns into the incident;
- met: no such breach, and the target was met after the warning was raised, or the deadline
  passed without a breach (the next deadline lies beyond it).
The error budget's alert (`name:budget`) is no breach of a window and never settles a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from coplane.rules.budget import BUDGET_SUFFIX
from coplane.rules.common import iso
from coplane.rules.facts import Breach, Evaluation

Outcome = Literal["met", "breached"]


@dataclass(frozen=True, slots=True)
class WarningDue:
    """A warning to raise: its dedup key per SLA and window, the deadline, and why."""

    key: str
    due: datetime
    reason: str


def warning_due(name: str, warn: bool, evaluation: Evaluation) -> WarningDue | None:
    """The warning an evaluation of SLA `name` (with `warn_at_risk` = `warn`) raises, if any."""
    if not warn or evaluation.status != "at_risk" or evaluation.next_deadline is None:
        return None
    due = evaluation.next_deadline
    return WarningDue(f"{name}:{iso(due)}", due, evaluation.explanation)


def breach_of(key: str, due: datetime, evaluation: Evaluation) -> Breach | None:
    """The open breach an open warning (`key`, `due`) turned into, if any."""
    window = [b for b in evaluation.breaches if not b.key.endswith(BUDGET_SUFFIX)]
    for b in window:
        if b.key == key:
            return b
    later = [b for b in window if b.due >= due]
    return min(later, key=lambda b: b.due) if later else None


def outcome(key: str, due: datetime, opened: datetime, evaluation: Evaluation) -> Outcome | None:
    """What became of an open warning by this evaluation; None while it is still open."""
    if breach_of(key, due, evaluation) is not None:
        return "breached"
    if evaluation.status not in ("ok", "at_risk"):
        return None  # unknown (e.g. failed to evaluate), or breached for an older window
    if evaluation.last_met is not None and evaluation.last_met >= opened:
        return "met"
    if evaluation.status == "ok" and (
        evaluation.next_deadline is None or evaluation.next_deadline > due
    ):
        return "met"  # the deadline passed without a breach
    return None
