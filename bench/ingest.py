"""Ingest on SQLite and PostgreSQL: store and HTTP events/s, OpenLineage events/s, latency, RSS."""

from __future__ import annotations

import argparse
import contextlib
import gc
import http.client
import itertools
import math
import os
import platform
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import msgspec
import psycopg
from psycopg import sql
from rich.console import Console, JustifyMethod
from rich.table import Table

from coplane.collector.openlineage import translate_openlineage
from coplane.events.model import Event, decode_events
from coplane.settings import Settings
from coplane.store import Store, open_store
from coplane.store.dialects import Database
from coplane.version import __version__

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "airflow-3.3-openlineage-events.jsonl"
BATCH = 1_000
CLIENTS = 8
CPUS = os.cpu_count() or 1

# Targets from the issue.
PG_HTTP_TARGET = 50_000
PG_RATIO_TARGET = 0.5
SQLITE_HTTP_TARGET = 20_000
OL_TARGET = 2_000
OL_P99_TARGET_MS = 50.0


class BenchError(Exception):
    """A benchmark that cannot be trusted: a failed request, lost events, a dead server."""


# --- Native events, as a real deployment sends them ---------------------------------------

SOURCES = ("airflow", "airflow", "airflow", "dbt", "dagster", "cron")
DOMAINS = (
    "orders", "payments", "customers", "inventory", "shipments", "marketing", "finance",
    "web_events", "ledger", "crm",
)  # fmt: skip
VERBS = ("daily", "hourly", "sync", "export", "load", "rollup", "snapshot", "dedupe")
TASK_NAMES = ("extract", "stage", "transform", "join", "aggregate", "load", "publish")
TEAMS = ("data-platform", "analytics", "finance-eng", "growth", "ops")
CHECKS = (
    ("not_null", "id"), ("unique", "id"), ("accepted_values", "status"),
    ("row_count_min", ""), ("freshness", ""),
)  # fmt: skip
CET = timezone(timedelta(hours=1))  # cron hosts report local time with an offset


@dataclass(frozen=True, slots=True)
class _Task:
    id: str
    name: str
    inputs: tuple[str, ...]
    output: str | None
    checks: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Pipeline:
    id: str
    source: str
    tz: timezone
    resource: dict[str, Any]
    interval: timedelta
    offset: timedelta
    tasks: tuple[_Task, ...]
    output: str | None  # a task-less (cron) pipeline updates its asset itself


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


def _make_pipeline(i: int, rng: random.Random) -> _Pipeline:
    source = rng.choice(SOURCES)
    domain = rng.choice(DOMAINS)
    name = f"{domain}_{rng.choice(VERBS)}_{i:04d}"
    pid = f"{source}.{name}"
    team = rng.choice(TEAMS)
    resource = {
        "id": pid,
        "kind": "pipeline",
        "name": name,
        "labels": {"team": team, "owner": f"{team}@example.com"},
    }
    interval = timedelta(minutes=rng.choice((15, 30, 60, 60, 120, 240)))
    offset = timedelta(seconds=rng.uniform(0, interval.total_seconds()))
    if source == "cron":
        return _Pipeline(
            pid,
            source,
            CET,
            resource,
            interval,
            offset,
            (),
            f"s3://exports/{domain}/{name}.parquet",
        )
    names = sorted(rng.sample(TASK_NAMES, rng.randint(2, 6)), key=TASK_NAMES.index)
    upstream = f"s3://raw/{domain}/{name}/" if rng.random() < 0.5 else None
    tasks = []
    for task in names:
        out = f"postgres://warehouse:5432/analytics.{domain}.{name}_{task}"
        output = out if rng.random() < 0.6 else None
        checks = (
            tuple(rng.sample(CHECKS, rng.randint(1, 3))) if output and rng.random() < 0.4 else ()
        )
        tasks.append(_Task(f"{pid}.{task}", task, (upstream,) if upstream else (), output, checks))
        upstream = output or upstream
    return _Pipeline(pid, source, UTC, resource, interval, offset, tuple(tasks), None)


class _Sink:
    """Collects (time, event) pairs so that the stream can be put in time order."""

    def __init__(self) -> None:
        self.items: list[tuple[float, dict[str, Any]]] = []

    def emit(
        self,
        at: datetime,
        tz: timezone,
        event: str,
        resource: dict[str, Any],
        related: list[dict[str, str]],
        payload: dict[str, Any],
    ) -> None:
        body = {
            "id": str(uuid.uuid4()),
            "occurred": _iso(at.astimezone(tz)),
            "event": event,
            "resource": resource,
            "related": related,
            "payload": payload,
        }
        self.items.append((at.timestamp(), body))


