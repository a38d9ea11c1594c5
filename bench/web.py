"""Web UI at scale: server time of the home, pipeline, graph, events and SLA pages with 5,000
pipelines and assets and 1,000,000 runs (targets: pages < 150 ms, a 2,000-node graph < 2 s).

Per backend (SQLite, PostgreSQL), in one process:
1. a baseline store (50 pipelines, 20,000 runs), then the large one (2,500 pipelines, 2,500
   assets, 1,000,000 runs), each in a scratch database;
2. the derived rows (resources, runs, assets, checks, lineage edges) are written with SQL in
   bulk, in one transaction: the ingest path would take an hour for a million runs. A few
   thousand `asset.updated` events go through the writer so the events page has rows, and
   ~50 freshness SLAs are declared through `POST /api/slas`;
3. every page is requested through FastAPI's TestClient (in-process: server time plus a small
   client overhead, no network), twice to warm up and then N times; the graph's layout
   (`layered_layout`) is also timed alone, to split layout from reading and rendering.

Lineage is a layered DAG per domain (raw -> staging -> core -> marts): each pipeline reads one
or two assets of the layer above and writes one asset. The first domain holds 40% of the
pipelines and its staging layer reads the domain's hub asset, so the hub's 6-hop neighbourhood
is about 2,000 nodes at full scale.
"""

from __future__ import annotations

import argparse
import importlib
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from starlette.requests import Request

from bench.ingest import scratch_database
from coplane.events.model import Event, RelatedResource, Resource
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store, open_store
from coplane.store.dialects import Conn, PgConn
from coplane.web.graph import graph_page, neighbourhood, read_graph
from coplane.web.health import health_page
from coplane.web.layout import layered_layout
from coplane.web.resources import pipeline_page

console = Console(width=150)
PAGE_TARGET_MS = 150.0
GRAPH_TARGET_MS = 2000.0
LAYERS = ("raw", "stg", "core", "mart")
# share of a domain's pipelines per layer: the big domain is wide at the bottom
BIG_SHARES = (0.01, 0.09, 0.30, 0.60)
DOMAIN_SHARES = (0.05, 0.20, 0.35, 0.40)
DOMAIN_SIZE = 100  # pipelines per domain outside the big one
BIG_SHARE = 0.4  # the big domain's share of all pipelines
SOURCES = ("airflow", "dbt", "dagster")
PERIODS_MIN = (15, 30, 60, 60, 120, 240)  # how often a pipeline runs
HOPS = 6
TILE_MARK = '<li class="tile '  # one per health tile drawn
EVENT_MARK = '<tr id="event-'  # one per row of the events page
SLA_MARK = '<tr id="sla-'  # one per row of the SLA page


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: str
    asset: str  # what it writes
    reads: tuple[str, ...]
    domain: int
    layer: str
    source: str


@dataclass(frozen=True, slots=True)
class Plan:
    pipelines: list[Pipeline]
    hub: str  # the big domain's hub asset: the graph's focus
    page_pipeline: str  # the pipeline whose page is timed


@dataclass
class Timing:
    page: str
    url: str
    ms: list[float]
    target_ms: float | None
    note: str = ""


@dataclass
class ScaleResult:
    label: str
    pipelines: int = 0
    runs: int = 0
    seed_s: float = 0.0
    timings: list[Timing] = field(default_factory=list)
    read_graph_ms: list[float] = field(default_factory=list)
    layout_ms: list[float] = field(default_factory=list)
    layout_nodes: int = 0


def layer_sizes(count: int, shares: Sequence[float]) -> list[int]:
    """`count` pipelines split over the layers by `shares`, at least one per layer."""
    sizes = [max(1, round(count * s)) for s in shares]
    sizes[-1] = max(1, count - sum(sizes[:-1]))
    return sizes


