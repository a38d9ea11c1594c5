"""`@flow`: a function whose call is a flow run, reported to coplane with its task runs.

The call of a flow of an `async def` is a coroutine, run when awaited (`asyncio.run(f())`
from sync code); which engine function runs a flow is decided once, when it is declared.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar, overload

from coplane.orchestrate import events as ev
from coplane.orchestrate.engine import FlowSpec, arun_flow, run_flow
from coplane.orchestrate.runners import TaskRunner, runner_or_default

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Generic[P, R]):
    """A flow: calling it runs it here and now, as a flow run (a subflow inside another)."""

    # A worker's `execute` lets a flow report its own run (onto the run key it was given)
    __coplane_flow__ = True

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        tags: Sequence[str] = (),
        task_runner: TaskRunner | Callable[[], TaskRunner] | None = None,
        log_prints: bool = False,
        flow_run_name: str | Callable[..., str] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow decorates a function, not {type(fn).__name__}")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or "flow"
        self.spec = FlowSpec(
            fn=fn,
            name=self.name,
            labels=ev.labels_of(tags),
            task_runner=runner_or_default(task_runner),
            log_prints=log_prints,
            flow_run_name=flow_run_name,
        )
        self._options: dict[str, Any] = {
            "name": name, "tags": tags, "task_runner": task_runner,
            "log_prints": log_prints, "flow_run_name": flow_run_name,
        }  # fmt: skip
        self._run: Callable[[FlowSpec, Sequence[Any], Mapping[str, Any]], Any] = (
            arun_flow if inspect.iscoroutinefunction(fn) else run_flow
        )
        functools.update_wrapper(self, fn)

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed (the same names as `@flow`'s)."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"with_options: unknown option {', '.join(sorted(unknown))}")
        return Flow(self.fn, **{**self._options, **options})

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self._run(self.spec, args, kwargs)  # a coroutine for an `async def`
        return result


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    task_runner: TaskRunner | Callable[[], TaskRunner] | None = None,
    log_prints: bool = False,
    flow_run_name: str | Callable[..., str] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Declare a flow: `@flow` or `@flow(name="nightly", task_runner=DaskTaskRunner())`."""
    if fn is not None:
        return Flow(fn, **options)

    def decorate(f: Callable[P, R]) -> Flow[P, R]:
        return Flow(f, **options)

    return decorate
