"""The `coplane server` command: collector, SLA engine, notifier and UI in one process."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from coplane.cli.common import err, load_config_or_exit, load_settings, out, version
from coplane.settings import Settings


def server(
    host: Annotated[
        str | None, typer.Option(help="address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on [default: 4200]")] = None,
    config: Annotated[
        str | None, typer.Option(help="coplane.yaml with slas: and channels: [COPLANE_CONFIG]")
    ] = None,
    no_worker: Annotated[
        bool,
        typer.Option("--no-worker", help="run no worker for the default pool in this process"),
    ] = False,
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
    settings = load_settings(
        host=host, port=port, config=config, worker=False if no_worker else None
    )
    if not is_loopback(settings.host) and settings.auth == "none" and not insecure_no_auth:
        err.print(
            f"[red]error:[/red] refusing to listen on {escape(settings.host)} with "
            "COPLANE_AUTH=none: anyone who can reach it could read and change everything. "
            "Set COPLANE_AUTH=keys (and create keys with `coplane keys create`), or pass "
            "--insecure-no-auth to accept that.",
            highlight=False,
        )
        raise typer.Exit(2)
    # with COPLANE_LOG_FORMAT=json every line of output is JSON: the log says all this too
    say = settings.log_format == "text"
    if settings.config is not None:
        loaded = load_config_or_exit(settings.config)
        if say:
            out.print(
                f"{settings.config}: {len(loaded.slas)} SLAs, {len(loaded.channels)} channels"
            )
    tls = _tls_files_or_exit(settings)
    _port_free_or_exit(settings.host, settings.port)
    _database_or_exit(settings.database_url)
    # Only now the app's imports (seconds on a busy machine), so that a mistyped port or
    # database URL is answered at once.
    from coplane.logs import configure_logging
    from coplane.server import limit_malloc_arenas

    limit_malloc_arenas()  # before any thread allocates
    configure_logging(settings.log_level, settings.log_format)
    app_ = create_app(settings)
    if say:
        out.print(f"coplane {version()} database: {_without_password(settings.database_url)}")
        out.print(f"coplane listening on [bold]{settings.own_url}[/bold]")
    if say and settings.auth == "none":
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
        log_config=None,  # configure_logging's handler formats uvicorn's lines too
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

    from coplane.security.files import reason

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


def _port_free_or_exit(host: str, port: int) -> None:
    """Exit 2 naming --port when the address is taken, before anything says it listens.

    uvicorn would start the app, report the bind error as an errno, and exit 0 or 1 after
    the start-up lines already claimed to be listening."""
    import socket

    from rich.markup import escape

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # as uvicorn does: a port left in TIME_WAIT by an earlier server is free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        why = exc.strerror or str(exc)
        err.print(
            f"[red]error:[/red] cannot listen on {escape(host)}:{port}: {escape(why)}. "
            "Another process (perhaps another coplane server) has it: stop that one, or pick "
            "another port with --port (or COPLANE_PORT).",
            highlight=False,
        )
        raise typer.Exit(2) from None


def _database_or_exit(url: str) -> None:
    """Exit 2 with the database server's answer on one line when it cannot be reached."""
    from rich.markup import escape

    from coplane.store.dialects import check_database
    from coplane.store.errors import DatabaseUnavailable

    try:
        check_database(url)
    except DatabaseUnavailable as exc:
        err.print(
            f"[red]error:[/red] COPLANE_DATABASE_URL: cannot connect to "
            f"{escape(_without_password(url))}: {escape(str(exc))}",
            highlight=False,
        )
        raise typer.Exit(2) from None


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
