"""`coplane emit`: send one event from the shell."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from coplane.cli.common import answer_text, auth_headers, err, out
from coplane.events.model import EventDecodeError, decode_events, encode_json


def _parse_related(values: list[str]) -> list[dict[str, str]]:
    related = []
    for value in values:
        role, sep, rid = value.partition("=")
        if not sep or not role or not rid:
            err.print(
                f"[red]error:[/red] --related {value!r}: expected ROLE=ID, e.g. run=2026-11-24"
            )
            raise typer.Exit(2)
        related.append({"role": role, "id": rid})
    return related


def emit(
    event: Annotated[str, typer.Argument(help="event name, e.g. run.completed")],
    resource: Annotated[str, typer.Argument(help="resource id, e.g. cron.nightly_export")],
    related: Annotated[
        list[str] | None, typer.Option("--related", "-r", help="ROLE=ID, repeatable")
    ] = None,
    payload: Annotated[str | None, typer.Option(help="JSON object")] = None,
    kind: Annotated[str | None, typer.Option(help="resource kind: pipeline, task, asset")] = None,
    occurred: Annotated[str | None, typer.Option(help="RFC 3339 time with offset [now]")] = None,
    server_url: Annotated[
        str, typer.Option("--server", envvar="COPLANE_URL", help="coplane server URL")
    ] = "http://127.0.0.1:4200",
) -> None:
    """Send one event to a coplane server."""
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "occurred": occurred or datetime.now(UTC).isoformat(),
        "event": event,
        "resource": {"id": resource, **({"kind": kind} if kind else {})},
        "related": _parse_related(related or []),
    }
    if payload is not None:
        try:
            body["payload"] = json.loads(payload)
        except json.JSONDecodeError as exc:
            err.print(f"[red]error:[/red] --payload is not JSON: {exc}")
            raise typer.Exit(2) from None
    raw = json.dumps(body).encode()
    try:  # validate locally first: the same rules as the server, with a clearer message
        decode_events(raw)
    except EventDecodeError as exc:
        where = ".".join(str(p) for p in exc.loc[1:])
        err.print(f"[red]error:[/red] {where}: {exc.message}")
        raise typer.Exit(2) from None
    try:
        response = httpx.post(
            f"{server_url.rstrip('/')}/api/events",
            content=raw,
            headers={"Content-Type": "application/json", **auth_headers()},
            timeout=10.0,
        )
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach {server_url}: {exc}")
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        err.print(
            f"[red]error:[/red] {server_url} answered {response.status_code}: "
            f"{escape(answer_text(response))}",
            highlight=False,
        )
        raise typer.Exit(1)
    out.print(encode_json(response.json()).decode())
