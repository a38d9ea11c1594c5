"""`coplane worker`: claim and run the due flow runs of one work pool."""

from __future__ import annotations

import os
import signal
from typing import Annotated

import typer

from coplane.cli.common import DEFAULT_SERVER, ServerOption, load_settings, out


def worker(
    pool: Annotated[
        str, typer.Option("--pool", help="the work pool to take runs from")
    ] = "default",
    max_runs: Annotated[
        int, typer.Option("--max-runs", min=1, help="most runs at once on this worker")
    ] = 4,
    poll: Annotated[
        float, typer.Option("--poll", min=0.01, help="seconds between looks for due runs")
    ] = 0.2,
    name: Annotated[str | None, typer.Option("--name", help="[default: host-pid-random]")] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Run flow runs of `--pool` from the database COPLANE_DATABASE_URL names, each in a
    subprocess; the flows report to `--server`. Stops on SIGTERM or Ctrl-C, cancelling its
    runs in flight."""
    import logging

    from coplane.orchestrate.workers import Worker, WorkerOptions, show_run_output
    from coplane.server import open_configured_store

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    show_run_output()

    settings = load_settings()
    options = WorkerOptions(
        pool=pool,
        server_url=server,
        api_key=os.environ.get("COPLANE_API_KEY") or None,
        poll_s=poll,
        heartbeat_s=settings.worker_heartbeat_timeout / 6,
        max_runs=max_runs,
    )
    if name:
        options.name = name
    store = open_configured_store(settings)
    w = Worker(store, options)
    signal.signal(signal.SIGTERM, lambda *_: w.stop_soon())
    out.print(f"worker {options.name} running pool {pool}, reporting to {server}")
    try:
        w.run()
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
