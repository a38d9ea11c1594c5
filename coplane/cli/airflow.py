"""`coplane airflow`: poll an Airflow deployment's REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coplane.cli.common import (
    DEFAULT_SERVER,
    ServerOption,
    client_for,
    err,
    out,
    secret_file_or_exit,
)

app = typer.Typer(help="Airflow deployments.", no_args_is_help=True)


@app.command("poll")
def airflow_poll(
    url: Annotated[str, typer.Option("--url", help="Airflow's API server URL", show_default=False)],
    username: Annotated[
        str, typer.Option("--username", envvar="AIRFLOW_USERNAME", show_default=False)
    ],
    password: Annotated[
        str | None,
        typer.Option("--password", envvar="AIRFLOW_PASSWORD", show_default=False),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            envvar="AIRFLOW_PASSWORD_FILE",
            help="read the password from this file (a mounted secret)",
            show_default=False,
        ),
    ] = None,
    instance: Annotated[
        str, typer.Option("--instance", help="names this Airflow in coplane's pipeline ids")
    ] = "default",
    once: Annotated[bool, typer.Option("--once", help="poll once, then exit")] = False,
    interval: Annotated[float, typer.Option("--interval", help="seconds between polls")] = 60.0,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Send the DAG runs and task tries that Airflow's REST API shows, since the last poll."""
    from rich.markup import escape

    from coplane.client import ClientError
    from coplane.integrations.airflow.poller import PollError, PollResult, poll
    from coplane.security.mask import mask, masker

    def report(result: PollResult) -> None:
        sent = result.sent
        stored = f"{sent.accepted} new, {sent.duplicates} known" if sent else "none sent"
        out.print(
            f"{result.dag_runs} DAG runs, {result.task_instances} task instances: "
            f"{len(result.events)} events ({stored})",
            highlight=False,
        )

    if password_file is not None:
        password = secret_file_or_exit("--password-file", password_file)
    if not password:
        err.print("[red]error:[/red] give --password, --password-file or AIRFLOW_PASSWORD")
        raise typer.Exit(2)
    masker.add(password)
    with client_for(server) as client:
        try:
            result = poll(
                url,
                username,
                password,
                client,
                instance=instance,
                once=once,
                interval=interval,
                report=report,
            )
        except (PollError, ClientError) as exc:
            err.print(f"[red]error:[/red] {escape(mask(str(exc)))}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    if result.sent is not None and not result.sent.delivered:
        raise typer.Exit(1)