def _asset_events(
    sink: _Sink,
    tz: timezone,
    asset: str,
    producer: str,
    run_key: str,
    checks: Sequence[tuple[str, str]],
    at: datetime,
    rng: random.Random,
) -> None:
    related = [{"role": "producer", "id": producer}, {"role": "run", "id": run_key}]
    rows = rng.randint(100, 5_000_000)
    at += timedelta(milliseconds=rng.randint(5, 50))
    sink.emit(at, tz, "asset.updated", {"id": asset, "kind": "asset"}, related,
              {"row_count": rows, "bytes": rows * rng.randint(40, 400)})  # fmt: skip
    for check, column in checks:
        passed = rng.random() < 0.92
        payload: dict[str, Any] = {"check": check}
        if column:
            payload["column"] = column
        if not passed:
            payload["message"] = f"{rng.randint(1, 900)} rows failed {check}"
        at += timedelta(milliseconds=rng.randint(5, 500))
        name = "check.passed" if passed else "check.failed"
        sink.emit(at, tz, name, {"id": asset, "kind": "asset"}, list(related), payload)


def _pipeline_run(sink: _Sink, p: _Pipeline, nominal: datetime, rng: random.Random) -> None:
    """One scheduled run: the pipeline's start and end, its tasks, their assets and checks."""
    if p.source == "airflow":
        run_key = f"scheduled__{nominal.isoformat()}"
    elif p.source == "cron":
        run_key = nominal.strftime("%Y%m%dT%H%M%S")
    else:
        run_key = str(uuid.uuid4())
    at = nominal + timedelta(seconds=rng.uniform(1, 30))
    began = at
    started = {"nominal_start": _iso(nominal), "attempt": 1, "host": f"worker-{rng.randint(1, 12)}"}
    sink.emit(at, p.tz, "run.started", p.resource, [{"role": "run", "id": run_key}], started)
    error: dict[str, str] | None = None
    for task in p.tasks:
        at += timedelta(seconds=rng.uniform(0.2, 5))
        resource = {"id": task.id, "kind": "task", "name": task.name}
        related = [
            {"role": "run", "id": run_key},
            {"role": "parent", "id": p.id},
            {"role": "parent_run", "id": run_key},
            *({"role": "input", "id": a} for a in task.inputs),
        ]
        sink.emit(at, p.tz, "run.started", resource, related, {"attempt": 1})
        took = rng.uniform(1, 240)
        at += timedelta(seconds=took)
        if rng.random() < 0.02:
            error = {"message": f"task {task.name} failed: connection reset", "type": "OSError"}
            sink.emit(at, p.tz, "run.failed", resource, related,
                      {"duration_s": round(took, 3), "error": error})  # fmt: skip
            break
        if task.output:
            related = [*related, {"role": "output", "id": task.output}]
        sink.emit(at, p.tz, "run.completed", resource, related, {"duration_s": round(took, 3)})
        if task.output:
            _asset_events(sink, p.tz, task.output, task.id, run_key, task.checks, at, rng)
    related = [{"role": "run", "id": run_key}]
    if p.output:
        _asset_events(sink, p.tz, p.output, p.id, run_key, (), at, rng)
        related.append({"role": "output", "id": p.output})
    at += timedelta(seconds=rng.uniform(0.1, 2))
    payload: dict[str, Any] = {"duration_s": round((at - began).total_seconds(), 3)}
    if error is not None:
        payload["error"] = error
    name = "run.failed" if error else "run.completed"
    sink.emit(at, p.tz, name, p.resource, related, payload)


def build_native(total: int, days: float, rng: random.Random) -> list[dict[str, Any]]:
    """`total` events of scheduled pipeline runs over the last `days`, in time order."""
    now = datetime.now(UTC)
    first, last = now - timedelta(days=days), now - timedelta(minutes=30)
    sink = _Sink()
    # More pipelines until there are enough events; bounded in case `days` is tiny.
    for i in range(100_000):
        if len(sink.items) >= total:
            break
        p = _make_pipeline(i, rng)
        nominal = first + p.offset
        while nominal < last:
            _pipeline_run(sink, p, nominal, rng)
            nominal += p.interval
    if len(sink.items) < total:
        raise BenchError(f"could not generate {total:,} events over {days} days")
    # A live stream arrives in time order: runs interleave and a run's events span batches.
    sink.items.sort(key=lambda item: item[0])
    return [body for _, body in sink.items[-total:]]


def batches_of(events: list[dict[str, Any]]) -> list[bytes]:
    """Request bodies of BATCH events each."""
    return [msgspec.json.encode(events[i : i + BATCH]) for i in range(0, len(events), BATCH)]


# --- OpenLineage events, shaped like the Airflow 3.3 sample ------------------------------

OL_PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.20.3"
OL_SCHEMA = "https://openlineage.io/spec/facets/1-0-1/"


@dataclass(frozen=True, slots=True)
class _OlTask:
    task_id: str
    inputs: tuple[str, ...]
    output: str | None
    assertions: bool  # reads its input's data quality assertions (a check task)


@dataclass(frozen=True, slots=True)
class _OlDag:
    namespace: str
    dag_id: str
    minute: int
    tasks: tuple[_OlTask, ...]


@dataclass(frozen=True, slots=True)
class _OlTemplates:
    task: bytes  # re-decoded for every event: a cheap deep copy
    dag: bytes


