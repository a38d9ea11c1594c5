"""Helpers every command group shares: settings, consoles, the server option, the database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from coplane.settings import Settings

if TYPE_CHECKING:
    from coplane.client import CoplaneClient
    from coplane.slas.config import CoplaneConfig
    from coplane.store.dialects import Conn


ServerOption = Annotated[
    str, typer.Option("--server", envvar="COPLANE_URL", help="coplane server URL")
]
DEFAULT_SERVER = "http://127.0.0.1:4200"
# soft_wrap: an error naming a file or URL must stay on one line, whatever the terminal
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
PIPED_WIDTH = 10_000  # a table's natural width is narrower: it is printed whole


def print_table(table: Table) -> None:
    """A table on standard output: fitted to a terminal, and whole when piped or redirected
    (rich's fallback of 80 columns cut cells to '…', lost to grep and files)."""
    if out.is_terminal:
        out.print(table)
    else:  # print(width=) is capped at the console's own width: a console as wide as needed
        Console(file=out.file, width=PIPED_WIDTH, soft_wrap=True).print(table)


def load_settings(**overrides: Any) -> Settings:
    from coplane.security import mask

    mask.install()  # whatever this command logs, credentials are masked
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for e in exc.errors():
            msg = str(e["msg"]).removeprefix("Value error, ")
            if e["loc"]:
                msg = f"COPLANE_{'_'.join(str(p) for p in e['loc']).upper()}: {msg}"
            err.print(f"[red]error:[/red] {msg}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def load_config_or_exit(path: Path) -> CoplaneConfig:
    """The config file, or exit 2 naming each problem's line."""
    from rich.markup import escape

    from coplane.slas.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {escape(str(problem))}", highlight=False)
        raise typer.Exit(2) from None


def version() -> str:
    from coplane.version import __version__

    return __version__


API_KEY_ENV = "COPLANE_API_KEY"  # the key commands that talk to a server send


def auth_headers() -> dict[str, str]:
    """`Authorization: Bearer` with COPLANE_API_KEY, when it is set."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def key_hint(status: int | None) -> str:
    """What to do about a 401 answered to a command that sent no API key ("" otherwise)."""
    if status == 401 and not os.environ.get(API_KEY_ENV, "").strip():
        return (
            f". The server asks for an API key: set {API_KEY_ENV} to one "
            "(`coplane keys create NAME` on the server's machine makes one)"
        )
    return ""


def answer_text(resp: httpx.Response) -> str:
    """A refusal as a person reads it: the error body's detail, else the start of the body."""
    try:
        detail = resp.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else resp.text[:300]
    return text + key_hint(resp.status_code)


def get_json(server: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET a server's API; exit 1 naming the server when it cannot answer."""
    from rich.markup import escape

    url = server.rstrip("/") + path
    try:
        resp = httpx.get(url, params=params, headers=auth_headers(), timeout=30)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach {url}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    if resp.status_code != 200:
        detail = escape(answer_text(resp))
        err.print(f"[red]error:[/red] {url} answered {resp.status_code}: {detail}", highlight=False)
        raise typer.Exit(1)
    return resp.json()


def when(value: str | None) -> str:
    """An API time for a table: minutes, in UTC."""
    if value is None:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def status_text(status: str | None) -> str:
    colour = {"ok": "green", "at_risk": "yellow", "breached": "red"}.get(status or "", "dim")
    return f"[{colour}]{status or 'unknown'}[/{colour}]"


def secret_file_or_exit(option: str, path: Path) -> str:
    """A credential read from a file; exit 2 naming the option and the file when it cannot."""
    from rich.markup import escape

    from coplane.security.files import UnreadableFile, read_secret_file

    try:
        return read_secret_file(path)
    except UnreadableFile as exc:
        err.print(f"[red]error:[/red] {option}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def exit_on(*errors: type[Exception]) -> Iterator[None]:
    """One of these errors ends the command: its message on stderr, exit code 1."""
    from rich.markup import escape

    try:
        yield
    except errors as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


@contextmanager
def database() -> Iterator[Conn]:
    """A connection to the database COPLANE_DATABASE_URL names, its schema up to date."""
    from coplane.server import ensure_sqlite_folder
    from coplane.store.migrate import migrated_connection

    settings = load_settings()
    ensure_sqlite_folder(settings.database_url)
    with migrated_connection(settings.database_url) as conn:
        yield conn


def client_for(server: str) -> CoplaneClient:
    """A client for `server` sending COPLANE_API_KEY; exit 2 for a URL that is not one."""
    from rich.markup import escape

    from coplane.client import CoplaneClient

    try:
        return CoplaneClient(server, api_key=os.environ.get(API_KEY_ENV))
    except ValueError as exc:
        err.print(f"[red]error:[/red] --server: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


def send_json(server: str, method: str, path: str, body: Any = None) -> Any:
    """Send JSON to a server's API and return its answer. Exit 1 naming the server when it
    cannot be reached or fails; exit 2 with its status and message (naming the field) when it
    refuses the request as wrong (400, 404, 409, 422), since sending it again cannot help."""
    from rich.markup import escape

    url = server.rstrip("/") + path
    try:
        resp = httpx.request(method, url, json=body, headers=auth_headers(), timeout=120)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach {escape(url)}: {escape(str(exc))}",
                  highlight=False)  # fmt: skip
        raise typer.Exit(1) from None
    if resp.status_code < 300:
        return resp.json() if resp.content else None
    try:
        answer = resp.json()
    except ValueError:
        answer = {"detail": resp.text[:300]}
    where = [".".join(str(p) for p in e["loc"] if p != "body") for e in answer.get("errors", [])
             if e.get("loc")]  # fmt: skip
    detail = str(answer.get("detail", answer))
    prefix = f"{where[0]}: " if where and where[0] and where[0] not in detail else ""
    err.print(f"[red]error:[/red] {escape(url)} answered {resp.status_code}: "
              f"{escape(prefix + detail)}", highlight=False)  # fmt: skip
    raise typer.Exit(2 if resp.status_code in (400, 404, 409, 422) else 1)


def pairs(option: str, items: list[str] | None) -> dict[str, str]:
    """NAME=VALUE options as a dict; exit 2 naming the option for one without `=`."""
    found: dict[str, str] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name:
            err.print(f"[red]error:[/red] {option} {item.split('=')[0]!r}...: expected NAME=VALUE")
            raise typer.Exit(2)
        found[name] = value
    return found
