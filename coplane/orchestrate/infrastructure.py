"""Where a flow run executes: a small Protocol, the built-in `process` kind, plugins by entry point.

A worker hands an `Infrastructure` a `RunSpec` (command, working directory, environment) and
gets back a `RunHandle` it polls and may stop. The built-in `process` kind is found through
the entry-point group `coplane.infrastructure`, exactly as a plugin's kind (a Kubernetes job,
a container) would be, so adding one needs no change to the worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import IO, Protocol

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "coplane.infrastructure"
# Seconds a run asked to stop gets after SIGTERM before SIGKILL.
STOP_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What to start for one flow run."""

    run_id: str
    command: list[str]
    working_dir: Path
    env: dict[str, str]
    # called with each line the run prints (stdout and stderr together)
    on_output: Callable[[str], None] = field(default=lambda line: None)


class RunHandle(Protocol):
    """A started run."""

    def poll(self) -> int | None:
        """Its exit status once it has ended (negative: killed by that signal), else None."""
        ...

    def stop(self) -> None:
        """Ask it to stop, and make sure it does (forcibly after a grace period)."""
        ...


class Infrastructure(Protocol):
    """A kind of place to run flow runs in."""

    def start(self, spec: RunSpec) -> RunHandle:
        """Start the run `spec` describes; raise on failure to start."""
        ...


def _die_with_parent() -> None:
    """In the child before exec: be SIGKILLed when the worker thread that started us dies,
    so that a worker killed outright leaves no run behind to finish unseen after it has been
    declared crashed (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class ProcessHandle:
    """A run in a local subprocess, in a process group of its own."""

    def __init__(self, process: subprocess.Popen[str], reader: threading.Thread) -> None:
        self.process = process
        self._reader = reader

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self._reader.join(timeout=2)  # the last lines are read before the end is reported
        return code

    def stop(self) -> None:
        """SIGTERM to the run's process group now, SIGKILL after the grace period; returns at
        once, so a worker stopping one run goes on watching the others."""
        if self.process.poll() is not None:
            return
        try:  # the whole group: a flow's own children stop with it
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        timer = threading.Timer(STOP_GRACE_S, self._kill)
        timer.daemon = True
        timer.start()

    def _kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


class ProcessInfrastructure:
    """The built-in `process` kind: a subprocess on the worker's machine."""

    def start(self, spec: RunSpec) -> RunHandle:
        process = subprocess.Popen(
            spec.command,
            cwd=spec.working_dir,
            env=spec.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        assert process.stdout is not None
        reader = threading.Thread(
            target=_pump, args=(process.stdout, spec.on_output), daemon=True,
            name=f"coplane-run-{spec.run_id[:8]}",
        )  # fmt: skip
        reader.start()
        return ProcessHandle(process, reader)


def _pump(stream: IO[str], on_output: Callable[[str], None]) -> None:
    for line in stream:
        try:
            on_output(line.rstrip("\n"))
        except Exception:  # a failing log sink must not stop the run's output being drained
            log.exception("handling a run's output failed")
    stream.close()


@cache
def infrastructure_kinds() -> dict[str, Callable[[], Infrastructure]]:
    """Every infrastructure kind installed, by name (the built-in `process` among them)."""
    kinds: dict[str, Callable[[], Infrastructure]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            kinds[ep.name] = ep.load()
        except Exception:  # a broken plugin must not stop the worker running other kinds
            log.exception("loading infrastructure kind %s failed", ep.name)
    kinds.setdefault("process", ProcessInfrastructure)  # an install without its metadata
    return kinds


def load_infrastructure(kind: str) -> Infrastructure:
    """A new infrastructure of `kind`; KeyError naming the kinds there are."""
    kinds = infrastructure_kinds()
    if kind not in kinds:
        raise KeyError(f"no infrastructure kind {kind!r}; installed: {', '.join(sorted(kinds))}")
    return kinds[kind]()