def _ol_templates() -> _OlTemplates:
    task = dag = None
    for line in FIXTURE.read_bytes().splitlines():
        if not line.strip():
            continue
        ev = msgspec.json.decode(line)
        facets = ev["run"]["facets"]
        if task is None and "parent" in facets and "airflow" in facets:
            task = line
        if dag is None and "airflowDagRun" in facets:
            dag = line
    if task is None or dag is None:
        raise BenchError(f"{FIXTURE} lacks a task event or a DAG-run event to copy")
    return _OlTemplates(task, dag)


def _make_ol_dag(i: int, rng: random.Random) -> _OlDag:
    domain = rng.choice(DOMAINS)
    dag_id = f"{domain}_{rng.choice(VERBS)}_{i:03d}"
    names = sorted(rng.sample(TASK_NAMES, rng.randint(2, 5)), key=TASK_NAMES.index)
    upstream = f"raw.{domain}.{dag_id}" if rng.random() < 0.6 else None
    tasks = []
    for name in names:
        output = f"analytics.{domain}.{dag_id}_{name}" if rng.random() < 0.5 else None
        tasks.append(_OlTask(name, (upstream,) if upstream else (), output, False))
        upstream = output or upstream
    if upstream and rng.random() < 0.4:
        tasks.append(_OlTask("validate", (upstream,), None, True))
    namespace = rng.choice(("airflow-prod", "airflow-analytics"))
    return _OlDag(namespace, dag_id, rng.randint(0, 59), tuple(tasks))


def _ol_dataset(
    name: str, rng: random.Random, *, stats: bool = False, assertions: bool = False
) -> dict[str, Any]:
    ds: dict[str, Any] = {
        "namespace": "postgres://warehouse:5432",
        "name": name,
        "facets": {
            "schema": {
                "_producer": OL_PRODUCER,
                "_schemaURL": OL_SCHEMA + "SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
                "fields": [
                    {"name": "id", "type": "bigint"},
                    {"name": "status", "type": "text"},
                    {"name": "amount", "type": "numeric(12,2)"},
                    {"name": "updated_at", "type": "timestamptz"},
                ],
            }
        },
    }
    if stats:
        rows = rng.randint(100, 2_000_000)
        ds["outputFacets"] = {
            "outputStatistics": {
                "_producer": OL_PRODUCER,
                "_schemaURL": OL_SCHEMA + "OutputStatisticsOutputDatasetFacet.json",
                "rowCount": rows,
                "size": rows * rng.randint(40, 300),
            }
        }
    if assertions:
        ds["inputFacets"] = {
            "dataQualityAssertions": {
                "_producer": OL_PRODUCER,
                "_schemaURL": OL_SCHEMA + "DataQualityAssertionsDatasetFacet.json",
                "assertions": [
                    {"assertion": "not_null", "column": "id", "success": rng.random() < 0.95},
                    {"assertion": "unique", "column": "id", "success": rng.random() < 0.98},
                    {"assertion": "row_count_min", "success": True},
                ],
            }
        }
    return ds


def _dag_run_facet(dr: dict[str, Any], dag_id: str, run_id: str, logical: datetime) -> None:
    dr.update(
        dag_id=dag_id,
        run_id=run_id,
        run_type="scheduled",
        logical_date=_iso(logical),
        data_interval_start=_iso(logical),
        data_interval_end=_iso(logical + timedelta(hours=1)),
        run_after=_iso(logical + timedelta(hours=1)),
        start_date=_iso(logical + timedelta(hours=1)),
    )
    dr.pop("triggering_user_name", None)


def _ol_task_event(
    tpl: _OlTemplates,
    dag: _OlDag,
    task: _OlTask,
    event_type: str,
    at: datetime,
    ids: tuple[str, str, str],  # task run id, DAG run id, Airflow run_id
    logical: datetime,
    rng: random.Random,
) -> dict[str, Any]:
    task_run, dag_run, af_run_id = ids
    ev: dict[str, Any] = msgspec.json.decode(tpl.task)
    ev["eventTime"], ev["eventType"] = _iso(at), event_type
    ev["job"].update(namespace=dag.namespace, name=f"{dag.dag_id}.{task.task_id}")
    ev["run"]["runId"] = task_run
    facets = ev["run"]["facets"]
    af = facets["airflow"]
    af["dag"].update(dag_id=dag.dag_id, fileloc=f"/opt/airflow/dags/{dag.dag_id}.py")
    _dag_run_facet(af["dagRun"], dag.dag_id, af_run_id, logical)
    af["task"]["task_id"] = task.task_id
    af["taskInstance"]["log_url"] = (
        f"http://airflow.example.com/dags/{dag.dag_id}/runs/{quote(af_run_id, safe='')}"
        f"/tasks/{task.task_id}?try_number=1"
    )
    af["taskUuid"] = task_run
    facets["nominalTime"].update(
        nominalStartTime=_iso(logical), nominalEndTime=_iso(logical + timedelta(hours=1))
    )
    parent = facets["parent"]
    for level in (parent, parent["root"]):
        level["job"].update(namespace=dag.namespace, name=dag.dag_id)
        level["run"]["runId"] = dag_run
    for item in facets.get("unknownSourceAttribute", {}).get("unknownItems", []):
        item["properties"]["task_id"] = task.task_id
    done = event_type in ("COMPLETE", "FAIL")
    ev["inputs"] = [
        _ol_dataset(name, rng, assertions=task.assertions and done) for name in task.inputs
    ]
    ev["outputs"] = (
        [_ol_dataset(task.output, rng, stats=event_type == "COMPLETE")] if task.output else []
    )
    if event_type == "FAIL":
        facets["errorMessage"] = {
            "_producer": OL_PRODUCER,
            "_schemaURL": OL_SCHEMA + "ErrorMessageRunFacet.json",
            "message": "psycopg.OperationalError: connection reset by peer",
            "programmingLanguage": "python",
            "stackTrace": 'Traceback (most recent call last):\n  File "task.py", line 42\n',
        }
    return ev


