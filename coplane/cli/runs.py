"""`coplane runs`: flow runs: list them, cancel one, resume a paused one."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from coplane.cli.common import (
    DEFAULT_SERVER,
    ServerOption,
    err,
    get_json,
    out,
    print_table,
    send_json,
    when,
)

# one Typer app, so that other commands about runs join it as `coplane runs ...`
app = typer.Typer(help="Runs of flows and deployments.", no_args_is_help=True)


@app.command("list")
def runs_list(
    deployment: Annotated[str | None, typer.Option(help="only this deployment's")] = None,
    state: Annotated[
        str | None,
        typer.Option(help="scheduled, pending, running, completed, failed, cancelled, crashed"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 50,
    server: ServerOption = DEFAULT_SERVER,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Flow runs, latest due first, with their state and worker."""
    from rich.markup import escape
    from rich.table import Table

    params: dict[str, Any] = {"limit": limit}
    params |= {"deployment": deployment} if deployment else {}
    params |= {"state": state} if state else {}
    runs = get_json(server, "/api/flow-runs", params)["flow_runs"]
    if as_json:
        out.print_json(data=runs)
        return
    table = Table("id", "deployment", "state", "due", "attempt", "worker")
    for r in runs:
        table.add_row(r["id"], escape(r["deployment"]), r["state"], when(r["due"]),
                      str(r["attempt"]), escape(r["worker"] or "-"))  # fmt: skip
    print_table(table)


@app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="the run's id")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Cancel a run: at once when it has not started, else when its worker has stopped it."""
    answer = send_json(server, "POST", f"/api/runs/{run_id}/cancel")
    wait = " (its worker stops it within a heartbeat)" if answer["state"] != "cancelled" else ""
    out.print(f"run {answer['id']}: {answer['state']}{wait}")


@app.command("resume")
def runs_resume(
    run_id: Annotated[str, typer.Argument(help="the paused run's id (as GET /api/runs shows)")],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", help="a field of the input as NAME=VALUE; repeat for more"),
    ] = None,
    as_json: Annotated[
        str | None, typer.Option("--json", help="the whole input as a JSON object")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Resume a paused flow run, with the input it waits for (checked by the server)."""
    from coplane.orchestrate.schemas import typed_value

    if inputs and as_json is not None:
        err.print("[red]error:[/red] give --input NAME=VALUE or --json, not both")
        raise typer.Exit(2)
    value: Any = None
    if as_json is not None:
        try:
            value = json.loads(as_json)
        except ValueError as exc:
            err.print(f"[red]error:[/red] --json is not valid JSON: {exc}", highlight=False)
            raise typer.Exit(2) from None
    elif inputs:
        # a string field keeps what was typed ("007"); other fields are read as JSON (5, true)
        pause = get_json(server, f"/api/runs/{run_id}/pause")
        value = {}
        for item in inputs:
            name, eq, text = item.partition("=")
            if not eq or not name:
                err.print(f"[red]error:[/red] --input {item!r}: expected NAME=VALUE")
                raise typer.Exit(2)
            value[name] = typed_value(pause.get("schema"), name, text)
    resumed = send_json(server, "POST", f"/api/runs/{run_id}/resume", {"input": value})
    out.print(f"resumed run {resumed['run_id']}")
