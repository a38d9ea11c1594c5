"""`coplane cron`: wrap a cron job, and its monitors' ping keys."""

from __future__ import annotations

import os
import uuid
from typing import Annotated

import typer

from coplane.cli.common import (
    API_KEY_ENV,
    DEFAULT_SERVER,
    ServerOption,
    database,
    err,
    exit_on,
    load_settings,
    out,
    print_table,
    when,
)

app = typer.Typer(help="Cron jobs.", no_args_is_help=True)


PING_KEY_ENV = "COPLANE_PING_KEY"  # the ping key `cron wrap --ping-key` reads


@app.command(
    "wrap",
    # everything from the command on is the command's: `wrap --slug s ls -l` runs `ls -l`
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def cron_wrap(
    command: Annotated[
        list[str], typer.Argument(help="the command to run, after --", metavar="CMD")
    ],
    slug: Annotated[str, typer.Option(help="the monitor: pings go to /ping/SLUG")],
    server: ServerOption = DEFAULT_SERVER,
    rid: Annotated[
        str, typer.Option(help="run id pairing the pings: auto (a new UUID) or a UUID")
    ] = "auto",
    create: Annotated[
        bool, typer.Option("--create", help="accept a monitor the server does not know yet")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="kill the command after SECONDS and exit 124")
    ] = None,
    ping_key: Annotated[
        str | None,
        typer.Option(
            envvar=PING_KEY_ENV,
            help="the monitor's ping key: ping /ping/KEY/SLUG, with no Authorization header",
        ),
    ] = None,
) -> None:
    """Run a command, pinging its start and its exit code with its output's tail."""
    import logging

    from rich.markup import escape

    from coplane.client import CoplaneClient
    from coplane.integrations.cron.wrap import wrap
    from coplane.store.ping_keys import PING_KEY_PATTERN

    if rid != "auto":
        try:
            rid = str(uuid.UUID(rid))
        except ValueError:
            err.print(f"[red]error:[/red] --rid {escape(repr(rid))}: use auto or a UUID")
            raise typer.Exit(2) from None
    if timeout is not None and timeout <= 0:
        err.print(f"[red]error:[/red] --timeout {timeout:g}: must be more than 0 seconds")
        raise typer.Exit(2)
    ping_key = ping_key.strip() if ping_key else None
    if ping_key is not None and not PING_KEY_PATTERN.match(ping_key):
        # the value is not echoed: it may be a secret pasted into the wrong place
        err.print("[red]error:[/red] --ping-key: not a ping key (cpk_...)")
        raise typer.Exit(2)
    try:
        # with a ping key the URL carries the credential: no API key is sent
        api_key = None if ping_key else os.environ.get(API_KEY_ENV)
        client = CoplaneClient(server, api_key=api_key)
    except ValueError as exc:
        err.print(f"[red]error:[/red] --server: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    # the wrapper prints its own single warning line when a ping fails
    client_log = logging.getLogger("coplane.client")
    client_log.addHandler(logging.NullHandler())
    client_log.propagate = False
    with client:
        code = wrap(
            client,
            slug,
            command,
            timeout,
            create,
            rid=None if rid == "auto" else rid,
            ping_key=ping_key,
        )
    raise typer.Exit(code)


cron_keys_app = typer.Typer(
    help="Ping keys: a monitor's credential carried in its ping URL.", no_args_is_help=True
)
app.add_typer(cron_keys_app, name="keys")


@cron_keys_app.command("create")
def cron_keys_create(
    slug: Annotated[str, typer.Argument(help="the monitor's slug, e.g. nightly-export")],
) -> None:
    """Create the monitor's ping key, replacing its old one; print its ping URL once."""
    from rich.markup import escape

    from coplane.collector.ping import valid_slug
    from coplane.collector.ping_keys import ping_url
    from coplane.store.ping_keys import create_ping_key

    if not valid_slug(slug):
        err.print(
            f"[red]error:[/red] {escape(repr(slug))} is not a monitor slug (letters, digits "
            "and _.-, not starting with cpk_)",
            highlight=False,
        )
        raise typer.Exit(2)
    base = load_settings().link_base
    with database() as conn:
        key, secret = create_ping_key(conn, slug)
    err.print(
        f"ping key {key.prefix}… for {escape(slug)}; it replaces any earlier key of this monitor.",
        highlight=False,
    )
    err.print("It is shown only now. Append /start, /fail or /EXIT_CODE for the other pings.")
    out.print(ping_url(base, slug, secret), highlight=False, soft_wrap=True)


@cron_keys_app.command("list")
def cron_keys_list() -> None:
    """Every monitor with a ping key: slug, key prefix, created."""
    from rich.table import Table

    from coplane.store.ping_keys import list_ping_keys

    with database() as conn:
        keys = list_ping_keys(conn)
    table = Table("slug", "prefix", "created")
    for k in keys:
        table.add_row(k.slug, k.prefix, when(k.created.isoformat()))
    print_table(table)
    out.print(f"{len(keys)} ping keys")


@cron_keys_app.command("revoke")
def cron_keys_revoke(
    slug: Annotated[str, typer.Argument(help="the monitor whose ping key to revoke")],
) -> None:
    """Revoke the monitor's ping key: pings with it are refused (404) from now on."""
    from rich.markup import escape

    from coplane.store.errors import NotFound
    from coplane.store.ping_keys import revoke_ping_key

    with exit_on(NotFound), database() as conn:
        key = revoke_ping_key(conn, slug)
    out.print(f"revoked {key.prefix}… ({escape(key.slug)})", highlight=False)
