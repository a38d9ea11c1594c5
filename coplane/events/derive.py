"""Fold a batch of events into the derived rows they imply: runs, resources, assets, checks, edges.

Every derived value is a join over events (earliest start, highest-ranked state, latest
update), so applying the same events twice, or in any order, gives the same rows. That is
what lets the store write duplicates and late events without reading anything first.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from coplane.events import names as n
from coplane.events.model import Event, RelatedResource

# Run ids are derived, never looked up: uuid5 of the pipeline and the producer's run key.
RUN_NAMESPACE = uuid.UUID("6f1c2a8e-3b1d-5c7e-9a40-2d5b7c1e8f03")


_NAMESPACE_BYTES = RUN_NAMESPACE.bytes


@lru_cache(maxsize=65_536)  # a run's events arrive close together: start, heartbeats, end
def run_uuid(pipeline: str, run_key: str) -> str:
    """The coplane run id (a UUID, as text) of the producer's run `run_key` of `pipeline`.

    Equal to str(uuid.uuid5(RUN_NAMESPACE, f"{pipeline}\\n{run_key}")), built from the hash
    directly: the UUID object costs more than the hash, and every event needs one.
    """
    h = hashlib.sha1(_NAMESPACE_BYTES + f"{pipeline}\n{run_key}".encode()).hexdigest()
    # RFC 4122: version 5 in the 13th digit, the variant's two top bits in the 17th
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{int(h[16], 16) & 0x3 | 0x8:x}{h[17:20]}-{h[20:32]}"


def source_of(event: Event) -> str:
    """The system that reported an event: the `source` related resource, else the id's prefix."""
    rel = event.first_related(n.ROLE_SOURCE)
    if rel is not None:
        return rel.id
    head, dot, _ = event.resource.id.partition(".")
    return head if dot and "/" not in head else "unknown"


@dataclass(slots=True)
class RunRow:
    """What a batch says about one run; merged into the stored run by the same rules."""

    id: str
    pipeline: str
    run_key: str
    source: str
    first_seen: datetime
    state: str | None = None
    state_rank: int = -1
    state_at: datetime | None = None
    error: str | None = None
    scheduled: datetime | None = None
    started: datetime | None = None
    parent_run: str | None = None
    nominal_start: datetime | None = None

    @property
    def ended(self) -> datetime | None:
        return self.state_at if self.state_rank == n.TERMINAL_RANK else None

    def merge_state(self, state: str, rank: int, at: datetime, error: str | None) -> None:
        current = (self.state_rank, self.state_at, self.state or "")
        if self.state_at is None or (rank, at, state) > current:
            self.state, self.state_rank, self.state_at, self.error = state, rank, at, error

    def merge_started(self, at: datetime) -> None:
        if self.started is None or at < self.started:
            self.started = at

    def copy(self) -> RunRow:
        return RunRow(self.id, self.pipeline, self.run_key, self.source, self.first_seen,
                      self.state, self.state_rank, self.state_at, self.error, self.scheduled,
                      self.started, self.parent_run, self.nominal_start)  # fmt: skip

    def merge(self, other: RunRow) -> None:
        """Fold `other` in by the rules the store's upsert applies (store/derived.py)."""
        if other.state is not None and other.state_at is not None:
            self.merge_state(other.state, other.state_rank, other.state_at, other.error)
        if other.started is not None:
            self.merge_started(other.started)
        if other.scheduled is not None and (
            self.scheduled is None or other.scheduled < self.scheduled
        ):
            self.scheduled = other.scheduled
        self.first_seen = min(self.first_seen, other.first_seen)
        self.parent_run = self.parent_run or other.parent_run
        self.nominal_start = self.nominal_start or other.nominal_start
        if self.source == "unknown":
            self.source = other.source


def merge_labels(older: dict[str, str], newer: dict[str, str]) -> dict[str, str]:
    """Labels key by key: the newer write's value wins, a key it leaves out is kept.

    Labels often come from facets (OpenLineage's `ownership`), and a facet an event leaves
    out is unchanged, not removed (https://openlineage.io/docs/spec/facets/): a COMPLETE
    without `ownership` must not drop the owners its START gave.
    """
    if not older or older == newer:
        return newer
    if not newer:
        return older
    return {**older, **newer}


@dataclass(slots=True)
class ResourceRow:
    """A pipeline, task or asset as last described; `parent` is a task's pipeline."""

    id: str
    kind: str | None
    name: str | None
    labels: dict[str, str]
    source: str
    parent: str | None
    first_seen: datetime
    last_seen: datetime

    def copy(self) -> ResourceRow:
        return ResourceRow(self.id, self.kind, self.name, self.labels, self.source, self.parent,
                           self.first_seen, self.last_seen)  # fmt: skip

    def merge(self, other: ResourceRow) -> None:
        """Fold `other` in by the rules the store's upsert applies (store/derived.py)."""
        self.first_seen = min(self.first_seen, other.first_seen)
        newer, older = (other, self) if other.last_seen >= self.last_seen else (self, other)
        self.kind = newer.kind or older.kind
        self.name = newer.name or older.name
        self.labels = merge_labels(older.labels, newer.labels)
        self.parent = newer.parent or older.parent
        self.source = newer.source if newer.source != "unknown" else older.source
        self.last_seen = newer.last_seen


