"""SLA engine at scale: evaluation passes over 100,000 SLAs and 1,000,000 events, and latency
from a deadline to its incident row and from the incident to the Slack request.

Per backend (SQLite, PostgreSQL), in one process:
1. load the events through the store's writer and declare the SLAs (5 per pipeline);
2. baseline: the per-SLA path (one `read_facts` and one rule per SLA, as the engine did
   before bulk reading) timed on a sample and scaled to all SLAs;
3. the engine's passes: a cold full pass (parsing every SLA), warm full passes, and the
   incremental pass that follows ingesting a batch of events;
4. latency: 200 SLAs falling due at staggered instants, with the engine, scheduler and
   dispatcher running and Slack a local server; the incident row is watched for, and the
   Slack request's arrival is recorded by that server.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import TypeAdapter
from rich.console import Console
from rich.table import Table

from bench.ingest import scratch_database
from coplane.alerts.dispatcher import Dispatcher
from coplane.events.model import Event, RelatedResource, Resource
from coplane.integrations.slack.config import SlackChannel
from coplane.jobs.scheduler import Scheduler
from coplane.rules import evaluate
from coplane.rules.model import SLA
from coplane.settings import Settings
from coplane.slas.engine import SlaEngine
from coplane.store import Store, open_store
from coplane.store.incidents import list_incidents
from coplane.store.sla_facts import read_facts
from coplane.store.slas import list_slas, upsert_slas
from tests.fake_http import FakeService, Reply, Request

console = Console()
ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)
SLAS_PER_PIPELINE = 5
PASS_TARGET_S = 1.0
LATENCY_TARGET_S = 1.0


@dataclass
class Result:
    backend: str
    events: int = 0
    slas: int = 0
    load_s: float = 0.0
    baseline_s: float = 0.0
    cold_s: float = 0.0
    cold_opened: int = 0
    warm_s: list[float] = field(default_factory=list)
    incremental_s: float = 0.0
    incremental_evaluated: int = 0
    deadline_to_incident: list[float] = field(default_factory=list)
    incident_to_slack: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0


def make_events(pipelines: int, total: int, now: datetime) -> Iterator[list[Event]]:
    """Runs of each pipeline over the last 30 days: started, completed, its table updated."""
    rng = random.Random(11)
    runs = max(1, total // pipelines // 3)
    batch: list[Event] = []
    for p in range(pipelines):
        pipe, table = f"airflow.prod.p{p:06d}", f"wh.t{p:06d}"
        for r in range(runs):
            start = (
                now - timedelta(days=30) + timedelta(days=30 * r / runs, minutes=rng.randint(0, 90))
            )
            end = start + timedelta(seconds=rng.randint(60, 3600))
            related = [RelatedResource(id=f"r{r}", role="run"),
                       RelatedResource(id=table, role="output")]  # fmt: skip
            pipeline = Resource(id=pipe, kind="pipeline")
            batch += [
                Event(id=uuid.uuid4(), occurred=start, event="run.started", resource=pipeline,
                      related=related),
                Event(id=uuid.uuid4(), occurred=end, event="run.completed", resource=pipeline,
                      related=related),
                Event(id=uuid.uuid4(), occurred=end, event="asset.updated",
                      resource=Resource(id=table, kind="asset"),
                      related=[RelatedResource(id=pipe, role="producer")]),
            ]  # fmt: skip
            if len(batch) >= 5000:
                yield batch
                batch = []
    if batch:
        yield batch


def make_slas(pipelines: int) -> list[SLA]:
    """Five SLAs per pipeline, on 24 different daily deadlines in three time zones."""
    out: list[SLA] = []
    zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo"]
    for p in range(pipelines):
        pipe, table = f"airflow.prod.p{p:06d}", f"wh.t{p:06d}"
        hour, tz = p % 24, zones[p % 3]
        out += [ADAPTER.validate_python(d) for d in (
            {"name": f"fresh_{p}", "kind": "freshness", "target": table, "max_age": "2d"},
            {"name": f"by9_{p}", "kind": "freshness", "target": table,
             "deadline": f"0 {hour} * * *", "timezone": tz},
            {"name": f"done_{p}", "kind": "completion", "target": pipe,
             "deadline": f"30 {hour} * * *", "timezone": tz},
            {"name": f"dur_{p}", "kind": "duration", "target": pipe, "factor": 2, "history": 20},
            {"name": f"qual_{p}", "kind": "quality", "target": table},
        )]  # fmt: skip
    return out


def load(store: Store, pipelines: int, events: int, now: datetime) -> tuple[int, float]:
    t0 = time.perf_counter()
    count = 0
    in_flight = []
    for batch in make_events(pipelines, events, now):
        in_flight.append(store.writer.submit(batch))
        count += len(batch)
        if len(in_flight) >= 4:
            in_flight.pop(0).result()
    for f in in_flight:
        f.result()
    return count, time.perf_counter() - t0


def baseline(store: Store, now: datetime, sample: int) -> float:
    """Seconds the per-SLA path (a read and a rule per SLA) takes for all SLAs, from a sample."""
    with store.connect() as conn:
        stored = list_slas(conn)
        chosen = random.Random(3).sample(stored, min(sample, len(stored)))
        t0 = time.perf_counter()
        for entry in chosen:
            evaluate(entry.sla, read_facts(conn, entry.sla, now, entry.created), now)
        took = time.perf_counter() - t0
    return took * len(stored) / len(chosen)


def passes(store: Store, result: Result, pipelines: int, now: datetime) -> None:
    engine = SlaEngine(store, None, None)
    try:
        t0 = time.perf_counter()
        result.cold_opened = engine.evaluate_all(now).opened
        result.cold_s = time.perf_counter() - t0
        for _ in range(3):
            t0 = time.perf_counter()
            engine.evaluate_all(now)
            result.warm_s.append(time.perf_counter() - t0)
        # a batch of 999 events on 333 pipelines arrives; the writer reports what it touched
        rng = random.Random(5)
        touched: set[str] = set()
        batch: list[Event] = []
        for p in rng.sample(range(pipelines), 333):
            batch += next(make_events(1, 3, now))  # one run: 3 events
            for e in batch[-3:]:
                e.resource = Resource(id=e.resource.id.replace("p000000", f"p{p:06d}"),
                                      kind=e.resource.kind)  # fmt: skip
                touched.add(e.resource.id)
        store.writer.submit(batch).result()
        engine.request_evaluation(touched)
        t0 = time.perf_counter()
        r = engine.evaluate_changed(now + timedelta(seconds=1))
        result.incremental_s = time.perf_counter() - t0
        result.incremental_evaluated = r.evaluated
    finally:
        engine.stop()


class SlackRecorder:
    """Slack's chat.postMessage, recording when each incident's message arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    def __call__(self, request: Request) -> Reply:
        at = time.time()
        body = request.json()
        text = str(body.get("text", ""))
        marker = "/incidents/"
        if marker in text:
            incident = text.split(marker, 1)[1].split()[0].strip(">)")
            self.arrived.setdefault(incident, at)
        return Reply(200, {"ok": True, "channel": "C1", "ts": f"{at:.6f}"})


