"""Runs flows and task runs in the calling process, reporting each as `run.*` events.

Calling a flow runs its function in the calling thread; calling a task inside it runs the
task there too, and `submit`/`map` hand task runs to the flow's task runner. Every state
change is an event dict given to the reporter, which only queues it: nothing here waits
for the server, and a reporting problem never reaches user code.

`execute_task` is the whole life of one task run (cache lookup, tries, timeout, result
persistence, events) and never raises for the task's own failure: it returns a
`TaskOutcome`, so the same function serves an inline call, a pool thread and a Dask worker,
and the events are the same on each.

`async def` flows and tasks run on the caller's event loop through `arun_flow` and
`aexecute_task`. What a task run reports lives in `_TaskRun`, shared by both drivers, which
differ only in how a try is called (a coroutine's timeout cancels it) and how a retry
waits (`asyncio.sleep`): an async run's events are the sync run's.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import itertools
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from coplane.events import names as n
from coplane.orchestrate import caching
from coplane.orchestrate import events as ev
from coplane.orchestrate import logging as runlog
from coplane.orchestrate.context import RunContext, enter_context, get_run_context, leave_context
from coplane.orchestrate.reporter import get_reporter
from coplane.orchestrate.results import ResultError, ResultStore, Serializer
from coplane.orchestrate.retries import RetryPolicy

if TYPE_CHECKING:
    from coplane.orchestrate.futures import TaskFuture
    from coplane.orchestrate.runners import TaskRunner

log = logging.getLogger(__name__)


class TaskTimeoutError(TimeoutError):
    """A try took longer than its task's `timeout`: an async task's coroutine was cancelled, a
    sync task's thread is left to finish on its own."""


class UpstreamFailed(RuntimeError):
    """A task run did not start because a task run it depends on failed."""


@dataclass(slots=True)
class TaskSpec:
    """Everything about a task that a run of it needs; picklable, so it can go to a worker."""

    fn: Callable[..., Any]
    name: str
    key: str  # module and qualified name: what the default cache key names the task by
    labels: dict[str, str]
    retry: RetryPolicy
    timeout: float | None
    task_run_name: str | Callable[..., str] | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    cache: bool
    cache_key_fn: caching.CacheKeyFn | None
    cache_expiration: timedelta | None
    refresh_cache: bool
    result_storage: str | None
    result_serializer: Serializer
    log_prints: bool | None
    concurrency: str | None = None  # a limit whose slot each try holds while it runs
    is_async: bool = False  # `async def`: decided once, when the task is declared
    _signature: inspect.Signature | None = field(default=None, repr=False)
    _source: str | None = field(default=None, repr=False)

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by parameter name (defaults applied)."""
        if self._signature is None:
            self._signature = inspect.signature(self.fn)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def source(self) -> str:
        if self._source is None:
            self._source = caching.source_hash(self.fn)
        return self._source

    def __reduce__(self) -> tuple[Any, ...]:
        # A module-level task's function goes to a worker by name, as pickle sends
        # functions: by value, its globals (a lock, a client) would have to pickle too.
        state = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_signature"}
        reference = _reference(self.fn)
        if reference is not None:
            state["fn"] = reference
        return (_restore_spec, (state,))


def _reference(fn: Callable[..., Any]) -> tuple[str, str] | None:
    """(module, qualified name) that finds `fn` (or the task wrapping it) again, if any."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<locals>" in qualname or module not in sys.modules:
        return None
    found: Any = sys.modules[module]
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return (module, qualname) if found is fn or getattr(found, "fn", None) is fn else None


def _restore_spec(state: dict[str, Any]) -> TaskSpec:
    fn = state["fn"]
    if isinstance(fn, tuple):
        module, qualname = fn
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        state["fn"] = getattr(found, "fn", found)
    return TaskSpec(**state)