def _ol_dag_event(
    tpl: _OlTemplates,
    dag: _OlDag,
    event_type: str,
    at: datetime,
    ids: tuple[str, str],  # DAG run id, Airflow run_id
    logical: datetime,
    states: dict[str, tuple[str, float]],
) -> dict[str, Any]:
    dag_run, af_run_id = ids
    ev: dict[str, Any] = msgspec.json.decode(tpl.dag)
    ev["eventTime"], ev["eventType"] = _iso(at), event_type
    ev["job"].update(namespace=dag.namespace, name=dag.dag_id)
    ev["run"]["runId"] = dag_run
    facets = ev["run"]["facets"]
    adr = facets["airflowDagRun"]
    adr["dag"].update(dag_id=dag.dag_id, fileloc=f"/opt/airflow/dags/{dag.dag_id}.py")
    dr = adr["dagRun"]
    _dag_run_facet(dr, dag.dag_id, af_run_id, logical)
    facets["nominalTime"].update(
        nominalStartTime=_iso(logical), nominalEndTime=_iso(logical + timedelta(hours=1))
    )
    if event_type == "START":
        dr.pop("end_date", None)
        dr.pop("duration", None)
        facets.pop("airflowState", None)
    else:
        began = logical + timedelta(hours=1)
        dr.update(end_date=_iso(at), duration=round((at - began).total_seconds(), 6))
        facets["airflowState"].update(
            dagRunState="failed" if event_type == "FAIL" else "success",
            tasksState={t: s for t, (s, _) in states.items()},
            tasksDuration={t: d for t, (_, d) in states.items()},
        )
    return ev


def _ol_dag_run(
    tpl: _OlTemplates, dag: _OlDag, logical: datetime, rng: random.Random
) -> list[tuple[float, dict[str, Any]]]:
    """A DAG run as Airflow reports it: DAG START, START and COMPLETE per task, DAG COMPLETE."""
    dag_run, af_run_id = str(uuid.uuid4()), f"scheduled__{logical.isoformat()}"
    at = logical + timedelta(hours=1, seconds=rng.uniform(0.5, 20))
    out = [
        (at.timestamp(), _ol_dag_event(tpl, dag, "START", at, (dag_run, af_run_id), logical, {}))
    ]
    states: dict[str, tuple[str, float]] = {}
    failed = False
    for task in dag.tasks:
        task_run = str(uuid.uuid4())
        ids = (task_run, dag_run, af_run_id)
        at += timedelta(seconds=rng.uniform(0.5, 5))
        out.append((at.timestamp(), _ol_task_event(tpl, dag, task, "START", at, ids, logical, rng)))
        took = rng.uniform(1, 120)
        at += timedelta(seconds=took)
        failed = rng.random() < 0.02
        kind = "FAIL" if failed else "COMPLETE"
        out.append((at.timestamp(), _ol_task_event(tpl, dag, task, kind, at, ids, logical, rng)))
        states[task.task_id] = ("failed" if failed else "success", round(took, 6))
        if failed:
            break
    at += timedelta(seconds=rng.uniform(0.1, 2))
    kind = "FAIL" if failed else "COMPLETE"
    out.append(
        (at.timestamp(), _ol_dag_event(tpl, dag, kind, at, (dag_run, af_run_id), logical, states))
    )
    return out


def build_openlineage(total: int, rng: random.Random) -> list[bytes]:
    """`total` OpenLineage RunEvents of hourly DAG runs, newest last, one body each."""
    tpl = _ol_templates()
    dags = [_make_ol_dag(i, rng) for i in range(60)]
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    items: list[tuple[float, dict[str, Any]]] = []
    for back in range(3, 24 * 60):  # hourly slots going back from 3 h ago, at most 60 days
        if len(items) >= total:
            break
        for dag in dags:
            logical = hour - timedelta(hours=back, minutes=-dag.minute)
            items.extend(_ol_dag_run(tpl, dag, logical, rng))
    if len(items) < total:
        raise BenchError(f"could not generate {total:,} OpenLineage events")
    items.sort(key=lambda item: item[0])
    return [msgspec.json.encode(ev) for _, ev in items[-total:]]


# --- Measuring ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _proc_kib(pid: int, key: str) -> int | None:
    """A `kB` line of /proc/<pid>/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_s() -> float:
    """CPU seconds of every `postgres` process on the machine (server and backends)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
        except OSError:
            continue
        total += _proc_cpu_s(int(entry.name))
    return total


