"""Read latency with 1,000,000 stored events: runs of a pipeline and lineage depth 3, with plans."""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from coplane.events.model import Event, RelatedResource, Resource
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store, open_store

console = Console()
START = datetime(2026, 6, 1, tzinfo=UTC)


def make_batches(total: int, pipelines: int, batch: int) -> list[list[Event]]:
    """Runs of `pipelines` pipelines (start + complete, one output each), chained by assets.

    Pipeline i reads the asset pipeline i-1 writes, so lineage is a long chain with branches.
    """
    rng = random.Random(7)
    events: list[Event] = []
    run = 0
    while len(events) < total:
        p = run % pipelines
        started = START + timedelta(minutes=run)
        key = f"run-{run}"
        pipe = f"airflow.prod.pipeline_{p:05d}"
        related = [
            RelatedResource(id=key, role="run"),
            RelatedResource(id=f"wh.table_{p:05d}", role="output"),
            RelatedResource(id=f"wh.table_{max(p - 1, 0) // 2:05d}", role="input"),
        ]
        for name, at in (
            ("run.started", started),
            ("run.completed", started + timedelta(seconds=rng.randint(30, 3600))),
        ):
            events.append(
                Event(
                    id=uuid.uuid4(),
                    occurred=at,
                    event=name,
                    resource=Resource(id=pipe, kind="pipeline"),
                    related=related,
                )
            )
        run += 1
    events = events[:total]
    return [events[i : i + batch] for i in range(0, len(events), batch)]


def load(store: Store, batches: list[list[Event]]) -> float:
    """Write every batch through the store's writer; events/s."""
    t0 = time.perf_counter()
    in_flight = []
    for b in batches:
        in_flight.append(store.writer.submit(b))
        if len(in_flight) >= 8:
            in_flight.pop(0).result()
    for f in in_flight:
        f.result()
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def timed(client: TestClient, url: str, params: dict[str, Any], n: int) -> list[float]:
    """Latencies in ms of `n` GETs (the handler and the database, not the network)."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url, params=params)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def explain(url: str, sql: str, params: tuple[Any, ...]) -> str:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}", params)
        return "\n".join(r[0] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-server", default="postgresql://127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pipelines", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    name = f"coplane_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.pg_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = args.pg_server.rsplit("/", 1)[0] + f"/{name}"
    try:
        store = open_store(url, pool_size=8)
        batches = make_batches(args.events, args.pipelines, 5_000)
        rate = load(store, batches)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM runs), "
                "(SELECT count(*) FROM lineage_edges)"
            ).fetchone()
        assert counts is not None
        console.print(
            f"loaded {counts[0]:,} events ({rate:,.0f}/s), {counts[1]:,} runs, "
            f"{counts[2]:,} lineage edges"
        )
        rng = random.Random(1)
        app = create_app(Settings(database_url=url), store=store)
        table = Table(title=f"PostgreSQL, {counts[0]:,} events: {args.requests} requests each")
        for col in ("request", "p50 ms", "p99 ms", "max ms", "target", "result"):
            table.add_column(col)
        with TestClient(app) as client:

            def pick(prefix: str) -> str:
                return f"{prefix}{rng.randrange(args.pipelines):05d}"

            cases: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
                "GET /api/runs?pipeline=…": (
                    "/api/runs",
                    lambda: {"pipeline": pick("airflow.prod.pipeline_")},
                ),
                "GET /api/lineage depth 3": (
                    "/api/lineage",
                    lambda: {"node": pick("wh.table_"), "depth": 3},
                ),
            }
            for label, (path, params) in cases.items():
                timed(client, path, params(), 10)  # warm the pool and the plan cache
                lat = [timed(client, path, params(), 1)[0] for _ in range(args.requests)]
                p99 = pct(lat, 99)
                table.add_row(
                    label,
                    f"{pct(lat, 50):.1f}",
                    f"{p99:.1f}",
                    f"{max(lat):.1f}",
                    "p99 < 50 ms",
                    "PASS" if p99 < 50 else "MISS",
                )
        console.print(table)
        pipe = "airflow.prod.pipeline_00042"
        console.print("[bold]plan: runs of a pipeline[/bold]")
        console.print(
            explain(
                url,
                "SELECT * FROM runs WHERE pipeline = %s ORDER BY sort_at DESC, id DESC LIMIT 101",
                (pipe,),
            )
        )
        console.print("[bold]plan: one lineage hop (upstream)[/bold]")
        console.print(
            explain(url, "SELECT source, target FROM lineage_edges WHERE target IN (%s)", (pipe,))
        )
        console.print("[bold]plan: latest run per node (node status)[/bold]")
        console.print(
            explain(
                url,
                "SELECT r.* FROM unnest(%s::text[]) AS p(id) CROSS JOIN LATERAL "
                "(SELECT * FROM runs WHERE pipeline = p.id "
                "ORDER BY sort_at DESC, id DESC LIMIT 1) r",
                ([pipe, "airflow.prod.pipeline_00043"],),
            )
        )
        store.close()
    finally:
        with psycopg.connect(args.pg_server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
