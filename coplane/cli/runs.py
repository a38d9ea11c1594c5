"""`coplane runs`: runs of pipelines and flows."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    pass

from coplane.cli.common import DEFAULT_SERVER, ServerOption, err, get_json, out, send_json

app = typer.Typer(help="Runs of pipelines and flows.", no_args_is_help=True)


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
