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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from coplane.alerts.channels import ChannelConfig
from coplane.alerts.dispatcher import Dispatcher
from coplane.events.model import Event, RelatedResource, Resource
from coplane.events.names import KIND_PIPELINE, ROLE_INPUT
from coplane.jobs.scheduler import Scheduler
from coplane.logs import decision
from coplane.rules import evaluate
from coplane.rules.budget import (
    ALERT_LOOKBACK,
    BUDGET_SUFFIX,
    OpenSpan,
    burning,
    error_budget,
)
from coplane.rules.common import span
from coplane.rules.facts import Breach, Evaluation, Facts
from coplane.rules.model import SLA, ExpectedEventSLA, HeartbeatSLA
from coplane.slas.config import CoplaneConfig, load_config
from coplane.slas.explain import explain_inputs
from coplane.store import Conn, Store
from coplane.store.dialects import Row
from coplane.store.evaluations import (
    KEEP,
    EvaluationRecord,
    insert_sla_evaluations,
    prune_sla_evaluations,
)
from coplane.store.events import insert_events
from coplane.store.health import breach_windows
from coplane.store.incidents import apply_evaluation, open_incident_keys
from coplane.store.leader import Leadership, notify_leader
from coplane.store.sla_facts import downstream, glob_like, read_facts, read_facts_many
from coplane.store.slas import (
    list_sla_rows,
    parse_sla,
    read_sla_definitions,
    replace_file_slas,
    save_sla_states,
    sla_version,
)
from coplane.store.warnings import apply_warning

log = logging.getLogger(__name__)


def _log_incidents(sla: str, opened: list[Row], resolved: list[Row]) -> None:
    """One line per incident this pass opened or resolved (after its transaction committed)."""
    for row in opened:
        inhibited = row.get("inhibited_by")
        decision(
            log,
            "incident.opened",
            f"incident {row['id']} opened for SLA {sla}: {row['reason']}"
            + (f" (attached to upstream incident {inhibited}: no alert)" if inhibited else ""),
            level=logging.WARNING,
            sla=sla,
            incident=str(row["id"]),
            resource=row.get("resource"),
            severity=row.get("severity"),
        )
    for row in resolved:
        decision(
            log,
            "incident.resolved",
            f"incident {row['id']} of SLA {sla} resolved: the expectation is met again",
            sla=sla,
            incident=str(row["id"]),
        )