@dataclass(slots=True)
class TaskOutcome:
    """What became of a task run: its value or its error, and its final state."""

    value: Any = None
    error: BaseException | None = None
    state: str = "completed"
    # what the run emitted, when it ran where it could not report itself (a Dask worker
    # without COPLANE_URL): the caller's reporter sends them
    events: list[dict[str, Any]] | None = None
    logs: list[dict[str, Any]] | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class FlowRuntime:
    """The engine's state of one flow run: task call counters, its task runner, its futures."""

    def __init__(self, runner_template: TaskRunner) -> None:
        self._template = runner_template
        self._runner: TaskRunner | None = None
        self._counters: dict[str, itertools.count[int]] = {}
        self._lock = threading.Lock()
        self.futures: list[TaskFuture[Any]] = []

    def next_call(self, task_name: str) -> int:
        """The number of this call of the task within the flow run (1, 2, ...)."""
        counter = self._counters.get(task_name)
        if counter is None:
            counter = self._counters.setdefault(task_name, itertools.count(1))
        return next(counter)  # atomic under the GIL: no lock on the hot path

    def runner(self) -> TaskRunner:
        """The flow run's task runner, started on first use."""
        with self._lock:
            if self._runner is None:
                runner = self._template.duplicate()
                runner.start()
                self._runner = runner
            return self._runner

    @property
    def started(self) -> bool:
        """Whether the task runner was started (something was submitted to it)."""
        return self._runner is not None

    def track(self, future: TaskFuture[Any]) -> None:
        self.futures.append(future)

    def finish(self) -> None:
        """Wait for every task run submitted, so that each ends within the flow run."""
        if self._runner is not None:
            self._runner.wait_all(self.futures)

    def shutdown(self) -> None:
        if self._runner is not None:
            self._runner.shutdown()


# tasks


def _render_run_name(spec: TaskSpec, parameters: dict[str, Any], call: int) -> str:
    template = spec.task_run_name
    if template is None:
        return f"{spec.name}-{call}"
    try:
        if callable(template):
            return str(template(**parameters)) if parameters else str(template())
        return template.format(**parameters)
    except Exception as exc:  # a template naming a parameter that is not there
        log.warning("task %s: task_run_name %r cannot be rendered: %s", spec.name, template, exc)
        return f"{spec.name}-{call}"


