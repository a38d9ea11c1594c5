"""Task runners: where `task.submit()` and `task.map()` run task runs — threads or Dask.

Both run the same `execute_task`, so the events and results are the same on each. A task
of an `async def` submitted to either runs on an event loop of its own (`asyncio.run`) in
the thread that runs it, through `aexecute_task`: the same events again.

- `ThreadPoolTaskRunner` (the default): a thread pool in the flow's process; data passes
  in memory; a task run waits for the futures it was given inside its own thread.
- `DaskTaskRunner`: a `dask.distributed` client of the cluster at `address`, or of a new
  `LocalCluster` when none is given. Futures given to a task run become Dask dependencies,
  so data passes worker to worker. A worker with `COPLANE_URL` in its environment (the
  workers of a `LocalCluster` inherit the flow's) reports its task runs itself as they end;
  one without hands the events back with the result and the flow's process sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from coplane.orchestrate.context import RunContext
from coplane.orchestrate.engine import (
    TaskOutcome,
    TaskSpec,
    UpstreamFailed,
    aexecute_task,
    call_task,
    execute_task,
    upstream_failed,
)
from coplane.orchestrate.futures import DaskTaskFuture, TaskFuture, ThreadTaskFuture, settle_dask
from coplane.orchestrate.reporter import CollectingReporter, get_reporter


class TaskRunner(ABC):
    """Runs submitted task runs. A flow holds one as a template; each flow run gets its own
    copy (`duplicate`), started on the run's first submit and shut down at its end."""

    @abstractmethod
    def duplicate(self) -> TaskRunner: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def submit(
        self,
        spec: TaskSpec,
        ctx: RunContext,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        wait_for: Sequence[Any],
    ) -> TaskFuture[Any]: ...

    def submit_many(
        self,
        spec: TaskSpec,
        ctx: RunContext,
        calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]],
        wait_for: Sequence[Any],
    ) -> list[TaskFuture[Any]]:
        """Submit one task run per (args, kwargs), in order: what `task.map` does."""
        return [self.submit(spec, ctx, args, kwargs, wait_for) for args, kwargs in calls]

    def wait_all(self, futures: Sequence[TaskFuture[Any]]) -> None:
        """Wait for every future (their failures are theirs: nothing is raised)."""
        for future in futures:
            future.wait()

    @abstractmethod
    def shutdown(self) -> None: ...


class ThreadPoolTaskRunner(TaskRunner):
    """Task runs in a pool of `max_workers` threads (Python's default size when None)."""

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, not {max_workers}")
        self.max_workers = max_workers
        self._pool: ThreadPoolExecutor | None = None

    def duplicate(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(self.max_workers)

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="coplane-task")

    def submit(
        self,
        spec: TaskSpec,
        ctx: RunContext,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        wait_for: Sequence[Any],
    ) -> TaskFuture[Any]:
        assert self._pool is not None, "the task runner was not started"
        # the task run sees the submitter's context (run ids, log capture), not the thread's
        context = contextvars.copy_context()
        call = ctx.runtime.next_call(spec.name)  # numbered in submit order, not start order
        future = self._pool.submit(
            context.run, call_task, spec, ctx, args, kwargs, wait_for, call
        )
        return ThreadTaskFuture(future)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _worker_outcome(value: Any) -> Any:
    """A dependency's outcome, as the value the task receives (on the worker)."""
    if isinstance(value, TaskOutcome):
        if value.error is not None:
            raise UpstreamFailed(f"upstream task run failed: {value.error!r}")
        return value.value
    if isinstance(value, list | tuple | set):
        return type(value)(_worker_outcome(v) for v in value)
    if isinstance(value, dict):
        return {k: _worker_outcome(v) for k, v in value.items()}
    return value


def _run_on_worker(
    spec: TaskSpec,
    ctx: RunContext,
    call: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    wait_for: list[Any],
) -> TaskOutcome:
    """One task run on a Dask worker (its dependencies already computed by Dask)."""
    reporter = get_reporter()
    collecting = None
    if not reporter.enabled:  # this worker cannot report: the flow's process will
        reporter = collecting = CollectingReporter()
    ctx = replace(ctx, reporter=reporter)
    try:
        _worker_outcome(wait_for)
        args = _worker_outcome(args)
        kwargs = _worker_outcome(kwargs)
    except UpstreamFailed as exc:
        outcome = upstream_failed(spec, ctx, call, exc)
    else:
        if spec.is_async:  # a worker's task thread has no event loop: the run gets its own
            outcome = asyncio.run(aexecute_task(spec, ctx, call, args, kwargs))
        else:
            outcome = execute_task(spec, ctx, call, args, kwargs)
    if collecting is not None:
        outcome.events, outcome.logs = collecting.events, collecting.logs
    return outcome


