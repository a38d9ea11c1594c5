"""`coplane concurrency`: limits flows share across processes and machines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    pass

from coplane.cli.common import DEFAULT_SERVER, ServerOption, get_json, out, print_table, send_json

app = typer.Typer(
    help="Concurrency limits flows share across processes and machines.", no_args_is_help=True
)


@app.command("create")
def concurrency_create(
    name: Annotated[str, typer.Argument(help="the limit's name, as concurrency(NAME) uses it")],
    limit: Annotated[int, typer.Option("--limit", min=0, help="slots held at once")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Create a concurrency limit, or change the slots of an existing one."""
    from urllib.parse import quote

    found = send_json(server, "PUT", f"/api/concurrency/{quote(name, safe='')}", {"limit": limit})
    out.print(f"{found['name']}: {found['limit']} slots, {found['used']} in use")


@app.command("list")
def concurrency_list(
    server: ServerOption = DEFAULT_SERVER,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Each limit with its slots, who holds them, and who waits, in the order they get in."""
    from rich.markup import escape
    from rich.table import Table

    limits = get_json(server, "/api/concurrency")["limits"]
    if as_json:
        out.print_json(data=limits)
        return
    table = Table("name", "slots", "used", "holders", "waiting (in order)")
    for x in limits:
        holders = [f"{h['holder']} ({h['occupy']})" for h in x["holders"]]
        waiters = [f"{w['holder']} ({w['occupy']})" for w in x["waiters"]]
        table.add_row(
            escape(x["name"]),
            str(x["limit"]),
            str(x["used"]),
            escape("\n".join(holders)) or "-",
            escape("\n".join(waiters)) or "-",
        )
    print_table(table)
    out.print(f"{len(limits)} limits")


@app.command("delete")
def concurrency_delete(
    name: Annotated[str, typer.Argument(help="the limit's name")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Delete a limit; blocks holding its slots run on, new requests for it fail."""
    from urllib.parse import quote

    send_json(server, "DELETE", f"/api/concurrency/{quote(name, safe='')}")
    out.print(f"deleted {name}")