def make_plan(pipelines: int, seed: int = 5) -> Plan:
    """Pipelines in domains of layers, each reading 1-2 assets of the layer above (raw ones
    read from outside coplane's view) and writing one asset."""
    rng = random.Random(seed)
    big = max(4, round(pipelines * BIG_SHARE))
    domains = [big]
    rest = pipelines - big
    while rest > 0:
        domains.append(min(DOMAIN_SIZE, rest))
        rest -= domains[-1]
    out: list[Pipeline] = []
    for d, size in enumerate(domains):
        sizes = layer_sizes(size, BIG_SHARES if d == 0 else DOMAIN_SHARES)
        above: list[str] = []
        for layer, n in zip(LAYERS, sizes, strict=True):
            written = []
            for i in range(n):
                name = f"d{d:02d}.{layer}_{i:04d}"
                if not above:
                    reads: tuple[str, ...] = ()
                elif layer == "stg":  # staging reads the hub, and often a second raw table
                    extra = rng.choice(above)
                    reads = (
                        (above[0],)
                        if extra == above[0] or rng.random() < 0.5
                        else (above[0], extra)
                    )
                else:
                    reads = tuple(
                        sorted(set(rng.sample(above, min(len(above), rng.randint(1, 2)))))
                    )
                source = SOURCES[(d + i) % len(SOURCES)]
                out.append(Pipeline(f"{source}.prod.{name}", f"wh.{name}", reads, d, layer, source))
                written.append(f"wh.{name}")
            above = written
    hub = next(p.asset for p in out if p.domain == 0 and p.layer == "raw")
    core = [p.id for p in out if p.domain == 0 and p.layer == "core"]
    return Plan(out, hub, core[len(core) // 2])


# --- seeding --------------------------------------------------------------------------------

RUN_COLS = (
    "id",
    "pipeline",
    "run_key",
    "source",
    "state",
    "state_rank",
    "state_at",
    "error",
    "started",
    "ended",
    "first_seen",
)
RESOURCE_COLS = ("id", "kind", "name", "labels", "source", "parent", "first_seen", "last_seen")
ASSET_COLS = ("id", "updated", "producer", "run_id", "event_id")
CHECK_COLS = ("asset", "check_name", "passed", "at", "message", "event_id")
EDGE_COLS = ("source", "target", "first_seen", "last_seen")


@dataclass(slots=True)
class Latest:
    """A pipeline's newest completed run: what its asset's `updated` is."""

    run_id: uuid.UUID
    ended: datetime


def make_runs(
    conn: Conn, plan: Plan, per_pipeline: int, now: datetime, latest: dict[str, Latest]
) -> Iterator[tuple[Any, ...]]:
    """`per_pipeline` runs of every pipeline, newest first: mostly completed, ~2% failed, and
    the newest run of a few still running. Fills `latest` as it goes."""
    rng = random.Random(9)
    t, u = conn.time, conn.uid
    for p in plan.pipelines:
        period = timedelta(minutes=rng.choice(PERIODS_MIN))
        usual = rng.randint(60, 1800)
        first = now - timedelta(seconds=rng.randint(60, int(period.total_seconds())))
        newest_fails = rng.random() < 0.04
        for r in range(per_pipeline):
            started = first - period * r + timedelta(seconds=rng.randint(0, 60))
            ended: datetime | None = started + timedelta(seconds=usual * rng.uniform(0.7, 1.4))
            rid = uuid.uuid4()
            if r == 0 and rng.random() < 0.02:
                state, rank, ended, error = "running", 1, None, None
            elif (r == 0 and newest_fails) or rng.random() < 0.02:
                state, rank, error = "failed", 2, "Task exited with return code 1"
            else:
                state, rank, error = "completed", 2, None
            if state == "completed" and p.id not in latest and ended is not None:
                latest[p.id] = Latest(rid, ended)
            state_at = ended or started
            yield (
                u(rid),
                p.id,
                f"scheduled__{started:%Y-%m-%dT%H:%M:%S}",
                p.source,
                state,
                rank,
                t(state_at),
                error,
                t(started),
                t(ended),
                t(started),
            )


def write_rows(
    conn: Conn, table: str, cols: Sequence[str], rows: Iterator[tuple[Any, ...]] | list[Any]
) -> None:
    """COPY on PostgreSQL, executemany in chunks on SQLite (inside the caller's transaction)."""
    if isinstance(conn, PgConn):
        conn.copy_rows(table, cols, rows)
        return
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= 50_000:
            conn.executemany(sql, chunk)
            chunk = []
    if chunk:
        conn.executemany(sql, chunk)


def seed(store: Store, url: str, plan: Plan, per_pipeline: int, now: datetime) -> None:
    """Write the derived rows of `plan` in one transaction, then refresh the planner's stats."""
    rng = random.Random(13)
    since = now - timedelta(days=120)
    latest: dict[str, Latest] = {}
    with store.connect() as conn, conn.transaction():
        t, u, j = conn.time, conn.uid, conn.json
        write_rows(conn, "runs", RUN_COLS, make_runs(conn, plan, per_pipeline, now, latest))
        resources: list[tuple[Any, ...]] = []
        assets: list[tuple[Any, ...]] = []
        checks: list[tuple[Any, ...]] = []
        edges: list[tuple[Any, ...]] = []
        for p in plan.pipelines:
            labels = {"owner": f"team-{p.domain % 8}", "layer": p.layer, "domain": f"d{p.domain}"}
            done = latest.get(p.id)
            seen = t(done.ended if done else now)
            resources.append(
                (
                    p.id,
                    "pipeline",
                    p.id.rsplit(".", 1)[-1],
                    j(labels),
                    p.source,
                    None,
                    t(since),
                    seen,
                )
            )
            resources.append(
                (
                    p.asset,
                    "asset",
                    p.asset.rsplit(".", 1)[-1],
                    j(labels),
                    p.source,
                    None,
                    t(since),
                    seen,
                )
            )
            if done is not None:
                assets.append((p.asset, t(done.ended), p.id, u(done.run_id), u(uuid.uuid4())))
                for name in ("not_null", "row_count")[: rng.randint(1, 2)]:
                    passed = rng.random() > 0.04
                    checks.append(
                        (
                            p.asset,
                            name,
                            passed,
                            t(done.ended),
                            None if passed else f"{name} failed: 17 rows",
                            u(uuid.uuid4()),
                        )
                    )
            edges.append((p.id, p.asset, t(since), seen))
            edges += [(a, p.id, t(since), seen) for a in p.reads]
        write_rows(conn, "resources", RESOURCE_COLS, resources)
        write_rows(conn, "assets", ASSET_COLS, assets)
        write_rows(conn, "checks", CHECK_COLS, checks)
        write_rows(conn, "lineage_edges", EDGE_COLS, edges)
    if store.db.dialect == "sqlite":
        with store.connect() as conn:
            conn.execute("ANALYZE")
    else:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("VACUUM ANALYZE")


def ingest_updates(store: Store, plan: Plan, now: datetime) -> int:
    """Two `asset.updated` events per asset through the writer, so the events page has rows."""
    rng = random.Random(17)
    events = []
    for p in plan.pipelines:
        for ago in (rng.randint(120, 600), rng.randint(1, 90)):
            events.append(
                Event(
                    id=uuid.uuid4(),
                    occurred=now - timedelta(minutes=ago),
                    event="asset.updated",
                    resource=Resource(id=p.asset, kind="asset"),
                    related=[RelatedResource(id=p.id, role="producer")],
                )
            )
    for i in range(0, len(events), 2_000):
        store.writer.submit(events[i : i + 2_000]).result()
    return len(events)


def declare_slas(client: TestClient, plan: Plan, count: int) -> None:
    """Freshness SLAs on `count` assets spread over every domain, the hub first."""
    assets = [plan.hub] + [p.asset for p in plan.pipelines if p.asset != plan.hub]
    step = max(1, len(assets) // count)
    for i, asset in enumerate(assets[::step][:count]):
        body = {"name": f"fresh_{i:05d}", "kind": "freshness", "target": asset, "max_age": "1h"}
        r = client.post("/api/slas", json=body)
        assert r.status_code == 201, r.text


# --- timing ---------------------------------------------------------------------------------


def timed(client: TestClient, url: str, n: int, warm: int = 2) -> tuple[list[float], str]:
    """Milliseconds of `n` GETs after `warm` unmeasured ones, and the last body."""
    body, out = "", []
    for i in range(warm + n):
        t0 = time.perf_counter()
        r = client.get(url)
        took = (time.perf_counter() - t0) * 1000
        assert r.status_code == 200, f"{url}: {r.status_code} {r.text[:300]}"
        body = r.text
        if i >= warm:
            out.append(took)
    return out, body


def time_layout(store: Store, plan: Plan, n: int) -> tuple[list[float], list[float], int]:
    """The focused graph's reading (`read_graph`) and `layered_layout` alone, in ms."""

    reads, layouts = [], []
    shown: set[str] = set()
    edges: list[tuple[str, str]] = []
    for _ in range(n):
        with store.connect() as conn:
            t0 = time.perf_counter()
            graph = read_graph(conn, True)
            reads.append((time.perf_counter() - t0) * 1000)
        shown = neighbourhood(graph.edges, plan.hub, HOPS, "both")
        edges = sorted((s, t) for s, t in graph.edges if s in shown and t in shown)
        t0 = time.perf_counter()
        layered_layout(sorted(shown), edges)
        layouts.append((time.perf_counter() - t0) * 1000)
    return reads, layouts, len(shown)


def profile_page(app: FastAPI, url: str) -> str:
    """One request's call tree (pyinstrument), with the endpoint called in this thread: the
    TestClient runs sync endpoints in a worker thread, which the profiler would not see."""

    profiler_module: Any = importlib.import_module("pyinstrument")
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [],
        "app": app,
        "root_path": "",
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
    }
    request = Request(scope)
    args = dict(request.query_params)
    profiler = profiler_module.Profiler(interval=0.0005)
    profiler.start()
    if path == "/":
        health_page(request)
    elif path.startswith("/pipelines/"):
        pipeline_page(request, unquote(path.removeprefix("/pipelines/")))
    else:
        focus, hops = args.get("focus", ""), int(args.get("hops", 2))
        graph_page(request, focus=focus, hops=hops, all=args.get("all", ""))
    profiler.stop()
    text: str = profiler.output_text(unicode=True, color=False, show_all=False)
    return text


# --- one store ------------------------------------------------------------------------------


def run_scale(
    backend: str, label: str, pipelines: int, runs: int, args: argparse.Namespace, workdir: Path
) -> ScaleResult:

    result = ScaleResult(label, pipelines)
    plan = make_plan(pipelines)
    per_pipeline = max(1, runs // len(plan.pipelines))
    now = datetime.now(UTC).replace(microsecond=0)
    with scratch_database(backend, args.pg_server, workdir, f"web-{label}") as url:
        store = open_store(url, pool_size=8)
        try:
            t0 = time.perf_counter()
            seed(store, url, plan, per_pipeline, now)
            result.seed_s = time.perf_counter() - t0
            events = ingest_updates(store, plan, now)
            with store.connect() as conn:
                row = conn.one("SELECT count(*) AS n FROM runs")
                result.runs = int(row["n"]) if row else 0
            console.print(
                f"{backend} {label}: {len(plan.pipelines):,} pipelines + assets, "
                f"{result.runs:,} runs seeded in {result.seed_s:.1f} s; "
                f"{events:,} events ingested"
            )
            app = create_app(Settings(database_url=url), store=store)
            with TestClient(app) as client:
                declare_slas(client, plan, min(50, len(plan.pipelines)))
                time.sleep(1.0)  # let the engine's first pass (incidents) finish
                n, g = args.requests, args.graph_requests
                focus = urlencode({"focus": plan.hub, "hops": HOPS})
                pages: list[tuple[str, str, int, float | None]] = [
                    ("home  GET /", "/", n, PAGE_TARGET_MS),
                    (
                        "pipeline (400 runs)"
                        if per_pipeline == 400
                        else f"pipeline ({per_pipeline} runs)",
                        f"/pipelines/{quote(plan.page_pipeline, safe=':@/')}",
                        n,
                        PAGE_TARGET_MS,
                    ),
                    ("events", "/events", n, None),
                    ("slas", "/slas", n, None),
                    ("graph, focus hops=6", f"/graph?{focus}", g, GRAPH_TARGET_MS),
                    ("graph, all=1 (extra)", "/graph?all=1", max(1, g - 2), None),
                ]
                for page, path, count, target in pages:
                    ms, body = timed(client, path, count)
                    timing = Timing(page, path, ms, target)
                    if path.startswith("/graph"):
                        timing.note = f"{body.count('data-node=')} nodes"
                    elif path == "/":
                        timing.note = f"{body.count(TILE_MARK)} tiles"
                    elif path == "/events":
                        timing.note = f"{body.count(EVENT_MARK)} events"
                    elif path == "/slas":
                        timing.note = f"{body.count(SLA_MARK)} SLAs"
                    result.timings.append(timing)
                    console.print(
                        f"  {page}: p50 {statistics.median(timing.ms):.0f} ms {timing.note}"
                    )
                result.read_graph_ms, result.layout_ms, result.layout_nodes = time_layout(
                    store, plan, g
                )
                if args.profile:
                    for t in result.timings:
                        if t.target_ms is not None:
                            console.rule(f"profile: {backend} {label} {t.page}")
                            console.print(profile_page(app, t.url), markup=False, highlight=False)
        finally:
            store.close()
    return result


# --- report ---------------------------------------------------------------------------------


def pct(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(backend: str, results: list[ScaleResult], peak_rss: float) -> None:
    for r in results:
        table = Table(
            title=f"{backend}, {r.label}: {r.pipelines:,} pipelines + {r.pipelines:,} assets, "
            f"{r.runs:,} runs (seeded in {r.seed_s:.1f} s); ms per request, TestClient "
            "in-process (server time + small client overhead)"
        )
        for col in ("page", "n", "p50", "p95", "max", "target", "result", "note"):
            table.add_column(col, justify="left" if col in ("page", "note") else "right")
        for t in r.timings:
            p95 = pct(t.ms, 95)
            verdict = "" if t.target_ms is None else ("met" if p95 < t.target_ms else "MISSED")
            target = "" if t.target_ms is None else f"< {t.target_ms:.0f}"
            table.add_row(
                t.page,
                str(len(t.ms)),
                f"{pct(t.ms, 50):.0f}",
                f"{p95:.0f}",
                f"{max(t.ms):.0f}",
                target,
                verdict,
                t.note,
            )
        for name, ms in (
            (f"  layered_layout alone ({r.layout_nodes:,} nodes)", r.layout_ms),
            ("  read_graph alone (all nodes + health)", r.read_graph_ms),
        ):
            table.add_row(
                name, str(len(ms)), f"{pct(ms, 50):.0f}", f"{pct(ms, 95):.0f}", f"{max(ms):.0f}"
            )
        console.print(table)
    console.print(f"peak RSS of this process after {backend}: {peak_rss:.0f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pipelines", type=int, default=2_500, help="and as many assets")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="250 pipelines, 50,000 runs")
    parser.add_argument("--requests", type=int, default=20, help="per page, after 2 warm-ups")
    parser.add_argument("--graph-requests", type=int, default=5)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print a pyinstrument profile of each page with a target",
    )
    parser.add_argument("--pg-server", default="postgresql://127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    if args.quick:
        args.pipelines, args.runs = 250, 50_000
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    scales = [("baseline", 50, 20_000), ("scale", args.pipelines, args.runs)]
    with tempfile.TemporaryDirectory(prefix="coplane-bench-") as tmp:
        for backend in backends:
            results = [run_scale(backend, label, p, r, args, Path(tmp)) for label, p, r in scales]
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            report(backend, results, rss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
