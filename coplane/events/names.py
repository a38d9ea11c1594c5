"""Event names, resource roles and kinds, and event-name matching with a trailing `*`."""

from __future__ import annotations

from typing import Final

RUN_SCHEDULED: Final = "run.scheduled"
RUN_STARTED: Final = "run.started"
RUN_RUNNING: Final = "run.running"
RUN_HEARTBEAT: Final = "run.heartbeat"
RUN_UPDATED: Final = "run.updated"
RUN_COMPLETED: Final = "run.completed"
RUN_FAILED: Final = "run.failed"
RUN_RETRYING: Final = "run.retrying"  # this try failed; the orchestrator will try again
RUN_CANCELLED: Final = "run.cancelled"
RUN_CACHED: Final = "run.cached"  # a flow SDK task run that reused a stored result
RUN_PAUSED: Final = "run.paused"  # a flow run waits for someone to resume it
RUN_RESUMED: Final = "run.resumed"
RUN_PENDING: Final = "run.pending"  # a worker claimed a deployment's run and is starting it
RUN_CRASHED: Final = "run.crashed"  # its worker stopped heartbeating while it ran
ASSET_UPDATED: Final = "asset.updated"
ASSET_DECLARED: Final = "asset.declared"
JOB_DECLARED: Final = "job.declared"
CHECK_PASSED: Final = "check.passed"
CHECK_FAILED: Final = "check.failed"

# A run's state is the one whose (rank, time) is highest among its events, so the
# order in which events arrive never matters: terminal beats running beats scheduled.
RUN_STATES: Final[dict[str, tuple[str, int]]] = {
    RUN_SCHEDULED: ("scheduled", 0),
    RUN_PENDING: ("pending", 0),  # same rank: a claim is always later than its schedule
    RUN_STARTED: ("running", 1),
    RUN_RUNNING: ("running", 1),
    RUN_HEARTBEAT: ("running", 1),
    # same rank as running: whichever of pause, resume and start came last says which it is
    RUN_PAUSED: ("paused", 1),
    RUN_RESUMED: ("running", 1),
    RUN_COMPLETED: ("completed", 2),
    RUN_FAILED: ("failed", 2),
    RUN_RETRYING: ("retrying", 2),
    RUN_CANCELLED: ("cancelled", 2),
    RUN_CACHED: ("cached", 2),
    RUN_CRASHED: ("crashed", 2),
}
TERMINAL_RANK: Final = 2

# Roles of related resources that coplane interprets; any other role is kept as sent.
ROLE_RUN: Final = "run"  # id: the producer's run key (Airflow run_id, OpenLineage runId, ...)
ROLE_PARENT: Final = "parent"  # the pipeline a task belongs to
ROLE_PARENT_RUN: Final = "parent_run"  # the parent pipeline's run key
ROLE_INPUT: Final = "input"
ROLE_OUTPUT: Final = "output"
ROLE_PRODUCER: Final = "producer"  # the pipeline or task that updated an asset
ROLE_SOURCE: Final = "source"  # the system that reported the event (airflow, dbt, cron, ...)

ROLE_DEPLOYMENT: Final = "deployment"  # the deployment a flow run was created from
ROLE_CAUSE: Final = "cause"  # what started a run (an automation, an incident): its causal chain

# Recorded by the server itself (never accepted from an ingest key)
AUTOMATION_TRIGGERED: Final = "automation.triggered"
AUTOMATION_ACTION_SUCCEEDED: Final = "automation.action.succeeded"
AUTOMATION_ACTION_FAILED: Final = "automation.action.failed"

KIND_PIPELINE: Final = "pipeline"
KIND_TASK: Final = "task"
KIND_ASSET: Final = "asset"


# Names coplane's server itself records (the SLA engine's remediation requests; automations):
# no producer may send them, so that they always mean the server said so. Each subsystem that
# records its own events adds its prefix here, and nowhere else.
RESERVED_PREFIXES: Final[tuple[str, ...]] = ("remediation.", "automation.")


def is_reserved(name: str) -> bool:
    """Whether only the server may record an event of this name."""
    return name.startswith(RESERVED_PREFIXES)


def event_name_matches(pattern: str, name: str) -> bool:
    """True when `name` matches `pattern`, which may end in `*` to match any suffix."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern
