"""Schedules: turning each deployment's cron or interval into scheduled runs ahead of time.

Runs are made ahead, within a bounded horizon (the runs due in the next `HORIZON`, at most
`MAX_AHEAD` of them waiting at a time, and always the next one), so they show as `scheduled`
and a worker can start each the moment it is due. Each is made under the key
`schedule:<id>:<due>`, so two servers, or one restarted, never make a run for one time
twice. Times a server was down for are not made up later, beyond `CATCH_UP`: a schedule says
when to run, not how many runs.
Cron times come from `coplane.rules.schedule`, the SLA engine's DST-correct calendar.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from coplane.events import names as n
from coplane.jobs.scheduler import job
from coplane.orchestrate.deployments import DeploymentError
from coplane.orchestrate.runs import create_flow_run, run_event
from coplane.rules.deployment import Schedule
from coplane.rules.schedule import upcoming_deadlines, upcoming_intervals
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.deployments import read_deployment
from coplane.store.dialects import Conn, Row
from coplane.store.events import insert_events
from coplane.store.flow_runs import read_flow_run, set_flow_run_state
from coplane.store.schedules import (
    ScheduleRow,
    count_waiting_runs,
    last_scheduled_due,
    list_future_runs_of,
    list_schedules,
    release_run_key,
    replace_schedules,
    set_schedules_paused,
)

log = logging.getLogger(__name__)

HORIZON = timedelta(hours=24)
MAX_AHEAD = 10
CATCH_UP = timedelta(minutes=1)
_SCHEDULE_NAMESPACE = uuid.UUID("3c0f9a57-2f64-5d0e-8a6e-5b1c7d2e4f90")


def schedule_rows(deployment: str, schedules: list[Schedule], now: datetime) -> list[ScheduleRow]:
    """The rows for a deployment's declared schedules; ids derived from what each says."""
    rows = []
    for s in schedules:
        every = s.interval.total_seconds() if s.interval is not None else None
        key = f"{deployment}\n{s.cron}\n{s.timezone}\n{every}"
        sid = uuid.uuid5(_SCHEDULE_NAMESPACE, key)
        rows.append(ScheduleRow(sid, deployment, s.cron, s.timezone, every, now))
    return rows


def due_times(schedule: Row, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """A schedule's times after `after` up to `until` (and always the next one)."""
    if schedule["cron"] is not None:
        return upcoming_deadlines(schedule["cron"], schedule["timezone"], after, until, limit)
    every = timedelta(seconds=float(schedule["interval_s"]))
    return upcoming_intervals(schedule["anchor"], every, after, until, limit)


def _cancel_upcoming(store: Store, conn: Conn, schedule_ids: list[uuid.UUID], now: datetime,
                     reason: str) -> int:  # fmt: skip
    """Cancel the runs these schedules made that have not started; how many."""
    count = 0
    for r in list_future_runs_of(conn, schedule_ids, now):
        if set_flow_run_state(conn, r["id"], "cancelled", now, expect=("scheduled",)):
            run = read_flow_run(conn, r["id"])
            insert_events(conn, [run_event(run, n.RUN_CANCELLED, now, {"reason": reason})], now,
                          store.partitions)  # fmt: skip
            release_run_key(conn, r["id"])
            count += 1
    return count


def sync_schedules(
    store: Store, conn: Conn, deployment: str, schedules: list[Schedule], now: datetime
) -> None:
    """Make `schedules` the deployment's (in the caller's transaction); the upcoming runs of
    schedules it no longer has are cancelled."""
    removed = replace_schedules(conn, deployment, schedule_rows(deployment, schedules, now), now)
    _cancel_upcoming(store, conn, removed, now, "its schedule was removed")


def create_scheduled_runs(
    store: Store, now: datetime | None = None, deployment: str | None = None
) -> int:
    """Make the runs the active schedules (of one deployment, or all) have due within the
    horizon; how many were made."""
    now = now or datetime.now(UTC)
    made = 0
    with store.connect() as conn:
        schedules = list_schedules(conn, deployment, active=True)
    for schedule in schedules:
        with store.connect() as conn, conn.transaction():
            last = last_scheduled_due(conn, schedule["id"])
            after = max(now - CATCH_UP, last) if last is not None else now - CATCH_UP
            after = max(after, schedule["anchor"] - timedelta(microseconds=1))
            waiting = count_waiting_runs(conn, schedule["id"])
            room = MAX_AHEAD - waiting
            dues = due_times(schedule, after, now + HORIZON, room) if room > 0 else []
            if waiting:  # the next one beyond the horizon only when none is waiting
                dues = [d for d in dues if d <= now + HORIZON]
            if not dues:
                continue
            d = read_deployment(conn, schedule["deployment"])
            try:
                for due in dues:
                    _, new = create_flow_run(
                        store, conn, d, due=due, now=now,
                        idempotency_key=f"schedule:{schedule['id']}:{due.isoformat()}",
                        schedule_id=uuid.UUID(str(schedule["id"])),
                    )  # fmt: skip
                    made += new
            except DeploymentError as exc:  # one broken deployment must not stop the others
                log.warning("schedule of %s makes no runs: %s", schedule["deployment"], exc)
    return made


def next_runs(schedule: Row, now: datetime, count: int = 5) -> list[datetime]:
    """A schedule's next `count` times after `now` (none while it is paused)."""
    if schedule["paused"]:
        return []
    return due_times(schedule, now, now + timedelta(days=3650), count)


def pause_schedules(store: Store, deployment: str) -> list[Row]:
    """Pause a deployment's schedules and cancel the runs they made that have not started."""
    now = datetime.now(UTC)
    with store.connect() as conn, conn.transaction():
        rows = set_schedules_paused(conn, deployment, True, now)
        ids = [uuid.UUID(str(r["id"])) for r in rows]
        _cancel_upcoming(store, conn, ids, now, "its schedule was paused")
    return rows


def resume_schedules(store: Store, deployment: str) -> list[Row]:
    """Resume a deployment's schedules and make their upcoming runs now."""
    with store.connect() as conn, conn.transaction():
        rows = set_schedules_paused(conn, deployment, False, datetime.now(UTC))
    create_scheduled_runs(store, deployment=deployment)
    return rows


@job("schedule-runs", every_s=5)
def schedule_runs_job(store: Store, settings: Settings) -> int:
    """Make the runs that deployments' schedules have due within the horizon."""
    made = create_scheduled_runs(store)
    if made:
        log.info("scheduled %d runs", made)
    return made
