"""dbt's artifacts (manifest.json, run_results.json, sources.json) parsed and turned into events.

Pure: bytes in, event dicts (the shape `POST /api/events` takes) out. Reading a target
directory and sending are `ingest.py`'s.

- The invocation of run_results.json is one run of the pipeline `dbt.<project>`, whose run
  key is the invocation_id: completed, or failed when any node errored or any test failed
  (as dbt's exit code says).
- Each model, seed and snapshot result is a child run of it: resource
  `dbt.<project>.<unique_id>` (kind task), run key `<invocation_id>:<unique_id>`, with its
  `depends_on` relations as inputs and its own relation as output (lineage). A success is
  `run.completed` plus `asset.updated` on its relation; an error `run.failed` with dbt's
  message; a skip `run.cancelled`.
- Each test (and unit test) result is `check.passed` (pass) or `check.failed` (fail, error,
  and warn with severity `warn`) on the relation of the node it tests. Skipped tests ran no
  query and say nothing: they send no event.
- Each sources.json result is a `check.passed` (pass) or `check.failed` (warn, error,
  runtime error) named `freshness` on the source's relation, and, when dbt saw a
  `max_loaded_at`, an `asset.updated` at that time: the newest load dbt observed. No
  producer is named, since dbt did not load the data.
- Relations are assets `<adapter_type>://<database>.<schema>.<identifier>`, in lower case
  (`duckdb://dev.main.orders`); the alias for models, seeds and snapshots, the identifier
  for sources. Ephemeral models have none: their dependents read their inputs instead.

Event ids are uuid5 of the invocation_id, the unique_id and the event name, so ingesting
the same artifacts again stores nothing new.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec

from coplane.events import names as n
from coplane.integrations.dbt import naming
from coplane.integrations.dbt.naming import SOURCE as SOURCE
from coplane.integrations.dbt.naming import asset_id as asset_id  # re-exported

EVENT_NAMESPACE = uuid.UUID("039ae033-f80e-45c8-a4a5-e98f2a2387cf")

# `dbt <command>`s whose node results built something; others (compile, show, docs
# generate, ...) only compiled, so their results are not reported as runs.
REPORTED_COMMANDS = frozenset({"build", "run", "seed", "snapshot", "test", "retry", "clone"})
RUN_NODE_TYPES = frozenset({"model", "seed", "snapshot"})
TEST_NODE_TYPES = frozenset({"test", "unit_test"})
RELATION_TYPES = frozenset({"model", "seed", "snapshot", "source"})
FAILED_STATUSES = frozenset({"error", "fail", "runtime error", "partial success"})
_NODE_EVENTS = {
    "success": n.RUN_COMPLETED,
    "pass": n.RUN_COMPLETED,
    "warn": n.RUN_COMPLETED,
    "reused": n.RUN_COMPLETED,
    "no-op": n.RUN_COMPLETED,
    "error": n.RUN_FAILED,
    "fail": n.RUN_FAILED,
    "runtime error": n.RUN_FAILED,
    "partial success": n.RUN_FAILED,
    "skipped": n.RUN_CANCELLED,
}


class ArtifactError(Exception):
    """An artifact that cannot be used: missing, not JSON, or not the dbt file it should be.

    `path` names the file, and `line` and `column` (1-based) where its JSON is malformed.
    """

    def __init__(
        self, path: str, message: str, line: int | None = None, column: int | None = None
    ) -> None:
        where = path if line is None else f"{path}:{line}:{column}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.message = message
        self.line = line
        self.column = column


# The parts of the artifacts that are read; every other field is skipped unread.


class Metadata(msgspec.Struct):
    dbt_schema_version: str
    generated_at: str
    dbt_version: str | None = None
    invocation_id: str | None = None
    invocation_started_at: str | None = None
    project_name: str | None = None
    adapter_type: str | None = None


class DependsOn(msgspec.Struct):
    nodes: list[str] = []


class NodeConfig(msgspec.Struct):
    materialized: str | None = None
    severity: str | None = None


class TestMetadata(msgspec.Struct):
    name: str | None = None
    namespace: str | None = None


class Node(msgspec.Struct):
    """A manifest node, source or unit test."""

    resource_type: str
    name: str
    package_name: str | None = None
    database: str | None = None
    schema: str | None = None
    alias: str | None = None
    identifier: str | None = None
    source_name: str | None = None
    depends_on: DependsOn = msgspec.field(default_factory=DependsOn)
    config: NodeConfig = msgspec.field(default_factory=NodeConfig)
    column_name: str | None = None
    attached_node: str | None = None
    test_metadata: TestMetadata | None = None


class Manifest(msgspec.Struct):
    metadata: Metadata
    nodes: dict[str, Node]
    sources: dict[str, Node] = {}
    unit_tests: dict[str, Node] = {}


class Timing(msgspec.Struct):
    name: str
    started_at: str | None = None
    completed_at: str | None = None


class Result(msgspec.Struct):
    unique_id: str
    status: str
    timing: list[Timing] = []
    message: str | None = None
    failures: int | None = None
    execution_time: float | None = None
    adapter_response: dict[str, Any] = {}


class RunResults(msgspec.Struct):
    metadata: Metadata
    results: list[Result]
    elapsed_time: float | None = None
    args: dict[str, Any] = {}


class FreshnessResult(msgspec.Struct):
    unique_id: str
    status: str
    max_loaded_at: str | None = None
    snapshotted_at: str | None = None
    max_loaded_at_time_ago_in_s: float | None = None
    criteria: dict[str, Any] = {}
    error: str | None = None
    message: str | None = None
    timing: list[Timing] = []


class Sources(msgspec.Struct):
    metadata: Metadata
    results: list[FreshnessResult]
    elapsed_time: float | None = None


_A = TypeVar("_A", Manifest, RunResults, Sources)


class _Head(msgspec.Struct):
    metadata: dict[str, Any] = {}


def parse_manifest(data: bytes, path: str = "manifest.json") -> Manifest:
    """manifest.json; ArtifactError naming `path` when it is not one."""
    return _parse(data, path, Manifest, "manifest", "a dbt manifest")


def parse_run_results(data: bytes, path: str = "run_results.json") -> RunResults:
    """run_results.json; ArtifactError naming `path` when it is not one."""
    parsed = _parse(data, path, RunResults, "run-results", "dbt run results")
    _require_invocation(parsed.metadata, path)
    return parsed


def parse_sources(data: bytes, path: str = "sources.json") -> Sources:
    """sources.json (`dbt source freshness`); ArtifactError naming `path` when it is not one."""
    parsed = _parse(data, path, Sources, "sources", "dbt source freshness results")
    _require_invocation(parsed.metadata, path)
    return parsed


def _parse(data: bytes, path: str, kind: type[_A], schema_kind: str, what: str) -> _A:
    if not data.strip():
        raise ArtifactError(path, f"is empty, not {what}")
    try:
        parsed = msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:  # JSON, but not of this shape
        version = _schema_version(data)
        if version is not None and f"/{schema_kind}/" not in version:
            raise ArtifactError(path, f"not {what}: its dbt_schema_version is {version}") from None
        raise ArtifactError(path, f"not {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise _malformed(data, path, exc) from None
    version = parsed.metadata.dbt_schema_version
    if f"/{schema_kind}/" not in version:
        raise ArtifactError(path, f"not {what}: its dbt_schema_version is {version!r}")
    if _time(parsed.metadata.generated_at) is None:
        raise ArtifactError(
            path, f"metadata.generated_at {parsed.metadata.generated_at!r} is not a time"
        )
    return parsed


def _schema_version(data: bytes) -> str | None:
    try:
        version = msgspec.json.decode(data, type=_Head).metadata.get("dbt_schema_version")
    except msgspec.DecodeError:
        return None
    return version if isinstance(version, str) else None


def _require_invocation(metadata: Metadata, path: str) -> None:
    if not metadata.invocation_id:
        raise ArtifactError(path, "metadata.invocation_id is missing")


def _malformed(data: bytes, path: str, exc: msgspec.DecodeError) -> ArtifactError:
    """The error for JSON msgspec cannot read, with the line and column json reports."""
    try:
        json.loads(data)
    except json.JSONDecodeError as jexc:
        return ArtifactError(path, f"malformed JSON: {jexc.msg}", jexc.lineno, jexc.colno)
    except UnicodeDecodeError as uexc:
        line, column = _position(data, uexc.start)
        return ArtifactError(path, "not UTF-8 text", line, column)
    except (ValueError, RecursionError):
        pass
    match = re.search(r"\(byte (\d+)\)", str(exc))
    if match is None:
        return ArtifactError(path, f"malformed JSON: {exc}")
    line, column = _position(data, int(match.group(1)))
    return ArtifactError(path, f"malformed JSON: {exc}", line, column)


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column of a byte offset."""
    offset = min(offset, len(data))
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, offset - line_start + 1


