"""The background scheduler: stopping it while a job is scheduling the next one."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.base import STATE_STOPPED

from coplane.jobs.scheduler import Scheduler
from coplane.settings import Settings
from coplane.store import Store

HANG = 30  # seconds: far beyond any shutdown; only a deadlock gets there


def test_shutdown_returns_while_a_running_job_schedules_another(store: Store, db_url: str) -> None:
    # An SLA pass ends by scheduling its next wake-up. APScheduler's shutdown holds its job
    # store lock while it waits for running jobs, so that call must not reach APScheduler
    # once shutdown has begun, or the server never stops.
    scheduler = Scheduler(store, Settings(database_url=db_url, events_retention_days=0))
    scheduler.start()
    started, go, scheduled = threading.Event(), threading.Event(), threading.Event()
    ran_later: list[str] = []

    def job() -> None:
        started.set()
        go.wait(HANG)
        soon = datetime.now(UTC) + timedelta(milliseconds=10)
        scheduler.run_at("next", soon, lambda: ran_later.append("next"))
        scheduled.set()

    scheduler.run_at("pass", datetime.now(UTC), job)
    assert started.wait(HANG)
    # APScheduler drops a fired one-off job from its store just after starting it; stopping
    # before that makes its own thread fail to find the job
    while scheduler._scheduler.get_job("pass") is not None:
        time.sleep(0.01)
    stopper = threading.Thread(target=scheduler.shutdown)
    stopper.start()
    while scheduler._scheduler.state != STATE_STOPPED:  # shutdown has begun
        stopper.join(0.01)
    go.set()
    stopper.join(HANG)
    assert not stopper.is_alive(), "shutdown hung on a job that schedules another"
    assert scheduled.is_set()  # the job itself ran to its end
    assert ran_later == []  # and nothing it asked for runs after the scheduler stopped
