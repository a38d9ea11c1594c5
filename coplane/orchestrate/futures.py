"""Futures of submitted task runs, and `wait` / `as_completed` over them."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from coplane.orchestrate.engine import TaskOutcome
from coplane.orchestrate.reporter import Reporter

R = TypeVar("R")


class TaskFuture(Generic[R]):
    """A task run handed to a task runner; `result()` waits for it and returns its value."""

    def result(self, timeout: float | None = None) -> R:
        """The task run's return value; raises its error if it failed (TimeoutError if it has
        not ended within `timeout` seconds)."""
        outcome = self.outcome(timeout)
        value: R = outcome.unwrap()
        return value

    def outcome(self, timeout: float | None = None) -> TaskOutcome:
        raise NotImplementedError

    def done(self) -> bool:
        raise NotImplementedError

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the task run ends (at most `timeout` s); True when it has."""
        try:
            self.outcome(timeout)
        except TimeoutError:
            return False
        return True

    @property
    def state(self) -> str:
        """`pending` until the task run ends, then `completed`, `failed` or `cached`."""
        if not self.done():
            return "pending"
        return self.outcome().state


class ThreadTaskFuture(TaskFuture[R]):
    """A task run in the thread pool."""

    def __init__(self, future: cf.Future[TaskOutcome]) -> None:
        self._future = future

    def outcome(self, timeout: float | None = None) -> TaskOutcome:
        try:
            return self._future.result(timeout)
        except cf.TimeoutError:
            raise TimeoutError(f"the task run has not ended within {timeout} s") from None

    def done(self) -> bool:
        return self._future.done()


class DaskTaskFuture(TaskFuture[R]):
    """A task run on a Dask cluster; what it emitted where it could not report is sent here."""

    def __init__(self, future: Any, reporter: Reporter) -> None:
        self.dask_future = future
        self._reporter = reporter
        self._outcome: TaskOutcome | None = None
        self._lock = threading.Lock()

    def outcome(self, timeout: float | None = None) -> TaskOutcome:
        if self._outcome is None:
            try:
                got = self.dask_future.result(timeout=timeout)
            except TimeoutError:
                raise
            except Exception as exc:  # the worker died, or the outcome could not be pickled
                got = TaskOutcome(error=exc, state="failed")
            self.settle(got)
        assert self._outcome is not None
        return self._outcome

    def settle(self, outcome: TaskOutcome) -> None:
        """Take the outcome, sending (once) the events and logs it carries."""
        with self._lock:
            if self._outcome is not None:
                return
            for event in outcome.events or ():
                self._reporter.emit(event)
            for record in outcome.logs or ():
                self._reporter.emit_log(record)
            outcome.events = outcome.logs = None
            self._outcome = outcome

    def done(self) -> bool:
        return self._outcome is not None or bool(self.dask_future.done())

    @property
    def unsettled(self) -> bool:
        """True until the outcome has been taken from the cluster."""
        return self._outcome is None


def settle_dask(futures: list[DaskTaskFuture[Any]], timeout: float | None = None) -> None:
    """Wait for Dask task runs and take their outcomes in one gather: waiting on each
    would cost a round trip to the scheduler per task run."""
    import distributed

    wait_all: Any = distributed.wait  # untyped
    with contextlib.suppress(TimeoutError, distributed.TimeoutError):
        wait_all([f.dask_future for f in futures], timeout=timeout)
    finished = [f for f in futures if f.dask_future.done()]
    if not finished:
        return
    client = finished[0].dask_future.client
    outcomes = client.gather([f.dask_future for f in finished], errors="skip")
    if len(outcomes) == len(finished):
        for future, outcome in zip(finished, outcomes, strict=True):
            future.settle(outcome)


class DoneAndNotDone(NamedTuple):
    done: set[TaskFuture[Any]]
    not_done: set[TaskFuture[Any]]


def wait(futures: Iterable[TaskFuture[Any]], timeout: float | None = None) -> DoneAndNotDone:
    """Wait until every future has ended, or `timeout` seconds; (done, not_done)."""
    pending = list(futures)
    on_dask = [f for f in pending if isinstance(f, DaskTaskFuture) and f.unsettled]
    if on_dask:
        settle_dask(on_dask, timeout)
    if timeout is None:
        for future in pending:
            future.wait()
        return DoneAndNotDone(set(pending), set())
    done: set[TaskFuture[Any]] = set()
    try:
        for future in as_completed(pending, timeout):
            done.add(future)
    except TimeoutError:
        pass
    return DoneAndNotDone(done, {f for f in pending if f not in done})


def as_completed(
    futures: Iterable[TaskFuture[Any]], timeout: float | None = None
) -> Iterator[TaskFuture[Any]]:
    """The futures in the order their task runs end; TimeoutError after `timeout` seconds."""
    pending = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause = 0.0005
    while pending:
        still = []
        for future in pending:
            if future.done():
                yield future
            else:
                still.append(future)
        pending = still
        if not pending:
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"{len(pending)} task runs had not ended within {timeout} s")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)  # ends seen quickly at first, then without spinning
