"""Business calendars: which local dates are working days (weekdays, public holidays, closures).

A calendar is the SLA model's `Calendar`: working `weekdays`, minus the public holidays of a
`country` (and `subdivision`) as the `holidays` package knows them, minus `days_off`, plus
`working` dates (a holiday or weekend day worked anyway). Deadlines on other days are
skipped (see `schedule`), so the window after a holiday starts at the last business day's
deadline.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coplane.rules.model import Calendar

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order


@lru_cache(maxsize=256)
def _public(country: str, subdivision: str | None, year: int) -> dict[date, str]:
    """A country's public holidays in one year (the package computes them per year)."""
    import holidays  # imported on first use: it takes ~0.1 s, and most SLAs have no calendar

    return dict(holidays.country_holidays(country, subdiv=subdivision, years=year))


def day_off(calendar: Calendar, day: date) -> str | None:
    """Why `day` is not a business day (a holiday's name, 'closed', or its weekday), or None."""
    if day in calendar.working:
        return None
    if day in calendar.days_off:
        return "closed"
    if calendar.country is not None:
        name = _public(calendar.country, calendar.subdivision, day.year).get(day)
        if name:
            return name
    if WEEKDAYS[day.weekday()] not in calendar.weekdays:
        return day.strftime("%A")
    return None


def is_business_day(calendar: Calendar, day: date) -> bool:
    """True when `day` is a working day in `calendar`."""
    return day_off(calendar, day) is None


def days_off(calendar: Calendar, year: int) -> list[tuple[date, str]]:
    """Every day of `year` that is not a business day, with why, oldest first."""
    day, found = date(year, 1, 1), []
    while day.year == year:
        why = day_off(calendar, day)
        if why is not None:
            found.append((day, why))
        day += timedelta(days=1)
    return found