def _machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    wall: float
    bench: float
    server: float
    postgres: float
    machine: float

    @staticmethod
    def take(server_pid: int | None) -> CpuSnapshot:
        return CpuSnapshot(
            time.perf_counter(),
            time.process_time(),
            _proc_cpu_s(server_pid) if server_pid else 0.0,
            _postgres_cpu_s(),
            _machine_busy_s(),
        )

    def cores_since(self, before: CpuSnapshot) -> dict[str, float]:
        """Average cores busy between `before` and now, per consumer."""
        wall = max(self.wall - before.wall, 1e-9)
        return {
            "server": (self.server - before.server) / wall,
            "postgres": (self.postgres - before.postgres) / wall,
            "bench": (self.bench - before.bench) / wall,
            "machine": (self.machine - before.machine) / wall,
        }


class RssSampler:
    """Samples a process's VmRSS every 100 ms; `take_peak` returns the peak since the last call."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._peak_kib = 0
        self.overall_kib = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            kib = _proc_kib(self._pid, "VmRSS")
            if kib is None:
                return  # the process is gone
            with self._lock:
                self._peak_kib = max(self._peak_kib, kib)
                self.overall_kib = max(self.overall_kib, kib)

    def take_peak(self) -> float:
        with self._lock:
            kib = max(self._peak_kib, _proc_kib(self._pid, "VmRSS") or 0)
            self._peak_kib = 0
        return kib / 1024

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass(slots=True)
class PhaseResult:
    """What one phase did and how fast."""

    label: str
    requests: int  # requests (store submissions for phase a)
    units: int  # events sent (OpenLineage events for phase c)
    stored: int  # coplane events the phase stored
    seconds: float
    latencies: list[float]
    cpu: dict[str, float]
    rss_mib: float | None
    capped: bool

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


Send = Callable[[int], int]  # sends item i; returns how many coplane events it stored


@dataclass(slots=True)
class _Drive:
    done: list[int] = field(default_factory=list)
    stored: int = 0
    latencies: list[float] = field(default_factory=list)
    capped: bool = False
    end: float = 0.0  # when this client's last request returned


def drive(
    count: int,
    seconds: float,
    open_sender: Callable[[], contextlib.AbstractContextManager[Send]],
    server_pid: int | None,
) -> tuple[_Drive, float, dict[str, float]]:
    """Send items 0..count-1 from CLIENTS concurrent clients, each until done or out of time."""
    counter = itertools.count()  # next() on it is atomic under the GIL: a shared work queue
    per_client = [_Drive() for _ in range(CLIENTS)]
    stop = threading.Event()
    clock: list[float] = []  # [start, deadline], set once every client is connected
    cpu: list[CpuSnapshot] = []

    def go() -> None:
        cpu.append(CpuSnapshot.take(server_pid))
        now = time.perf_counter()
        clock[:] = [now, now + seconds]

    # Client set-up (connecting) happens before the clock starts.
    ready = threading.Barrier(CLIENTS, action=go, timeout=60)

    def client(mine: _Drive) -> None:
        with open_sender() as send:
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                return  # another client failed to set up; its error is raised below
            mine.end, deadline = clock
            while not stop.is_set():
                i = next(counter)
                if i >= count:
                    return
                if time.perf_counter() >= deadline:
                    mine.capped = True
                    return
                t0 = time.perf_counter()
                try:
                    stored = send(i)
                except BaseException:
                    stop.set()  # one wrong answer makes the whole phase worthless
                    raise
                mine.end = time.perf_counter()
                mine.latencies.append(mine.end - t0)
                mine.done.append(i)
                mine.stored += stored

    def guarded(mine: _Drive) -> None:
        try:
            client(mine)
        except BaseException:
            ready.abort()
            raise

    with ThreadPoolExecutor(CLIENTS, thread_name_prefix="bench-client") as pool:
        futures = [pool.submit(guarded, d) for d in per_client]
        for f in futures:
            f.result()
    if not clock:
        raise BenchError("the clients never started")
    elapsed = max(d.end for d in per_client) - clock[0]
    cores = CpuSnapshot.take(server_pid).cores_since(cpu[0])
    total = _Drive()
    for d in per_client:
        total.done += d.done
        total.stored += d.stored
        total.latencies += d.latencies
        total.capped |= d.capped
    return total, elapsed, cores


class _Ack(msgspec.Struct):
    accepted: int
    duplicates: int


@contextlib.contextmanager
def http_sender(
    base_url: str, path: str, bodies: Sequence[bytes], status: int, expected: Sequence[int]
) -> Iterator[Send]:
    """One keep-alive connection that posts pre-encoded bodies and checks every answer.

    The standard library's client, not httpx: the clients share the two cores with the
    server, and httpx spent about 650 us of CPU per request (http.client about 180 us),
    which capped the single-event phase below what the server sustains.
    """
    url = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60.0)
    conn.connect()
    headers = {"Content-Type": "application/json"}
    try:

        def send(i: int) -> int:
            conn.request("POST", path, body=bodies[i], headers=headers)
            r = conn.getresponse()
            content = r.read()
            if r.status != status:
                raise BenchError(f"POST {path} #{i}: {r.status} {content[:500]!r}")
            ack = msgspec.json.decode(content, type=_Ack)
            if ack.accepted != expected[i] or ack.duplicates:
                raise BenchError(
                    f"POST {path} #{i}: accepted {ack.accepted}, duplicates {ack.duplicates};"
                    f" expected {expected[i]} new"
                )
            return ack.accepted

        yield send
    finally:
        conn.close()


@contextlib.contextmanager
def store_sender(store: Store, batches: Sequence[list[Event]]) -> Iterator[Send]:
    """Submit decoded batches to the store's writer and wait for each commit."""

    def send(i: int) -> int:
        result = store.writer.submit(batches[i]).result(timeout=120)
        if result.accepted != len(batches[i]):
            raise BenchError(f"store batch #{i}: {result}, expected {len(batches[i])} new")
        return result.accepted

    yield send


