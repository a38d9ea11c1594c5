"""Failed logins slow down who makes them: per account and per address, a few free tries,
then a wait that doubles with each further failure; and password hashing in a pool of its own.

argon2 is slow on purpose, so without a bound 60 parallel wrong logins took every thread of
the pool that reads the database too (a read went from 0.05 s to 6.9 s), and nothing stopped
a guesser sending one password after another. Counted in each server process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

FREE_FAILURES = 5  # failures before any wait: typos, a caps-lock
FIRST_WAIT = 1.0  # seconds after the first failure past the free ones; doubles from there
MAX_WAIT = 15 * 60.0
MAX_TRACKED = 100_000  # names and addresses remembered at most; the oldest are forgotten

# Password hashes run here, at most two at once, never in the threads that serve reads.
HASH_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="coplane-password")


class LoginThrottle:
    """Failures per name and per address, and until when each must wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # who -> (failures, wait until)

    def wait(self, *who: str) -> float:
        """Seconds until any of `who` may try again; 0 when all may now."""
        now = self.clock()
        waits = [self._failures.get(w, (0, 0.0))[1] - now for w in who]
        return max(0.0, *waits)

    def failed(self, *who: str) -> None:
        """Count a failure for each of `who`."""
        now = self.clock()
        for w in who:
            count = self._failures.pop(w, (0, 0.0))[0] + 1
            past = count - FREE_FAILURES
            until = now + min(MAX_WAIT, FIRST_WAIT * 2 ** (past - 1)) if past > 0 else 0.0
            self._failures[w] = (count, until)  # re-inserted: the dict's order is recency
        while len(self._failures) > MAX_TRACKED:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, *who: str) -> None:
        """Forget the failures of each of `who`."""
        for w in who:
            self._failures.pop(w, None)