DEBOUNCE = timedelta(seconds=1)  # ingest wakes the engine at most this often
FULL_RELOAD = timedelta(minutes=5)  # re-list the SLAs at least this often, whatever changed
# How often an SLA with an objective and recent incidents is looked at again: its burn rates
# move with the clock alone, and the budget alert's 5-minute span needs this resolution.
BUDGET_TICK = timedelta(minutes=1)
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

    evaluations_kept = KEEP  # recorded evaluations kept per SLA (the explain API's history)

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
        self._known: list[_Known] = []  # the stored SLAs, parsed
        self._dirty: set[str] | None = set()  # resources changed since the last pass
        self._dirty_lock = threading.Lock()
        self._version: tuple[int, Any] | None = None  # sla_version() when they were read
        self._loaded_at = 0.0
        self._lock = threading.Lock()  # one pass at a time
        self._last_pass = datetime.min.replace(tzinfo=UTC)
        self._pending: datetime | None = None  # when the requested pass is due
        # called with each config file read, before its SLAs replace the stored ones; one
        # raising ConfigError leaves everything as it was
        self.config_listeners: list[Callable[[CoplaneConfig], None]] = []
        self._config_slas = 0  # SLAs the config file declared when last read

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
        for listener in self.config_listeners:
            listener(config)
        self._config_slas = len(config.slas)
        with self._store.connect() as conn:
            replace_file_slas(conn, config.slas, datetime.now(UTC))
        self.channels = dict(config.channels)
        if self._dispatcher is not None:
            self._dispatcher.set_channels(self.channels)

    def reload(self) -> PassResult:
        """Re-read the config file (if any), replace its SLAs, and evaluate."""
        self.load_config()
        decision(
            log,
            "config.reloaded",
            f"reloaded {self._config}: {self._config_slas} SLAs, {len(self.channels)} channels",
            config=str(self._config),
            slas=self._config_slas,
            channels=sorted(self.channels),
        )
        result = self.evaluate_all()
        if not self.leadership.is_leader:
            self.request_evaluation()  # the leader evaluates the new SLAs
        return result

    def _took_over(self) -> None:
        # Whatever the previous leader left undone (deadlines, missed windows) is caught up.
        self.evaluate_all()

    def request_evaluation(self, resources: Iterable[str] | None = None) -> None:
        """Ask for a pass soon (after ingest or an API change); cheap and debounced.

        `resources`: the ids the new events name, so that the pass looks only at the SLAs
        watching them (and those due); None when anything may have changed. A replica that
        does not lead passes the request on to the one that does.
        """
        with self._dirty_lock:
            if resources is None:
                self._dirty = None
            elif self._dirty is not None:
                self._dirty.update(resources)
        if self._scheduler is None:
            return
        if self._pending is not None:
            return  # a pass (or a hand-over) is already on its way; it will see this too
        self._pending = max(datetime.now(UTC), self._last_pass + DEBOUNCE)
        if self.leadership.is_leader:
            self._scheduler.run_at(_SOON_JOB, self._pending, self.evaluate_changed)
        else:
            self._scheduler.run_at(_SOON_JOB, self._pending, self._hand_over)

    def _take_dirty(self) -> set[str] | None:
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        return dirty

    def _hand_over(self) -> None:
        """Tell the leading replica what changed here (or evaluate, if this one leads now)."""
        self._pending = None
        self._last_pass = datetime.now(UTC)
        if self.leadership.is_leader:
            self.evaluate_changed()
            return
        dirty = self._take_dirty()
        try:
            with self._store.connect() as conn:
                notify_leader(conn, dirty)
        except Exception:
            log.exception("could not ask the leading replica to evaluate")
            self.request_evaluation(dirty)  # try again after the debounce

    def evaluate_changed(self, now: datetime | None = None) -> PassResult:
        """Evaluate the SLAs whose facts may have changed since the last pass, and those due."""
        return self._pass(now, self._take_dirty())

    def evaluate_all(self, now: datetime | None = None) -> PassResult:
        """Evaluate every SLA at `now`, apply the outcome, and schedule the next wake-up."""
        self._take_dirty()  # this pass covers whatever changed
        return self._pass(now, None)

    def _pass(self, now: datetime | None, dirty: set[str] | None) -> PassResult:
        """Evaluate the SLAs that need it: all of them when `dirty` is None, else those
        watching a resource in `dirty`, those due by `now`, and new or changed ones.

        A rule's result depends only on its facts and on `now` reaching the `next_deadline`
        it returned, so an SLA none of whose resources changed and that is not due yet keeps
        its last result. One pass reads the facts in bulk, writes the states that changed,
        and opens or resolves incidents only where the set of breaches changed.
        """
        if not self.leadership.try_lead():
            return PassResult(0, 0, 0, None)  # another replica evaluates
        with self._lock:
            self._pending = None  # changes from here on need another pass
            self._last_pass = datetime.now(UTC)
            now = now or self._last_pass
            opened = resolved = queued = 0
            wakes: list[datetime] = []
            with self._store.connect() as conn:
                known = self._known_slas(conn)
                chosen: list[_Known] = []
                for k in known:
                    if _needs_pass(k, dirty, now):
                        chosen.append(k)
                    else:
                        if k.last is not None and k.last.next_deadline is not None:
                            wakes.append(k.last.next_deadline)  # its result stands until then
                        if k.budget_wake is not None:
                            wakes.append(k.budget_wake)
                facts = self._read_facts(conn, chosen, now)
                spans: dict[str, list[OpenSpan]] = {}
                if any(k.sla.objective is not None for k in chosen):
                    spans = breach_windows(conn, now - ALERT_LOOKBACK)
                few = len(chosen) < len(known) // 4  # else one scan of open incidents
                open_keys = open_incident_keys(conn, [k.sla.name for k in chosen] if few else None)
                changed: list[tuple[str, Evaluation]] = []
                records: list[EvaluationRecord] = []  # stored with the states
                recorded: list[str] = []  # every SLA with a new evaluation row: pruned
                for entry, entry_facts in zip(chosen, facts, strict=True):
                    sla = entry.sla
                    evaluation = self._evaluate_one(sla, entry_facts, now)
                    entry.budget_wake = None
                    if sla.objective is not None:
                        mine = spans.get(sla.name, [])
                        evaluation = _with_budget_alert(sla, evaluation, mine, entry.created, now)
                        if evaluation.breaches or any(
                            r is None or r > now - ALERT_LOOKBACK for _, r in mine
                        ):
                            entry.budget_wake = now + BUDGET_TICK
                            wakes.append(entry.budget_wake)
                    entry.last = evaluation
                    entry.watches = watched_resources(sla, evaluation)
                    state = _state_of(evaluation)
                    same_keys = {b.key for b in evaluation.breaches} == open_keys.get(
                        sla.name, set()
                    )
                    # Recorded only when the result differs (the moments states or incidents
                    # are written), so a pass that changes nothing writes nothing.
                    record = None
                    if state != entry.state or not same_keys:
                        record = _record(sla, entry_facts, evaluation, now)
                        recorded.append(sla.name)
                    if state != entry.state:
                        changed.append((sla.name, evaluation))
                        entry.state = state
                    if evaluation.next_deadline is not None:
                        wakes.append(evaluation.next_deadline)
                    if same_keys:
                        if record is not None:
                            records.append(record)
                        queued += self._warn(conn, entry, evaluation, now)
                        continue  # nothing opens or resolves
                    assert record is not None
                    with conn.transaction():
                        # The incidents it opens point at it: stored in their transaction.
                        insert_sla_evaluations(conn, [record])
                        new, gone = apply_evaluation(
                            conn,
                            sla,
                            evaluation,
                            partial(_affected, conn, sla),
                            now,
                            evaluation_id=record.id,
                        )
                        if sla.remediate is not None and new:
                            self._request_remediation(conn, sla, new, now)
                    _log_incidents(sla.name, new, gone)
                    opened += len(new)
                    resolved += len(gone)
                    queued += self._warn(conn, entry, evaluation, now)
                with conn.transaction():
                    save_sla_states(conn, changed, now)
                    insert_sla_evaluations(conn, records)
                    prune_sla_evaluations(conn, recorded, self.evaluations_kept)
            next_wake = min(wakes) if wakes else None
            if next_wake is not None and self._scheduler is not None:
                self._scheduler.run_at(_DEADLINE_JOB, next_wake, self.evaluate_changed)
            if opened or resolved:
                log.info("SLA pass: %d opened, %d resolved", opened, resolved)
            if (opened or resolved or queued) and self._dispatcher is not None:
                self._dispatcher.wake()
            return PassResult(len(chosen), opened, resolved, next_wake)

    def _warn(self, conn: Conn, entry: _Known, evaluation: Evaluation, now: datetime) -> int:
        """Raise or settle the SLA's early warning (rules/warning.py); notifications queued.

        Only an SLA with `warn_at_risk` that is at risk now, or has a warning open (or may
        have: not looked at yet in this process), costs a look at the store. One whose
        `warn_at_risk` was just turned off still settles the warning it has open.
        """
        sla = entry.sla
        raises = sla.warn_at_risk and evaluation.status == "at_risk"
        unknown = entry.warned is None and sla.warn_at_risk
        if not (raises or unknown or entry.warned):
            return 0
        entry.warned, queued = apply_warning(conn, sla, evaluation, sla_target(sla), now)
        return queued

    def _known_slas(self, conn: Conn) -> list[_Known]:
        """Every stored SLA, parsed once per change rather than once per pass."""
        version = sla_version(conn)
        stale = time.monotonic() - self._loaded_at > FULL_RELOAD.total_seconds()
        if version == self._version and not stale:
            return self._known
        previous = {k.sla.name: k for k in self._known}
        rows = list_sla_rows(conn)
        changed = [
            row["name"]
            for row in rows
            if row["name"] not in previous or previous[row["name"]].updated != row["updated"]
        ]
        definitions = read_sla_definitions(conn, changed)
        known: list[_Known] = []
        for row in rows:
            state = _stored_state(row)
            old = previous.get(row["name"])
            if row["name"] not in definitions and old is not None:
                if old.state != state:  # written by another replica: evaluate afresh
                    old.state, old.last = state, None
                known.append(old)
                continue
            try:
                sla = parse_sla(definitions[row["name"]])
            except (KeyError, ValueError):  # deleted meanwhile, or unreadable by this version
                log.exception("cannot read the stored SLA %s", row["name"])
                continue
            entry = _Known(sla, row["created"], row["updated"], state, watched_resources(sla))
            entry.warned = old.warned if old is not None else None  # an open warning stays
            known.append(entry)
        self._known, self._version, self._loaded_at = known, version, time.monotonic()
        return known

    def _read_facts(
        self, conn: Conn, known: list[_Known], now: datetime
    ) -> list[Facts | Exception]:
        """Every SLA's facts, or the error that kept them from being read."""
        try:
            return list(read_facts_many(conn, [(k.sla, k.created) for k in known], now))
        except Exception:  # find the SLA that breaks it; the others still get evaluated
            log.exception("reading SLA facts in bulk failed; reading them one by one")
        out: list[Facts | Exception] = []
        for k in known:
            try:
                out.append(read_facts(conn, k.sla, now, k.created))
            except Exception as exc:
                out.append(exc)
        return out

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

    def _evaluate_one(self, sla: SLA, facts: Facts | Exception, now: datetime) -> Evaluation:
        try:
            if isinstance(facts, Exception):
                raise facts
            return evaluate(sla, facts, now)
        except Exception as exc:  # one broken SLA must not stop the others
            log.exception("evaluating SLA %s failed", sla.name)
            return Evaluation(status="unknown", explanation=f"{sla.name}: evaluation failed: {exc}")


