"""The flow run and task run that the code running now belongs to (a context variable).

`get_run_context()` is how code inside a flow finds its run: the SDK's own modules (logging,
caching) and the parts of coplane that act on a run from inside it (concurrency slots,
pausing for input) read the ids and the reporter from here rather than being passed them.
Context variables follow the code into the thread pool's threads because the runner starts
each task in a copy of the submitting context.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coplane.orchestrate.reporter import Reporter


@dataclass(frozen=True, slots=True)
class RunContext:
    """Where the running code is: a flow run, and the task run within it when in a task."""

    flow_run_id: str  # the run id coplane stores: the one `GET /api/runs/{id}` takes
    pipeline_id: str  # the flow's resource id, `sdk.<flow name>`
    run_key: str  # the flow run's key, from which flow_run_id is derived
    flow_name: str
    reporter: Reporter  # ships events and log records; a no-op one without COPLANE_URL
    parameters: dict[str, Any] = field(default_factory=dict)
    log_prints: bool = False
    task_run_id: str | None = None  # the coplane run id of the task run, inside a task
    task_resource: str | None = None  # the task's resource id, inside a task
    task_run_key: str | None = None
    task_name: str | None = None
    task_run_name: str | None = None
    try_number: int = 0
    # the engine's state of this flow run (task counters, runner, futures): not for users
    runtime: Any = field(default=None, repr=False, compare=False)

    def for_task(
        self,
        *,
        task_run_id: str,
        task_resource: str,
        task_run_key: str,
        task_name: str,
        task_run_name: str,
        try_number: int,
        log_prints: bool,
    ) -> RunContext:
        """This flow run's context as seen from inside one try of a task run."""
        return replace(
            self,
            task_run_id=task_run_id,
            task_resource=task_resource,
            task_run_key=task_run_key,
            task_name=task_name,
            task_run_name=task_run_name,
            try_number=try_number,
            log_prints=log_prints,
        )


_current: ContextVar[RunContext | None] = ContextVar("coplane_run_context", default=None)


def get_run_context() -> RunContext | None:
    """The current flow run's context (with its task run inside a task), or None outside."""
    return _current.get()


def enter_context(ctx: RunContext | None) -> Token[RunContext | None]:
    """Make `ctx` the current context; give the token to `leave_context` afterwards."""
    return _current.set(ctx)


def leave_context(token: Token[RunContext | None]) -> None:
    """Restore the context that was current before `enter_context`."""
    _current.reset(token)
