"""The `coplane` command: one module per command group, assembled here."""

from __future__ import annotations

import typer

from coplane.cli import (
    airflow,
    alerts,
    automations,
    calendars,
    concurrency,
    connections,
    cron,
    db,
    dbt,
    deploy,
    emit,
    incidents,
    jobs,
    keys,
    runs,
    schedules,
    secrets,
    slas,
    users,
    worker,
)
from coplane.cli import server as server_command

app = typer.Typer(help="coplane: observability and SLAs for pipelines.", no_args_is_help=True)
app.command()(server_command.server)
app.add_typer(db.app, name="db")
app.add_typer(jobs.app, name="jobs")
app.add_typer(slas.app, name="slas")
app.add_typer(calendars.app, name="calendars")
app.add_typer(incidents.app, name="incidents")
app.add_typer(alerts.app, name="alerts")
app.command()(emit.emit)
app.add_typer(cron.app, name="cron")
app.add_typer(dbt.app, name="dbt")
app.add_typer(airflow.app, name="airflow")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(secrets.app, name="secrets")
app.add_typer(concurrency.app, name="concurrency")
app.add_typer(runs.app, name="runs")
app.add_typer(connections.app, name="connections")
app.command()(deploy.deploy)
app.command()(worker.worker)
app.add_typer(schedules.app, name="schedules")
app.add_typer(automations.app, name="automations")


def main() -> None:
    """Entry point for `python -m coplane`."""
    app(prog_name="coplane")