@dataclass(slots=True)
class AssetRow:
    """The latest update of an asset and what made it."""

    id: str
    updated: datetime
    producer: str | None
    run_id: str | None
    event_id: uuid.UUID


@dataclass(slots=True)
class CheckRow:
    """The latest result of one check on one asset."""

    asset: str
    check_name: str
    passed: bool
    at: datetime
    message: str | None
    event_id: uuid.UUID


@dataclass(slots=True)
class EdgeRow:
    """A lineage edge: data flows from `source` to `target`."""

    source: str
    target: str
    first_seen: datetime
    last_seen: datetime


@dataclass(slots=True)
class Derived:
    """Everything a batch implies beyond its raw events, keyed for ordered upserts."""

    runs: dict[str, RunRow] = field(default_factory=dict)
    resources: dict[str, ResourceRow] = field(default_factory=dict)
    assets: dict[str, AssetRow] = field(default_factory=dict)
    checks: dict[tuple[str, str], CheckRow] = field(default_factory=dict)
    edges: dict[tuple[str, str], EdgeRow] = field(default_factory=dict)


def _error_text(payload: dict[str, Any]) -> str | None:
    err = payload.get("error")
    if isinstance(err, str):
        return err
    if isinstance(err, dict):
        message = err.get("message")
        return message if isinstance(message, str) else None
    return None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def derive(events: list[Event]) -> Derived:
    """Fold `events` into derived rows (ids must already be set)."""
    d = Derived()
    for event in events:
        source = source_of(event)
        kind = _resource_kind(event)
        parent_rel = event.first_related(n.ROLE_PARENT)
        _add_resource(
            d,
            event.resource.id,
            kind,
            event.resource.name,
            event.resource.labels,
            source,
            parent_rel.id if parent_rel else None,
            event.occurred,
        )
        for rel in event.related:
            _add_related_resource(d, rel, source, event.occurred)
        _add_run(d, event, source, parent_rel)
        _add_edges(d, event, kind)
        if event.event == n.ASSET_UPDATED:
            _add_asset_update(d, event)
        elif event.event in (n.CHECK_PASSED, n.CHECK_FAILED):
            _add_check(d, event)
    return d


def _resource_kind(event: Event) -> str | None:
    if event.resource.kind:
        return event.resource.kind
    name = event.event
    if name.startswith("run.") or name == n.JOB_DECLARED:
        return n.KIND_TASK if event.first_related(n.ROLE_PARENT) else n.KIND_PIPELINE
    if name.startswith(("asset.", "check.")):
        return n.KIND_ASSET
    return None


_RELATED_KINDS = {
    n.ROLE_INPUT: n.KIND_ASSET,
    n.ROLE_OUTPUT: n.KIND_ASSET,
    n.ROLE_PARENT: n.KIND_PIPELINE,
    n.ROLE_PRODUCER: None,
}


def _add_related_resource(d: Derived, rel: RelatedResource, source: str, at: datetime) -> None:
    if rel.role not in _RELATED_KINDS:
        return  # runs, sources and custom roles are not resources of the graph
    kind = rel.kind or _RELATED_KINDS[rel.role]
    _add_resource(d, rel.id, kind, rel.name, rel.labels, source, None, at)


def _add_resource(
    d: Derived,
    rid: str,
    kind: str | None,
    name: str | None,
    labels: dict[str, str],
    source: str,
    parent: str | None,
    at: datetime,
) -> None:
    existing = d.resources.get(rid)
    if existing is None:
        d.resources[rid] = ResourceRow(rid, kind, name, labels, source, parent, at, at)
    elif (kind in (None, existing.kind) and name in (None, existing.name)
          and parent in (None, existing.parent) and source == existing.source
          and (not labels or labels == existing.labels)):  # fmt: skip
        # seen again in this batch, described the same: only the times move
        existing.first_seen = min(existing.first_seen, at)
        existing.last_seen = max(existing.last_seen, at)
    else:
        existing.merge(ResourceRow(rid, kind, name, labels, source, parent, at, at))


def run_id_of(event: Event) -> str | None:
    """The run an event belongs to: its own run, or for an asset event the producer's run."""
    run_rel = event.first_related(n.ROLE_RUN)
    if run_rel is None:
        return None
    if event.event.startswith("run."):
        return run_uuid(event.resource.id, run_rel.id)
    producer = event.first_related(n.ROLE_PRODUCER)
    return run_uuid(producer.id, run_rel.id) if producer is not None else None


