"""`coplane dbt`: send a dbt run's results, or run dbt and send them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from coplane.cli.common import DEFAULT_SERVER, ServerOption, client_for, err, key_hint, out

app = typer.Typer(help="dbt projects.", no_args_is_help=True)


@app.command("ingest")
def dbt_ingest(
    target: Annotated[
        Path, typer.Argument(help="dbt's target directory, e.g. target/", show_default=False)
    ],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Send a dbt invocation's runs, tests and source freshness from its target directory."""
    from rich.markup import escape

    from coplane.client import ClientError
    from coplane.integrations.dbt.artifacts import ArtifactError
    from coplane.integrations.dbt.ingest import ingest

    with client_for(server) as client:
        try:
            summary = ingest(target, client)
        except ArtifactError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except ClientError as exc:
            hint = key_hint(exc.status)
            err.print(f"[red]error:[/red] {escape(str(exc) + hint)}", highlight=False)
            raise typer.Exit(1) from None
    for line in summary.lines():
        out.print(escape(line), highlight=False)
    if not summary.sent.delivered:
        err.print(
            "[yellow]warning:[/yellow] not every event reached the server; spooled events are "
            "sent by the next coplane client call",
            highlight=False,
        )
        raise typer.Exit(1)


@app.command(
    "run",
    # everything after `run` is dbt's: `coplane dbt run build --select x` runs `dbt build ...`
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def dbt_run(
    args: Annotated[list[str], typer.Argument(help="dbt's arguments, after --", metavar="ARGS")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Run dbt with ARGS, then send what it wrote to its target directory; exit with dbt's code."""

    from rich.markup import escape

    from coplane.client import ClientError
    from coplane.integrations.dbt import ingest as dbt
    from coplane.integrations.dbt.artifacts import ArtifactError

    executable = dbt.dbt_executable()
    if executable is None:
        err.print("[red]error:[/red] dbt not found beside this Python or on PATH", highlight=False)
        raise typer.Exit(dbt.EXIT_NOT_FOUND)
    target = dbt.target_dir(args, Path.cwd(), os.environ)
    with client_for(server) as client:  # a bad --server is refused before dbt runs
        before = dbt.stamps(target)
        code = dbt.run_dbt(executable, args)
        written = dbt.rewritten(before, dbt.stamps(target))
        if not written:
            err.print(
                f"coplane: dbt wrote no run results to {escape(str(target))}: nothing reported",
                highlight=False,
            )
            raise typer.Exit(code)
        try:
            summary = dbt.ingest(target, client, written)
        except (ArtifactError, ClientError) as exc:
            err.print(f"coplane: [red]not reported:[/red] {escape(str(exc))}", highlight=False)
        except Exception as exc:  # whatever went wrong, the exit code stays dbt's
            problem = f"{type(exc).__name__}: {exc}"
            err.print(f"coplane: [red]not reported:[/red] {escape(problem)}", highlight=False)
        else:
            for line in summary.lines():
                err.print(f"coplane: {escape(line)}", highlight=False)
    raise typer.Exit(code)
