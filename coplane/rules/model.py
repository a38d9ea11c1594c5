"""What an SLA says: one pydantic model per kind, as written in coplane.yaml or sent to the API."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

Severity = Literal["info", "warning", "critical"]

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> Any:
    """'90s', '30m', '1h30m', '2d' (or seconds as a number) as a timedelta."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '30m', '1h30m' or '2d'")
    try:
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
    except OverflowError:  # past timedelta's 999,999,999 days
        raise ValueError(f"{value!r} is too long for a duration") from None
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


def parse_percent(value: Any) -> Any:
    """'99.5%' (or 99.5) as the number 99.5."""
    if isinstance(value, bool):
        raise ValueError("an objective is a percentage like '99.5%'")
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage like '99.5%'") from None
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration), Field(gt=timedelta(0))]
Percent = Annotated[float, BeforeValidator(parse_percent), Field(gt=0, lt=100)]
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


def _at_most_90_days(value: timedelta) -> timedelta:
    # The SLA page reads this much incident history on every view: keep it bounded.
    if value > timedelta(days=90):
        raise ValueError("an objective_period is at most 90d")
    return value


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class Calendar(BaseModel):
    """Business days: `weekdays`, less a country's public holidays and `days_off`, plus the
    `working` dates (see coplane.rules.calendar)."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # hashable: schedules cache on it
    country: str | None = None  # ISO 3166-1 alpha-2, as the holidays package names it
    subdivision: str | None = None  # its ISO 3166-2 part: BE for Berlin, ENG for England
    weekdays: tuple[Weekday, ...] = Field(("mon", "tue", "wed", "thu", "fri"), min_length=1)
    days_off: tuple[date, ...] = ()  # closures beyond the public holidays
    working: tuple[date, ...] = ()  # worked although a holiday or a day off

    @model_validator(mode="after")
    def _known_region(self) -> Calendar:
        if self.country is None:
            if self.subdivision is not None:
                raise ValueError("subdivision needs a country")
            return self
        import holidays  # only when a calendar names a country: its import takes ~0.1 s

        supported = holidays.list_supported_countries()
        if self.country not in supported:
            raise ValueError(
                f"country {self.country!r} is not an ISO 3166 code the holidays package knows"
            )
        if self.subdivision is not None and self.subdivision not in supported[self.country]:
            known = ", ".join(supported[self.country]) or "none"
            raise ValueError(
                f"subdivision {self.subdivision!r} is not one of {self.country}'s ({known})"
            )
        return self


def _calendar_given(value: Any) -> Any:
    """A calendar's definition; its name is only looked up in a config file's `calendars:`."""
    if isinstance(value, str):
        raise ValueError(
            f"{value!r} names a calendar: names are looked up in a config file's calendars:, "
            "elsewhere give the calendar itself ({country, subdivision, weekdays, days_off, "
            "working})"
        )
    return value


BusinessDays = Annotated[Calendar | None, BeforeValidator(_calendar_given)]


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
    # An error budget: the share of `objective_period` the SLA must be met (not `period`,
    # which a heartbeat already uses for its ping interval).
    objective: Percent | None = None
    objective_period: Annotated[Duration, AfterValidator(_at_most_90_days)] | None = None
    # One early warning per deadline window its forecast says will be missed (rules/warning.py)
    warn_at_risk: bool = False

    @model_validator(mode="after")
    def _period_needs_objective(self) -> SLABase:
        if self.objective_period is not None and self.objective is None:
            raise ValueError("objective_period needs an objective")
        return self


def _exactly_one(model: BaseModel, *fields: str) -> None:
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(fields)}")


def _calendar_needs(model: BaseModel, schedule: str) -> None:
    """A calendar skips the deadlines of a cron schedule: only with one."""
    if getattr(model, "calendar", None) is not None and getattr(model, schedule) is None:
        raise ValueError(f"calendar needs a {schedule}")


def _check_opening(model: FreshnessSLA | CompletionSLA) -> None:
    """`window` and `not_before` bound a deadline's window: one of them, and only with one."""
    # Deadlines are looked at 7 days back (schedule.MAX_LOOKBACK): a window as long at most.
    if model.window is not None and model.window > timedelta(days=7):
        raise ValueError("window is at most 7d")
    if model.window is not None and model.not_before is not None:
        raise ValueError("give window or not_before, not both")
    if model.deadline is None:
        for name in ("window", "not_before"):
            if getattr(model, name) is not None:
                raise ValueError(f"{name} needs a deadline")


class FreshnessSLA(SLABase):
    """`target` must see asset.updated (or a pipeline's run.completed) within `max_age`, or
    since each `deadline` window; `window` (a duration) or `not_before` (a cron) bounds how
    early before the deadline an update counts for it."""

    kind: Literal["freshness"]
    target: str = Field(min_length=1)  # resource id, or a glob with * and ?
    max_age: Duration | None = None
    deadline: Cron | None = None
    window: Duration | None = None
    not_before: Cron | None = None
    timezone: TimeZone = "UTC"
    calendar: BusinessDays = None

    @model_validator(mode="after")
    def _one_rule(self) -> FreshnessSLA:
        _exactly_one(self, "max_age", "deadline")
        _check_opening(self)
        _calendar_needs(self, "deadline")
        return self


class CompletionSLA(SLABase):
    """`target` pipeline must complete by each `deadline`, or `within` of a run.started;
    `window` or `not_before` bound a deadline's window as in freshness."""

    kind: Literal["completion"]
    target: str = Field(min_length=1)
    deadline: Cron | None = None
    within: Duration | None = None
    window: Duration | None = None
    not_before: Cron | None = None
    timezone: TimeZone = "UTC"
    calendar: BusinessDays = None

    @model_validator(mode="after")
    def _one_rule(self) -> CompletionSLA:
        _exactly_one(self, "deadline", "within")
        _check_opening(self)
        _calendar_needs(self, "deadline")
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
    calendar: BusinessDays = None

    @model_validator(mode="after")
    def _one_trigger(self) -> ExpectedEventSLA:
        _exactly_one(self, "after", "deadline")
        _calendar_needs(self, "deadline")
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
    calendar: BusinessDays = None

    @model_validator(mode="after")
    def _one_schedule(self) -> HeartbeatSLA:
        _exactly_one(self, "schedule", "period")
        _calendar_needs(self, "schedule")
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
