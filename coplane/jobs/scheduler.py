"""The one module that imports APScheduler: jobs register with `@job` and run on an interval.

Every job is a plain function of (store, settings), so `coplane jobs run NAME` can run it once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from coplane.logs import decision
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.retention import maintain_events, maintain_logs

log = logging.getLogger(__name__)

JobFunc = Callable[[Store, Settings], Any]


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic job: its name, what it runs, and how often."""

    name: str
    func: JobFunc
    every_s: int
    run_at_start: bool


JOBS: dict[str, Job] = {}


def job(name: str, *, every_s: int, run_at_start: bool = True) -> Callable[[JobFunc], JobFunc]:
    """Register a periodic job."""

    def register(func: JobFunc) -> JobFunc:
        JOBS[name] = Job(name, func, every_s, run_at_start)
        return func

    return register


@job("maintain-events", every_s=3600)
def maintain_events_job(store: Store, settings: Settings) -> Any:
    """Create upcoming partitions and apply the raw-event retention."""
    with store.connect() as conn:
        report = maintain_events(
            conn, store.layout, datetime.now(UTC), settings.events_retention_days
        )
    if store.partitions is not None and report.partitions_dropped:
        store.partitions.forget(
            datetime.strptime(name.removeprefix("events_p"), "%Y%m%d").replace(tzinfo=UTC)
            for name in report.partitions_dropped
        )
    decision(
        log,
        "retention.run",
        f"retention ({settings.events_retention_days or 'no'} days): dropped "
        f"{len(report.partitions_dropped)} partitions, deleted {report.events_deleted} events",
        partitions_dropped=list(report.partitions_dropped),
        events_deleted=report.events_deleted,
    )
    return report


@job("maintain-logs", every_s=3600)
def maintain_logs_job(store: Store, settings: Settings) -> int:
    """Apply the retention of flow and task log lines."""
    with store.connect() as conn:
        deleted = maintain_logs(conn, datetime.now(UTC), settings.logs_retention_days)
    if deleted:
        log.info("retention deleted %d log lines", deleted)
    return deleted


def run_job(name: str, store: Store, settings: Settings) -> Any:
    """Run one registered job now."""
    if name not in JOBS:
        raise KeyError(f"no job named {name!r}; jobs: {', '.join(sorted(JOBS))}")
    return JOBS[name].func(store, settings)


class Scheduler:
    """Runs the registered jobs in background threads while the server runs."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._scheduler = BackgroundScheduler(timezone=UTC)
        # APScheduler's shutdown(wait=True) holds its job-store lock while it waits for the
        # running jobs, so a running job that schedules another (an SLA pass setting its next
        # wake-up) would wait for that lock forever. Once closing, run_at schedules nothing.
        self._lock = threading.Lock()
        self._closing = False

    def _run(self, name: str) -> None:
        try:
            run_job(name, self._store, self._settings)
        except Exception:  # a failing job is logged and retried at its next run
            log.exception("job %s failed", name)

    def start(self) -> None:
        """Schedule every job; jobs marked run_at_start also run right away."""
        now = datetime.now(UTC)
        for j in JOBS.values():
            # without next_run_time the first run is one interval from now
            first: dict[str, Any] = {"next_run_time": now} if j.run_at_start else {}
            self._scheduler.add_job(
                self._run,
                "interval",
                args=[j.name],
                seconds=j.every_s,
                id=j.name,
                coalesce=True,
                max_instances=1,
                **first,
            )
        self._scheduler.start()

    def run_at(self, job_id: str, when: datetime, func: Callable[[], Any]) -> None:
        """Run `func` once at `when` (now if past); a later call with the same id replaces it.
        Nothing is scheduled once shutdown has begun."""
        with self._lock:
            if self._closing:
                return
            self._scheduler.add_job(
                func,
                "date",
                run_date=max(when, datetime.now(UTC)),
                id=job_id,
                replace_existing=True,
                misfire_grace_time=None,  # a deadline passed while busy still runs, late
                # the run before may still be going: this one must not be skipped (the
                # function serialises itself)
                max_instances=4,
            )

    def shutdown(self) -> None:
        """Stop scheduling and wait for running jobs."""
        with self._lock:  # after this, no job of ours calls into APScheduler
            self._closing = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
