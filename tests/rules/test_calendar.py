"""Business calendars: holidays in two countries, closures, worked days, the deadlines they
skip for each kind, and a DST change on the Easter weekend."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from coplane.rules import evaluate, schedule
from coplane.rules.calendar import day_off, days_off, is_business_day
from coplane.rules.facts import EventFact, Facts, PingFact, RunFact
from coplane.rules.model import SLA, Calendar

ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
BERLIN = ZoneInfo("Europe/Berlin")
LONDON = ZoneInfo("Europe/London")
DE = Calendar(country="DE", subdivision="BE")
GB = Calendar(country="GB", subdivision="ENG")


def berlin(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=BERLIN)


def sla(**fields: Any) -> SLA:
    base = {"name": "sales", "kind": "freshness", "target": "wh.sales",
            "deadline": "0 9 * * *", "timezone": "Europe/Berlin",
            "calendar": DE.model_dump(mode="json")}  # fmt: skip
    return ADAPTER.validate_python({**base, **fields})


@pytest.mark.parametrize("calendar", [DE, GB])
def test_good_friday_and_christmas_are_off_in_germany_and_england(calendar: Calendar) -> None:
    assert day_off(calendar, date(2027, 3, 26)) == "Good Friday"
    assert day_off(calendar, date(2027, 3, 29)) == "Easter Monday"
    assert day_off(calendar, date(2027, 12, 25)) == "Christmas Day"
    assert is_business_day(calendar, date(2027, 3, 25))  # Maundy Thursday is worked


def test_the_countries_differ_where_their_holidays_do() -> None:
    # 28 December 2027: England's substitute Boxing Day; Germany's 26th was a Sunday.
    assert day_off(GB, date(2027, 12, 28)) == "Boxing Day (observed)"
    assert is_business_day(DE, date(2027, 12, 28))
    assert is_business_day(Calendar(country="US"), date(2027, 3, 26))  # no Good Friday
    assert day_off(DE, date(2027, 3, 8)) == "Women's Day"  # Berlin's own
    assert is_business_day(Calendar(country="DE"), date(2027, 3, 8))


def test_closures_worked_days_and_weekdays() -> None:
    six = ("mon", "tue", "wed", "thu", "fri", "sat")
    shop = Calendar(country="DE", subdivision="BE", days_off=(date(2027, 12, 24),),
                    working=(date(2027, 3, 8),), weekdays=six)  # fmt: skip
    assert day_off(shop, date(2027, 12, 24)) == "closed"
    assert is_business_day(shop, date(2027, 3, 8))
    assert is_business_day(shop, date(2027, 3, 27))  # a Saturday, worked here
    assert day_off(shop, date(2027, 3, 28)) == "Sunday"
    off = dict(days_off(shop, 2027))
    assert off[date(2027, 12, 24)] == "closed" and date(2027, 3, 8) not in off
    assert len([d for d in off if d.weekday() == 6]) == 52


def test_deadlines_skip_the_easter_weekend_across_its_dst_change() -> None:
    # 2027: Good Friday 26 March, clocks go forward on Easter Sunday the 28th, Easter Monday.
    start, end = berlin(3, 24, 12), berlin(3, 31, 12)
    dues = schedule.deadlines_between("0 9 * * *", "Europe/Berlin", start, end, calendar=DE)
    assert dues == [berlin(3, 25, 9), berlin(3, 30, 9), berlin(3, 31, 9)]
    assert dues[1].utcoffset() == timedelta(0) and dues[1].hour == 7  # 09:00 CEST
    assert schedule.next_deadline("0 9 * * *", "Europe/Berlin", berlin(3, 25, 10), DE) == (
        berlin(3, 30, 9)
    )


def test_no_update_over_easter_breaches_only_on_the_business_day_after() -> None:
    facts = Facts(updates=[berlin(3, 25, 8)], created=berlin(3, 24, 12))
    assert evaluate(sla(), facts, berlin(3, 29, 12)).status == "ok"
    result = evaluate(sla(), facts, berlin(3, 30, 9, 5))
    [breach] = result.breaches
    assert breach.key == "sales:2027-03-30T07:00:00Z"
    assert breach.reason == "sales: no update since 2027-03-25 08:00 CET; due 2027-03-30 09:00 CEST"
    # the window after the holidays starts at Thursday's deadline (08:00Z) and opens halfway
    # to Tuesday's (07:00Z, summer time): 4 days 23 hours / 2 later
    assert breach.window_start == datetime(2027, 3, 27, 19, 30, tzinfo=UTC)
    without = evaluate(sla(calendar=None), facts, berlin(3, 30, 9, 5))
    assert len(without.breaches) == 5  # every day from the 26th


def test_tuesdays_load_meets_tuesday_after_easter() -> None:
    facts = Facts(updates=[berlin(3, 25, 8), berlin(3, 30, 8)], created=berlin(3, 24, 12))
    result = evaluate(sla(), facts, berlin(3, 30, 9, 5))
    assert result.status == "ok" and result.next_deadline == berlin(3, 31, 9)


def test_a_closure_is_skipped_and_a_worked_holiday_is_not() -> None:
    closed = DE.model_copy(update={"days_off": (date(2027, 12, 23),),
                                   "working": (date(2027, 12, 24),)})  # fmt: skip
    facts = Facts(updates=[berlin(12, 22, 8)], created=berlin(12, 21, 12))
    result = evaluate(sla(calendar=closed.model_dump(mode="json")), facts, berlin(12, 24, 10))
    assert [b.due for b in result.breaches] == [berlin(12, 24, 9)]


def test_completion_expected_event_and_heartbeat_follow_the_calendar() -> None:
    gb = GB.model_dump(mode="json")
    runs = [RunFact("r1", "dag", "completed", berlin(3, 25, 7), berlin(3, 25, 8))]
    done = sla(kind="completion", target="dag", timezone="Europe/London", calendar=gb)
    result = evaluate(done, Facts(runs=runs, created=berlin(3, 24)), berlin(3, 29, 12))
    assert result.status == "ok"
    assert result.explanation.endswith("next due 2027-03-30 09:00 BST")

    expect = ADAPTER.validate_python({
        "name": "file", "kind": "expected_event", "deadline": "0 9 * * *",
        "timezone": "Europe/London", "expect": {"event": "file.arrived"}, "within": "1h",
        "calendar": gb,
    })  # fmt: skip
    seen = [EventFact("file.arrived", "sftp", datetime(2027, 3, 25, 9, 30, tzinfo=LONDON))]
    facts = Facts(events=seen, created=berlin(3, 24))
    assert evaluate(expect, facts, datetime(2027, 3, 29, 12, tzinfo=LONDON)).breaches == []
    [missed] = evaluate(expect, facts, datetime(2027, 3, 30, 10, tzinfo=LONDON)).breaches
    assert missed.due == datetime(2027, 3, 30, 10, tzinfo=LONDON)

    beat = ADAPTER.validate_python({"name": "job", "kind": "heartbeat", "target": "job",
                                    "schedule": "0 9 * * *", "timezone": "Europe/London",
                                    "grace": "30m", "calendar": gb})  # fmt: skip
    pings = Facts(pings=[PingFact("success", datetime(2027, 3, 25, 9, tzinfo=LONDON))])
    quiet = evaluate(beat, pings, datetime(2027, 3, 29, 12, tzinfo=LONDON))
    assert quiet.status == "ok"
    assert quiet.next_deadline == datetime(2027, 3, 30, 9, 30, tzinfo=LONDON)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"calendar": {"country": "XX"}}, "country 'XX' is not an ISO 3166 code"),
        (
            {"calendar": {"country": "DE", "subdivision": "ZZ"}},
            "subdivision 'ZZ' is not one of DE's",
        ),
        ({"calendar": {"subdivision": "BE"}}, "subdivision needs a country"),
        ({"calendar": {"weekdays": ["monday"]}}, "weekdays"),
        ({"calendar": {"weekdays": []}}, "at least 1 item"),
        ({"calendar": {"days_off": ["24 December"]}}, "days_off"),
        ({"calendar": "berlin"}, "names are looked up in a config file's calendars:"),
        ({"deadline": None, "max_age": "1d"}, "calendar needs a deadline"),
    ],
)
def test_bad_calendars_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        sla(**fields)
