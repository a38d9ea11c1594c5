"""`coplane alerts`: send a test message to a channel."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from coplane.cli.common import database, err, load_config_or_exit, load_settings, out

app = typer.Typer(help="Alert channels.", no_args_is_help=True)


@app.command("test")
def alerts_test(
    channel: Annotated[str, typer.Argument(help="a channel name from channels:")],
    config: Annotated[
        str | None, typer.Option(help="coplane.yaml with channels: [COPLANE_CONFIG]")
    ] = None,
) -> None:
    """Send a test message through one channel now, straight from this machine."""
    from rich.markup import escape

    from coplane.alerts.dispatcher import send_test
    from coplane.alerts.notifier import IntegrationError
    from coplane.auth.vault import SecretError, Vault, references
    from coplane.security.mask import mask

    settings = load_settings(config=config)
    if settings.config is None:
        err.print("[red]error:[/red] give --config coplane.yaml (or set COPLANE_CONFIG)")
        raise typer.Exit(2)
    loaded = load_config_or_exit(settings.config)
    if channel not in loaded.channels:
        known = ", ".join(sorted(loaded.channels)) or "none are defined"
        err.print(
            f"[red]error:[/red] {escape(str(settings.config))}: no channel named "
            f"{escape(repr(channel))} ({escape(known)})",
            highlight=False,
        )
        raise typer.Exit(2)
    chosen = loaded.channels[channel]
    try:
        if references(chosen.model_dump(mode="python")):
            with database() as conn:
                chosen = Vault(settings.secret_key).resolve_channel(conn, chosen)
        answer = send_test(chosen, channel, settings.link_base)
    except SecretError as exc:
        err.print(f"[red]error:[/red] {escape(channel)}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except IntegrationError as exc:
        kind = "permanent" if exc.permanent else "transient"
        message = mask(exc.message)
        err.print(
            f"[red]error:[/red] {escape(channel)}: {escape(message)} ({kind})", highlight=False
        )
        raise typer.Exit(1) from None
    detail = f": {mask(json.dumps(answer))}" if answer else ""
    out.print(f"{escape(channel)}: test alert delivered{escape(detail)}", highlight=False)
