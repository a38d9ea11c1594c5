"""The `coplane` command: server, db, emit, jobs, slas, incidents, alerts, cron, dbt, airflow."""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console

from coplane.events.model import EventDecodeError, decode_events, encode_json
from coplane.settings import Settings

if TYPE_CHECKING:
    from coplane.client import CoplaneClient
    from coplane.slas.config import CoplaneConfig
    from coplane.store.dialects import Conn

app = typer.Typer(help="coplane: observability and SLAs for pipelines.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
jobs_app = typer.Typer(help="Periodic jobs, run once.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(jobs_app, name="jobs")
slas_app = typer.Typer(help="SLA definitions.", no_args_is_help=True)
app.add_typer(slas_app, name="slas")
incidents_app = typer.Typer(help="Incidents opened by SLA breaches.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
alerts_app = typer.Typer(help="Alert channels.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
cron_app = typer.Typer(help="Cron jobs.", no_args_is_help=True)
app.add_typer(cron_app, name="cron")
dbt_app = typer.Typer(help="dbt projects.", no_args_is_help=True)
app.add_typer(dbt_app, name="dbt")
airflow_app = typer.Typer(help="Airflow deployments.", no_args_is_help=True)
app.add_typer(airflow_app, name="airflow")
keys_app = typer.Typer(help="API keys (used when COPLANE_AUTH=keys).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
users_app = typer.Typer(help="UI users (used when COPLANE_AUTH=keys).", no_args_is_help=True)
app.add_typer(users_app, name="users")
secrets_app = typer.Typer(
    help="Secrets stored encrypted (COPLANE_SECRET_KEY), named as ${secret:NAME} in channels.",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")
ServerOption = Annotated[
    str, typer.Option("--server", envvar="COPLANE_URL", help="coplane server URL")
]
DEFAULT_SERVER = "http://127.0.0.1:4200"
# soft_wrap: an error naming a file or URL must stay on one line, whatever the terminal
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _settings(**overrides: Any) -> Settings:
    from coplane.auth import mask

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


@app.command()
def server(
    host: Annotated[
        str | None, typer.Option(help="address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on [default: 4200]")] = None,
    config: Annotated[
        str | None, typer.Option(help="coplane.yaml with slas: and channels: [COPLANE_CONFIG]")
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="listen on an address other than loopback although nothing asks for a login",
        ),
    ] = False,
) -> None:
    """Run the collector, API and periodic jobs in one process."""
    import uvicorn
    from rich.markup import escape

    from coplane.server import create_app, limit_malloc_arenas

    limit_malloc_arenas()  # first, before any thread allocates
    settings = _settings(host=host, port=port, config=config)
    if not is_loopback(settings.host) and settings.auth == "none" and not insecure_no_auth:
        err.print(
            f"[red]error:[/red] refusing to listen on {escape(settings.host)} with "
            "COPLANE_AUTH=none: anyone who can reach it could read and change everything. "
            "Set COPLANE_AUTH=keys (and create keys with `coplane keys create`), or pass "
            "--insecure-no-auth to accept that.",
            highlight=False,
        )
        raise typer.Exit(2)
    if settings.config is not None:
        loaded = _load_config_or_exit(settings.config)
        out.print(f"{settings.config}: {len(loaded.slas)} SLAs, {len(loaded.channels)} channels")
    tls = _tls_files_or_exit(settings)
    app_ = create_app(settings)
    out.print(f"coplane {_version()} database: {_without_password(settings.database_url)}")
    out.print(f"coplane listening on [bold]{settings.own_url}[/bold]")
    if settings.auth == "none":
        out.print(
            "[yellow]open access:[/yellow] no login or API key is asked for "
            "(COPLANE_AUTH=none); anyone who can reach this address can read and change "
            "everything."
        )
    uvicorn.run(
        app_,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_keep_alive=settings.keepalive_timeout,
        # request heads (line and headers) larger than this are refused by h11 itself
        h11_max_incomplete_event_size=64 * 1024,
        ssl_certfile=tls[0],
        ssl_keyfile=tls[1],
    )


def _tls_files_or_exit(settings: Settings) -> tuple[str | None, str | None]:
    """uvicorn's TLS arguments, after loading the pair once so that a bad file is named here
    rather than in a traceback (and an encrypted key is refused instead of prompted for)."""
    import ssl

    from rich.markup import escape

    from coplane.auth.files import reason

    if settings.tls_cert is None or settings.tls_key is None:
        return None, None
    cert, key = str(settings.tls_cert), str(settings.tls_key)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            cert, key, password=lambda: b""
        )
    except OSError as exc:  # ssl.SSLError is one
        err.print(
            f"[red]error:[/red] COPLANE_TLS_CERT / COPLANE_TLS_KEY: cannot load {escape(cert)} "
            f"with {escape(key)}: {escape(reason(exc))} (a PEM certificate and its unencrypted "
            "key)",
            highlight=False,
        )
        raise typer.Exit(2) from None
    return cert, key


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _without_password(url: str) -> str:
    """The URL as safe to print: a password in it is masked."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def _load_config_or_exit(path: Path) -> CoplaneConfig:
    """The config file, or exit 2 naming each problem's line."""
    from rich.markup import escape

    from coplane.slas.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            err.print(f"[red]error:[/red] {escape(str(problem))}", highlight=False)
        raise typer.Exit(2) from None


def _version() -> str:
    from coplane import __version__

    return __version__


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to the database COPLANE_DATABASE_URL names."""
    from coplane.server import ensure_sqlite_folder
    from coplane.store.dialects import Database
    from coplane.store.migrate import upgrade_schema

    settings = _settings()
    ensure_sqlite_folder(settings.database_url)
    db = Database(settings.database_url, pool_size=1)
    try:
        with db.connect() as conn:
            applied = upgrade_schema(conn)
    finally:
        db.close()
    if applied:
        for m in applied:
            out.print(f"applied {m.version:04d}_{m.name}")
    else:
        out.print("database is up to date")


@jobs_app.command("run")
def jobs_run(name: Annotated[str, typer.Argument(help="job name, e.g. maintain-events")]) -> None:
    """Run one periodic job now, against the configured database."""
    from coplane.jobs.scheduler import JOBS, run_job
    from coplane.server import open_configured_store

    if name not in JOBS:
        err.print(f"[red]error:[/red] no job named {name!r}; jobs: {', '.join(sorted(JOBS))}")
        raise typer.Exit(2)
    store = open_configured_store(_settings())
    try:
        result = run_job(name, store, _settings())
    finally:
        store.close()
    out.print(result)


@slas_app.command("check")
def slas_check(file: Annotated[str, typer.Argument(help="config file, e.g. coplane.yaml")]) -> None:
    """Validate a config file's SLAs and channels, naming each problem's line."""
    from rich.markup import escape

    config = _load_config_or_exit(Path(file))
    out.print(
        f"{escape(file)}: {len(config.slas)} SLAs, {len(config.channels)} channels, OK",
        highlight=False,
    )


@slas_app.command("backtest")
def slas_backtest(
    file: Annotated[str, typer.Argument(help="config file, e.g. coplane.yaml")],
    since: Annotated[str, typer.Option(help="how far back, e.g. 30d, 12h")] = "30d",
    name: Annotated[str | None, typer.Option(help="only the SLA of this name")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Replay the config file's SLAs over the stored events: the breaches they would have had."""
    from rich.markup import escape
    from rich.table import Table

    from coplane.slas import backtest
    from coplane.slas.model import parse_duration

    try:
        span = parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    slas = [s for s in _load_config_or_exit(Path(file)).slas if name in (None, s.name)]
    if not slas:
        err.print(f"[red]error:[/red] no SLA named {escape(str(name))!r} in {escape(file)}")
        raise typer.Exit(2)
    end = datetime.now(UTC)
    results: dict[str, Any] = {}
    with _database() as conn:
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
            table.add_row(_when(b["due"]), _when(b["breached_at"]), _when(b["resolved_at"]),
                          escape(b["reason"]))  # fmt: skip
        out.print(table)
        n = len(result["breaches"])
        out.print(f"{sla_name}: {n} breach{'' if n == 1 else 'es'} in {since}, "
                  f"{result['evaluations']} evaluations", highlight=False)  # fmt: skip


API_KEY_ENV = "COPLANE_API_KEY"  # the key commands that talk to a server send


def auth_headers() -> dict[str, str]:
    """`Authorization: Bearer` with COPLANE_API_KEY, when it is set."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _get_json(server: str, path: str, params: dict[str, Any] | None = None) -> Any:
    """GET a server's API; exit 1 naming the server when it cannot answer."""
    url = server.rstrip("/") + path
    try:
        resp = httpx.get(url, params=params, headers=auth_headers(), timeout=30)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach {url}: {exc}", highlight=False)
        raise typer.Exit(1) from None
    if resp.status_code != 200:
        detail = resp.text[:300]
        err.print(f"[red]error:[/red] {url} answered {resp.status_code}: {detail}", markup=True)
        raise typer.Exit(1)
    return resp.json()


def _when(value: str | None) -> str:
    """An API time for a table: minutes, in UTC."""
    if value is None:
        return "-"
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M")


@slas_app.command("list")
def slas_list(
    server: ServerOption = DEFAULT_SERVER,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Each SLA with its status, next deadline and when it was last met."""
    from rich.table import Table

    slas = _get_json(server, "/api/slas")["slas"]
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
            _status(s["status"]),
            _when(s.get("next_deadline")),
            _when(s.get("last_met")),
            ", ".join(s.get("notify", [])),
        )
    out.print(table)
    out.print(f"{len(slas)} SLAs")


def _status(status: str | None) -> str:
    colour = {"ok": "green", "at_risk": "yellow", "breached": "red"}.get(status or "", "dim")
    return f"[{colour}]{status or 'unknown'}[/{colour}]"


@incidents_app.command("list")
def incidents_list(
    state: Annotated[str | None, typer.Option(help="open or resolved [default: both]")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="at most this many")] = 50,
    server: ServerOption = DEFAULT_SERVER,
    as_json: Annotated[bool, typer.Option("--json", help="print the API's JSON")] = False,
) -> None:
    """Incidents, newest first, with their reason and where they were announced."""
    from rich.markup import escape
    from rich.table import Table

    if state not in (None, "open", "resolved"):
        err.print(f"[red]error:[/red] --state {state!r}: use open or resolved")
        raise typer.Exit(2)
    params: dict[str, Any] = {"limit": limit} | ({"state": state} if state else {})
    incidents = _get_json(server, "/api/incidents", params)["incidents"]
    if as_json:
        out.print_json(data=incidents)
        return
    table = Table("opened", "sla", "severity", "state", "reason", "alerts")
    for i in incidents:
        state_text = "resolved" if i["resolved"] else ("acked" if i["acked"] else "open")
        alerts = ", ".join(f"{n['channel']}: {n['status']}" for n in i["notifications"])
        table.add_row(
            _when(i["opened"]),
            escape(i["sla"]),
            i["severity"],
            state_text,
            escape(i["reason"]),
            escape(alerts) or "-",
        )
    out.print(table)
    out.print(f"{len(incidents)} incidents")


@alerts_app.command("test")
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
    from coplane.auth.mask import mask
    from coplane.auth.vault import SecretError, Vault, references

    settings = _settings(config=config)
    if settings.config is None:
        err.print("[red]error:[/red] give --config coplane.yaml (or set COPLANE_CONFIG)")
        raise typer.Exit(2)
    loaded = _load_config_or_exit(settings.config)
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
            with _database() as conn:
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


@app.command()
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
        err.print(f"[red]error:[/red] {response.status_code} {response.text}")
        raise typer.Exit(1)
    out.print(encode_json(response.json()).decode())


PING_KEY_ENV = "COPLANE_PING_KEY"  # the ping key `cron wrap --ping-key` reads


@cron_app.command(
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
cron_app.add_typer(cron_keys_app, name="keys")


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
    base = _settings().link_base
    with _database() as conn:
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

    with _database() as conn:
        keys = list_ping_keys(conn)
    table = Table("slug", "prefix", "created")
    for k in keys:
        table.add_row(k.slug, k.prefix, _when(k.created.isoformat()))
    out.print(table)
    out.print(f"{len(keys)} ping keys")


@cron_keys_app.command("revoke")
def cron_keys_revoke(
    slug: Annotated[str, typer.Argument(help="the monitor whose ping key to revoke")],
) -> None:
    """Revoke the monitor's ping key: pings with it are refused (404) from now on."""
    from rich.markup import escape

    from coplane.store.errors import NotFound
    from coplane.store.ping_keys import revoke_ping_key

    with _exit_on(NotFound), _database() as conn:
        key = revoke_ping_key(conn, slug)
    out.print(f"revoked {key.prefix}… ({escape(key.slug)})", highlight=False)


def _dbt_client(server: str) -> CoplaneClient:
    """A client for the dbt commands; exit 2 for a server URL that is not one."""
    from rich.markup import escape

    from coplane.client import CoplaneClient

    try:
        return CoplaneClient(server, api_key=os.environ.get(API_KEY_ENV))
    except ValueError as exc:
        err.print(f"[red]error:[/red] --server: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


@dbt_app.command("ingest")
def dbt_ingest(
    target: Annotated[
        Path, typer.Argument(help="dbt's target directory, e.g. target/", show_default=False)
    ],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Send a dbt invocation's runs, tests and source freshness from its target directory."""
    from rich.markup import escape

    from coplane.client import ClientError
    from coplane.integrations.dbt.artifacts import ArtifactError
    from coplane.integrations.dbt.ingest import ingest

    with _dbt_client(server) as client:
        try:
            summary = ingest(target, client)
        except ArtifactError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(2) from None
        except ClientError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
    for line in summary.lines():
        out.print(escape(line), highlight=False)
    if not summary.sent.delivered:
        err.print(
            "[yellow]warning:[/yellow] not every event reached the server; spooled events are "
            "sent by the next coplane client call",
            highlight=False,
        )
        raise typer.Exit(1)


@dbt_app.command(
    "run",
    # everything after `run` is dbt's: `coplane dbt run build --select x` runs `dbt build ...`
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def dbt_run(
    args: Annotated[list[str], typer.Argument(help="dbt's arguments, after --", metavar="ARGS")],
    server: ServerOption = DEFAULT_SERVER,
) -> None:
    """Run dbt with ARGS, then send what it wrote to its target directory; exit with dbt's code."""
    import os

    from rich.markup import escape

    from coplane.client import ClientError
    from coplane.integrations.dbt import ingest as dbt
    from coplane.integrations.dbt.artifacts import ArtifactError

    executable = dbt.dbt_executable()
    if executable is None:
        err.print("[red]error:[/red] dbt not found beside this Python or on PATH", highlight=False)
        raise typer.Exit(dbt.EXIT_NOT_FOUND)
    target = dbt.target_dir(args, Path.cwd(), os.environ)
    with _dbt_client(server) as client:  # a bad --server is refused before dbt runs
        before = dbt.stamps(target)
        code = dbt.run_dbt(executable, args)
        written = dbt.rewritten(before, dbt.stamps(target))
        if not written:
            err.print(
                f"coplane: dbt wrote no run results to {escape(str(target))}: nothing reported",
                highlight=False,
            )
            raise typer.Exit(code)
        try:
            summary = dbt.ingest(target, client, written)
        except (ArtifactError, ClientError) as exc:
            err.print(f"coplane: [red]not reported:[/red] {escape(str(exc))}", highlight=False)
        except Exception as exc:  # whatever went wrong, the exit code stays dbt's
            problem = f"{type(exc).__name__}: {exc}"
            err.print(f"coplane: [red]not reported:[/red] {escape(problem)}", highlight=False)
        else:
            for line in summary.lines():
                err.print(f"coplane: {escape(line)}", highlight=False)
    raise typer.Exit(code)


@airflow_app.command("poll")
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

    from coplane.auth.mask import mask, masker
    from coplane.client import ClientError
    from coplane.integrations.airflow.poller import PollError, PollResult, poll

    def report(result: PollResult) -> None:
        sent = result.sent
        stored = f"{sent.accepted} new, {sent.duplicates} known" if sent else "none sent"
        out.print(
            f"{result.dag_runs} DAG runs, {result.task_instances} task instances: "
            f"{len(result.events)} events ({stored})",
            highlight=False,
        )

    if password_file is not None:
        password = _secret_file_or_exit("--password-file", password_file)
    if not password:
        err.print("[red]error:[/red] give --password, --password-file or AIRFLOW_PASSWORD")
        raise typer.Exit(2)
    masker.add(password)
    with _dbt_client(server) as client:
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


def _secret_file_or_exit(option: str, path: Path) -> str:
    """A credential read from a file; exit 2 naming the option and the file when it cannot."""
    from rich.markup import escape

    from coplane.auth.files import UnreadableFile, read_secret_file

    try:
        return read_secret_file(path)
    except UnreadableFile as exc:
        err.print(f"[red]error:[/red] {option}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def _exit_on(*errors: type[Exception]) -> Iterator[None]:
    """One of these errors ends the command: its message on stderr, exit code 1."""
    from rich.markup import escape

    try:
        yield
    except errors as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None


@contextmanager
def _database() -> Iterator[Conn]:
    """A connection to the database COPLANE_DATABASE_URL names, its schema up to date."""
    from coplane.server import ensure_sqlite_folder
    from coplane.store.migrate import migrated_connection

    settings = _settings()
    ensure_sqlite_folder(settings.database_url)
    with migrated_connection(settings.database_url) as conn:
        yield conn


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what uses the key, e.g. airflow-prod")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="ingest, read or admin; repeat for several [default: ingest]"),
    ] = None,
    resources: Annotated[
        list[str] | None,
        typer.Option(
            help="resource ids or prefixes ending in * the key may send events about, "
            "comma-separated or repeated, e.g. 'airflow.prod.*' [default: any]"
        ),
    ] = None,
) -> None:
    """Create a key and print it once: coplane keeps only its hash."""
    from coplane.auth.keys import SCOPES, check_resource_patterns, create_key

    scope = scope or ["ingest"]
    unknown = [s for s in scope if s not in SCOPES]
    if unknown:
        err.print(f"[red]error:[/red] --scope {unknown[0]!r}: expected one of {', '.join(SCOPES)}")
        raise typer.Exit(2)
    try:
        patterns = check_resource_patterns(
            [p for given in resources or [] for p in given.split(",")]
        )
    except ValueError as exc:
        err.print(f"[red]error:[/red] --resources: {exc}", markup=True, highlight=False)
        raise typer.Exit(2) from None
    with _database() as conn:
        key, secret = create_key(
            conn, name, [s for s in SCOPES if s in scope], resources=patterns
        )
    limited = f", resources {', '.join(key.resources)}" if key.resources else ""
    err.print(
        f"key {key.prefix}… ({', '.join(key.scopes)}{limited}) for {key.name}, id {key.id}"
    )
    err.print("It is shown only now: store it where its user reads secrets from.")
    out.print(secret, highlight=False, soft_wrap=True)


@keys_app.command("list")
def keys_list() -> None:
    """Every key: prefix, name, scopes, created, last used, active or revoked."""
    from rich.table import Table

    from coplane.auth.keys import list_keys

    with _database() as conn:
        keys = list_keys(conn)
    # the resources column only when some key is limited: the table stays narrow otherwise
    limited = any(k.resources for k in keys)
    table = Table("prefix", "name", "scopes", *(["resources"] if limited else []))
    for column in ("created", "last used", "state"):
        table.add_column(column)
    for k in keys:
        used = _when(k.used.isoformat() if k.used else None)
        state = "revoked" if k.revoked else "active"
        resources = [",".join(k.resources) or "any"] if limited else []
        table.add_row(
            k.prefix,
            k.name,
            ",".join(k.scopes),
            *resources,
            _when(k.created.isoformat()),
            used,
            state,
        )
    out.print(table)
    out.print(f"{len(keys)} keys")


@keys_app.command("revoke")
def keys_revoke(which: Annotated[str, typer.Argument(help="the key's id or prefix")]) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from coplane.auth.keys import revoke_key
    from coplane.store.errors import NotFound

    with _exit_on(NotFound), _database() as conn:
        key = revoke_key(conn, which)
    out.print(f"revoked {key.prefix}… ({key.name})")


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="the name to log in with")],
    role: Annotated[str, typer.Option(help="viewer, editor (acknowledges, resolves) or admin")],
    password_file: Annotated[
        Path | None, typer.Option(help="read the password from this file instead of asking")
    ] = None,
) -> None:
    """Create a UI user; the password is asked for twice (hidden) unless --password-file."""
    from coplane.auth.users import ROLES, create_user

    if role not in ROLES:
        err.print(f"[red]error:[/red] --role {role!r}: expected one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    if password_file is not None:
        password = _secret_file_or_exit("--password-file", password_file)
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with _database() as conn:
            user = create_user(conn, name, password, role)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"created {user.role} {user.name}")


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="the user's name")],
    password_file: Annotated[
        Path | None, typer.Option(help="read the new password from this file instead of asking")
    ] = None,
) -> None:
    """Set a user's password (asked twice, hidden, unless --password-file); ends their sessions."""
    from coplane.auth.users import set_password
    from coplane.store.errors import NotFound

    if password_file is not None:
        password = _secret_file_or_exit("--password-file", password_file)
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        with _exit_on(NotFound), _database() as conn:
            user = set_password(conn, name, password)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    out.print(f"new password for {user.name}; their sessions have ended")


@users_app.command("delete")
def users_delete(name: Annotated[str, typer.Argument(help="the user's name")]) -> None:
    """Delete a user: their sessions end at once."""
    from coplane.auth.users import delete_user
    from coplane.store.errors import NotFound

    with _exit_on(NotFound), _database() as conn:
        user = delete_user(conn, name)
    out.print(f"deleted {user.role} {user.name}")


@users_app.command("logout")
def users_logout(name: Annotated[str, typer.Argument(help="the user's name")]) -> None:
    """End every session of a user, in every browser: they must log in again."""
    from coplane.auth.users import end_user_sessions
    from coplane.store.errors import NotFound

    with _exit_on(NotFound), _database() as conn:
        ended = end_user_sessions(conn, name)
    out.print(f"ended {ended} sessions of {name.strip()}")


@users_app.command("list")
def users_list() -> None:
    """Every UI user with their role."""
    from coplane.auth.users import list_users

    with _database() as conn:
        users = list_users(conn)
    for user, created in users:
        out.print(f"{user.name}\t{user.role}\tcreated {_when(created.isoformat())}")
    out.print(f"{len(users)} users")


@secrets_app.command("set")
def secrets_set(
    name: Annotated[str, typer.Argument(help="the name channels use: ${secret:NAME}")],
    value_file: Annotated[
        Path | None,
        typer.Option(help="read the value from this file (- for standard input) instead of asking"),
    ] = None,
) -> None:
    """Store a secret encrypted with COPLANE_SECRET_KEY (asked for, hidden, unless --value-file)."""
    from rich.markup import escape

    from coplane.auth.vault import SecretError, Vault, check_name, check_value

    problem = check_name(name)
    if problem:
        err.print(f"[red]error:[/red] NAME: {problem}", highlight=False)
        raise typer.Exit(2)
    settings = _settings()
    if value_file is None:
        value = typer.prompt("Value", hide_input=True)
    elif str(value_file) == "-":
        value = sys.stdin.read().removesuffix("\n")
    else:
        value = _secret_file_or_exit("--value-file", value_file)
    problem = check_value(value)
    if problem:
        source = "the value" if value_file is None else f"--value-file {value_file}"
        err.print(f"[red]error:[/red] {escape(source)}: {problem}", highlight=False)
        raise typer.Exit(2)
    with _exit_on(SecretError), _database() as conn:
        new = Vault(settings.secret_key).put(conn, name, value)
    out.print(f"{'stored' if new else 'replaced'} secret {name}", highlight=False)


@secrets_app.command("list")
def secrets_list() -> None:
    """Every stored secret's name and when it was set (never a value)."""
    from coplane.auth.vault import list_secrets

    with _database() as conn:
        found = list_secrets(conn)
    for info in found:
        out.print(
            f"{info.name}\tset {_when(info.updated.isoformat())}\t"
            f"created {_when(info.created.isoformat())}",
            highlight=False,
        )
    out.print(f"{len(found)} secrets")


@secrets_app.command("delete")
def secrets_delete(name: Annotated[str, typer.Argument(help="the secret's name")]) -> None:
    """Forget a stored secret; channels that name it fail until it is set again."""
    from coplane.auth.vault import delete_secret
    from coplane.store.errors import NotFound

    with _exit_on(NotFound), _database() as conn:
        delete_secret(conn, name)
    out.print(f"deleted secret {name}", highlight=False)


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret under the first key of COPLANE_SECRET_KEY."""
    from coplane.auth.vault import SecretError, Vault

    settings = _settings()
    with _exit_on(SecretError), _database() as conn:
        count = Vault(settings.secret_key).rotate(conn)
    out.print(f"re-encrypted {count} secrets under the first key of COPLANE_SECRET_KEY")


@secrets_app.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new random key for COPLANE_SECRET_KEY."""
    from coplane.auth.vault import generate_key

    out.print(generate_key(), highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point for `python -m coplane`."""
    app(prog_name="coplane")


if __name__ == "__main__":  # pragma: no cover
    main()
