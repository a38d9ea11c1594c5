"""`coplane users`: UI users."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coplane.cli.common import database, err, exit_on, out, secret_file_or_exit, when

app = typer.Typer(help="UI users (used when COPLANE_AUTH=keys).", no_args_is_help=True)


@app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="the name to log in with")],
    role: Annotated[str, typer.Option(help="viewer, editor (acknowledges, resolves) or admin")],
    password_file: Annotated[
        Path | None, typer.Option(help="read the password from this file instead of asking")
    ] = None,
) -> None:
    """Create a UI user; the password is asked for twice (hidden) unless --password-file."""
    from coplane.auth.users import ROLES, create_user

    if role not in ROLES:
        err.print(f"[red]error:[/red] --role {role!r}: expected one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    if password_file is not None:
        password = secret_file_or_exit("--password-file", password_file)
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with database() as conn:
            user = create_user(conn, name, password, role)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"created {user.role} {user.name}")


@app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="the user's name")],
    password_file: Annotated[
        Path | None, typer.Option(help="read the new password from this file instead of asking")
    ] = None,
) -> None:
    """Set a user's password (asked twice, hidden, unless --password-file); ends their sessions."""
    from coplane.auth.users import set_password
    from coplane.store.errors import NotFound

    if password_file is not None:
        password = secret_file_or_exit("--password-file", password_file)
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        with exit_on(NotFound), database() as conn:
            user = set_password(conn, name, password)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"new password for {user.name}; their sessions have ended")


@app.command("delete")
def users_delete(name: Annotated[str, typer.Argument(help="the user's name")]) -> None:
    """Delete a user: their sessions end at once."""
    from coplane.auth.users import delete_user
    from coplane.store.errors import NotFound

    with exit_on(NotFound), database() as conn:
        user = delete_user(conn, name)
    out.print(f"deleted {user.role} {user.name}")


@app.command("logout")
def users_logout(name: Annotated[str, typer.Argument(help="the user's name")]) -> None:
    """End every session of a user, in every browser: they must log in again."""
    from coplane.auth.users import end_user_sessions
    from coplane.store.errors import NotFound

    with exit_on(NotFound), database() as conn:
        ended = end_user_sessions(conn, name)
    out.print(f"ended {ended} sessions of {name.strip()}")


@app.command("list")
def users_list() -> None:
    """Every UI user with their role."""
    from coplane.auth.users import list_users

    with database() as conn:
        users = list_users(conn)
    for user, created in users:
        out.print(f"{user.name}\t{user.role}\tcreated {when(created.isoformat())}")
    out.print(f"{len(users)} users")