def _add_run(d: Derived, event: Event, source: str, parent_rel: RelatedResource | None) -> None:
    run_rel = event.first_related(n.ROLE_RUN)
    if run_rel is None or not event.event.startswith("run."):
        return
    pipeline = event.resource.id
    rid = run_uuid(pipeline, run_rel.id)
    run = d.runs.get(rid)
    if run is None:
        run = d.runs[rid] = RunRow(rid, pipeline, run_rel.id, source, event.occurred)
    run.first_seen = min(run.first_seen, event.occurred)
    state = n.RUN_STATES.get(event.event)
    if state is not None:
        run.merge_state(state[0], state[1], event.occurred, _error_text(event.payload))
        if state[1] == 1:  # a terminal event says when a run ended, not when it began
            run.merge_started(event.occurred)
        elif state[1] == n.TERMINAL_RANK:
            # unless it says so: a producer that reports a short run by its end alone
            # (the flow SDK) gives the start as payload.started
            started = _parse_time(event.payload.get("started"))
            if started is not None:
                run.merge_started(started)
        if event.event == n.RUN_SCHEDULED and (
            run.scheduled is None or event.occurred < run.scheduled
        ):
            run.scheduled = event.occurred
    nominal = _parse_time(event.payload.get("nominal_start"))
    if nominal is not None and run.nominal_start is None:
        run.nominal_start = nominal
    parent_run_rel = event.first_related(n.ROLE_PARENT_RUN)
    if parent_rel is not None and parent_run_rel is not None:
        parent_id = run_uuid(parent_rel.id, parent_run_rel.id)
        run.parent_run = parent_id
        _imply_parent_running(d, parent_id, parent_rel.id, parent_run_rel.id, source, event)


def _imply_parent_running(
    d: Derived, parent_id: str, pipeline: str, run_key: str, source: str, event: Event
) -> None:
    """A task that ran means its pipeline run exists and was running then.

    Producers do not always report the pipeline's own start (Airflow's `dags test` sends
    no DAG-level START), yet the pipeline run's start is the earliest of its tasks'.
    """
    parent = d.runs.get(parent_id)
    if parent is None:
        parent = d.runs[parent_id] = RunRow(parent_id, pipeline, run_key, source, event.occurred)
    parent.first_seen = min(parent.first_seen, event.occurred)
    state = n.RUN_STATES.get(event.event)
    if state is None or state[1] < 1:
        return
    parent.merge_state("running", 1, event.occurred, None)
    parent.merge_started(event.occurred)


def _add_edges(d: Derived, event: Event, kind: str | None) -> None:
    node = event.resource.id
    if event.event == n.ASSET_UPDATED:
        producer = event.first_related(n.ROLE_PRODUCER)
        if producer is not None:
            _add_edge(d, producer.id, node, event.occurred)
        return
    if kind not in (n.KIND_PIPELINE, n.KIND_TASK):
        return
    for rel in event.related:
        if rel.role == n.ROLE_INPUT:
            _add_edge(d, rel.id, node, event.occurred)
        elif rel.role == n.ROLE_OUTPUT:
            _add_edge(d, node, rel.id, event.occurred)


def _add_edge(d: Derived, source: str, target: str, at: datetime) -> None:
    edge = d.edges.get((source, target))
    if edge is None:
        d.edges[(source, target)] = EdgeRow(source, target, at, at)
    else:
        edge.first_seen = min(edge.first_seen, at)
        edge.last_seen = max(edge.last_seen, at)


def _add_asset_update(d: Derived, event: Event) -> None:
    assert event.id is not None
    current = d.assets.get(event.resource.id)
    if current is not None and current.updated >= event.occurred:
        return
    producer = event.first_related(n.ROLE_PRODUCER)
    run_rel = event.first_related(n.ROLE_RUN)
    run_id = run_uuid(producer.id, run_rel.id) if producer and run_rel else None
    d.assets[event.resource.id] = AssetRow(
        event.resource.id, event.occurred, producer.id if producer else None, run_id, event.id
    )


def _add_check(d: Derived, event: Event) -> None:
    assert event.id is not None
    check = event.payload.get("check")
    name = check if isinstance(check, str) and check else "check"
    column = event.payload.get("column")
    if isinstance(column, str) and column:
        name = f"{name}({column})"
    key = (event.resource.id, name)
    current = d.checks.get(key)
    if current is not None and current.at >= event.occurred:
        return
    message = event.payload.get("message")
    d.checks[key] = CheckRow(
        event.resource.id,
        name,
        event.event == n.CHECK_PASSED,
        event.occurred,
        message if isinstance(message, str) else None,
        event.id,
    )
