"""Soak: a steady ingest load for ten minutes against a real `coplane server` on loopback,
while SLAs evaluate and the UI is read. Memory must stay flat once the server's bounded
caches have filled (the second half of the run adds at most 5%) and the ingest p99 within
twice its first minute's.

Per minute it prints the events sent, ingest latency p50/p99, UI latency p50/p99 and the
server's peak RSS. Minute 1 is the baseline the later minutes are compared with, in the same
run. The load is bounded (`--rate` events a second) and goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

from bench.ingest import RssSampler, Server, percentile, scratch_database

console = Console()
UI_PAGES = ("/", "/events", "/graph?all=1", "/slas")


@dataclass(slots=True)
class Minute:
    events: int = 0
    errors: int = 0
    ingest_ms: list[float] = field(default_factory=list)
    ui_ms: list[float] = field(default_factory=list)
    rss_mib: float = 0.0


class Stream:
    """Runs of the pipelines in turn, each started, then completed with an asset update."""

    def __init__(self, pipelines: int) -> None:
        self.pipelines = pipelines
        self._runs = itertools.count()
        self._lock = threading.Lock()

    def batch(self, size: int) -> bytes:
        events: list[dict[str, Any]] = []
        now = datetime.now(UTC).isoformat()
        while len(events) < size:
            with self._lock:
                n = next(self._runs)
            pipe, key = f"soak.pipeline_{n % self.pipelines:05d}", f"run-{n}"
            asset = f"soak.asset_{n % self.pipelines:05d}"
            related = [{"role": "run", "id": key}, {"role": "output", "id": asset}]
            for name in ("run.started", "run.completed"):
                events.append(
                    {
                        "id": str(uuid.uuid4()),
                        "occurred": now,
                        "event": name,
                        "resource": {"id": pipe, "kind": "pipeline"},
                        "related": related,
                    }
                )
            events.append(
                {
                    "id": str(uuid.uuid4()),
                    "occurred": now,
                    "event": "asset.updated",
                    "resource": {"id": asset, "kind": "asset"},
                    "related": [{"role": "producer", "id": pipe}],
                }
            )
        return msgspec.json.encode(events[:size])


def sender(
    url: str,
    stream: Stream,
    per_second: float,
    size: int,
    minutes: list[Minute],
    start: float,
    stop: threading.Event,
) -> None:
    """POST batches at a steady pace; record each request's latency in its minute."""
    interval = size / per_second
    due = time.monotonic()
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        while not stop.is_set():
            body = stream.batch(size)
            t0 = time.monotonic()
            try:
                ok = (
                    client.post(
                        "/api/events", content=body, headers={"Content-Type": "application/json"}
                    ).status_code
                    == 202
                )
            except httpx.HTTPError:
                ok = False
            t1 = time.monotonic()
            m = minutes[min(int((t0 - start) // 60), len(minutes) - 1)]
            m.ingest_ms.append((t1 - t0) * 1000)
            if ok:
                m.events += size
            else:
                m.errors += 1
            due += interval
            stop.wait(max(0.0, due - time.monotonic()))


def reader(url: str, minutes: list[Minute], start: float, stop: threading.Event) -> None:
    """Read the UI's pages in turn, one every half second, as a team's open tab does."""
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        for page in itertools.cycle(UI_PAGES):
            if stop.wait(0.5):
                return
            t0 = time.monotonic()
            try:
                with_error = client.get(page).status_code != 200
            except httpx.HTTPError:  # a timeout is an error of that minute, not the end
                with_error = True
            m = minutes[min(int((t0 - start) // 60), len(minutes) - 1)]
            m.ui_ms.append((time.monotonic() - t0) * 1000)
            m.errors += with_error


def declare_slas(url: str, count: int, pipelines: int) -> None:
    """Freshness SLAs on the assets the stream updates: evaluated after every batch."""
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        for i in range(count):
            body = {
                "name": f"soak_fresh_{i:03d}",
                "kind": "freshness",
                "target": f"soak.asset_{i % pipelines:05d}",
                "max_age": "5m",
            }
            resp = client.post("/api/slas", json=body)
            if resp.status_code != 201:
                raise SystemExit(f"declaring an SLA failed: {resp.status_code} {resp.text}")


def soak(args: argparse.Namespace, workdir: Path) -> list[Minute]:
    minutes = [Minute() for _ in range(args.minutes)]
    with scratch_database(args.backend, args.pg_server, workdir, "soak") as db_url:
        server = Server(db_url, workdir / "server.log", {})
        server.wait_healthy()
        try:
            declare_slas(server.base_url, args.slas, args.pipelines)
            rss = RssSampler(server.pid)
            stream, stop = Stream(args.pipelines), threading.Event()
            start = time.monotonic()
            per_sender = args.rate / args.senders
            threads = [
                threading.Thread(
                    target=sender,
                    args=(server.base_url, stream, per_sender, args.batch, minutes, start, stop),
                )
                for _ in range(args.senders)
            ]
            threads.append(
                threading.Thread(target=reader, args=(server.base_url, minutes, start, stop))
            )
            for t in threads:
                t.start()
            for i, m in enumerate(minutes):
                stop.wait(max(0.0, start + 60 * (i + 1) - time.monotonic()))
                m.rss_mib = rss.take_peak()
                console.print(f"minute {i + 1}: {m.events:,} events, RSS {m.rss_mib:.0f} MiB")
            stop.set()
            for t in threads:
                t.join(timeout=60)
            rss.stop()
        finally:
            server.stop()
    return minutes


def report(args: argparse.Namespace, minutes: Sequence[Minute]) -> bool:
    table = Table(
        title=f"soak on {args.backend}: {args.rate:,} events/s in batches of "
        f"{args.batch}, {args.slas} SLAs, the UI read twice a second"
    )
    for col in (
        "minute",
        "events",
        "errors",
        "ingest p50 ms",
        "ingest p99 ms",
        "UI p50 ms",
        "UI p99 ms",
        "server RSS MiB",
    ):
        table.add_column(col, justify="right")
    for i, m in enumerate(minutes, 1):
        table.add_row(
            str(i),
            f"{m.events:,}",
            str(m.errors),
            f"{percentile(m.ingest_ms, 50):.1f}",
            f"{percentile(m.ingest_ms, 99):.1f}",
            f"{percentile(m.ui_ms, 50):.1f}",
            f"{percentile(m.ui_ms, 99):.1f}",
            f"{m.rss_mib:.0f}",
        )
    console.print(table)
    first, last = minutes[0], minutes[-1]
    p99_first, p99_last = percentile(first.ingest_ms, 99), percentile(last.ingest_ms, 99)
    # Memory: the server's bounded caches (the SQLite writer's 64 MiB page cache, each reader
    # thread's 2 MiB one, the writer's cache of committed rows) fill during the first minutes
    # as the tables grow; then the peak must stay flat. A leak grows steadily instead, so the
    # second half of the run may add at most 5%.
    second = minutes[1].rss_mib if len(minutes) > 1 else first.rss_mib
    middle = minutes[max(0, len(minutes) // 2 - 1)]
    latency_ok = p99_last <= 2 * p99_first
    memory_ok = last.rss_mib <= middle.rss_mib * 1.05
    errors = sum(m.errors for m in minutes)
    console.print(
        f"ingest p99: first minute {p99_first:.1f} ms, last {p99_last:.1f} ms "
        f"(bound 2x): {'met' if latency_ok else 'MISSED'}"
    )
    console.print(
        f"server RSS: minute 2 {second:.0f} MiB, minute {len(minutes) // 2} "
        f"{middle.rss_mib:.0f} MiB, last {last.rss_mib:.0f} MiB (bound: the second half adds "
        f"at most 5%): {'met' if memory_ok else 'MISSED'}; errors: {errors}"
    )
    return latency_ok and memory_ok and errors == 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1_000, help="events a second, all senders")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--slas", type=int, default=200)
    parser.add_argument(
        "--pipelines", type=int, default=5_000, help="each runs about every 15 s at 1,000 events/s"
    )
    parser.add_argument("--pg-server", default="postgresql://127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    if args.minutes < 2:
        parser.error("--minutes: at least 2, to compare later minutes with the first")
    with tempfile.TemporaryDirectory(prefix="coplane-soak-") as tmp:
        minutes = soak(args, Path(tmp))
    return 0 if report(args, minutes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