def _record(
    sla: SLA, facts: Facts | Exception, evaluation: Evaluation, now: datetime
) -> EvaluationRecord:
    """An evaluation to store, with the facts its rule used (or why there are none)."""
    inputs: dict[str, Any]
    if isinstance(facts, Exception):  # logged where the evaluation failed
        inputs = {"kind": sla.kind, "error": f"reading the facts failed: {facts}"}
    else:
        try:
            inputs = explain_inputs(sla, facts, evaluation, now)
        except Exception as exc:  # explaining must not stop the pass either
            log.exception("explaining the evaluation of SLA %s failed", sla.name)
            inputs = {"kind": sla.kind, "error": f"explaining failed: {exc}"}
    return EvaluationRecord(uuid.uuid4(), sla.name, now, evaluation, inputs)


@dataclass(slots=True)
class _Known:
    """A stored SLA as the engine keeps it between passes."""

    sla: SLA
    created: datetime
    updated: datetime
    state: tuple[Any, ...] | None  # the last saved (status, next_deadline, last_met, text)
    watches: frozenset[str] | None  # resource ids whose events can change it; None: any
    last: Evaluation | None = None  # its latest evaluation in this process
    budget_wake: datetime | None = None  # when its burn rates need another look
    warned: bool | None = None  # whether it has an open early warning; None: not known yet


