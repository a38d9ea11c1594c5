"""`coplane deploy`: register a flow entrypoint as a deployment on a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from coplane.cli.common import DEFAULT_SERVER, ServerOption, err, out, send_json


def _pairs(option: str, values: list[str], *, as_json: bool) -> dict[str, Any]:
    """`k=v` options as a dict; a value that reads as JSON is taken as JSON (`n=3` is 3)."""
    pairs: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            err.print(f"[red]error:[/red] {option} {value!r}: write it as name=value")
            raise typer.Exit(2)
        parsed: Any = raw
        if as_json:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw
        pairs[key] = parsed
    return pairs


def deploy(
    entrypoint: Annotated[
        str, typer.Argument(help="path/to/flows.py:function or package.module:function")
    ],
    name: Annotated[str, typer.Option("--name", help="the deployment's name")],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="a default parameter, name=value")
    ] = None,
    pool: Annotated[str, typer.Option("--pool", help="the work pool that runs it")] = "default",
    working_dir: Annotated[
        Path | None,
        typer.Option("--working-dir", help="the code's root [default: this directory]"),
    ] = None,
    git_url: Annotated[
        str | None, typer.Option("--git-url", help="take the code from this git repository")
    ] = None,
    git_ref: Annotated[str, typer.Option("--git-ref", help="branch, tag or commit")] = "main",
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="new attempts of a crashed run")
    ] = 0,
    concurrency_limit: Annotated[
        int | None, typer.Option("--concurrency-limit", min=1, help="most runs at once")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", help="an environment variable for its runs, K=V")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="a tag")] = None,
    cron: Annotated[
        str | None, typer.Option("--cron", help="run on this cron schedule (5 or 6 fields)")
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA time zone of --cron")] = "UTC",
    interval: Annotated[
        str | None, typer.Option("--interval", help="run every this long, such as 15m")
    ] = None,
    on_event: Annotated[
        str | None,
        typer.Option("--on-event", help="also run it on each event of this name (`*` allowed)"),
    ] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", help="with --on-event: of resources matching")
    ] = None,
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Create or replace a deployment. The server loads the entrypoint to read its signature
    and checks the parameters against it."""
    body: dict[str, Any] = {
        "name": name,
        "entrypoint": entrypoint,
        "parameters": _pairs("--param", param or [], as_json=True),
        "work_pool": pool,
        "retries": retries,
        "concurrency_limit": concurrency_limit,
        "env": _pairs("--env", env or [], as_json=False),
        "tags": tag or [],
    }
    if cron is not None and interval is not None:
        err.print("[red]error:[/red] --cron and --interval: give one of them")
        raise typer.Exit(2)
    if cron is not None:
        body["schedules"] = [{"cron": cron, "timezone": timezone}]
    elif interval is not None:
        body["schedules"] = [{"interval": interval}]
    if git_url is not None:
        if working_dir is not None:
            err.print("[red]error:[/red] --working-dir and --git-url: give one of them")
            raise typer.Exit(2)
        body |= {"git_url": git_url, "git_ref": git_ref}
    else:
        body["working_dir"] = str((working_dir or Path.cwd()).resolve())
    if resource is not None and on_event is None:
        err.print("[red]error:[/red] --resource goes with --on-event")
        raise typer.Exit(2)
    answer = send_json(server, "PUT", f"/api/deployments/{name}", body)
    out.print(f"deployment {answer['name']}: {answer['flow']} on pool {answer['work_pool']}")
    if on_event is not None:
        trigger: dict[str, Any] = {"event": on_event}
        if resource is not None:
            trigger["resource"] = resource
        automation = {"name": f"{name}-on-event", "trigger": trigger,
                      "actions": [{"type": "run_deployment", "deployment": name}]}  # fmt: skip
        send_json(server, "PUT", f"/api/automations/{name}-on-event", automation)
        out.print(f"automation {name}-on-event: runs it on {on_event}"
                  + (f" of {resource}" if resource else ""))  # fmt: skip
