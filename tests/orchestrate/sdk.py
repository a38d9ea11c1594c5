"""Helpers for the flow SDK's tests: a collecting reporter in place, runs folded from events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from coplane.events.derive import Derived, derive
from coplane.events.model import decode_events
from coplane.orchestrate import reporter as reporting
from coplane.orchestrate.reporter import CollectingReporter, Reporter


@contextmanager
def reporter_in_place(reporter: Reporter) -> Iterator[Reporter]:
    """Make `reporter` the process's reporter while the block runs."""
    reporting.reset_reporter()
    reporting._reporter = reporter
    try:
        yield reporter
    finally:
        reporting._reporter = None


@contextmanager
def collected() -> Iterator[CollectingReporter]:
    """Flows run in the block report into the lists of a CollectingReporter."""
    reporter = CollectingReporter()
    with reporter_in_place(reporter):
        yield reporter


def fold(events: list[dict[str, Any]]) -> Derived:
    """The runs, resources and assets the server would derive from these events."""
    return derive(decode_events(json.dumps(events).encode()))


def names(events: list[dict[str, Any]], resource: str) -> list[str]:
    """The event names reported for one resource, in order."""
    return [e["event"] for e in events if e["resource"]["id"] == resource]
