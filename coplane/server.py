"""The coplane server: the FastAPI app (collector and API) and the periodic jobs, in one process."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from coplane.alerts.dispatcher import Dispatcher
from coplane.auth import api as keys_api
from coplane.auth import secrets_api
from coplane.auth.hosts import CheckHost, HostPolicy
from coplane.auth.middleware import CrossSiteGuard, RequireKeys
from coplane.auth.vault import Vault
from coplane.collector import ingest, ping, ping_keys, reads
from coplane.http.errors import install_error_handlers, refuse_nul_in_query
from coplane.http.request_ids import RequestIds
from coplane.jobs.scheduler import Scheduler
from coplane.orchestrate import api as orchestrate_api
from coplane.orchestrate import automations_api, deployments_api
from coplane.orchestrate.automations import sync_file_automations
from coplane.orchestrate.deployments import DeploymentError
from coplane.orchestrate.register import sync_file_deployments
from coplane.orchestrate.workers import Worker, WorkerOptions, show_run_output
from coplane.security import mask
from coplane.settings import Settings
from coplane.slas import api as slas_api
from coplane.slas.config import ConfigError, CoplaneConfig, problem_at
from coplane.slas.engine import SlaEngine
from coplane.store import Store, open_store
from coplane.store.slas import list_slas
from coplane.version import __version__
from coplane.web import login
from coplane.web import routes as web_routes
from coplane.web.headers import SecurityHeaders
from coplane.web.limits import LimitBodies

log = logging.getLogger(__name__)


M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h
MALLOC_ARENAS = 2


def limit_malloc_arenas(environ: Mapping[str, str] = os.environ) -> bool:
    """Cap glibc's malloc arenas at MALLOC_ARENAS unless MALLOC_ARENA_MAX is set; whether it did.

    glibc gives threads that allocate at once arenas of their own, up to 8 per core, and memory
    freed in one arena is not reused from another. Under steady ingest on PostgreSQL the
    server's RSS so crept up about 1.5 MiB a minute while the memory in use stayed flat; with
    two arenas it levels off (bench/soak.py). Call it before the server starts its threads.
    """
    if "MALLOC_ARENA_MAX" in environ or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, MALLOC_ARENAS))


def ensure_sqlite_folder(url: str) -> None:
    """Create the folder of a SQLite database file, so that the default works on first start."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def open_configured_store(settings: Settings) -> Store:
    """Open the database the settings name, creating the SQLite folder when needed."""
    ensure_sqlite_folder(settings.database_url)
    return open_store(
        settings.database_url,
        pool_size=settings.database_pool_size,
        writers=settings.database_writers,
        timeout=settings.database_timeout,
    )


