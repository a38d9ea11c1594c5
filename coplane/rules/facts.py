"""What a rule needs to know, read from the store by the evaluator and handed to `evaluate`.

Rules never read the clock or the database: `evaluate(sla, facts, now)` is a pure function,
so the live engine, tests and backtests run the same code on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Status = Literal["ok", "at_risk", "breached", "unknown"]


@dataclass(frozen=True, slots=True)
class RunFact:
    """One run of the SLA's target pipeline."""

    id: str
    pipeline: str
    state: str | None  # scheduled, running, completed, failed, cancelled
    started: datetime | None
    ended: datetime | None
    key: str | None = None  # the producer's run key (Airflow run_id, ...), as users know it

    @property
    def label(self) -> str:
        """How messages name the run: its key, else its id."""
        return self.key or self.id


@dataclass(frozen=True, slots=True)
class EventFact:
    """One stored event that an SLA's matchers select."""

    event: str
    resource: str
    occurred: datetime
    labels: dict[str, str] = field(default_factory=dict)  # the resource's labels


@dataclass(frozen=True, slots=True)
class PingFact:
    """One ping of a cron monitor: kind is start, success or fail."""

    kind: Literal["start", "success", "fail"]
    at: datetime
    rid: str | None = None  # pairs a start with its end


@dataclass(frozen=True, slots=True)
class CheckFact:
    """The latest result of one check on one asset."""

    asset: str
    check: str
    passed: bool
    at: datetime
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the evaluator read for one SLA, oldest first unless said otherwise.

    `updates`: times the target was updated (asset.updated, or run.completed of a pipeline);
    `runs`: the target's runs, newest first; `events`: events matching the SLA's matchers;
    `pings`: the monitor's pings; `checks`: latest check results on the target assets.
    For forecasts (freshness, completion): `lineage` maps each node near the target to the
    nodes feeding it (lineage edges' sources: an asset's producers, a pipeline's inputs), and
    `history` holds the runs of those pipelines, newest first.
    Only what the SLA's kind uses is filled.
    """

    updates: list[datetime] = field(default_factory=list)
    runs: list[RunFact] = field(default_factory=list)
    events: list[EventFact] = field(default_factory=list)
    pings: list[PingFact] = field(default_factory=list)
    checks: list[CheckFact] = field(default_factory=list)
    created: datetime | None = None  # when the SLA was created: no window before it breaches
    lineage: dict[str, tuple[str, ...]] = field(default_factory=dict)
    history: dict[str, list[RunFact]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Breach:
    """One unmet expectation: the dedup key of its incident, when it was due, and why."""

    key: str  # stable per SLA and window (and per asset/check or label value): one incident
    due: datetime
    reason: str  # in words, e.g. "sales_daily: no update since 2026-11-22 08:57 CET; due 09:00"
    window_start: datetime | None = None
    resource: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What a rule decided at `now`."""

    status: Status
    breaches: list[Breach] = field(default_factory=list)  # open now; absent ones resolve
    next_deadline: datetime | None = None  # when to evaluate again at the latest
    last_met: datetime | None = None
    explanation: str = ""  # the decision in words
    # Resources beyond the SLA's own whose events can change this result (the pipelines a
    # forecast for the open window read): the engine watches them until the next evaluation.
    watching: tuple[str, ...] = ()
