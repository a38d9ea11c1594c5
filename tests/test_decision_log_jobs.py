"""Retention runs and leadership changes are logged as decisions."""

from __future__ import annotations

import logging
import time

import pytest

from coplane.jobs.scheduler import run_job
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.leader import Leadership
from tests.conftest import set_database_outage


def test_a_retention_run_is_one_line_with_its_counts(
    store: Store, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coplane.jobs.scheduler")
    run_job("maintain-events", store, Settings(database_url=db_url))
    [line] = [r for r in caplog.records if r.__dict__.get("decision") == "retention.run"]
    assert line.__dict__["events_deleted"] == 0
    assert "retention (90 days)" in line.getMessage()


@pytest.mark.postgresql
def test_leadership_gained_and_lost_are_logged(
    own_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coplane.store.leader")
    lead = Leadership(own_database, on_lead=lambda: None, on_notify=lambda _: None, retry=60)
    lead.start()
    try:
        seen = wait_for_decision(caplog, "leadership.gained")
        set_database_outage(own_database, True)  # ends the lock's session
        seen = wait_for_decision(caplog, "leadership.lost")
        assert "lost the SLA evaluation lock" in seen.getMessage()
    finally:
        lead.stop()
        set_database_outage(own_database, False)


def wait_for_decision(caplog: pytest.LogCaptureFixture, name: str) -> logging.LogRecord:
    for _ in range(300):
        found = [r for r in caplog.records if r.__dict__.get("decision") == name]
        if found:
            return found[0]
        time.sleep(0.05)
    pytest.fail(f"no {name} line in the log")