def create_app(settings: Settings | None = None, *, store: Store | None = None) -> FastAPI:
    """The app; it opens (and at shutdown closes) its own store unless one is passed in."""
    settings = settings or Settings()
    mask.install()
    vault = Vault(settings.secret_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        app.state.store = store if store is not None else open_configured_store(settings)
        orchestrate_api.mask_stored_connection_secrets(app.state.store, vault)
        scheduler = Scheduler(app.state.store, settings)
        scheduler.start()
        dispatcher = Dispatcher(
            app.state.store,
            {},
            settings.link_base,
            max_backoff=settings.alerts_max_backoff,
            vault=vault,
        )
        app.state.dispatcher = dispatcher
        engine = SlaEngine(app.state.store, scheduler, settings.config, dispatcher=dispatcher)
        app.state.sla_engine = engine
        app.state.store.writer.add_listener(engine.request_evaluation)
        if settings.config is not None:
            engine.config_listeners.append(_deployments_from(app.state.store, settings.config))
        engine.start()  # loads the config's SLAs and catches up on missed deadlines
        dispatcher.start()
        _log_what_was_loaded(settings, app.state.store, engine)
        _reload_on_sighup(engine)
        worker = _start_worker(app.state.store, settings) if settings.worker else None
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            scheduler.shutdown()
            engine.stop()
            dispatcher.stop()
            if own:
                app.state.store.close()

    app = FastAPI(
        title="coplane",
        version=__version__,
        lifespan=lifespan,
        dependencies=[Depends(refuse_nul_in_query)],
    )
    app.state.settings = settings
    app.state.vault = vault
    install_error_handlers(app)
    app.include_router(ingest.router, tags=["ingest"])
    app.include_router(reads.router, tags=["read"])
    app.include_router(ping.router, tags=["ping"])
    app.include_router(ping_keys.router, tags=["ping"])
    app.include_router(slas_api.router, tags=["slas"])
    app.include_router(orchestrate_api.router, tags=["orchestrate"])
    app.include_router(deployments_api.router, tags=["deployments"])
    app.include_router(automations_api.router, tags=["automations"])
    app.include_router(web_routes.router)
    app.mount("/static", StaticFiles(directory=web_routes.STATIC_DIR), name="static")
    app.include_router(keys_api.router, tags=["keys"])
    app.include_router(secrets_api.router, tags=["secrets"])
    app.include_router(login.router)
    if settings.auth == "keys":
        app.add_middleware(RequireKeys, ingest_rate=settings.ingest_rate_limit)
    # before any key check
    app.add_middleware(
        CrossSiteGuard, public_url=settings.public_url, keys=settings.auth == "keys"
    )
    hosts = HostPolicy.of(settings.host, settings.public_url, settings.allowed_hosts)
    app.add_middleware(LimitBodies, timeout=settings.body_timeout)  # before any key check
    app.add_middleware(CheckHost, policy=hosts)  # before anything reads the request
    app.add_middleware(RequestIds)  # every answer and its log lines carry the request id
    app.add_middleware(SecurityHeaders)  # outermost: refusals get the headers too
    return app


def _deployments_from(store: Store, path: Path) -> Callable[[CoplaneConfig], None]:
    """What keeps the config file's `deployments:` and `automations:` stored, each time the
    file is read: a deployment whose code cannot be loaded is a problem at its line, and
    changes nothing."""

    def sync(config: CoplaneConfig) -> None:
        try:
            sync_file_deployments(store, config.deployments)
            sync_file_automations(store, config.automations)
        except DeploymentError as exc:
            problem = problem_at(path, ("deployments", exc.index, *exc.loc), str(exc))
            raise ConfigError([problem]) from None

    return sync


def _start_worker(store: Store, settings: Settings) -> Worker:
    """The server's own worker for the `default` pool, reporting to this server."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "[::]") else "127.0.0.1"
    scheme = "https" if settings.tls_cert is not None else "http"
    options = WorkerOptions(
        pool="default",
        server_url=f"{scheme}://{host}:{settings.port}",
        api_key=os.environ.get("COPLANE_API_KEY") or None,
        heartbeat_s=settings.worker_heartbeat_timeout / 6,
    )
    show_run_output()
    worker = Worker(store, options)
    worker.start()
    return worker


def _log_what_was_loaded(settings: Settings, store: Store, engine: SlaEngine) -> None:
    """A few lines at start saying what this server runs with (never a credential)."""
    with store.connect() as conn:
        slas = list_slas(conn)
    from_file = sum(1 for s in slas if s.origin == "file")
    log.info(
        "database: %s (%s, events in a %s)",
        mask.mask(settings.database_url),
        store.dialect,
        store.layout,
        extra={"database": store.dialect},
    )
    log.info(
        "auth: %s",
        "keys (every request but /api/health needs an API key)"
        if settings.auth == "keys"
        else "none (open access: no login or API key is asked for)",
        extra={"auth": settings.auth},
    )
    source = f"{from_file} from {settings.config}, " if settings.config is not None else ""
    log.info(
        "SLAs: %d (%s%d through the API)",
        len(slas),
        source,
        len(slas) - from_file,
        extra={"slas": len(slas)},
    )
    channels = engine.channels
    log.info(
        "channels: %s",
        ", ".join(f"{name} ({c.type})" for name, c in sorted(channels.items())) or "none",
        extra={"channels": sorted(channels)},
    )


def _reload_on_sighup(engine: SlaEngine) -> None:
    """`kill -HUP` re-reads the config file, as `POST /api/slas/reload` does."""
    try:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, _reload, engine))
    except (NotImplementedError, RuntimeError, ValueError):
        pass  # no signals here (not the main thread, or not a POSIX platform)


def _reload(engine: SlaEngine) -> None:
    try:
        engine.reload()
    except Exception:  # a bad file on reload keeps the SLAs already loaded
        log.exception("reloading the SLA configuration failed")
