"""Helpers the rules share: deadline windows, event matching and times in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from coplane.events.names import event_name_matches
from coplane.rules import forecast, schedule
from coplane.rules.facts import Breach, Evaluation, EventFact, Facts
from coplane.rules.forecast import Forecast
from coplane.rules.history import matches_resource
from coplane.rules.model import Calendar
from coplane.rules.schedule import zone


def local(at: datetime, tz: str) -> str:
    """An instant as local wall-clock text with the zone's abbreviation: 2026-11-22 08:57 CET."""
    dt = at.astimezone(zone(tz))
    pattern = "%Y-%m-%d %H:%M:%S %Z" if dt.second else "%Y-%m-%d %H:%M %Z"
    return dt.strftime(pattern)


def local_due(due: datetime, tz: str, ref: datetime | None) -> str:
    """A due time as 09:00 when it falls on `ref`'s local day, else with date and zone."""
    dt = due.astimezone(zone(tz))
    if ref is not None and ref.astimezone(zone(tz)).date() == dt.date():
        return dt.strftime("%H:%M:%S" if dt.second else "%H:%M")
    return local(due, tz)


def span(delta: timedelta) -> str:
    """A duration in words: 1d 2h, 2h 10m, 45s."""
    seconds = max(0, int(delta.total_seconds()))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return " ".join(parts)


def iso(at: datetime) -> str:
    """An instant in UTC ISO form, the stable part of incident keys."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_matches(event: EventFact, name: str, resource: str | None) -> bool:
    """True when the event's name matches `name` (trailing `*`) and its resource `resource`."""
    return event_name_matches(name, event.event) and matches_resource(resource, event.resource)


def window_breaches(
    name: str,
    cron: str,
    tz: str,
    now: datetime,
    created: datetime | None,
    last: datetime | None,
    noun: str,
    resource: str,
    *,
    lead: timedelta | None = None,
    not_before: str | None = None,
    calendar: Calendar | None = None,
) -> list[Breach]:
    """One breach per passed deadline window not met by `last` (the latest fulfilling time).

    A window is met when something fulfilled it at or after it opened (`schedule.opens`): in
    time if by its due, late otherwise (which resolves the breach). Something before the
    window opened is the previous deadline's, not this one's: a load late every day breaches
    every day. Windows come from `schedule.windows`.
    """
    breaches: list[Breach] = []
    for window in schedule.windows(cron, tz, now, created, calendar=calendar):
        opening = schedule.opens(
            window.start, window.due, lead=lead, not_before=not_before, timezone=tz
        )
        assert opening is not None  # a window always has a start
        if last is not None and last >= opening:
            continue
        what = f"no {noun} since {local(last, tz)}" if last else f"no {noun} yet"
        breaches.append(
            Breach(
                key=f"{name}:{iso(window.due)}",
                due=window.due,
                reason=f"{name}: {what}; due {local_due(window.due, tz, last)}",
                window_start=opening,
                resource=resource,
            )
        )
    return breaches


def summarise(breaches: list[Breach]) -> str:
    """The newest breach's reason, with how many windows are open when there are several."""
    extra = f" ({len(breaches)} open)" if len(breaches) > 1 else ""
    return breaches[-1].reason + extra


def deadline_evaluation(
    name: str,
    cron: str,
    tz: str,
    target: str,
    facts: Facts,
    now: datetime,
    last: datetime | None,
    noun: str,
    verb: str,
    *,
    lead: timedelta | None = None,
    not_before: str | None = None,
    calendar: Calendar | None = None,
) -> Evaluation:
    """Deadline windows met by `last` (the latest `noun`): breached, at risk, unknown or ok.

    Shared by freshness (met by an update) and completion (met by a completed run); `lead`
    and `not_before` are the SLA's `window` and `not_before` (see `schedule.opens`); a
    `calendar` skips the deadlines on days that are not business days.
    """
    upcoming = schedule.next_deadline(cron, tz, now, calendar)
    breaches = window_breaches(
        name, cron, tz, now, facts.created, last, noun, target,
        lead=lead, not_before=not_before, calendar=calendar,
    )  # fmt: skip
    if breaches:
        return Evaluation(
            status="breached",
            breaches=breaches,
            next_deadline=upcoming,
            last_met=last,
            explanation=summarise(breaches),
        )

    current = schedule.previous_deadline(cron, tz, now, calendar)
    opening = None
    if upcoming is not None:
        opening = schedule.opens(current, upcoming, lead=lead, not_before=not_before, timezone=tz)
    met_current = last is not None and opening is not None and last >= opening
    wake = upcoming
    watching: tuple[str, ...] = ()  # while the window is open, upstream runs change forecasts
    if not met_current and upcoming is not None:
        window = forecast.Window(opening, upcoming, cron, tz, calendar)
        watching = forecast.watched(target, facts)
        risk = forecast.forecast(target, facts, now, window)
        if risk is not None:
            return Evaluation(
                status="at_risk",
                next_deadline=upcoming,
                last_met=last,
                explanation=at_risk_text(name, target, risk, upcoming, tz, now),
                watching=watching,
            )
        soon = forecast.wake_at(target, facts, now, window)
        wake = soon if soon is not None and soon < upcoming else upcoming
    due_text = f"; next due {local(upcoming, tz)}" if upcoming else ""
    if last is None:  # every passed window would have breached, so none has passed yet
        return Evaluation(
            status="unknown",
            next_deadline=wake,
            explanation=f"{name}: no {noun} yet{due_text}",
            watching=watching,
        )
    return Evaluation(
        status="ok",
        next_deadline=wake,
        last_met=last,
        explanation=f"{name}: {verb} {local(last, tz)}{due_text}",
        watching=watching,
    )


def at_risk_text(
    name: str, target: str, risk: Forecast, due: datetime, tz: str, now: datetime
) -> str:
    """An at_risk explanation: the ETA against the deadline, and the upstream to blame."""
    after = f"after the deadline {local_due(due, tz, risk.eta)}"
    if risk.run is not None:
        of = "" if risk.pipeline == target else f" of {risk.pipeline}"
        return (
            f"{name}: run {risk.run.label}{of} is expected to finish {local(risk.eta, tz)}, "
            + after
        )
    usual = f" (usually by {local_due(risk.usual_start, tz, now)})" if risk.usual_start else ""
    text = f"{name}: ETA {local(risk.eta, tz)}, {after}: {risk.pipeline} has not started{usual}"
    if risk.blame is not None and risk.late is not None:
        text += f"; waiting on {risk.blame}, {span(risk.late)} late"
    return text