def _run_mapped(
    call: int,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    spec: TaskSpec,
    ctx: RunContext,
    wait_for: list[Any],
) -> TaskOutcome:
    """`_run_on_worker` in the argument order `Client.map` gives."""
    return _run_on_worker(spec, ctx, call, args, kwargs, wait_for)


def _flush_worker_reporter() -> bool:
    """On a worker: send what its reporter holds before the cluster goes away."""
    return get_reporter().flush()


class DaskTaskRunner(TaskRunner):
    """Task runs on `dask.distributed`: the cluster at `address`, else a new `LocalCluster`
    (made with `cluster_kwargs`, such as `{"n_workers": 2, "processes": True}`)."""

    def __init__(
        self,
        address: str | None = None,
        cluster_kwargs: Mapping[str, Any] | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.client_kwargs = dict(client_kwargs or {})
        self._client: Any = None
        self._cluster: Any = None

    def duplicate(self) -> DaskTaskRunner:
        return DaskTaskRunner(self.address, self.cluster_kwargs, self.client_kwargs)

    def start(self) -> None:
        import distributed

        # distributed's constructors are untyped: called through Any
        make_cluster: Any = distributed.LocalCluster
        make_client: Any = distributed.Client
        if self.address is None:
            # the flow's environment, COPLANE_URL included, goes to the worker processes
            self._cluster = make_cluster(**self.cluster_kwargs)
            self._client = make_client(self._cluster, **self.client_kwargs)
        else:
            self._client = make_client(self.address, **self.client_kwargs)

    @property
    def client(self) -> Any:
        """The `distributed.Client` (while started)."""
        return self._client

    def submit(
        self,
        spec: TaskSpec,
        ctx: RunContext,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        wait_for: Sequence[Any],
    ) -> TaskFuture[Any]:
        assert self._client is not None, "the task runner was not started"
        call = ctx.runtime.next_call(spec.name)
        # the reporter and the engine's runtime stay here; the worker gets its own reporter
        shipped = replace(ctx, reporter=_NOT_SHIPPED, runtime=None)
        future = self._client.submit(
            _run_on_worker, spec, shipped, call, _as_dask(tuple(args)), _as_dask(dict(kwargs)),
            _as_dask(list(wait_for)), key=f"{spec.name}-{call}-{uuid.uuid4().hex[:8]}",
            pure=False,
        )  # fmt: skip
        return DaskTaskFuture(future, ctx.reporter)

    def submit_many(
        self,
        spec: TaskSpec,
        ctx: RunContext,
        calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]],
        wait_for: Sequence[Any],
    ) -> list[TaskFuture[Any]]:
        assert self._client is not None, "the task runner was not started"
        numbers = [ctx.runtime.next_call(spec.name) for _ in calls]
        shipped = replace(ctx, reporter=_NOT_SHIPPED, runtime=None)
        tag = uuid.uuid4().hex[:8]
        # one Client.map rather than a submit per run: a third less time per task run
        futures = self._client.map(
            _run_mapped, numbers, [_as_dask(tuple(a)) for a, _ in calls],
            [_as_dask(dict(k)) for _, k in calls], spec=spec, ctx=shipped,
            wait_for=_as_dask(list(wait_for)), key=[f"{spec.name}-{n}-{tag}" for n in numbers],
            pure=False,
        )  # fmt: skip
        return [DaskTaskFuture(f, ctx.reporter) for f in futures]

    def wait_all(self, futures: Sequence[TaskFuture[Any]]) -> None:
        dask_futures = [f for f in futures if isinstance(f, DaskTaskFuture)]
        unsettled = [f for f in dask_futures if f.unsettled]
        if unsettled:
            settle_dask(unsettled)
        for future in dask_futures:
            future.wait()

    def shutdown(self) -> None:
        try:
            if self._client is not None:
                with contextlib.suppress(Exception):  # a worker gone has nothing to flush
                    self._client.run(_flush_worker_reporter)
                self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None


class _NotShipped(CollectingReporter):
    """Stands for the flow's reporter in the context sent to a worker (which replaces it)."""


_NOT_SHIPPED = _NotShipped()


def _as_dask(value: Any) -> Any:
    """`value` with Dask task futures replaced by their Dask futures, which Dask resolves."""
    if isinstance(value, DaskTaskFuture):
        return value.dask_future
    if isinstance(value, TaskFuture):  # from another runner: its value, computed here
        return value.outcome()
    if isinstance(value, list | tuple | set):
        return type(value)(_as_dask(v) for v in value)
    if isinstance(value, dict):
        return {k: _as_dask(v) for k, v in value.items()}
    return value


def runner_or_default(runner: TaskRunner | Callable[[], TaskRunner] | None) -> TaskRunner:
    """A flow's `task_runner=` argument as a runner (a class is instantiated)."""
    if runner is None:
        return ThreadPoolTaskRunner()
    if isinstance(runner, TaskRunner):
        return runner
    made = runner()
    if not isinstance(made, TaskRunner):
        raise TypeError(f"task_runner: {runner!r} is not a task runner")
    return made

