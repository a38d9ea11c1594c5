"""`coplane jobs`: run a periodic job once."""

from __future__ import annotations

from typing import Annotated

import typer

from coplane.cli.common import err, load_settings, out

app = typer.Typer(help="Periodic jobs, run once.", no_args_is_help=True)


@app.command("run")
def jobs_run(name: Annotated[str, typer.Argument(help="job name, e.g. maintain-events")]) -> None:
    """Run one periodic job now, against the configured database."""
    import coplane.orchestrate.paused  # noqa: F401 - registers its job, as the server does
    from coplane.jobs.scheduler import JOBS, run_job
    from coplane.server import open_configured_store  # imports every module that has jobs

    if name not in JOBS:
        err.print(f"[red]error:[/red] no job named {name!r}; jobs: {', '.join(sorted(JOBS))}")
        raise typer.Exit(2)
    store = open_configured_store(load_settings())
    try:
        result = run_job(name, store, load_settings())
    finally:
        store.close()
    out.print(result)
