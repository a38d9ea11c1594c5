"""coplane: observability and SLA monitoring for pipelines run by external orchestrators."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from coplane.version import __version__

if TYPE_CHECKING:
    from coplane.orchestrate.concurrency import aconcurrency, concurrency
    from coplane.orchestrate.connections import Connection
    from coplane.orchestrate.flows import flow
    from coplane.orchestrate.futures import as_completed, wait
    from coplane.orchestrate.logging import get_run_logger
    from coplane.orchestrate.pause import apause_flow_run, pause_flow_run
    from coplane.orchestrate.retries import exponential_backoff
    from coplane.orchestrate.runners import DaskTaskRunner, ThreadPoolTaskRunner
    from coplane.orchestrate.tasks import task, unmapped

# The flow SDK, imported on first use: the collectors import `coplane` and must stay cheap.
_LAZY = {
    "concurrency": "coplane.orchestrate.concurrency",
    "aconcurrency": "coplane.orchestrate.concurrency",
    "Connection": "coplane.orchestrate.connections",
    "pause_flow_run": "coplane.orchestrate.pause",
    "apause_flow_run": "coplane.orchestrate.pause",
    "flow": "coplane.orchestrate.flows",
    "task": "coplane.orchestrate.tasks",
    "unmapped": "coplane.orchestrate.tasks",
    "wait": "coplane.orchestrate.futures",
    "as_completed": "coplane.orchestrate.futures",
    "get_run_logger": "coplane.orchestrate.logging",
    "exponential_backoff": "coplane.orchestrate.retries",
    "DaskTaskRunner": "coplane.orchestrate.runners",
    "ThreadPoolTaskRunner": "coplane.orchestrate.runners",
}

__all__ = [
    "Connection",
    "DaskTaskRunner",
    "ThreadPoolTaskRunner",
    "__version__",
    "aconcurrency",
    "apause_flow_run",
    "as_completed",
    "concurrency",
    "exponential_backoff",
    "flow",
    "get_run_logger",
    "pause_flow_run",
    "task",
    "unmapped",
    "wait",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'coplane' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # found once; later lookups do not come here
    return value
