"""`coplane automations`: automations, and why each fired or did not."""

from __future__ import annotations

from typing import Annotated

import typer

from coplane.cli.common import DEFAULT_SERVER, ServerOption, get_json, out, print_table, when

app = typer.Typer(help="Automations: triggers and actions.", no_args_is_help=True)


@app.command("list")
def automations_list(
    server: ServerOption = DEFAULT_SERVER,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Each automation with its latest decision."""
    from rich.markup import escape
    from rich.table import Table

    automations = get_json(server, "/api/automations")["automations"]
    if as_json:
        out.print_json(data=automations)
        return
    table = Table("name", "origin", "enabled", "last decision")
    for a in automations:
        last = a["decisions"][0] if a["decisions"] else None
        text = f"{when(last['at'])} {last['reason']}" if last else "-"
        table.add_row(escape(a["name"]), a["origin"], str(a["enabled"]), escape(text))
    print_table(table)


@app.command("explain")
def automations_explain(
    name: Annotated[str, typer.Argument(help="the automation's name")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """The events an automation matched lately, newest first, and what each meant."""
    from rich.markup import escape

    a = get_json(server, f"/api/automations/{name}")
    for d in a["decisions"]:
        mark = "[green]fired[/green]" if d["fired"] else "[dim]did not fire[/dim]"
        out.print(f"{when(d['at'])} {mark}: {escape(d['reason'])}")
    for f in a["firings"]:
        for action in f["actions"]:
            status = "ok" if action["ok"] else "[red]failed[/red]"
            out.print(f"  {when(f['fired'])} {action['type']} {status}: {escape(action['detail'])}")
