"""What an SLA says: one pydantic model per kind, as written in coplane.yaml or sent to the API."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

Severity = Literal["info", "warning", "critical"]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> Any:
    """'90s', '30m', '1h30m', '2d' (or seconds as a number) as a timedelta."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '30m', '1h30m' or '2d'")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value.strip())
        if not match or not any(match.groups()):
            raise ValueError(
                f"{value!r} is not a duration: use forms like '90s', '30m', '1h30m', '2d'"
            )
        d, h, m, s = (int(g) if g else 0 for g in match.groups())
        return timedelta(days=d, hours=h, minutes=m, seconds=s)
    return value


def check_cron(value: Any) -> Any:
    """A cron expression of 5 fields, or 6 with seconds first."""
    if not isinstance(value, str):
        raise ValueError("a cron expression is a string like '0 9 * * *'")
    fields = value.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(
        value, second_at_beginning=len(fields) == 6
    ):
        raise ValueError(f"{value!r} is not a cron expression of 5 or 6 fields")
    return value


def check_timezone(value: Any) -> Any:
    """An IANA time zone name, such as Europe/Berlin."""
    if not isinstance(value, str):
        raise ValueError("a time zone is an IANA name like 'Europe/Berlin'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (like 'Europe/Berlin')") from None
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration), Field(gt=timedelta(0))]
Cron = Annotated[str, BeforeValidator(check_cron)]
TimeZone = Annotated[str, BeforeValidator(check_timezone)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=200)]


class Remediate(BaseModel):
    """What to start when the SLA is breached: a deployment's run, once per incident.

    `flow` alone (the older form) only records `remediation.requested`; `deployment` runs it.
    String parameters are Jinja2 templates over the incident (`{{ incident.resource }}`).
    """

    model_config = ConfigDict(extra="forbid")
    deployment: str | None = Field(None, min_length=1)
    flow: str | None = Field(None, min_length=1)
    parameters: dict[str, Any] = {}
    max_runs_per_hour: int = Field(10, ge=1, le=10_000)

    @model_validator(mode="after")
    def _something(self) -> Remediate:
        if self.deployment is None and self.flow is None:
            raise ValueError("remediate needs `deployment` (or the older `flow`)")
        return self


class EventMatch(BaseModel):
    """Which events count: a name (trailing `*` allowed) and optionally a resource id or glob."""

    model_config = ConfigDict(extra="forbid")
    event: str = Field(min_length=1)
    resource: str | None = None


class SLABase(BaseModel):
    """Fields every kind has."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    severity: Severity = "warning"
    owners: list[str] = []
    notify: list[str] = []  # channel names
    remediate: Remediate | None = None
    labels: dict[str, str] = {}
    description: str | None = None


def _exactly_one(model: BaseModel, *fields: str) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(fields)}")


class FreshnessSLA(SLABase):
    """`target` must see asset.updated (or a pipeline's run.completed) within `max_age`, or
    since each `deadline` window."""

    kind: Literal["freshness"]
    target: str = Field(min_length=1)  # resource id, or a glob with * and ?
    max_age: Duration | None = None
    deadline: Cron | None = None
    timezone: TimeZone = "UTC"

    @model_validator(mode="after")
    def _one_rule(self) -> FreshnessSLA:
        _exactly_one(self, "max_age", "deadline")
        return self


class CompletionSLA(SLABase):
    """`target` pipeline must complete by each `deadline`, or `within` of a run.started."""

    kind: Literal["completion"]
    target: str = Field(min_length=1)
    deadline: Cron | None = None
    within: Duration | None = None
    timezone: TimeZone = "UTC"

    @model_validator(mode="after")
    def _one_rule(self) -> CompletionSLA:
        _exactly_one(self, "deadline", "within")
        return self


class DurationSLA(SLABase):
    """Runs of `target` longer than `max_duration`, or than `factor` x their p95 over the last
    `history` runs, breach, even while still running."""

    kind: Literal["duration"]
    target: str = Field(min_length=1)
    max_duration: Duration | None = None
    factor: float | None = Field(None, gt=1.0)
    history: int = Field(20, ge=3, le=1000)

    @model_validator(mode="after")
    def _a_bound(self) -> DurationSLA:
        if self.max_duration is None and self.factor is None:
            raise ValueError("give max_duration, factor, or both")
        return self


class ExpectedEventSLA(SLABase):
    """After an event matching `after` (or at each `deadline`), one matching `expect` must
    occur within `within`; `for_each` splits it per value of that label of the resource."""

    kind: Literal["expected_event"]
    after: EventMatch | None = None
    deadline: Cron | None = None
    timezone: TimeZone = "UTC"
    expect: EventMatch
    within: Duration
    for_each: str | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> ExpectedEventSLA:
        _exactly_one(self, "after", "deadline")
        return self


class HeartbeatSLA(SLABase):
    """A cron monitor (`/ping/{target}`) must ping per `schedule` (cron) or `period`, plus
    `grace`; a start with no end within `max_runtime` breaches (Healthchecks.io semantics)."""

    kind: Literal["heartbeat"]
    target: Name  # the monitor's slug
    schedule: Cron | None = None
    period: Duration | None = None
    grace: Duration = timedelta(minutes=5)
    max_runtime: Duration | None = None
    timezone: TimeZone = "UTC"

    @model_validator(mode="after")
    def _one_schedule(self) -> HeartbeatSLA:
        _exactly_one(self, "schedule", "period")
        return self


class QualitySLA(SLABase):
    """Any check.failed on `target` assets breaches: one incident per asset and check."""

    kind: Literal["quality"]
    target: str = Field(min_length=1)
    checks: list[str] | None = None  # only these check names; all when absent


SLA = Annotated[
    FreshnessSLA | CompletionSLA | DurationSLA | ExpectedEventSLA | HeartbeatSLA | QualitySLA,
    Field(discriminator="kind"),
]
