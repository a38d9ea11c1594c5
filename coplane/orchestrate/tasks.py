"""`@task`: a function whose calls inside a flow are task runs, with retries, caching, assets.

A task of an `async def` is an `AsyncTask`, chosen once when it is declared: its call is a
coroutine to await, so the sync path checks nothing per call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from coplane.orchestrate import events as ev
from coplane.orchestrate.caching import CacheKeyFn
from coplane.orchestrate.context import RunContext, get_run_context
from coplane.orchestrate.engine import FlowRuntime, TaskSpec, acall_task, call_task
from coplane.orchestrate.futures import TaskFuture
from coplane.orchestrate.results import SERIALIZERS, Serializer
from coplane.orchestrate.retries import RetryDelay, RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class unmapped:  # lower case: it reads as a marker in a call, task.map(xs, unmapped(cfg))
    """An argument of `task.map` given whole to every task run instead of iterated over."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _positive_seconds(name: str, value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(seconds)


def _asset_ids(name: str, values: Iterable[str] | None) -> tuple[str, ...]:
    ids = tuple(values or ())
    for value in ids:
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: each asset id is a non-empty string, not {value!r}")
    return ids


class Task(Generic[P, R]):
    """A task: call it inside a flow (a task run here), `submit` it, or `map` it."""

    def __new__(cls, *args: Any, **options: Any) -> Task[P, R]:
        # decided here, once: every way of making a task (`@task`, `Task(fn)`,
        # `with_options`) gives an `async def` the class whose call is awaitable; unpickling
        # calls this with no arguments, its class already chosen
        chosen: type[Task[Any, Any]] = cls
        if cls is Task and args and inspect.iscoroutinefunction(args[0]):
            chosen = AsyncTask
        made: Task[P, R] = object.__new__(chosen)
        return made

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        tags: Sequence[str] = (),
        retries: int = 0,
        retry_delay: RetryDelay | None = None,
        retry_jitter_factor: float | None = None,
        retry_on: type[BaseException] | Sequence[type[BaseException]] | None = None,
        timeout: float | timedelta | None = None,
        task_run_name: str | Callable[..., str] | None = None,
        inputs: Iterable[str] | None = None,
        outputs: Iterable[str] | None = None,
        cache: bool = False,
        cache_key_fn: CacheKeyFn | None = None,
        cache_expiration: float | timedelta | None = None,
        refresh_cache: bool = False,
        result_storage: str | None = None,
        result_serializer: Serializer = "pickle",
        log_prints: bool | None = None,
        concurrency: str | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task decorates a function, not {type(fn).__name__}")
        task_name = name or getattr(fn, "__name__", None) or "task"
        if result_serializer not in SERIALIZERS:
            raise ValueError(
                f"result_serializer must be one of {', '.join(SERIALIZERS)}, "
                f"not {result_serializer!r}"
            )
        expiration = _positive_seconds("cache_expiration", cache_expiration)
        if concurrency is not None and (not isinstance(concurrency, str) or not concurrency):
            raise ValueError(f"concurrency names a limit, not {concurrency!r}")
        self.fn = fn
        self.name = task_name
        self.spec = TaskSpec(
            fn=fn,
            name=task_name,
            key=f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', task_name)}",
            labels=ev.labels_of(tags),
            retry=RetryPolicy.build(retries, retry_delay, retry_jitter_factor, retry_on),
            timeout=_positive_seconds("timeout", timeout),
            task_run_name=task_run_name,
            inputs=_asset_ids("inputs", inputs),
            outputs=_asset_ids("outputs", outputs),
            cache=bool(cache or cache_key_fn or expiration or refresh_cache),
            cache_key_fn=cache_key_fn,
            cache_expiration=timedelta(seconds=expiration) if expiration else None,
            refresh_cache=refresh_cache,
            result_storage=result_storage,
            result_serializer=result_serializer,
            log_prints=log_prints,
            concurrency=concurrency,
            is_async=isinstance(self, AsyncTask),
        )
        self._options = {
            "name": name, "tags": tags, "retries": retries, "retry_delay": retry_delay,
            "retry_jitter_factor": retry_jitter_factor, "retry_on": retry_on,
            "timeout": timeout, "task_run_name": task_run_name, "inputs": inputs,
            "outputs": outputs, "cache": cache, "cache_key_fn": cache_key_fn,
            "cache_expiration": cache_expiration, "refresh_cache": refresh_cache,
            "result_storage": result_storage, "result_serializer": result_serializer,
            "log_prints": log_prints, "concurrency": concurrency,
        }  # fmt: skip
        functools.update_wrapper(self, fn)

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed (the same names as `@task`'s)."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"with_options: unknown option {', '.join(sorted(unknown))}")
        return Task(self.fn, **{**self._options, **options})

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ctx = get_run_context()
        if ctx is None or ctx.runtime is None:  # outside a flow: a plain function call
            return self.fn(*args, **kwargs)
        value: R = call_task(self.spec, ctx, args, kwargs).unwrap()
        return value

    def _flow_context(self, what: str) -> tuple[RunContext, FlowRuntime]:
        ctx = get_run_context()
        if ctx is None or ctx.runtime is None:
            raise RuntimeError(f"{self.name}.{what}() is called inside a flow")
        return ctx, ctx.runtime

    # The future of an async task's run holds what its coroutine returned: the overloads say
    # so to type checkers. Any, not P: each argument may also be a future of one, resolved
    # before the run starts.
    @overload
    def submit(
        self: Task[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
    ) -> TaskFuture[T]: ...

    @overload
    def submit(self: Task[..., T], *args: Any, **kwargs: Any) -> TaskFuture[T]: ...

    def submit(self, *args: Any, **kwargs: Any) -> TaskFuture[Any]:
        """Run the task in the flow's task runner; returns its future at once.

        `wait_for=[futures]` (a keyword the task's own parameters cannot use) makes the run
        wait for those first, and fail without running if one of them failed.
        """
        wait_for = list(kwargs.pop("wait_for", None) or ())
        ctx, runtime = self._flow_context("submit")
        future: TaskFuture[Any] = runtime.runner().submit(self.spec, ctx, args, kwargs, wait_for)
        runtime.track(future)
        return future

    @overload
    def map(
        self: Task[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any
    ) -> list[TaskFuture[T]]: ...

    @overload
    def map(self: Task[..., T], *args: Any, **kwargs: Any) -> list[TaskFuture[T]]: ...

    def map(self, *args: Any, **kwargs: Any) -> list[TaskFuture[Any]]:
        """One task run per element of the iterable arguments (zipped; `unmapped(x)` and
        non-iterables are passed whole to each); returns their futures in order."""
        wait_for = list(kwargs.pop("wait_for", None) or ())
        ctx, runtime = self._flow_context("map")
        lengths: dict[int | str, int] = {}
        places: list[tuple[int | str, Any]] = [*enumerate(args), *kwargs.items()]
        for where, value in places:
            if _is_mapped(value):
                value = list(value)
                lengths[where] = len(value)
                if isinstance(where, int):
                    args = (*args[:where], value, *args[where + 1 :])
                else:
                    kwargs[where] = value
        if not lengths:
            raise ValueError(f"{self.name}.map(): no iterable argument to map over")
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}: {v}" for k, v in lengths.items())
            raise ValueError(f"{self.name}.map(): the iterables differ in length ({shown})")
        count = next(iter(lengths.values()))
        calls = [
            (
                [v[i] if j in lengths else _whole(v) for j, v in enumerate(args)],
                {k: v[i] if k in lengths else _whole(v) for k, v in kwargs.items()},
            )
            for i in range(count)
        ]
        futures: list[TaskFuture[Any]] = runtime.runner().submit_many(
            self.spec, ctx, calls, wait_for
        )
        for future in futures:
            runtime.track(future)
        return futures


class AsyncTask(Task[P, R]):
    """A task of an `async def`: `await task(...)` inside a flow is a task run on its loop."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ctx = get_run_context()
        if ctx is None or ctx.runtime is None:  # outside a flow: the function's own coroutine
            return self.fn(*args, **kwargs)
        # numbered at the call, not when awaited: runs gathered are numbered as written
        call = ctx.runtime.next_call(self.spec.name)
        return cast(R, _awaited_run(self.spec, ctx, call, args, kwargs))


async def _awaited_run(
    spec: TaskSpec, ctx: RunContext, call: int, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    return (await acall_task(spec, ctx, call, args, kwargs)).unwrap()


def _is_mapped(value: Any) -> bool:
    if isinstance(value, unmapped | str | bytes | dict | TaskFuture):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _whole(value: Any) -> Any:
    return value.value if isinstance(value, unmapped) else value


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    retries: int = 0,
    retry_delay: RetryDelay | None = None,
    retry_jitter_factor: float | None = None,
    retry_on: type[BaseException] | Sequence[type[BaseException]] | None = None,
    timeout: float | timedelta | None = None,
    task_run_name: str | Callable[..., str] | None = None,
    inputs: Iterable[str] | None = None,
    outputs: Iterable[str] | None = None,
    cache: bool = False,
    cache_key_fn: CacheKeyFn | None = None,
    cache_expiration: float | timedelta | None = None,
    refresh_cache: bool = False,
    result_storage: str | None = None,
    result_serializer: Serializer = "pickle",
    log_prints: bool | None = None,
    concurrency: str | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Declare a task: `@task` or `@task(retries=3, outputs=["warehouse.sales"], ...)`."""
    if fn is not None:
        return Task(fn, **options)

    def decorate(f: Callable[P, R]) -> Task[P, R]:
        return Task(f, **options)

    return decorate