def watched_resources(sla: SLA, last: Evaluation | None = None) -> frozenset[str] | None:
    """The resources whose events can change an SLA's result; None when any event can.

    With its `last` evaluation, also what that result depends on beyond the SLA's own
    resources (`Evaluation.watching`: the upstream pipelines of an open window's forecast).
    """
    own = _own_resources(sla)
    if own is None or last is None or not last.watching:
        return own
    return own | frozenset(last.watching)


def _own_resources(sla: SLA) -> frozenset[str] | None:
    match sla:
        case HeartbeatSLA():
            return frozenset({f"cron.{sla.target}"})
        case ExpectedEventSLA():
            matchers = [m for m in (sla.after, sla.expect) if m is not None]
            ids = [m.resource for m in matchers]
            if any(r is None or glob_like(r) is not None for r in ids):
                return None
            return frozenset(r for r in ids if r is not None)
        case _:
            target = sla.target
            return None if glob_like(target) is not None else frozenset({target})


def _needs_pass(known: _Known, dirty: set[str] | None, now: datetime) -> bool:
    """Whether an SLA must be evaluated in a pass (see `SlaEngine._pass`)."""
    last = known.last
    if dirty is None or last is None or known.watches is None:
        return True
    if last.next_deadline is not None and last.next_deadline <= now:
        return True
    if known.budget_wake is not None and known.budget_wake <= now:
        return True
    return not known.watches.isdisjoint(dirty)