def _call_with_timeout(spec: TaskSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    if spec.concurrency is None:
        return _call_bounded(spec, args, kwargs)
    from coplane.orchestrate.concurrency import concurrency

    # the slot is held for the try, and the timeout counts from when it was granted
    with concurrency(spec.concurrency):
        return _call_bounded(spec, args, kwargs)


def _call_bounded(spec: TaskSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    if spec.timeout is None:
        return spec.fn(*args, **kwargs)
    box: dict[str, Any] = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            box["value"] = context.run(spec.fn, *args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    # Python cannot stop a thread: on timeout the run fails and this daemon thread is left
    # to finish (or not) on its own, its result discarded
    thread = threading.Thread(target=target, name=f"coplane-task-{spec.name}", daemon=True)
    thread.start()
    thread.join(spec.timeout)
    if thread.is_alive():
        raise TaskTimeoutError(f"task {spec.name} timed out after {spec.timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _acall_with_timeout(
    spec: TaskSpec, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> Any:
    if spec.concurrency is None:
        return await _acall_bounded(spec, args, kwargs)
    from coplane.orchestrate.concurrency import aconcurrency

    async with aconcurrency(spec.concurrency):  # waits for the slot off the event loop
        return await _acall_bounded(spec, args, kwargs)


async def _acall_bounded(spec: TaskSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    if spec.timeout is None:
        return await spec.fn(*args, **kwargs)
    # unlike a thread, a coroutine can be stopped: on timeout it is cancelled, so its
    # `finally` blocks and context managers run before the try fails
    scope = asyncio.timeout(spec.timeout)
    try:
        async with scope:
            return await spec.fn(*args, **kwargs)
    except TimeoutError:
        if not scope.expired():  # the task's own TimeoutError, not ours
            raise
        raise TaskTimeoutError(f"task {spec.name} timed out after {spec.timeout:g} s") from None


def _cache_key(spec: TaskSpec, ctx: RunContext, parameters: dict[str, Any]) -> str | None:
    if not spec.cache:
        return None
    try:
        if spec.cache_key_fn is not None:
            return caching.user_cache_key(spec.cache_key_fn, ctx, parameters)
        return caching.default_cache_key(spec.key, spec.source(), parameters)
    except caching.Unhashable as exc:
        log.warning("task %s: inputs cannot be hashed, not cached: %s", spec.name, exc)
        return None


class _TaskRun:
    """One task run between its tries: the cache, the events and the outcome of each try.

    The sync and the async driver (`execute_task`, `aexecute_task`) differ only in how a try
    is called and how a retry waits; everything reported is decided here, once for both.
    """

    __slots__ = (
        "base", "call", "ctx", "emit", "key", "log_prints", "reporting", "resource", "run_key",
        "run_name", "spec", "started", "store", "summary", "task_run_id",
    )  # fmt: skip
    # the current try's, set by start_try: left unset until then, as each set costs
    run_key: str
    task_run_id: str
    base: dict[str, Any]
    started: float

    def __init__(
        self, spec: TaskSpec, ctx: RunContext, call: int, parameters: dict[str, Any]
    ) -> None:
        self.spec = spec
        self.ctx = ctx
        self.call = call
        self.resource = ev.task_resource(ctx.flow_name, spec.name)
        self.emit = ctx.reporter.emit
        self.reporting = ctx.reporter.enabled
        self.run_name = _render_run_name(spec, parameters, call)
        self.summary = ev.parameters_summary(parameters) if self.reporting else {}
        self.key: str | None = None
        self.store: ResultStore | None = None
        self.log_prints = spec.log_prints if spec.log_prints is not None else ctx.log_prints

    def event(self, name: str, run_key: str, payload: dict[str, Any]) -> dict[str, Any]:
        spec, ctx = self.spec, self.ctx
        return ev.task_run_event(
            name, flow_pipeline=ctx.pipeline_id, flow_run_key=ctx.run_key,
            resource=self.resource, task_name=spec.name, run_key=run_key, payload=payload,
            labels=spec.labels, inputs=spec.inputs, outputs=spec.outputs,
        )  # fmt: skip

    def cached(self, parameters: dict[str, Any]) -> TaskOutcome | None:
        """The stored result's outcome on a cache hit (reported), else None: run the task."""
        spec, ctx = self.spec, self.ctx
        # the key function sees the task run it decides for (its first try)
        first_key = ev.task_run_key(ctx.run_key, spec.name, self.call, 1)
        self.key = key = _cache_key(spec, ctx.for_task(
            task_run_id=ev.run_id(self.resource, first_key), task_resource=self.resource,
            task_run_key=first_key, task_name=spec.name, task_run_name=self.run_name,
            try_number=1, log_prints=ctx.log_prints,
        ), parameters)  # fmt: skip
        if key is None:
            return None
        self.store = store = ResultStore(spec.result_storage)
        if spec.refresh_cache:
            return None
        try:
            stored = store.read(key, datetime.now(UTC))
        except ResultError as exc:
            log.warning("task %s: cached result unreadable, running it: %s", spec.name, exc)
            return None
        if stored is None:
            return None
        if self.reporting:
            base = {"task_run_name": self.run_name, "try_number": 1, "parameters": self.summary}
            self.emit(self.event(n.RUN_STARTED, first_key, base))
            self.emit(self.event(n.RUN_CACHED, first_key, {
                **base, "cache_key": key, "cached_from": stored.run_id,
                "cached_at": stored.written.isoformat(), "result": ev.summary(stored.value),
            }))  # fmt: skip
        return TaskOutcome(value=stored.value, state="cached")

    def start_try(self, try_number: int) -> RunContext:
        """Report the try started; the context the task's code runs in."""
        spec = self.spec
        self.run_key = run_key = ev.task_run_key(self.ctx.run_key, spec.name, self.call, try_number)
        self.task_run_id = task_run_id = ev.run_id(self.resource, run_key)
        self.base = {"task_run_name": self.run_name, "try_number": try_number}
        if self.reporting:
            self.emit(self.event(n.RUN_STARTED, run_key, {**self.base, "parameters": self.summary}))
        self.started = time.perf_counter()
        return self.ctx.for_task(
            task_run_id=task_run_id, task_resource=self.resource, task_run_key=run_key,
            task_name=spec.name, task_run_name=self.run_name, try_number=try_number,
            log_prints=self.log_prints,
        )  # fmt: skip

    def try_failed(self, exc: Exception) -> float | None:
        """Report the try failed: the seconds to wait before the next, or None for no next."""
        duration = time.perf_counter() - self.started
        try_number = self.base["try_number"]
        if self.spec.retry.should_retry(exc, try_number):
            delay = self.spec.retry.delay(try_number)
            if self.reporting:
                self.emit(self.event(n.RUN_RETRYING, self.run_key, {
                    **self.base, "error": ev.error_payload(exc), "duration_s": duration,
                    "will_retry": True, "retry_in_s": delay,
                }))  # fmt: skip
            return delay
        if self.reporting:
            self.emit(self.event(n.RUN_FAILED, self.run_key, {
                **self.base, "error": ev.error_payload(exc), "duration_s": duration,
            }))  # fmt: skip
        return None

    def interrupted(self, exc: BaseException) -> None:
        """Report the try failed by KeyboardInterrupt, SystemExit or cancellation."""
        if self.reporting:
            self.emit(self.event(n.RUN_FAILED, self.run_key, {
                **self.base, "error": ev.error_payload(exc),
                "duration_s": time.perf_counter() - self.started,
            }))  # fmt: skip

    def completed(self, value: Any) -> TaskOutcome:
        """Store the result when cached, report the run completed and its outputs updated."""
        spec = self.spec
        payload: dict[str, Any] = {**self.base, "duration_s": time.perf_counter() - self.started}
        if self.store is not None and self.key is not None:
            now = datetime.now(UTC)
            expires = now + spec.cache_expiration if spec.cache_expiration else None
            try:
                self.store.write(self.key, value, spec.result_serializer, now=now,
                                 expires=expires, run_id=self.task_run_id)  # fmt: skip
                payload["cache_key"] = self.key
            except ResultError as exc:  # the run succeeded; only its reuse is lost
                log.warning("task %s: result not stored: %s", spec.name, exc)
                payload["result_error"] = str(exc)
        if self.reporting:
            payload["result"] = ev.summary(value)
            self.emit(self.event(n.RUN_COMPLETED, self.run_key, payload))
            for asset in spec.outputs:
                self.emit(ev.asset_updated_event(asset, producer=self.resource,
                                                 run_key=self.run_key))  # fmt: skip
        return TaskOutcome(value=value)


def _begin_task(
    spec: TaskSpec, ctx: RunContext, call: int, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> _TaskRun | TaskOutcome:
    """The task run about to try, or its outcome already: a bad call, or a cache hit."""
    try:
        parameters = spec.bind(args, kwargs)
    except TypeError as exc:  # called with arguments its function does not take
        return TaskOutcome(error=exc, state="failed")
    run = _TaskRun(spec, ctx, call, parameters)
    if spec.cache:
        hit = run.cached(parameters)
        if hit is not None:
            return hit
    return run


def execute_task(
    spec: TaskSpec, ctx: RunContext, call: int, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> TaskOutcome:
    """Run one task run to its end and report it; its failure is returned, not raised."""
    run = _begin_task(spec, ctx, call, args, kwargs)
    if isinstance(run, TaskOutcome):
        return run
    log_prints = run.log_prints
    for try_number in itertools.count(1):
        token = enter_context(run.start_try(try_number))
        if log_prints:
            runlog.capture_prints()
        try:
            value = _call_with_timeout(spec, args, kwargs)
        except Exception as exc:
            delay = run.try_failed(exc)
            if delay is None:
                return TaskOutcome(error=exc, state="failed")
            if delay > 0:
                time.sleep(delay)
            continue
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: report, then let it go
            run.interrupted(exc)
            raise
        finally:
            if log_prints:
                runlog.release_prints()
            leave_context(token)
        return run.completed(value)
    raise AssertionError("unreachable")  # pragma: no cover


async def aexecute_task(
    spec: TaskSpec, ctx: RunContext, call: int, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> TaskOutcome:
    """`execute_task` for an `async def` task, on the running event loop: the same events."""
    run = _begin_task(spec, ctx, call, args, kwargs)
    if isinstance(run, TaskOutcome):
        return run
    log_prints = run.log_prints
    for try_number in itertools.count(1):
        # set in this coroutine's own context: each of several runs gathered sees its own
        token = enter_context(run.start_try(try_number))
        if log_prints:
            runlog.capture_prints()
        try:
            value = await _acall_with_timeout(spec, args, kwargs)
        except Exception as exc:
            delay = run.try_failed(exc)
            if delay is None:
                return TaskOutcome(error=exc, state="failed")
            if delay > 0:
                await asyncio.sleep(delay)  # the loop runs other coroutines meanwhile
            continue
        except BaseException as exc:  # cancelled (the flow's caller gave up), or interrupted
            run.interrupted(exc)
            raise
        finally:
            if log_prints:
                runlog.release_prints()
            leave_context(token)
        return run.completed(value)
    raise AssertionError("unreachable")  # pragma: no cover


def resolve(value: Any) -> Any:
    """`value` with every task future in it (also in lists, tuples, sets, dicts) replaced by
    its result; an upstream failure raises UpstreamFailed."""
    from coplane.orchestrate.futures import TaskFuture

    if isinstance(value, TaskFuture):
        try:
            return value.result()
        except BaseException as exc:
            raise UpstreamFailed(f"upstream task run failed: {exc!r}") from exc
    if isinstance(value, list | tuple | set):
        if not any(isinstance(v, TaskFuture | list | tuple | set | dict) for v in value):
            return value
        return type(value)(resolve(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    return value


def call_task(
    spec: TaskSpec,
    ctx: RunContext,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    wait_for: Sequence[Any] = (),
    call: int | None = None,
) -> TaskOutcome:
    """A task run in this thread: its futures resolved first (a failed one fails it)."""
    if call is None:
        runtime: FlowRuntime = ctx.runtime
        call = runtime.next_call(spec.name)
    try:
        for dependency in wait_for:
            resolve(dependency)
        args = resolve(tuple(args))
        kwargs = resolve(dict(kwargs))
    except UpstreamFailed as exc:
        return upstream_failed(spec, ctx, call, exc)
    if spec.is_async:
        # a runner's worker thread has no event loop: the async task run gets one of its own
        return asyncio.run(aexecute_task(spec, ctx, call, args, kwargs))
    return execute_task(spec, ctx, call, args, kwargs)


async def acall_task(
    spec: TaskSpec, ctx: RunContext, call: int, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> TaskOutcome:
    """An async task run awaited on the running loop: its futures resolved first, as
    `call_task` does (waiting for a submitted one blocks the loop, as `result()` would)."""
    try:
        args = resolve(tuple(args))
        kwargs = resolve(dict(kwargs))
    except UpstreamFailed as exc:
        return upstream_failed(spec, ctx, call, exc)
    return await aexecute_task(spec, ctx, call, args, kwargs)


def upstream_failed(spec: TaskSpec, ctx: RunContext, call: int, exc: UpstreamFailed) -> TaskOutcome:
    """A task run that never started: reported failed with the upstream error."""
    if ctx.reporter.enabled:
        resource = ev.task_resource(ctx.flow_name, spec.name)
        run_key = ev.task_run_key(ctx.run_key, spec.name, call, 1)
        ctx.reporter.emit(ev.task_run_event(
            n.RUN_FAILED, flow_pipeline=ctx.pipeline_id, flow_run_key=ctx.run_key,
            resource=resource, task_name=spec.name, run_key=run_key,
            payload={"try_number": 1, "error": ev.error_payload(exc), "upstream_failed": True},
            labels=spec.labels, inputs=spec.inputs, outputs=spec.outputs,
        ))  # fmt: skip
    return TaskOutcome(error=exc, state="failed")


# flows


@dataclass(slots=True)
class FlowSpec:
    """What a run of a flow needs."""

    fn: Callable[..., Any]
    name: str
    labels: dict[str, str]
    task_runner: TaskRunner
    log_prints: bool
    flow_run_name: str | Callable[..., str] | None
    _signature: inspect.Signature | None = field(default=None, repr=False)

    def bind(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if self._signature is None:
            self._signature = inspect.signature(self.fn)
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)


def _flow_run_name(spec: FlowSpec, parameters: dict[str, Any]) -> str | None:
    template = spec.flow_run_name
    if template is None:
        return None
    try:
        if callable(template):
            return str(template())
        return template.format(**parameters)
    except Exception as exc:
        log.warning("flow %s: flow_run_name %r cannot be rendered: %s", spec.name, template, exc)
        return None


def _deployment_run(pipeline: str) -> tuple[str, list[dict[str, Any]]] | None:
    """The run key and causes a worker gave this process's flow run (see
    coplane.orchestrate.execute), taken once: a second top-level flow in the process, or a
    flow of another name, is a run of its own."""
    if os.environ.get("COPLANE_FLOW") != pipeline or not os.environ.get("COPLANE_FLOW_RUN_KEY"):
        return None
    run_key = os.environ.pop("COPLANE_FLOW_RUN_KEY")
    try:
        causes = json.loads(os.environ.pop("COPLANE_RELATED", "") or "[]")
    except ValueError:
        causes = []
    valid = [c for c in causes if isinstance(c, dict) and "id" in c and "role" in c]
    return run_key, valid


class _FlowRun:
    """One flow run's context and events: shared by `run_flow` and `arun_flow`."""

    def __init__(self, spec: FlowSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.spec = spec
        # a TypeError here is the caller's, as for a function
        parameters = spec.bind(args, kwargs)
        parent = get_run_context()
        self.reporter = reporter = parent.reporter if parent is not None else get_reporter()
        pipeline = ev.flow_resource(spec.name)
        given = _deployment_run(pipeline) if parent is None else None
        self.run_key, self.causes = given if given is not None else (str(uuid.uuid4()), [])
        self.runtime = FlowRuntime(spec.task_runner)
        self.ctx = RunContext(
            flow_run_id=ev.run_id(pipeline, self.run_key), pipeline_id=pipeline,
            run_key=self.run_key, flow_name=spec.name, reporter=reporter,
            parameters=parameters, log_prints=spec.log_prints, runtime=self.runtime,
        )  # fmt: skip
        # a subflow is a child run of its caller's flow run, also when a task calls it
        self.parent_pipeline = parent.pipeline_id if parent is not None else None
        self.parent_run_key = parent.run_key if parent is not None else None
        self.base: dict[str, Any] = {}
        run_name = _flow_run_name(spec, parameters)
        if run_name:
            self.base["flow_run_name"] = run_name
        self.parameters = parameters
        self.started = 0.0
        self.token: Token[RunContext | None] | None = None

    def event(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        return ev.flow_run_event(
            name, flow_name=self.spec.name, run_key=self.run_key, payload=payload,
            labels=self.spec.labels, parent_pipeline=self.parent_pipeline,
            parent_run_key=self.parent_run_key, causes=self.causes,
        )  # fmt: skip

    def enter(self) -> None:
        """Report the run started and make it the current run."""
        if self.reporter.enabled:
            self.reporter.emit(self.event(n.RUN_STARTED, {
                **self.base, "parameters": ev.parameters_summary(self.parameters),
            }))  # fmt: skip
        self.started = time.perf_counter()
        self.token = enter_context(self.ctx)
        if self.spec.log_prints:
            runlog.capture_prints()

    def leave(self) -> None:
        """Restore the caller's context (the run's task runner is shut down apart)."""
        if self.spec.log_prints:
            runlog.release_prints()
        if self.token is not None:
            leave_context(self.token)

    def failed(self, exc: BaseException) -> None:
        if self.reporter.enabled:
            self.reporter.emit(self.event(n.RUN_FAILED, {
                **self.base, "error": ev.error_payload(exc),
                "duration_s": time.perf_counter() - self.started,
            }))  # fmt: skip

    def completed(self, result: Any) -> None:
        if self.reporter.enabled:
            self.reporter.emit(self.event(n.RUN_COMPLETED, {
                **self.base, "result": ev.summary(result),
                "duration_s": time.perf_counter() - self.started,
            }))  # fmt: skip


def run_flow(spec: FlowSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Run a flow in this thread, as a subflow when called inside another flow run."""
    run = _FlowRun(spec, args, kwargs)
    run.enter()
    try:
        try:
            result = spec.fn(*args, **kwargs)
        finally:
            run.runtime.finish()
    except BaseException as exc:
        run.failed(exc)
        raise
    finally:
        run.leave()
        run.runtime.shutdown()
    run.completed(result)
    return result


async def arun_flow(spec: FlowSpec, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Run an `async def` flow on the running event loop: the same events as `run_flow`."""
    run = _FlowRun(spec, args, kwargs)
    run.enter()
    runtime = run.runtime
    try:
        try:
            result = await spec.fn(*args, **kwargs)
        finally:
            # task runs submitted to the runner end in its threads: waited for off the loop
            if runtime.started:
                await asyncio.to_thread(runtime.finish)
    except BaseException as exc:
        run.failed(exc)
        raise
    finally:
        run.leave()
        if runtime.started:
            await asyncio.to_thread(runtime.shutdown)
    run.completed(result)
    return result