def latency(store: Store, result: Result, url: str, now: datetime, count: int = 200) -> None:
    """Deadline → incident row and incident → Slack request, with everything running."""
    slack = SlackRecorder()
    # the fake Slack listens on loopback, which channels may reach only when allowed
    os.environ.setdefault("COPLANE_OUTBOUND_ALLOW", "127.0.0.0/8")
    with FakeService(slack) as fake:
        settings = Settings(database_url=url, events_retention_days=0)
        scheduler = Scheduler(store, settings)
        scheduler.start()
        dispatcher = Dispatcher(store, {}, "http://127.0.0.1:4200")
        channel = SlackChannel(type="slack", token="xoxb-bench", channel="#bench",
                               base_url=f"{fake.url}/api/")  # fmt: skip
        dispatcher.set_channels({"slack": channel})
        engine = SlaEngine(store, scheduler, None, dispatcher=dispatcher)
        engine.channels = {"slack": channel}
        store.writer.add_listener(engine.request_evaluation)
        dispatcher.start()
        engine.start()
        # The engine wakes the dispatcher right after a pass commits its incidents: that
        # instant is when the incident rows exist.
        commits: list[float] = []
        wake = dispatcher.wake

        def recorded_wake() -> None:
            commits.append(time.time())
            wake()

        dispatcher.wake = recorded_wake  # type: ignore[method-assign]
        try:
            start = datetime.now(UTC)
            slas = [
                ADAPTER.validate_python(
                    {
                        "name": f"lat_{i}",
                        "kind": "completion",
                        "target": f"cron.lat_{i}",
                        "within": "5s",
                        "notify": ["slack"],
                    }
                )
                for i in range(count)
            ]
            with store.connect() as conn:
                upsert_slas(conn, slas, "api", start - timedelta(minutes=1))
            engine.request_evaluation(())
            dues: dict[str, float] = {}
            # runs start over 10 s; each is due 5 s after its start
            for i in range(count):
                at = datetime.now(UTC)
                event = Event(id=uuid.uuid4(), occurred=at, event="run.started",
                              resource=Resource(id=f"cron.lat_{i}", kind="pipeline"),
                              related=[RelatedResource(id="r1", role="run")])  # fmt: skip
                store.writer.submit([event]).result()
                dues[f"lat_{i}"] = (at + timedelta(seconds=5)).timestamp()
                time.sleep(10 / count)
            deadline = time.time() + 30
            while time.time() < deadline and len(slack.arrived) < count:
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            scheduler.shutdown()
            engine.stop()
            dispatcher.stop()
        with store.connect() as conn:
            incidents = [i for i in list_incidents(conn, "open", 1000) if i["sla"] in dues]
        for incident in incidents:
            opened = datetime.fromisoformat(incident["opened"]).timestamp()
            committed = min((c for c in commits if c >= opened), default=None)
            if committed is None:
                continue
            result.deadline_to_incident.append(committed - dues[incident["sla"]])
            if incident["id"] in slack.arrived:
                result.incident_to_slack.append(slack.arrived[incident["id"]] - committed)
        if len(incidents) < count:
            console.print(f"[red]only {len(incidents)} of {count} incidents opened[/red]")


def pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> Result:
    result = Result(backend)
    pipelines = args.slas // SLAS_PER_PIPELINE
    now = datetime.now(UTC).replace(microsecond=0)
    with scratch_database(backend, args.pg_server, workdir, "slas") as url:
        store = open_store(url, pool_size=8)
        try:
            result.events, result.load_s = load(store, pipelines, args.events, now)
            slas = make_slas(pipelines)
            with store.connect() as conn:
                for i in range(0, len(slas), 5000):
                    upsert_slas(conn, slas[i : i + 5000], "api", now - timedelta(days=40))
            result.slas = len(slas)
            console.print(f"{backend}: {result.events:,} events in {result.load_s:.0f} s, "
                          f"{result.slas:,} SLAs")  # fmt: skip
            result.baseline_s = baseline(store, now, args.sample)
            passes(store, result, pipelines, now)
            latency(store, result, url, now)
        finally:
            store.close()
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def report(results: list[Result]) -> None:
    table = Table(title="SLA engine (targets: full pass < 1 s; latencies p99 < 1 s)")
    table.add_column("measure")
    for r in results:
        table.add_column(f"{r.backend}\n{r.slas:,} SLAs, {r.events:,} events", justify="right")

    def row(name: str, values: list[str]) -> None:
        table.add_row(name, *values)

    row("per-SLA baseline pass (s, from a sample)", [f"{r.baseline_s:.2f}" for r in results])
    row("cold full pass (s), incidents it opens",
        [f"{r.cold_s:.2f}, {r.cold_opened:,}" for r in results])  # fmt: skip
    row("warm full pass, median of 3 (s)",
        [f"{statistics.median(r.warm_s):.2f}" for r in results])  # fmt: skip
    row("speed-up, warm vs baseline",
        [f"{r.baseline_s / statistics.median(r.warm_s):.1f}x" for r in results])  # fmt: skip
    row("pass after 999 events on 333 pipelines (s)",
        [f"{r.incremental_s:.3f} ({r.incremental_evaluated:,} SLAs)" for r in results])  # fmt: skip
    for name, attr in (("deadline → incident row", "deadline_to_incident"),
                       ("incident → Slack request", "incident_to_slack")):  # fmt: skip
        for q in (50, 99):
            row(f"{name} p{q} (ms)",
                [f"{pct(getattr(r, attr), q) * 1000:.0f} (n={len(getattr(r, attr))})"
                 for r in results])  # fmt: skip
    row("peak RSS of this process (MiB)", [f"{r.peak_rss_mib:.0f}" for r in results])
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--slas", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000, help="SLAs timed for the baseline")
    parser.add_argument("--pg-server", default="postgresql://127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="coplane-bench-") as tmp:
        results = [run_backend(b, args, Path(tmp)) for b in backends]
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