# translation


@dataclass(slots=True)
class Translation:
    """The events artifacts make, and what they say, for a summary."""

    project: str
    pipeline: str  # `dbt.<project>`
    events: list[dict[str, Any]] = field(default_factory=list)
    invocation_id: str | None = None  # run_results.json's, when it is reported
    command: str | None = None  # `build`, `run`, ...
    state: str | None = None  # `completed` or `failed`, when run_results.json is reported
    runs: int = 0  # child runs: models, seeds, snapshots
    checks: int = 0  # test results reported
    freshness: int = 0  # source freshness results reported
    notes: list[str] = field(default_factory=list)  # what was left out, and why


def event_id(invocation_id: str, unique_id: str, event: str) -> str:
    """The deterministic id of an event: uuid5 of invocation_id, unique_id and event name."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{invocation_id}\n{unique_id}\n{event}"))


def relation_of(node: Node, adapter: str) -> str | None:
    """The asset id of a node's relation, or None (ephemeral models, tests, ...)."""
    if node.resource_type == "source":
        return asset_id(adapter, node.database, node.schema, node.identifier or node.name)
    if node.resource_type not in RELATION_TYPES or node.config.materialized == "ephemeral":
        return None
    return asset_id(adapter, node.database, node.schema, node.alias or node.name)