def _with_budget_alert(
    sla: SLA, evaluation: Evaluation, spans: list[OpenSpan], created: datetime, now: datetime
) -> Evaluation:
    """`evaluation` with the SLA's budget alert among its breaches while the error budget
    burns too fast (see coplane.rules.budget), so that it opens, notifies and resolves
    as an incident of its own."""
    assert sla.objective is not None
    found = burning(sla.objective, spans, created, now)
    if found is None:
        return evaluation
    alert, rate = found
    budget = error_budget(sla.objective, sla.objective_period, spans, created, now)
    reason = (
        f"{sla.name}: error budget burning {rate:.1f}x over {span(alert.long)} "
        f"(alert above {alert.threshold:g}x); {budget.left_s / 60:.0f} of "
        f"{budget.budget_s / 60:.0f} minutes left"
    )
    breach = Breach(
        key=f"{sla.name}{BUDGET_SUFFIX}",
        due=now,
        reason=reason,
        window_start=now - alert.long,
        resource=sla_target(sla),
    )
    return replace(evaluation, breaches=[*evaluation.breaches, breach])


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _state_of(evaluation: Evaluation) -> tuple[Any, ...]:
    return (
        evaluation.status,
        _utc(evaluation.next_deadline),
        _utc(evaluation.last_met),
        evaluation.explanation,
    )


def _stored_state(row: Row) -> tuple[Any, ...] | None:
    if row["state_sla"] is None:
        return None
    return (row["status"], _utc(row["next_deadline"]), _utc(row["last_met"]), row["explanation"])


def remediation_event(sla: SLA, incident: Row, now: datetime) -> Event:
    """The `remediation.requested` event for an incident of an SLA with `remediate`."""
    assert sla.remediate is not None
    flow = sla.remediate.flow or sla.remediate.deployment or sla.name
    related = (
        [RelatedResource(id=incident["resource"], role=ROLE_INPUT)] if incident["resource"] else []
    )
    payload = {
        "flow": flow,
        "parameters": sla.remediate.parameters,
        "sla": sla.name,
        "incident": str(incident["id"]),
        "reason": incident["reason"],
    }
    if sla.remediate.deployment is not None:  # the orchestrate service runs it
        payload["deployment"] = sla.remediate.deployment
    return Event(
        id=uuid.uuid5(uuid.UUID(str(incident["id"])), "remediation.requested"),
        occurred=now,
        event=REMEDIATION_REQUESTED,
        resource=Resource(id=f"flow.{flow}", name=flow, kind=KIND_PIPELINE),
        related=related,
        payload=payload,
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
