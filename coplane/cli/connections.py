"""`coplane connections`: named, typed configuration flows load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    pass

from coplane.cli.common import (
    DEFAULT_SERVER,
    ServerOption,
    get_json,
    out,
    pairs,
    print_table,
    secret_file_or_exit,
    send_json,
    when,
)

app = typer.Typer(
    help="Connections flows load, secret fields encrypted on the server.", no_args_is_help=True
)


@app.command("set")
def connections_set(
    name: Annotated[str, typer.Argument(help="the name flows load it by")],
    kind: Annotated[
        str, typer.Option("--type", help="generic, postgres, s3, http or a plugin's type")
    ],
    fields: Annotated[
        list[str] | None, typer.Option("--field", help="a field as NAME=VALUE; repeat for more")
    ] = None,
    secrets: Annotated[
        list[str] | None,
        typer.Option("--secret", help="a secret field as NAME=VALUE (lands in shell history)"),
    ] = None,
    secret_files: Annotated[
        list[str] | None,
        typer.Option("--secret-file", help="a secret field as NAME=PATH, read from the file"),
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Store a connection on the server, replacing it whole if it exists (how it is rotated)."""
    from urllib.parse import quote

    plain = pairs("--field", fields)
    hidden = pairs("--secret", secrets)
    for field_name, path in pairs("--secret-file", secret_files).items():
        hidden[field_name] = secret_file_or_exit("--secret-file", Path(path))
    # the generic type keeps arbitrary names apart; typed ones know which fields are secret
    body_fields: dict[str, Any] = (
        {"values": plain, "secrets": hidden} if kind == "generic" else {**plain, **hidden}
    )
    stored = send_json(
        server,
        "PUT",
        f"/api/connections/{quote(name, safe='')}",
        {"type": kind, "fields": body_fields},
    )
    secret_names = ", ".join(stored["secret_fields"]) or "none"
    out.print(
        f"stored connection {stored['name']} ({stored['type']}); secret fields: {secret_names}"
    )


@app.command("list")
def connections_list(
    server: ServerOption = DEFAULT_SERVER,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Each connection with its type, the fields shown in clear, and which secrets are set."""
    from rich.markup import escape
    from rich.table import Table

    found = get_json(server, "/api/connections")["connections"]
    if as_json:
        out.print_json(data=found)
        return
    table = Table("name", "type", "fields", "secret fields", "updated")
    for c in found:
        table.add_row(
            escape(c["name"]),
            escape(c["type"]),
            escape(json.dumps(c["fields"], sort_keys=True)),
            escape(", ".join(c["secret_fields"])) or "-",
            when(c["updated"]),
        )
    print_table(table)
    out.print(f"{len(found)} connections")


@app.command("delete")
def connections_delete(
    name: Annotated[str, typer.Argument(help="the connection's name")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Delete a connection; flows loading it fail until it is set again."""
    from urllib.parse import quote

    send_json(server, "DELETE", f"/api/connections/{quote(name, safe='')}")
    out.print(f"deleted connection {name}")
