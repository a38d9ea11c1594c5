"""Deadline calendars: cron expressions in an IANA zone as aware UTC instants, DST-correct.

croniter is stepped over naive local wall-clock times and each wall time is placed on the
UTC time line here, because croniter's own aware arithmetic is not DST-safe (in 7.0 it yields
a 02:30 deadline twice on a fall-back day, and several gap times collapse onto 03:00):
- a wall time that does not exist (spring-forward gap) moves to the first valid instant after
  the gap (02:30 Europe/Berlin on the last Sunday of March is 03:00 CEST);
- a wall time that occurs twice (fall-back) is taken once, at its first occurrence;
- deadlines that land on the same instant are one deadline;
- with a business `calendar`, a deadline whose local date is not a business day is skipped,
  so the window after it starts at the last business day's deadline.

When a window opens: `opens` gives the instant from which an update counts for a deadline.
By default that is halfway between the previous deadline and this one, so each update belongs
to the deadline it is nearer to: a load ten minutes after 09:00 is that morning's late load
(it resolves that breach) and cannot also meet the next morning's deadline, while a load at
22:00 the evening before is early for the next one. `lead` (the SLA's `window`) or
`not_before` (a cron) set that lower bound explicitly instead.

Lookback bound: `windows` returns at most `MAX_WINDOWS` windows, and only those due within
`MAX_LOOKBACK` before `now` (and after the SLA's creation), so a long outage or a per-minute
cron reports a bounded number of missed windows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from coplane.rules.calendar import is_business_day

if TYPE_CHECKING:
    from coplane.rules.model import Calendar

MAX_WINDOWS = 50
MAX_LOOKBACK = timedelta(days=7)

# Longest run of wall-clock ticks croniter may need to yield before one lands past a bound:
# a guard against expressions that never match (e.g. "0 0 30 2 *"), not a tuning knob.
_MAX_STEPS = 200_000


@dataclass(frozen=True, slots=True)
class Window:
    """One deadline window [start, due): start is the previous deadline (UTC), due this one.

    Rules count an event at exactly `due` as on time for this window (and it also lies in the
    next window, which starts there).
    """

    start: datetime
    due: datetime


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name (cached)."""
    return ZoneInfo(name)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("SLA rules need timezone-aware datetimes")


def to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """A naive local wall-clock time in `tz` as an aware UTC instant (gap: forward; fold: first)."""
    first = wall.replace(tzinfo=tz, fold=0)
    as_utc = first.astimezone(UTC)
    if as_utc.astimezone(tz).replace(tzinfo=None) == wall:
        return as_utc  # exists; fold=0 is the first of two occurrences on a fall-back day
    # In a gap, fold=0 reads the wall time with the offset before the jump and fold=1 with
    # the offset after it; the jump lies between the two readings: find it to the second.
    low = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    high = int(as_utc.timestamp())
    low, high = min(low, high), max(low, high)
    after = as_utc.astimezone(tz).utcoffset()
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


def _wall(now: datetime, tz: ZoneInfo) -> datetime:
    return now.astimezone(tz).replace(tzinfo=None)


def _croniter(cron: str, start: datetime) -> croniter:
    return croniter(cron, start, second_at_beginning=len(cron.split()) == 6)


def _fold_slack(now: datetime, tz: ZoneInfo) -> timedelta:
    # After a fall-back the wall clock is behind times it already showed; deadlines whose wall
    # time is up to that far ahead of `now`'s may already have passed.
    before = (now - timedelta(days=1)).astimezone(tz).utcoffset()
    current = now.astimezone(tz).utcoffset()
    if before is None or current is None:
        return timedelta(0)
    return max(before - current, timedelta(0))


class _Memo:
    """A deadline sequence computed once and replayed: SLAs sharing a schedule share it.

    Stepping croniter is the costliest part of evaluating an SLA, and in one pass every SLA
    with the same cron and zone asks for the same deadlines at the same `now`.
    """

    def __init__(self, source: Iterator[datetime]) -> None:
        self._source = source
        self._seen: list[datetime] = []
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[datetime]:
        i = 0
        while True:
            with self._lock:
                if i == len(self._seen):
                    item = next(self._source, None)
                    if item is None:
                        return
                    self._seen.append(item)
                value = self._seen[i]
            yield value
            i += 1


@lru_cache(maxsize=4096)
def _memo_backwards(cron: str, tz: ZoneInfo, now: datetime, calendar: Calendar | None) -> _Memo:
    return _Memo(_business(_compute_backwards(cron, tz, now), tz, calendar))


@lru_cache(maxsize=4096)
def _memo_forwards(cron: str, tz: ZoneInfo, now: datetime, calendar: Calendar | None) -> _Memo:
    return _Memo(_business(_compute_forwards(cron, tz, now), tz, calendar))


def _backwards(
    cron: str, tz: ZoneInfo, now: datetime, calendar: Calendar | None = None
) -> Iterator[datetime]:
    """Deadlines at or before `now`, newest first, as UTC instants without repeats."""
    return iter(_memo_backwards(cron, tz, now, calendar))


def _forwards(
    cron: str, tz: ZoneInfo, now: datetime, calendar: Calendar | None = None
) -> Iterator[datetime]:
    """Deadlines strictly after `now`, oldest first, as UTC instants without repeats."""
    return iter(_memo_forwards(cron, tz, now, calendar))


# Business days in a row a calendar may skip before a deadline is given up on: a guard
# against a calendar with no business day (every weekday a closure), not a tuning knob.
_MAX_SKIPPED = 3_660


