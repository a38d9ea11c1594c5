"""`coplane schedules`: pause and resume a deployment's schedules."""

from __future__ import annotations

from typing import Annotated

import typer

from coplane.cli.common import DEFAULT_SERVER, ServerOption, out, send_json

app = typer.Typer(help="Deployments' schedules.", no_args_is_help=True)


@app.command("pause")
def schedules_pause(
    deployment: Annotated[str, typer.Argument(help="the deployment's name")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Pause a deployment's schedules; the runs they made that have not started are cancelled."""
    answer = send_json(server, "POST", f"/api/deployments/{deployment}/pause")
    out.print(f"{deployment}: {len(answer['schedules'])} schedules paused")


@app.command("resume")
def schedules_resume(
    deployment: Annotated[str, typer.Argument(help="the deployment's name")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Resume a deployment's schedules and print when each runs next."""
    answer = send_json(server, "POST", f"/api/deployments/{deployment}/resume")
    for s in answer["schedules"]:
        nxt = s["next_runs"][0] if s["next_runs"] else "never"
        what = s["cron"] or f"every {s['interval_s']:g}s"
        out.print(f"{deployment}: {what} next at {nxt}")
