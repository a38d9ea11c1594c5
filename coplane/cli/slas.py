"""`coplane slas`: check, backtest and list SLA definitions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from coplane.cli.common import (
    DEFAULT_SERVER,
    ServerOption,
    database,
    err,
    get_json,
    load_config_or_exit,
    out,
    print_table,
    status_text,
    when,
)

app = typer.Typer(help="SLA definitions.", no_args_is_help=True)


@app.command("check")
def slas_check(file: Annotated[str, typer.Argument(help="config file, e.g. coplane.yaml")]) -> None:
    """Validate a config file's SLAs and channels, naming each problem's line."""
    from rich.markup import escape

    config = load_config_or_exit(Path(file))
    out.print(
        f"{escape(file)}: {len(config.slas)} SLAs, {len(config.channels)} channels, OK",
        highlight=False,
    )


@app.command("backtest")
def slas_backtest(
    file: Annotated[str, typer.Argument(help="config file, e.g. coplane.yaml")],
    since: Annotated[str, typer.Option(help="how far back, e.g. 30d, 12h")] = "30d",
    name: Annotated[str | None, typer.Option(help="only the SLA of this name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Replay the config file's SLAs over the stored events: the breaches they would have had."""
    from rich.markup import escape
    from rich.table import Table

    from coplane.rules.model import parse_duration
    from coplane.slas import backtest

    try:
        span = parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    slas = [s for s in load_config_or_exit(Path(file)).slas if name in (None, s.name)]
    if not slas:
        err.print(f"[red]error:[/red] no SLA named {escape(str(name))!r} in {escape(file)}")
        raise typer.Exit(2)
    end = datetime.now(UTC)
    results: dict[str, Any] = {}
    with database() as conn:
        for sla in slas:
            try:
                events = backtest.read_stored_events(conn, sla, end - span, end)
                found = backtest.run_backtest(sla, end - span, end, events)
            except backtest.BacktestError as exc:
                err.print(f"[red]error:[/red] {escape(sla.name)}: {escape(exc.message)}")
                raise typer.Exit(2) from None
            results[sla.name] = backtest.backtest_json(found)
    if as_json:
        out.print_json(data=results)
        return
    for sla_name, result in results.items():
        table = Table("due", "breached", "resolved", "reason", title=sla_name)
        for b in result["breaches"]:
            table.add_row(when(b["due"]), when(b["breached_at"]), when(b["resolved_at"]),
                          escape(b["reason"]))  # fmt: skip
        print_table(table)
        n = len(result["breaches"])
        out.print(f"{sla_name}: {n} breach{'' if n == 1 else 'es'} in {since}, "
                  f"{result['evaluations']} evaluations", highlight=False)  # fmt: skip


@app.command("list")
def slas_list(
    server: ServerOption = DEFAULT_SERVER,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Each SLA with its status, next deadline and when it was last met."""
    from rich.table import Table

    slas = get_json(server, "/api/slas")["slas"]
    if as_json:
        out.print_json(data=slas)
        return
    table = Table("name", "kind", "target", "status", "next deadline", "last met", "notify")
    for s in slas:
        target = s.get("target") or s.get("expect", {}).get("resource") or "-"
        table.add_row(
            s["name"],
            s["kind"],
            target,
            status_text(s["status"]),
            when(s.get("next_deadline")),
            when(s.get("last_met")),
            ", ".join(s.get("notify", [])),
        )
    print_table(table)
    out.print(f"{len(slas)} SLAs")