def _business(
    deadlines: Iterator[datetime], tz: ZoneInfo, calendar: Calendar | None
) -> Iterator[datetime]:
    """The deadlines whose local date is a business day in `calendar` (all without one)."""
    if calendar is None:
        yield from deadlines
        return
    skipped = 0
    for due in deadlines:
        if is_business_day(calendar, due.astimezone(tz).date()):
            skipped = 0
            yield due
        else:
            skipped += 1
            if skipped > _MAX_SKIPPED:
                return


def _compute_backwards(cron: str, tz: ZoneInfo, now: datetime) -> Iterator[datetime]:
    it = _croniter(cron, _wall(now, tz) + _fold_slack(now, tz) + timedelta(microseconds=1))
    last: datetime | None = None
    for _ in range(_MAX_STEPS):
        try:
            wall = it.get_prev(datetime)
        except CroniterBadDateError:  # an expression that never matches (e.g. 30 February)
            return
        instant = to_instant(wall, tz)
        if instant > now or instant == last:
            continue
        last = instant
        yield instant
    return


def _compute_forwards(cron: str, tz: ZoneInfo, now: datetime) -> Iterator[datetime]:
    it = _croniter(cron, _wall(now, tz))
    last: datetime | None = None
    for _ in range(_MAX_STEPS):
        try:
            wall = it.get_next(datetime)
        except CroniterBadDateError:
            return
        instant = to_instant(wall, tz)
        if instant <= now or instant == last:
            continue
        last = instant
        yield instant
    return


def previous_deadline(
    cron: str, timezone: str, now: datetime, calendar: Calendar | None = None
) -> datetime | None:
    """The latest deadline at or before `now` (UTC), or None if the cron never fires."""
    _require_aware(now)
    return next(_backwards(cron, zone(timezone), now, calendar), None)


def next_deadline(
    cron: str, timezone: str, now: datetime, calendar: Calendar | None = None
) -> datetime | None:
    """The first deadline strictly after `now` (UTC), or None if the cron never fires."""
    _require_aware(now)
    return next(_forwards(cron, zone(timezone), now, calendar), None)


def deadlines_between(
    cron: str,
    timezone: str,
    start: datetime,
    end: datetime,
    limit: int = MAX_WINDOWS,
    calendar: Calendar | None = None,
) -> list[datetime]:
    """Deadlines d with start < d <= end (UTC), oldest first; at most the `limit` newest."""
    _require_aware(start)
    _require_aware(end)
    found: list[datetime] = []
    for due in _backwards(cron, zone(timezone), end, calendar):
        if due <= start or len(found) >= limit:
            break
        found.append(due)
    found.reverse()
    return found


def opens(
    start: datetime | None,
    due: datetime,
    *,
    lead: timedelta | None = None,
    not_before: str | None = None,
    timezone: str = "UTC",
) -> datetime | None:
    """From when an update counts for the deadline `due` whose window starts at `start`.

    `due - lead` when a lead is given; else the latest `not_before` tick at or before `due`;
    else the midpoint of [start, due) (None without a start).
    """
    # In UTC: arithmetic on two times of one zone is wall-clock arithmetic, off on DST days.
    due = due.astimezone(UTC)
    if lead is not None:
        return due - lead
    if not_before is not None:
        tick = previous_deadline(not_before, timezone, due)
        if tick is not None:
            return tick
    if start is None:
        return None
    start = start.astimezone(UTC)
    return start + (due - start) / 2


def windows(
    cron: str,
    timezone: str,
    now: datetime,
    since: datetime | None = None,
    *,
    max_windows: int = MAX_WINDOWS,
    max_lookback: timedelta = MAX_LOOKBACK,
    calendar: Calendar | None = None,
) -> list[Window]:
    """Windows due at or before `now`, after `since` and within the lookback, oldest first."""
    _require_aware(now)
    floor = now - max_lookback
    if since is not None:
        _require_aware(since)
        floor = max(floor, since)
    dues: list[datetime] = []
    for due in _backwards(cron, zone(timezone), now, calendar):
        if len(dues) > max_windows:
            break
        dues.append(due)  # one beyond the last window kept: it is that window's start
        if due <= floor:
            break
    dues.reverse()
    result = [Window(start=start, due=due) for start, due in pairwise(dues) if due > floor]
    return result[-max_windows:]


def upcoming_deadlines(
    cron: str, timezone: str, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Deadlines d with after < d <= until (UTC), oldest first, at most `limit` of them; the
    first one after `after` is always included (when the cron fires at all), however far."""
    _require_aware(after)
    _require_aware(until)
    found: list[datetime] = []
    for due in _forwards(cron, zone(timezone), after):
        if len(found) >= limit or (found and due > until):
            break
        found.append(due)
    return found


def upcoming_intervals(
    anchor: datetime, every: timedelta, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Times anchor + k * every (k >= 0) with after < t <= until, oldest first, at most
    `limit`; the first one after `after` is always included. Elapsed time, so an interval
    ignores DST: `1h` is every 60 minutes across a change of offset."""
    _require_aware(anchor)
    if every <= timedelta(0):
        raise ValueError("an interval must be positive")
    k = max(0, (after - anchor) // every + 1)
    found: list[datetime] = []
    while len(found) < limit:
        due = anchor + k * every
        if found and due > until:
            break
        if due > after:
            found.append(due)
        k += 1
    return found
