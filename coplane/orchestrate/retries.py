"""When a failed task run is tried again: how many times, after which waits, for which errors."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# `retry_delay` as the user gives it: seconds, a list of seconds (one per retry, the last
# repeated), or a function of the number of retries giving that list
RetryDelay = float | Sequence[float] | Callable[[int], Sequence[float]]


def exponential_backoff(base: float) -> Callable[[int], list[float]]:
    """Delays of base, 2·base, 4·base, ... seconds, one per retry: `retry_delay=` takes it."""
    if base < 0:
        raise ValueError(f"exponential_backoff: base must be at least 0, not {base}")

    def delays(retries: int) -> list[float]:
        return [base * 2.0**i for i in range(retries)]

    return delays


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A task's retry options, checked once when the task is declared."""

    retries: int = 0
    delays: tuple[float, ...] = ()  # one per retry; empty means retry at once
    jitter_factor: float | None = None
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    @classmethod
    def build(
        cls,
        retries: int,
        retry_delay: RetryDelay | None,
        retry_jitter_factor: float | None,
        retry_on: type[BaseException] | Sequence[type[BaseException]] | None,
    ) -> RetryPolicy:
        """Validate the options of `@task`; a bad one raises ValueError naming it."""
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be a whole number of at least 0, not {retries!r}")
        if retry_delay is None:
            delays: Sequence[float] = ()
        elif callable(retry_delay):
            delays = retry_delay(retries)
        elif isinstance(retry_delay, int | float):
            delays = [float(retry_delay)]
        else:
            delays = list(retry_delay)
        checked = []
        for d in delays:
            if isinstance(d, bool) or not isinstance(d, int | float) or d < 0:
                raise ValueError(f"retry_delay: each delay is seconds of at least 0, not {d!r}")
            checked.append(float(d))
        if retry_jitter_factor is not None and (
            not isinstance(retry_jitter_factor, int | float) or retry_jitter_factor < 0
        ):
            raise ValueError(
                f"retry_jitter_factor must be a number of at least 0, not {retry_jitter_factor!r}"
            )
        if retry_on is None:
            on: tuple[type[BaseException], ...] = (Exception,)
        elif isinstance(retry_on, type):
            on = (retry_on,)
        else:
            on = tuple(retry_on)
        for kind in on:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise ValueError(f"retry_on: {kind!r} is not an exception type")
        return cls(retries, tuple(checked), retry_jitter_factor, on)

    def should_retry(self, exc: BaseException, try_number: int) -> bool:
        """True when try `try_number` (1 for the first) failed with `exc` and may be retried."""
        return try_number <= self.retries and isinstance(exc, self.retry_on)

    def delay(self, try_number: int) -> float:
        """Seconds to wait after try `try_number` fails, before the next."""
        if not self.delays:
            return 0.0
        base = self.delays[min(try_number, len(self.delays)) - 1]
        if self.jitter_factor:
            # spreads retries of many task runs failing together (a database restart) apart
            base += random.uniform(0, base * self.jitter_factor)
        return base
