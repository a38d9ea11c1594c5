"""The graph page in a real browser: a 2,000-node focus view, from request to a usable graph.

bench/web.py times the server's side of the same view; this adds what a reader waits for in
Chromium (Debian's, headless): the HTML's download, parsing and painting of the SVG, and
graph.js fitting it. A `coplane server` over a scratch SQLite file gets a layered warehouse
lineage through the API (1 hub table, N pipelines each writing one table, about 2N + 1
nodes, all within 6 hops of the hub); the page is loaded --loads times after one warm-up.

Figures per load, from the page's Performance API: responseEnd (the HTML is in),
domContentLoaded, load, and the `coplane-graph-ready` mark graph.js sets once the graph is
fitted and zoomable; then one zoom keypress until the next frame.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright
from rich.console import Console
from rich.table import Table

from bench.ingest import Server

console = Console()
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
HUB = "wh.raw.hub"


def lineage_events(pipelines: int, seed: int = 7) -> list[dict[str, Any]]:
    """One completed run per pipeline: stg reads the hub, core reads stg, mart reads core."""
    rng = random.Random(seed)
    sizes = {"stg": pipelines * 3 // 10, "core": pipelines * 4 // 10}
    sizes["mart"] = pipelines - sizes["stg"] - sizes["core"]
    above, events = [HUB], []
    at = datetime.now(UTC) - timedelta(hours=1)
    for layer, count in sizes.items():
        written = []
        for i in range(count):
            name = f"{layer}_{i:04d}"
            reads = sorted(set(rng.sample(above, min(len(above), rng.randint(1, 2)))))
            related = [{"role": "run", "id": f"run-{name}"}]
            related += [{"role": "input", "id": r, "kind": "asset"} for r in reads]
            related += [{"role": "output", "id": f"wh.{name}", "kind": "asset"}]
            for event, minutes in (("run.started", 0), ("run.completed", 5)):
                events.append({
                    "id": str(uuid.uuid4()), "event": event,
                    "occurred": (at + timedelta(minutes=minutes)).isoformat(),
                    "resource": {"id": f"etl.{name}", "kind": "pipeline"}, "related": related,
                })  # fmt: skip
            written.append(f"wh.{name}")
        above = written
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=1_000, help="about 2N + 1 nodes")
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = Server(
            f"sqlite:///{Path(folder) / 'coplane.sqlite'}", Path(folder) / "server.log", {}
        )
        try:
            server.wait_healthy()
            events = lineage_events(args.pipelines)
            for i in range(0, len(events), 5_000):
                answer = httpx.post(
                    f"{server.base_url}/api/events", json=events[i : i + 5_000], timeout=120
                )
                answer.raise_for_status()
            url = f"{server.base_url}/graph?focus={HUB}&hops=6"
            rows = measure(url, args.loads)
        finally:
            server.proc.terminate()
            server.proc.wait(timeout=30)
    show(rows)


def measure(url: str, loads: int) -> list[dict[str, float]]:
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        for attempt in range(loads + 1):
            page.goto(url, wait_until="load")
            page.wait_for_function("performance.getEntriesByName('coplane-graph-ready').length")
            figures = page.evaluate(
                """() => {
                  const nav = performance.getEntriesByType("navigation")[0];
                  const ready = performance.getEntriesByName("coplane-graph-ready")[0];
                  return {nodes: document.querySelectorAll("svg.graph g.node").length,
                          response: nav.responseEnd, dom: nav.domContentLoadedEventEnd,
                          load: nav.loadEventEnd, ready: ready.startTime};
                }"""
            )
            page.locator(".graph-scroll").focus()
            figures["zoom"] = page.evaluate(
                """() => new Promise(done => {
                  const t = performance.now();
                  document.querySelector(".graph-scroll").dispatchEvent(
                    new KeyboardEvent("keydown", {key: "+", bubbles: true}));
                  requestAnimationFrame(() => requestAnimationFrame(
                    () => done(performance.now() - t)));
                })"""
            )
            if attempt:  # the first load warms the server and the browser up
                rows.append(figures)
        browser.close()
    return rows


def show(rows: list[dict[str, float]]) -> None:
    table = Table(title=f"graph focus view, {int(rows[0]['nodes'])} nodes, 1,400 x 900")
    table.add_column("ms, from navigation start")
    table.add_column("p50", justify="right")
    table.add_column("max", justify="right")
    names = {
        "response": "HTML received",
        "dom": "DOMContentLoaded",
        "load": "load",
        "ready": "graph fitted and zoomable",
        "zoom": "one zoom step, to the next frame (from the key)",
    }
    for key, label in names.items():
        values = [r[key] for r in rows]
        table.add_row(label, f"{statistics.median(values):.0f}", f"{max(values):.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
