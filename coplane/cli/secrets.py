"""`coplane secrets`: secrets stored encrypted."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from coplane.cli.common import database, err, exit_on, load_settings, out, secret_file_or_exit, when

app = typer.Typer(
    help="Secrets stored encrypted (COPLANE_SECRET_KEY), named as ${secret:NAME} in channels.",
    no_args_is_help=True,
)


@app.command("set")
def secrets_set(
    name: Annotated[str, typer.Argument(help="the name channels use: ${secret:NAME}")],
    value_file: Annotated[
        Path | None,
        typer.Option(help="read the value from this file (- for standard input) instead of asking"),
    ] = None,
) -> None:
    """Store a secret encrypted with COPLANE_SECRET_KEY (asked for, hidden, unless --value-file)."""
    from rich.markup import escape

    from coplane.auth.vault import SecretError, Vault, check_name, check_value

    problem = check_name(name)
    if problem:
        err.print(f"[red]error:[/red] NAME: {problem}", highlight=False)
        raise typer.Exit(2)
    settings = load_settings()
    if value_file is None:
        value = typer.prompt("Value", hide_input=True)
    elif str(value_file) == "-":
        value = sys.stdin.read().removesuffix("\n")
    else:
        value = secret_file_or_exit("--value-file", value_file)
    problem = check_value(value)
    if problem:
        source = "the value" if value_file is None else f"--value-file {value_file}"
        err.print(f"[red]error:[/red] {escape(source)}: {problem}", highlight=False)
        raise typer.Exit(2)
    with exit_on(SecretError), database() as conn:
        new = Vault(settings.secret_key).put(conn, name, value)
    out.print(f"{'stored' if new else 'replaced'} secret {name}", highlight=False)


@app.command("list")
def secrets_list() -> None:
    """Every stored secret's name and when it was set (never a value)."""
    from coplane.auth.vault import list_secrets

    with database() as conn:
        found = list_secrets(conn)
    for info in found:
        out.print(
            f"{info.name}\tset {when(info.updated.isoformat())}\t"
            f"created {when(info.created.isoformat())}",
            highlight=False,
        )
    out.print(f"{len(found)} secrets")


@app.command("delete")
def secrets_delete(name: Annotated[str, typer.Argument(help="the secret's name")]) -> None:
    """Forget a stored secret; channels that name it fail until it is set again."""
    from coplane.auth.vault import delete_secret
    from coplane.store.errors import NotFound

    with exit_on(NotFound), database() as conn:
        delete_secret(conn, name)
    out.print(f"deleted secret {name}", highlight=False)


@app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret and connection under the first key of COPLANE_SECRET_KEY."""
    from cryptography.fernet import InvalidToken

    from coplane.auth.vault import SecretError, Vault
    from coplane.store.connections import rewrap_connection_secrets

    settings = load_settings()
    with exit_on(SecretError), database() as conn:
        vault = Vault(settings.secret_key)
        count = vault.rotate(conn)
        try:
            connections = rewrap_connection_secrets(conn, vault.reencrypt, datetime.now(UTC))
        except InvalidToken:
            err.print(
                "[red]error:[/red] no key in COPLANE_SECRET_KEY decrypts a stored connection's "
                "secrets: add the key they were stored under, then rotate again"
            )
            raise typer.Exit(1) from None
    out.print(
        f"re-encrypted {count} secrets and {connections} connections under the first key of "
        "COPLANE_SECRET_KEY"
    )


@app.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new random key for COPLANE_SECRET_KEY."""
    from coplane.security.fernet import generate_key

    out.print(generate_key(), highlight=False, soft_wrap=True)