def count_events(url: str) -> int:
    """SELECT count(*) FROM events, through coplane's own connection layer."""
    db = Database(url, pool_size=1)
    try:
        with db.connect() as conn:
            row = conn.one("SELECT count(*) AS n FROM events")
    finally:
        db.close()
    return int(row["n"]) if row else 0


def verify_stored(url: str, expected: int, what: str) -> None:
    """Fail loudly unless the database holds exactly the events sent so far."""
    got = count_events(url)
    if got != expected:
        raise BenchError(
            f"after {what}: {got:,} events stored, {expected:,} sent and acknowledged"
            f" ({got - expected:+,}): events were lost or duplicated"
        )


# --- The server under test ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`python -m coplane server` on loopback, as a real subprocess."""

    def __init__(self, url: str, log_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        # Only our settings: a COPLANE_* variable of the caller's shell must not change the run.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("COPLANE_")}
        full_env.update(env, COPLANE_DATABASE_URL=url)
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "coplane", "server",
                 "--host", "127.0.0.1", "--port", str(self.port)],
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(
                        f"server exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if c.get("/api/health").status_code == 200:
                        return
                time.sleep(0.1)
        raise BenchError(f"server not healthy within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# --- One backend -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    """Every request body, encoded before any timing starts."""

    store_bodies: list[bytes]  # phase a
    http_bodies: list[bytes]  # phase b
    http_counts: list[int]
    ol_bodies: list[bytes]  # phase c
    ol_counts: list[int]  # coplane events each OpenLineage event becomes


@dataclass(slots=True)
class BackendResult:
    backend: str
    phases: list[PhaseResult]
    server_hwm_mib: float | None = None
    server_peak_mib: float | None = None
    pool_size: int = 0
    writers: str = ""


@contextlib.contextmanager
def scratch_database(backend: str, pg_server: str, workdir: Path, tag: str) -> Iterator[str]:
    """A fresh, empty database URL; dropped (PostgreSQL) when the block ends."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / f'coplane-{tag}.sqlite'}"
        return
    name = f"coplane_bench_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(pg_server, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise BenchError(f"cannot reach PostgreSQL at {pg_server}: {exc}") from exc
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urlunsplit(urlsplit(pg_server)._replace(path="/" + name))
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _measure(
    label: str,
    count: int,
    seconds: float,
    open_sender: Callable[[], contextlib.AbstractContextManager[Send]],
    server: Server | None,
    rss: RssSampler | None,
    units: Callable[[list[int]], int],
) -> PhaseResult:
    if rss is not None:
        rss.take_peak()  # this phase's peak only
    result, elapsed, cpu = drive(count, seconds, open_sender, server.pid if server else None)
    return PhaseResult(
        label,
        len(result.done),
        units(result.done),
        result.stored,
        elapsed,
        result.latencies,
        cpu,
        rss.take_peak() if rss is not None else None,
        result.capped,
    )


def _phase_store(
    url: str, work: Workload, args: argparse.Namespace, pool_size: int, console: Console
) -> tuple[PhaseResult, str]:
    """(a) the store alone, in this process: no HTTP, no JSON decoding; and its writer count."""
    batches = [decode_events(b) for b in work.store_bodies]
    # The decoded workload is this process's data, not the store's: keep it out of the
    # cyclic GC's way, as the server holds only the batches in flight.
    gc.freeze()
    store = open_store(url, pool_size=pool_size, writers=args.writers)
    # The server starts as many writer threads from the same settings.
    writers = str(len(store.writer._threads))
    try:
        console.print(f"  (a) store batch write: {len(batches)} batches ...")
        a = _measure(
            "(a) store batch write",
            len(batches),
            args.seconds,
            lambda: store_sender(store, batches),
            None,
            None,
            lambda done: sum(len(batches[i]) for i in done),
        )
    finally:
        store.close()
        gc.unfreeze()
    return a, writers


def _shown(url: str) -> str:
    return url.split("@")[-1] if "@" in url else url


def run_backend(
    backend: str, work: Workload, args: argparse.Namespace, console: Console
) -> BackendResult:
    """Phase a on one fresh database, then b and c through one server on another."""
    pool_size: int = args.pool_size or Settings.model_fields["database_pool_size"].default
    env = {"COPLANE_DATABASE_POOL_SIZE": str(pool_size), "COPLANE_LOG_LEVEL": "warning"}
    if args.writers:
        env["COPLANE_DATABASE_WRITERS"] = str(args.writers)
    out = BackendResult(backend, [], pool_size=pool_size)
    workdir = Path(tempfile.mkdtemp(prefix=f"coplane-bench-{backend}-"))
    try:
        # (a) and (b) each start from an empty database, so that the ratio compares like
        # with like (index and cache costs grow with the table).
        with scratch_database(backend, args.pg_server, workdir, "store") as url:
            console.print(f"[bold]{backend}[/bold]: (a) on {_shown(url)}")
            a, out.writers = _phase_store(url, work, args, pool_size, console)
            out.phases.append(a)
            verify_stored(url, a.stored, "(a)")
        with scratch_database(backend, args.pg_server, workdir, "server") as url:
            console.print(f"[bold]{backend}[/bold]: (b), (c) on {_shown(url)}")
            sent = 0
            server = Server(url, workdir / "server.log", env)
            rss: RssSampler | None = None
            try:
                server.wait_healthy()
                rss = RssSampler(server.pid)
                console.print(f"  server pid {server.pid} on {server.base_url}")

                # (b) batches of the same shape through HTTP, from 8 clients.
                console.print(f"  (b) HTTP {CLIENTS}x{BATCH}: {len(work.http_bodies)} requests ...")
                b = _measure(
                    f"(b) HTTP {CLIENTS}x{BATCH:,}",
                    len(work.http_bodies),
                    args.seconds,
                    lambda: http_sender(
                        server.base_url, "/api/events", work.http_bodies, 202, work.http_counts
                    ),
                    server,
                    rss,
                    lambda done: sum(work.http_counts[i] for i in done),
                )
                out.phases.append(b)
                sent += b.stored
                verify_stored(url, sent, "(b)")

                # (c) one OpenLineage event per POST, as the OpenLineage client sends them.
                console.print(f"  (c) OpenLineage single: {len(work.ol_bodies)} requests ...")
                c = _measure(
                    "(c) OpenLineage single",
                    len(work.ol_bodies),
                    args.seconds,
                    lambda: http_sender(
                        server.base_url, "/api/v1/lineage", work.ol_bodies, 201, work.ol_counts
                    ),
                    server,
                    rss,
                    len,
                )
                out.phases.append(c)
                sent += c.stored
                verify_stored(url, sent, "(c)")

                hwm = _proc_kib(server.pid, "VmHWM")
                out.server_hwm_mib = hwm / 1024 if hwm is not None else None
                out.server_peak_mib = rss.overall_kib / 1024
            except BaseException:
                console.print(f"[red]server log (tail):[/red]\n{server.log_tail()}")
                raise
            finally:
                if rss is not None:
                    rss.stop()
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# --- Report ------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]MISS[/red]"


def _fmt(value: float, spec: str = ",.0f") -> str:
    return "-" if math.isnan(value) else format(value, spec)


def report(console: Console, res: BackendResult) -> None:
    """One table per backend, then the ratio (b)/(a)."""
    a, b, c = res.phases
    pg = res.backend == "postgresql"
    table = Table(
        title=f"coplane ingest, {res.backend} (pool {res.pool_size}, writer threads {res.writers})",
        title_justify="left",
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("phase", "left"), ("events", "right"), ("events/s", "right"), ("p50 ms", "right"),
        ("p99 ms", "right"), ("server peak RSS MiB", "right"),
        ("CPU cores: server / postgres / bench / machine", "right"),
        ("target", "left"), ("result", "left"),
    )  # fmt: skip
    for name, justify in columns:
        table.add_column(name, justify=justify)

    def cpu(p: PhaseResult) -> str:
        k = p.cpu
        server = "-" if p.rss_mib is None else f"{k['server']:.2f}"
        return f"{server} / {k['postgres']:.2f} / {k['bench']:.2f} / {k['machine']:.2f} of {CPUS}"

    def capped(p: PhaseResult) -> str:
        return " [yellow](capped)[/yellow]" if p.capped else ""

    http_target = PG_HTTP_TARGET if pg else SQLITE_HTTP_TARGET
    ol_ok = c.rate >= OL_TARGET and c.p(99) < OL_P99_TARGET_MS
    table.add_row(
        a.label, f"{a.units:,}{capped(a)}", _fmt(a.rate), _fmt(a.p(50), ".1f"),
        _fmt(a.p(99), ".1f"), "- (in-process)", cpu(a), "-", "",
    )  # fmt: skip
    table.add_row(
        b.label, f"{b.units:,}{capped(b)}", _fmt(b.rate), _fmt(b.p(50), ".1f"),
        _fmt(b.p(99), ".1f"), _fmt(b.rss_mib or math.nan, ".0f"), cpu(b),
        f">= {http_target:,}/s", _verdict(b.rate >= http_target),
    )  # fmt: skip
    table.add_row(
        c.label, f"{c.units:,} OL -> {c.stored:,} stored{capped(c)}", _fmt(c.rate),
        _fmt(c.p(50), ".1f"), _fmt(c.p(99), ".1f"), _fmt(c.rss_mib or math.nan, ".0f"), cpu(c),
        f">= {OL_TARGET:,}/s, p99 < {OL_P99_TARGET_MS:.0f} ms", _verdict(ol_ok),
    )  # fmt: skip
    console.print(table)
    ratio = b.rate / a.rate if a.rate else math.nan
    line = f"(b)/(a) = {b.rate:,.0f} / {a.rate:,.0f} = {ratio:.0%}"
    if pg:
        line += f"   target >= {PG_RATIO_TARGET:.0%}: {_verdict(ratio >= PG_RATIO_TARGET)}"
    console.print(line)
    console.print(
        f"server memory: peak VmRSS sampled every 100 ms {_fmt(res.server_peak_mib or math.nan)}"
        f" MiB, VmHWM at the end {_fmt(res.server_hwm_mib or math.nan)} MiB"
    )
    # What the clients cost: at a high enough rate they, not the server, fill the cores.
    client = [
        f"{p.label[:3]} {p.cpu['bench'] * p.seconds / p.requests * 1e6:,.0f} us"
        for p in (b, c)
        if p.requests
    ]
    console.print(
        f"client CPU per request (http.client, in this process): {', '.join(client)};"
        f" (a) latency is per 1,000-event batch from submit to commit"
    )
    console.print(
        f"stored and verified: {sum(p.stored for p in res.phases):,} events"
        " (SELECT count(*) FROM events after each phase equals what was acknowledged)\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument(
        "--events", type=int, default=200_000, help="events for each of (a) and (b) [200000]"
    )
    ap.add_argument(
        "--ol-events", type=int, default=20_000, help="OpenLineage events for (c) [20000]"
    )
    ap.add_argument("--pg-server", default="postgresql://127.0.0.1:5432/postgres",
                    help="PostgreSQL to create the scratch database on")  # fmt: skip
    ap.add_argument("--seconds", type=float, default=60.0, help="time cap per phase [60]")
    ap.add_argument("--days", type=float, default=3.0, help="events span the last N days [3]")
    ap.add_argument("--pool-size", type=int, default=None, help="COPLANE_DATABASE_POOL_SIZE")
    ap.add_argument("--writers", type=int, default=None, help="COPLANE_DATABASE_WRITERS")
    ap.add_argument("--seed", type=int, default=1, help="seed of the workload's shape [1]")
    args = ap.parse_args(argv)
    if args.events < BATCH or args.ol_events < 1 or args.seconds <= 0:
        ap.error(f"--events must be >= {BATCH}, --ol-events >= 1, --seconds > 0")
    return args


def build_workload(args: argparse.Namespace, console: Console) -> Workload:
    """Generate and encode every body (and what each should store) before any timing."""
    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    native = build_native(2 * args.events, args.days, rng)
    # The older half goes to the store directly, the newer half through HTTP.
    store_bodies = batches_of(native[: args.events])
    http_events = native[args.events :]
    http_bodies = batches_of(http_events)
    http_counts = [len(http_events[i : i + BATCH]) for i in range(0, len(http_events), BATCH)]
    del native, http_events
    ol_bodies = build_openlineage(args.ol_events, rng)
    ol_counts = [len(translate_openlineage(msgspec.json.decode(b))) for b in ol_bodies]
    mib = (sum(map(len, store_bodies)) + sum(map(len, http_bodies))) / 2**20
    console.print(
        f"workload: 2 x {args.events:,} native events in {len(store_bodies) + len(http_bodies)}"
        f" bodies ({mib:,.0f} MiB, {mib * 2**20 / (2 * args.events):,.0f} B/event),"
        f" {len(ol_bodies):,} OpenLineage events"
        f" ({sum(map(len, ol_bodies)) / len(ol_bodies):,.0f} B each, {sum(ol_counts):,} coplane"
        f" events); built in {time.perf_counter() - t0:.1f} s"
    )
    return Workload(store_bodies, http_bodies, http_counts, ol_bodies, ol_counts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    # Wide enough for the table when piped to a file.
    console = Console(width=None if sys.stdout.isatty() else 190, highlight=False)
    console.print(
        f"coplane {__version__} ingest benchmark: Python {platform.python_version()},"
        f" {CPUS} CPUs, {CLIENTS} clients x http.client in this process"
    )
    console.print(
        "note: the clients run on the same cores as the server and PostgreSQL; their CPU"
        " (the 'bench' column) competes with the server's."
    )
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    try:
        work = build_workload(args, console)
        results = []
        for backend in backends:
            res = run_backend(backend, work, args, console)
            results.append(res)
            report(console, res)
    except BenchError as exc:
        console.print(f"[bold red]benchmark failed:[/bold red] {exc}")
        return 1
    finally:
        console.print(f"total run time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
