"""`coplane keys`: API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from coplane.cli.common import database, err, exit_on, out, print_table, when

app = typer.Typer(help="API keys (used when COPLANE_AUTH=keys).", no_args_is_help=True)


@app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what uses the key, e.g. airflow-prod")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="ingest, read or admin; repeat for several [default: ingest]"),
    ] = None,
    resources: Annotated[
        list[str] | None,
        typer.Option(
            help="resource ids or prefixes ending in * the key may send events about, "
            "comma-separated or repeated, e.g. 'airflow.prod.*' [default: any]"
        ),
    ] = None,
) -> None:
    """Create a key and print it once: coplane keeps only its hash."""
    from coplane.auth.keys import SCOPES, check_resource_patterns, create_key

    scope = scope or ["ingest"]
    unknown = [s for s in scope if s not in SCOPES]
    if unknown:
        err.print(f"[red]error:[/red] --scope {unknown[0]!r}: expected one of {', '.join(SCOPES)}")
        raise typer.Exit(2)
    try:
        patterns = check_resource_patterns(
            [p for given in resources or [] for p in given.split(",")]
        )
    except ValueError as exc:
        err.print(f"[red]error:[/red] --resources: {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    with database() as conn:
        key, secret = create_key(
            conn, name, [s for s in SCOPES if s in scope], resources=patterns
        )
    limited = f", resources {', '.join(key.resources)}" if key.resources else ""
    err.print(
        f"key {key.prefix}… ({', '.join(key.scopes)}{limited}) for {key.name}, id {key.id}"
    )
    err.print("It is shown only now: store it where its user reads secrets from.")
    out.print(secret, highlight=False, soft_wrap=True)


@app.command("list")
def keys_list() -> None:
    """Every key: prefix, name, scopes, created, last used, active or revoked."""
    from rich.table import Table

    from coplane.auth.keys import list_keys

    with database() as conn:
        keys = list_keys(conn)
    # the resources column only when some key is limited: the table stays narrow otherwise
    limited = any(k.resources for k in keys)
    table = Table("prefix", "name", "scopes", *(["resources"] if limited else []))
    for column in ("created", "last used", "state"):
        table.add_column(column)
    for k in keys:
        used = when(k.used.isoformat() if k.used else None)
        state = "revoked" if k.revoked else "active"
        resources = [",".join(k.resources) or "any"] if limited else []
        table.add_row(
            k.prefix,
            k.name,
            ",".join(k.scopes),
            *resources,
            when(k.created.isoformat()),
            used,
            state,
        )
    print_table(table)
    out.print(f"{len(keys)} keys")


@app.command("revoke")
def keys_revoke(which: Annotated[str, typer.Argument(help="the key's id or prefix")]) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from coplane.auth.keys import revoke_key
    from coplane.store.errors import NotFound

    with exit_on(NotFound), database() as conn:
        key = revoke_key(conn, which)
    out.print(f"revoked {key.prefix}… ({key.name})")
