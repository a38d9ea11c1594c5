"""`coplane runs`: deployments' flow runs: list them, cancel one."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coplane.cli.common import DEFAULT_SERVER, ServerOption, get_json, out, send_json, when

# one Typer app, so that other commands about runs join it as `coplane runs ...`
app = typer.Typer(help="Flow runs of deployments.", no_args_is_help=True)


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
    out.print(table)


@app.command("cancel")
def runs_cancel(
    run_id: Annotated[str, typer.Argument(help="the run's id")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Cancel a run: at once when it has not started, else when its worker has stopped it."""
    answer = send_json(server, "POST", f"/api/runs/{run_id}/cancel")
    wait = " (its worker stops it within a heartbeat)" if answer["state"] != "cancelled" else ""
    out.print(f"run {answer['id']}: {answer['state']}{wait}")
