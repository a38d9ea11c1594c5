"""`coplane calendars`: the business calendars of the config file."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from coplane.cli.common import err, load_config_or_exit, out

app = typer.Typer(help="Business calendars of the config file.", no_args_is_help=True)


@app.command("show")
def calendars_show(
    name: Annotated[str, typer.Argument(help="a calendar of the config file's calendars:")],
    year: Annotated[int, typer.Option(help="the year to list", min=1900, max=2200)] = datetime.now(
        UTC
    ).year,
    config: Annotated[
        str | None, typer.Option(help="config file (default: COPLANE_CONFIG)")
    ] = None,
) -> None:
    """List a calendar's days off in a year: holidays, closures and days off of the week."""
    from rich.markup import escape

    from coplane.rules.calendar import WEEKDAYS, days_off

    path = config or os.environ.get("COPLANE_CONFIG")
    if not path:
        err.print("[red]error:[/red] give --config FILE (or set COPLANE_CONFIG)")
        raise typer.Exit(2)
    calendars = load_config_or_exit(Path(path)).calendars
    if name not in calendars:
        known = ", ".join(sorted(calendars)) or "none are defined"
        err.print(
            f"[red]error:[/red] {escape(path)}: no calendar named {escape(name)!r} "
            f"in calendars: ({escape(known)})",
            highlight=False,
        )
        raise typer.Exit(2)
    calendar = calendars[name]
    weekly = [d for d in WEEKDAYS if d not in calendar.weekdays]
    # The weekly days off are one line, not a hundred: listed are the other days off, and
    # holidays that fall on a weekly day off (a notice for who expects them moved).
    for day, why in days_off(calendar, year):
        if why != day.strftime("%A"):
            out.print(f"{day.isoformat()}  {day:%a}  {escape(why)}", highlight=False)
    if weekly:
        out.print(f"and every {', '.join(weekly)}", highlight=False)
