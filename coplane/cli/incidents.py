"""`coplane incidents`: incidents opened by SLA breaches."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coplane.cli.common import DEFAULT_SERVER, ServerOption, err, get_json, out, print_table, when

app = typer.Typer(help="Incidents opened by SLA breaches.", no_args_is_help=True)


@app.command("list")
def incidents_list(
    state: Annotated[str | None, typer.Option(help="open or resolved [default: both]")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 50,
    server: ServerOption = DEFAULT_SERVER,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Incidents, newest first, with their reason and where they were announced."""
    from rich.markup import escape
    from rich.table import Table

    if state not in (None, "open", "resolved"):
        err.print(f"[red]error:[/red] --state {state!r}: use open or resolved")
        raise typer.Exit(2)
    params: dict[str, Any] = {"limit": limit} | ({"state": state} if state else {})
    incidents = get_json(server, "/api/incidents", params)["incidents"]
    if as_json:
        out.print_json(data=incidents)
        return
    table = Table("opened", "sla", "severity", "state", "reason", "alerts")
    for i in incidents:
        state_text = "resolved" if i["resolved"] else ("acked" if i["acked"] else "open")
        alerts = ", ".join(f"{n['channel']}: {n['status']}" for n in i["notifications"])
        table.add_row(
            when(i["opened"]),
            escape(i["sla"]),
            i["severity"],
            state_text,
            escape(i["reason"]),
            escape(alerts) or "-",
        )
    print_table(table)
    out.print(f"{len(incidents)} incidents")