def project_name(manifest: Manifest) -> str:
    """The project's name: from the manifest's metadata, else the package most models are in."""
    if manifest.metadata.project_name:
        return manifest.metadata.project_name
    packages = Counter(
        node.package_name
        for node in manifest.nodes.values()
        if node.resource_type == "model" and node.package_name
    )
    return packages.most_common(1)[0][0] if packages else "project"


def translate(
    manifest: Manifest, run_results: RunResults | None = None, sources: Sources | None = None
) -> Translation:
    """The events that a manifest and the run results and freshness results of it make."""
    project = project_name(manifest)
    t = Translation(project=project, pipeline=naming.pipeline_resource(project))
    ctx = _Context(manifest, t)
    if run_results is not None:
        ctx.add_invocation(run_results)
    if sources is not None:
        ctx.add_freshness(sources)
    return t


def _time(value: str | None) -> datetime | None:
    """An artifact's time; dbt writes UTC, so a time without an offset is taken as UTC."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _span(timing: list[Timing]) -> tuple[datetime | None, datetime | None]:
    """A node's start and end: its `execute` timing, else all its timings."""
    chosen = [t for t in timing if t.name == "execute"] or timing
    starts = [s for t in chosen if (s := _time(t.started_at)) is not None]
    ends = [e for t in chosen if (e := _time(t.completed_at)) is not None]
    return (min(starts) if starts else None), (max(ends) if ends else None)


def _compact(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if v is not None and v != {}}


