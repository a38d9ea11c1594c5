"""The SLA engine: evaluates every SLA, opens and resolves incidents, and wakes at exact deadlines.

It evaluates at start-up (which catches deadlines missed while the server was down: the
rules report every unmet window since the SLA was created), after ingest commits (at most
once per DEBOUNCE), and at the earliest `next_deadline` any rule returned, through a
one-shot scheduler job rather than a polling loop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from coplane.jobs.scheduler import Scheduler
from coplane.slas.config import load_config
from coplane.slas.facts import Breach, Evaluation
from coplane.slas.model import SLA
from coplane.slas.rules import evaluate
from coplane.store import Conn, Store
from coplane.store.incidents import apply_evaluation
from coplane.store.sla_facts import downstream, read_facts
from coplane.store.slas import list_slas, replace_file_slas, save_sla_state

log = logging.getLogger(__name__)

DEBOUNCE = timedelta(seconds=1)  # ingest wakes the engine at most this often
_DEADLINE_JOB = "sla-evaluate-at-deadline"  # the earliest next_deadline of any SLA
_SOON_JOB = "sla-evaluate-soon"  # after ingest or an API change


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one evaluation pass did."""

    evaluated: int
    opened: int
    resolved: int
    next_wake: datetime | None


class SlaEngine:
    """Evaluates the stored SLAs and keeps incidents in step with them."""

    def __init__(self, store: Store, scheduler: Scheduler | None, config: Path | None) -> None:
        self._store = store
        self._scheduler = scheduler
        self._config = config
        self._lock = threading.Lock()  # one pass at a time
        self._last_pass = datetime.min.replace(tzinfo=UTC)
        self._pending: datetime | None = None  # when the requested pass is due

    def start(self) -> None:
        """Load the config file's SLAs and run the first pass (catching up on missed deadlines)."""
        self.reload()

    def reload(self) -> PassResult:
        """Re-read the config file (if any), replace its SLAs, and evaluate."""
        if self._config is not None:
            config = load_config(self._config)  # ConfigError names the line
            with self._store.connect() as conn:
                replace_file_slas(conn, config.slas, datetime.now(UTC))
        return self.evaluate_all()

    def request_evaluation(self) -> None:
        """Ask for a pass soon (after ingest or an API change); cheap and debounced."""
        if self._scheduler is None:
            return
        if self._pending is not None:
            return  # a pass is already on its way; it will see this change too
        self._pending = max(datetime.now(UTC), self._last_pass + DEBOUNCE)
        self._scheduler.run_at(_SOON_JOB, self._pending, self.evaluate_all)

    def evaluate_all(self, now: datetime | None = None) -> PassResult:
        """Evaluate every SLA at `now`, apply the outcome, and schedule the next wake-up."""
        with self._lock:
            self._pending = None  # changes from here on need another pass
            self._last_pass = datetime.now(UTC)
            now = now or self._last_pass
            opened = resolved = 0
            wakes: list[datetime] = []
            with self._store.connect() as conn:
                stored = list_slas(conn)
                for entry in stored:
                    sla = entry.sla
                    evaluation = self._evaluate_one(conn, sla, entry.created, now)
                    with conn.transaction():
                        save_sla_state(conn, sla.name, evaluation, now)
                        new, gone = apply_evaluation(
                            conn,
                            sla,
                            evaluation,
                            partial(_affected, conn, sla),
                            now,
                        )
                    opened += len(new)
                    resolved += len(gone)
                    if evaluation.next_deadline is not None:
                        wakes.append(evaluation.next_deadline)
            next_wake = min(wakes) if wakes else None
            if next_wake is not None and self._scheduler is not None:
                self._scheduler.run_at(_DEADLINE_JOB, next_wake, self.evaluate_all)
            if opened or resolved:
                log.info("SLA pass: %d opened, %d resolved", opened, resolved)
            return PassResult(len(stored), opened, resolved, next_wake)

    def _evaluate_one(
        self, conn: Conn, sla: SLA, created: datetime | None, now: datetime
    ) -> Evaluation:
        try:
            return evaluate(sla, read_facts(conn, sla, now, created), now)
        except Exception as exc:  # one broken SLA must not stop the others
            log.exception("evaluating SLA %s failed", sla.name)
            return Evaluation(status="unknown", explanation=f"{sla.name}: evaluation failed: {exc}")


def _affected(conn: Conn, sla: SLA, breach: Breach) -> list[str]:
    """What lies downstream of the breached resource: an incident's affected list."""
    return downstream(conn, [breach.resource or sla_target(sla)])


def sla_target(sla: SLA) -> str:
    """The resource an SLA watches (a heartbeat's monitor slug, an expected event's resource)."""
    target = getattr(sla, "target", None)
    if isinstance(target, str):
        return target
    expect = getattr(sla, "expect", None)
    return str(getattr(expect, "resource", None) or sla.name)
