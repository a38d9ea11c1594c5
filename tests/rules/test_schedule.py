"""Deadline calendars: DST gaps and folds, midnight, seconds and the lookback bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from coplane.rules import schedule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_spring_forward_berlin_yields_one_deadline_at_three() -> None:
    # 2026-03-29: Berlin clocks jump from 02:00 to 03:00; 02:30 does not exist.
    found = schedule.deadlines_between(
        "30 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 29, 22)
    )
    assert found == [utc(2026, 3, 29, 1, 0)]
    assert found[0].astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"


def test_spring_forward_new_york_yields_one_deadline_at_three() -> None:
    found = schedule.deadlines_between(
        "30 2 * * *", "America/New_York", utc(2026, 3, 8, 0), utc(2026, 3, 9, 0)
    )
    assert found == [utc(2026, 3, 8, 7, 0)]
    assert found[0].astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:00 EDT"


def test_times_in_the_gap_collapse_into_one_deadline() -> None:
    found = schedule.deadlines_between(
        "*/30 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 15), utc(2026, 3, 29, 1, 45)
    )
    # 01:30 CET, then 02:00, 02:30 and 03:00 are all 03:00 CEST, then 03:30 and 04:00 CEST
    assert found == [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]


def test_fall_back_berlin_yields_the_first_occurrence_only() -> None:
    # 2026-10-25: 02:00-03:00 happens twice in Berlin (CEST, then CET).
    found = schedule.deadlines_between(
        "30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)
    )
    assert found == [utc(2026, 10, 25, 0, 30)]
    assert found[0].astimezone(BERLIN).strftime("%H:%M %Z") == "02:30 CEST"


def test_fall_back_new_york_yields_the_first_occurrence_only() -> None:
    found = schedule.deadlines_between(
        "30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 1, 12)
    )
    assert found == [utc(2026, 11, 1, 5, 30)]
    assert found[0].astimezone(NEW_YORK).strftime("%H:%M %Z") == "01:30 EDT"


def test_previous_deadline_during_the_repeated_hour_is_the_first_occurrence() -> None:
    # 02:15 CET (the second pass through 02:xx) comes after 02:30 CEST (the first pass).
    now = datetime(2026, 10, 25, 2, 15, fold=1, tzinfo=BERLIN)
    assert now.astimezone(UTC) == utc(2026, 10, 25, 1, 15)
    assert schedule.previous_deadline("30 2 * * *", "Europe/Berlin", now) == utc(
        2026, 10, 25, 0, 30
    )
    assert schedule.next_deadline("30 2 * * *", "Europe/Berlin", now) == utc(2026, 10, 26, 1, 30)


def test_midnight_deadline_across_the_day_boundary() -> None:
    now = datetime(2026, 11, 23, 0, 30, tzinfo=BERLIN)
    wins = schedule.windows("0 0 * * *", "Europe/Berlin", now, since=utc(2026, 11, 22, 0))
    assert wins == [schedule.Window(start=utc(2026, 11, 21, 23), due=utc(2026, 11, 22, 23))]
    before = datetime(2026, 11, 22, 23, 59, tzinfo=BERLIN)
    assert schedule.next_deadline("0 0 * * *", "Europe/Berlin", before) == utc(2026, 11, 22, 23)
    # a deadline exactly at `now` has passed
    assert schedule.previous_deadline("0 0 * * *", "Europe/Berlin", utc(2026, 11, 22, 23)) == utc(
        2026, 11, 22, 23
    )


def test_six_field_cron_has_seconds_first() -> None:
    now = datetime(2026, 11, 22, 8, 0, tzinfo=BERLIN)
    due = schedule.next_deadline("30 0 9 * * *", "Europe/Berlin", now)
    assert due == datetime(2026, 11, 22, 8, 0, 30, tzinfo=UTC)


def test_windows_since_creation_are_all_reported() -> None:
    now = utc(2026, 11, 22, 12)
    wins = schedule.windows("0 9 * * *", "UTC", now, since=utc(2026, 11, 19, 10))
    assert [w.due for w in wins] == [
        utc(2026, 11, 20, 9),
        utc(2026, 11, 21, 9),
        utc(2026, 11, 22, 9),
    ]
    assert wins[0].start == utc(2026, 11, 19, 9)


def test_lookback_is_bounded_by_days_and_by_count() -> None:
    now = utc(2026, 11, 22, 12)
    daily = schedule.windows("0 9 * * *", "UTC", now)
    assert len(daily) == 7 and daily[0].due == utc(2026, 11, 16, 9)
    hourly = schedule.windows("0 * * * *", "UTC", now)
    assert len(hourly) == schedule.MAX_WINDOWS
    assert hourly[-1].due == now and hourly[0].due == now - timedelta(hours=49)


def test_a_cron_that_never_fires_has_no_deadlines() -> None:
    now = utc(2026, 11, 22, 12)
    assert schedule.windows("0 0 30 2 *", "UTC", now) == []
    assert schedule.next_deadline("0 0 30 2 *", "UTC", now) is None