class _Context:
    """Translation state: the manifest, the project's resources, and the events so far."""

    def __init__(self, manifest: Manifest, out: Translation) -> None:
        self.manifest = manifest
        self.out = out
        self.adapter = (manifest.metadata.adapter_type or SOURCE).lower()
        self.pipeline = out.pipeline
        self.source_rel = {"role": n.ROLE_SOURCE, "id": SOURCE}

    def node(self, unique_id: str) -> Node | None:
        m = self.manifest
        return m.nodes.get(unique_id) or m.sources.get(unique_id) or m.unit_tests.get(unique_id)

    def emit(
        self,
        invocation_id: str,
        unique_id: str,
        event: str,
        occurred: datetime,
        resource: dict[str, Any],
        related: list[dict[str, Any]],
        payload: dict[str, Any],
    ) -> None:
        self.out.events.append(
            {
                "id": event_id(invocation_id, unique_id, event),
                "occurred": _iso(occurred),
                "event": event,
                "resource": resource,
                "related": [*related, self.source_rel],
                "payload": _compact(payload),
            }
        )

    def inputs_of(self, node: Node) -> list[str]:
        """The relations a node reads: its depends_on's, through ephemeral models."""
        found: list[str] = []
        seen: set[str] = set()
        pending = list(node.depends_on.nodes)
        while pending:
            uid = pending.pop(0)
            if uid in seen:
                continue
            seen.add(uid)
            dep = self.node(uid)
            if dep is None:
                continue
            relation = relation_of(dep, self.adapter)
            if relation is not None:
                if relation not in found:
                    found.append(relation)
            elif dep.resource_type == "model":  # ephemeral: read what it reads
                pending.extend(dep.depends_on.nodes)
        return found

    def tested_relation(self, test: Node | None) -> str | None:
        """The relation a test is about: its attached node's, else its first dependency's."""
        if test is None:
            return None
        candidates = [test.attached_node] if test.attached_node else []
        candidates += test.depends_on.nodes
        for uid in candidates:
            dep = self.node(uid) if uid else None
            relation = relation_of(dep, self.adapter) if dep is not None else None
            if relation is not None:
                return relation
        return None

    def tested_node(self, test: Node | None) -> str | None:
        if test is None:
            return None
        if test.attached_node:
            return test.attached_node
        for uid in test.depends_on.nodes:
            dep = self.node(uid)
            if dep is not None and dep.resource_type in RELATION_TYPES:
                return uid
        return None

    # run_results.json

    def add_invocation(self, rr: RunResults) -> None:
        md = rr.metadata
        invocation = md.invocation_id
        assert invocation is not None  # parse_run_results requires it
        command = rr.args.get("which")
        command = command if isinstance(command, str) else None
        if command is not None and command not in REPORTED_COMMANDS:
            self.out.notes.append(
                f"run_results.json is from `dbt {command}`, which builds nothing: not reported"
            )
            return
        self.out.invocation_id, self.out.command = invocation, command
        generated = _time(md.generated_at)
        assert generated is not None  # _parse checks it
        spans = [_span(r.timing) for r in rr.results]
        starts = [s for s, _ in spans if s is not None]
        ends = [e for _, e in spans if e is not None]
        started = _time(md.invocation_started_at)
        if started is None:
            started = generated - timedelta(seconds=rr.elapsed_time or 0.0)
            started = min([started, *starts])
        ended = max([generated, *ends])

        pipeline_resource = {
            "id": self.pipeline,
            "kind": n.KIND_PIPELINE,
            "name": self.out.project,
            "labels": {"adapter": self.adapter},
        }
        run_rel = [{"role": n.ROLE_RUN, "id": naming.invocation_run_key(invocation)}]
        base = {"invocation_id": invocation, "command": command, "dbt_version": md.dbt_version}
        self.emit(
            invocation, self.pipeline, n.RUN_STARTED, started, pipeline_resource, run_rel, base
        )
        for result, (start, end) in zip(rr.results, spans, strict=True):
            self.add_result(invocation, command, result, start or started, end, ended)

        statuses = Counter(r.status for r in rr.results)
        bad = [r for r in rr.results if r.status in FAILED_STATUSES]
        error = None
        if bad:
            listed = ", ".join(f"{r.unique_id} ({r.status})" for r in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            error = f"{len(bad)} of {len(rr.results)} nodes did not succeed: {listed}{more}"
        self.out.state = "failed" if bad else "completed"
        self.emit(
            invocation,
            self.pipeline,
            n.RUN_FAILED if bad else n.RUN_COMPLETED,
            ended,
            pipeline_resource,
            run_rel,
            {**base, "elapsed_time": rr.elapsed_time, "statuses": dict(statuses), "error": error},
        )

    def add_result(
        self,
        invocation: str,
        command: str | None,
        result: Result,
        start: datetime,
        end: datetime | None,
        invocation_end: datetime,
    ) -> None:
        uid = result.unique_id
        node = self.node(uid)
        resource_type = node.resource_type if node is not None else uid.split(".", 1)[0]
        if resource_type in TEST_NODE_TYPES:
            self.add_test(invocation, result, node, end or invocation_end)
        elif resource_type in RUN_NODE_TYPES:
            if node is None:
                self.out.notes.append(f"{uid} is not in manifest.json: reported without lineage")
            if end is None:
                elapsed = result.execution_time
                end = start + timedelta(seconds=elapsed) if elapsed else invocation_end
            self.add_node_run(invocation, command, result, node, resource_type, start, end)

    def add_node_run(
        self,
        invocation: str,
        command: str | None,
        result: Result,
        node: Node | None,
        resource_type: str,
        start: datetime,
        end: datetime,
    ) -> None:
        uid = result.unique_id
        task = naming.node_resource(self.out.project, uid)
        labels = {"resource_type": resource_type}
        if node is not None and node.config.materialized:
            labels["materialized"] = node.config.materialized
        resource = {
            "id": task,
            "kind": n.KIND_TASK,
            "name": node.name if node is not None else uid.rsplit(".", 1)[-1],
            "labels": labels,
        }
        run_key = naming.node_run_key(invocation, uid)
        related: list[dict[str, Any]] = [
            {"role": n.ROLE_RUN, "id": run_key},
            {"role": n.ROLE_PARENT, "id": self.pipeline, "kind": n.KIND_PIPELINE},
            {"role": n.ROLE_PARENT_RUN, "id": naming.invocation_run_key(invocation)},
        ]
        payload: dict[str, Any] = {
            "unique_id": uid,
            "status": result.status,
            "execution_time": result.execution_time,
            "message": result.message,
            "adapter_response": result.adapter_response,
            "invocation_id": invocation,
        }
        event = _NODE_EVENTS.get(result.status, n.RUN_UPDATED)
        if event != n.RUN_CANCELLED:  # a skipped node never started
            self.emit(invocation, uid, n.RUN_STARTED, start, resource, related, payload)
        relation = relation_of(node, self.adapter) if node is not None else None
        lineage = [{"role": n.ROLE_INPUT, "id": i} for i in self.inputs_of(node)] if node else []
        if relation is not None:
            lineage.append({"role": n.ROLE_OUTPUT, "id": relation})
        if event == n.RUN_FAILED:
            payload["error"] = result.message or f"dbt status {result.status}"
        elif event == n.RUN_CANCELLED:
            payload["error"] = result.message or "skipped by dbt"
        self.emit(invocation, uid, event, end, resource, related + lineage, payload)
        self.out.runs += 1
        builds = command is None or command in REPORTED_COMMANDS - {"test"}
        if relation is not None and result.status == "success" and builds:
            asset = {"id": relation, "kind": n.KIND_ASSET, "name": resource["name"]}
            producer = [
                {"role": n.ROLE_PRODUCER, "id": task, "kind": n.KIND_TASK},
                {"role": n.ROLE_RUN, "id": run_key},
            ]
            rows = result.adapter_response.get("rows_affected")
            payload = {"unique_id": uid, "rows_affected": rows, "invocation_id": invocation}
            self.emit(invocation, uid, n.ASSET_UPDATED, end, asset, producer, payload)

    def add_test(self, invocation: str, result: Result, test: Node | None, at: datetime) -> None:
        uid = result.unique_id
        status = result.status
        if status == "skipped":
            return  # the test ran no query: nothing is known about the data
        relation = self.tested_relation(test)
        name = test.name if test is not None else uid.split(".")[2 if uid.count(".") >= 2 else 0]
        resource: dict[str, Any]
        if relation is not None:
            resource = {"id": relation, "kind": n.KIND_ASSET}
        else:  # a test of nothing relational is an asset of its own
            resource = {"id": f"{self.pipeline}.{uid}", "kind": n.KIND_ASSET, "name": name}
        if status == "warn":
            severity = "warn"
        elif status in FAILED_STATUSES:
            severity = "error"
        else:
            configured = test.config.severity if test is not None else None
            severity = (configured or "error").lower()
        generic = test.test_metadata if test is not None else None
        payload = {
            "check": name,
            "status": status,
            "failures": result.failures,
            "severity": severity,
            "message": result.message,
            "column_name": test.column_name if test is not None else None,
            "model": self.tested_node(test),
            "test": generic.name if generic is not None else None,
            "unique_id": uid,
            "resource_type": test.resource_type if test is not None else None,
            "execution_time": result.execution_time,
            "invocation_id": invocation,
        }
        event = n.CHECK_PASSED if status in ("pass", "success") else n.CHECK_FAILED
        related = [
            {"role": n.ROLE_PRODUCER, "id": self.pipeline, "kind": n.KIND_PIPELINE},
            {"role": n.ROLE_RUN, "id": naming.invocation_run_key(invocation)},
        ]
        self.emit(invocation, uid, event, at, resource, related, payload)
        self.out.checks += 1

    # sources.json

    def add_freshness(self, sources: Sources) -> None:
        invocation = sources.metadata.invocation_id
        assert invocation is not None  # parse_sources requires it
        generated = _time(sources.metadata.generated_at)
        assert generated is not None
        for result in sources.results:
            uid = result.unique_id
            node = self.manifest.sources.get(uid)
            relation = relation_of(node, self.adapter) if node is not None else None
            if node is None or relation is None:
                self.out.notes.append(f"{uid} is not a source in manifest.json: not reported")
                continue
            name = f"{node.source_name}.{node.name}" if node.source_name else node.name
            asset = {"id": relation, "kind": n.KIND_ASSET, "name": name}
            loaded = _time(result.max_loaded_at)
            checked = _time(result.snapshotted_at) or _span(result.timing)[1] or generated
            if loaded is not None:
                observed = {
                    "observed_by": "dbt source freshness",
                    "unique_id": uid,
                    "snapshotted_at": result.snapshotted_at,
                    "invocation_id": invocation,
                }
                self.emit(invocation, uid, n.ASSET_UPDATED, loaded, asset, [], observed)
            status = result.status
            passed = status == "pass"
            payload = {
                "check": "freshness",
                "status": status,
                "severity": None if passed else ("warn" if status == "warn" else "error"),
                "message": _freshness_message(result, loaded),
                "max_loaded_at": result.max_loaded_at,
                "snapshotted_at": result.snapshotted_at,
                "age_s": result.max_loaded_at_time_ago_in_s,
                "criteria": result.criteria,
                "unique_id": uid,
                "invocation_id": invocation,
            }
            event = n.CHECK_PASSED if passed else n.CHECK_FAILED
            self.emit(invocation, uid, event, checked, asset, [], payload)
            self.out.freshness += 1


def _freshness_message(result: FreshnessResult, loaded: datetime | None) -> str | None:
    if result.status == "runtime error" or loaded is None:
        return result.error or result.message or f"dbt status {result.status}"
    age = result.max_loaded_at_time_ago_in_s
    text = f"last loaded at {_iso(loaded)}"
    if age is not None:
        text += f", {_duration(age)} before the check"
    limits = []
    for key, label in (("warn_after", "warn after"), ("error_after", "error after")):
        limit = result.criteria.get(key)
        if isinstance(limit, dict) and limit.get("count") and limit.get("period"):
            limits.append(f"{label} {limit['count']} {limit['period']}")
    return f"{text} ({', '.join(limits)})" if limits else text


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    if whole < 7200:
        return f"{whole // 60} min"
    if whole < 172_800:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86_400} days"
