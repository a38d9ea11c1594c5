"""Paused runs as run events: the pause, the resume, and the failure of a pause left to expire.

A run whose flow process died while paused would stay `paused` for ever, since only the flow
reports its failure; the `fail-expired-pauses` job fails such runs once their pause is past
its deadline by GRACE, leaving a live flow the time to report its own failure first.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from coplane.events import names as n
from coplane.events.model import Event, decode_events, encode_json
from coplane.jobs.scheduler import job
from coplane.settings import Settings
from coplane.store import Store
from coplane.store.dialects import Row
from coplane.store.pauses import list_expired_paused_runs

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=2)


def run_state_event(run: Row, name: str, at: datetime, payload: dict[str, Any]) -> list[Event]:
    """An event of the run's own pipeline and run key, so that the run's state folds it in."""
    return decode_events(
        encode_json(
            [
                {
                    "id": str(uuid.uuid4()),
                    "occurred": at.isoformat(),
                    "event": name,
                    "resource": {"id": run["pipeline"]},
                    "related": [
                        {"role": n.ROLE_RUN, "id": run["run_key"]},
                        {"role": n.ROLE_SOURCE, "id": run["source"]},
                    ],
                    "payload": payload,
                }
            ]
        )
    )


def fail_expired_pauses(store: Store, now: datetime) -> int:
    """Fail each run still paused GRACE after its pause's deadline; how many."""
    with store.connect() as conn:
        expired = list_expired_paused_runs(conn, now - GRACE)
    batch: list[Event] = []
    for row in expired:
        seconds = (row["deadline"] - row["requested"]).total_seconds()
        error = f"PauseTimeout: the run was not resumed within {seconds:g} s"
        batch += run_state_event(row, n.RUN_FAILED, row["deadline"], {"error": error})
    if batch:
        store.writer.submit(batch).result()
    return len(expired)


# Registered here, not in jobs/: the jobs layer sits below the services and imports none of
# them. The server imports this module (through the orchestrate API), and so does the CLI.
@job("fail-expired-pauses", every_s=60)
def fail_expired_pauses_job(store: Store, settings: Settings) -> int:
    """Fail the runs left paused past their pause's timeout (their flow died while waiting)."""
    failed = fail_expired_pauses(store, datetime.now(UTC))
    if failed:
        log.info("failed %d runs whose pause timed out", failed)
    return failed
