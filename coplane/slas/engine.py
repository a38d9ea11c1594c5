"""The SLA engine: evaluates every SLA, opens and resolves incidents, and wakes at exact deadlines.

It evaluates at start-up (which catches deadlines missed while the server was down: the
rules report every unmet window since the SLA was created), after ingest commits (at most
once per DEBOUNCE), and at the earliest `next_deadline` any rule returned, through a
one-shot scheduler job rather than a polling loop.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from coplane.alerts.dispatcher import Dispatcher
from coplane.events.model import Event, RelatedResource, Resource
from coplane.events.names import KIND_PIPELINE, ROLE_INPUT
from coplane.jobs.scheduler import Scheduler
from coplane.slas.config import ChannelConfig, load_config
from coplane.slas.facts import Breach, Evaluation
from coplane.slas.model import SLA
from coplane.slas.rules import evaluate
from coplane.store import Conn, Store
from coplane.store.dialects import Row
from coplane.store.events import insert_events
from coplane.store.incidents import apply_evaluation
from coplane.store.leader import Leadership, notify_leader
from coplane.store.sla_facts import downstream, read_facts
from coplane.store.slas import list_slas, replace_file_slas, save_sla_state

log = logging.getLogger(__name__)

DEBOUNCE = timedelta(seconds=1)  # ingest wakes the engine at most this often
_DEADLINE_JOB = "sla-evaluate-at-deadline"  # the earliest next_deadline of any SLA
_SOON_JOB = "sla-evaluate-soon"  # after ingest or an API change
REMEDIATION_REQUESTED = "remediation.requested"


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one evaluation pass did."""

    evaluated: int
    opened: int
    resolved: int
    next_wake: datetime | None


class SlaEngine:
    """Evaluates the stored SLAs and keeps incidents in step with them."""

    def __init__(
        self,
        store: Store,
        scheduler: Scheduler | None,
        config: Path | None,
        *,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._config = config
        self._dispatcher = dispatcher
        self.channels: dict[str, ChannelConfig] = {}
        self.leadership = Leadership(
            store.db.url, on_lead=self._took_over, on_notify=self.request_evaluation
        )
        self._notified = 0.0  # monotonic time of the last NOTIFY sent to the leader
        self._lock = threading.Lock()  # one pass at a time
        self._last_pass = datetime.min.replace(tzinfo=UTC)
        self._pending: datetime | None = None  # when the requested pass is due

    def start(self) -> None:
        """Load the config file, contend for leadership, and (as leader) run the first pass,
        which catches up on deadlines missed while no server ran."""
        self.load_config()
        self.leadership.start()
        self.evaluate_all()

    def stop(self) -> None:
        self.leadership.stop()

    def load_config(self) -> None:
        """Read the config file (if any): replace its SLAs and hand its channels on."""
        if self._config is None:
            return
        config = load_config(self._config)  # ConfigError names the line
        with self._store.connect() as conn:
            replace_file_slas(conn, config.slas, datetime.now(UTC))
        self.channels = dict(config.channels)
        if self._dispatcher is not None:
            self._dispatcher.set_channels(self.channels)

    def reload(self) -> PassResult:
        """Re-read the config file (if any), replace its SLAs, and evaluate."""
        self.load_config()
        result = self.evaluate_all()
        if not self.leadership.is_leader:
            self.request_evaluation()  # the leader evaluates the new SLAs
        return result

    def _took_over(self) -> None:
        # Whatever the previous leader left undone (deadlines, missed windows) is caught up.
        self.evaluate_all()

    def request_evaluation(self) -> None:
        """Ask for a pass soon (after ingest or an API change); cheap and debounced.

        A replica that does not lead passes the request on to the one that does.
        """
        if not self.leadership.is_leader:
            if time.monotonic() - self._notified >= DEBOUNCE.total_seconds() / 2:
                self._notified = time.monotonic()
                try:
                    with self._store.connect() as conn:
                        notify_leader(conn)
                except Exception:
                    log.exception("could not ask the leading replica to evaluate")
            return
        if self._scheduler is None:
            return
        if self._pending is not None:
            return  # a pass is already on its way; it will see this change too
        self._pending = max(datetime.now(UTC), self._last_pass + DEBOUNCE)
        self._scheduler.run_at(_SOON_JOB, self._pending, self.evaluate_all)

    def evaluate_all(self, now: datetime | None = None) -> PassResult:
        """Evaluate every SLA at `now`, apply the outcome, and schedule the next wake-up."""
        if not self.leadership.try_lead():
            return PassResult(0, 0, 0, None)  # another replica evaluates
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
                        if sla.remediate is not None and new:
                            self._request_remediation(conn, sla, new, now)
                    opened += len(new)
                    resolved += len(gone)
                    if evaluation.next_deadline is not None:
                        wakes.append(evaluation.next_deadline)
            next_wake = min(wakes) if wakes else None
            if next_wake is not None and self._scheduler is not None:
                self._scheduler.run_at(_DEADLINE_JOB, next_wake, self.evaluate_all)
            if opened or resolved:
                log.info("SLA pass: %d opened, %d resolved", opened, resolved)
                if self._dispatcher is not None:
                    self._dispatcher.wake()
            return PassResult(len(stored), opened, resolved, next_wake)

    def _request_remediation(
        self, conn: Conn, sla: SLA, incidents: list[Row], now: datetime
    ) -> None:
        """Record `remediation.requested` for each new incident, in the incident's transaction.

        The event is what the orchestrate service starts a flow run from; its id is derived
        from the incident, so a repeated pass never requests the same remediation twice.
        """
        assert sla.remediate is not None
        events = [remediation_event(sla, incident, now) for incident in incidents]
        insert_events(conn, events, now, self._store.partitions)

    def _evaluate_one(
        self, conn: Conn, sla: SLA, created: datetime | None, now: datetime
    ) -> Evaluation:
        try:
            return evaluate(sla, read_facts(conn, sla, now, created), now)
        except Exception as exc:  # one broken SLA must not stop the others
            log.exception("evaluating SLA %s failed", sla.name)
            return Evaluation(status="unknown", explanation=f"{sla.name}: evaluation failed: {exc}")


def remediation_event(sla: SLA, incident: Row, now: datetime) -> Event:
    """The `remediation.requested` event for an incident of an SLA with `remediate`."""
    assert sla.remediate is not None
    flow = sla.remediate.flow
    related = (
        [RelatedResource(id=incident["resource"], role=ROLE_INPUT)] if incident["resource"] else []
    )
    return Event(
        id=uuid.uuid5(uuid.UUID(str(incident["id"])), "remediation.requested"),
        occurred=now,
        event=REMEDIATION_REQUESTED,
        resource=Resource(id=f"flow.{flow}", name=flow, kind=KIND_PIPELINE),
        related=related,
        payload={
            "flow": flow,
            "parameters": sla.remediate.parameters,
            "sla": sla.name,
            "incident": str(incident["id"]),
            "reason": incident["reason"],
        },
    )


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
