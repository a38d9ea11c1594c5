"""Configuration: one Settings object from COPLANE_* environment variables (and *_FILE files)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coplane.security.fernet import parse_keys
from coplane.security.files import UnreadableFile, read_secret_file
from coplane.security.hosts import parse_allowed_hosts
from coplane.security.outbound import parse_allow

# Settings that may hold secrets can be given as COPLANE_<NAME>_FILE: the file's content.
SECRET_SETTINGS = ("database_url", "secret_key")


def default_database_url() -> str:
    """SQLite in the user's data directory: what `coplane server` uses with no settings."""
    folder = Path(platformdirs.user_data_dir("coplane", appauthor=False))
    return f"sqlite:///{folder / 'coplane.sqlite'}"


class Settings(BaseSettings):
    """Every setting of coplane; the README lists them all (a test checks)."""

    # hide_input_in_errors: an error must not print a key or a database password
    model_config = SettingsConfigDict(
        env_prefix="COPLANE_", extra="ignore", strict=False, hide_input_in_errors=True
    )

    database_url: str = Field(
        default_factory=default_database_url,
        repr=False,  # it may hold a password
        description="postgresql://... or sqlite:///path; SQLite in the user data dir by default",
    )
    database_pool_size: int = Field(10, ge=1, le=200, description="PostgreSQL connections")
    database_writers: int | None = Field(
        None, ge=1, le=64, description="event writer threads on PostgreSQL (default 2)"
    )
    database_timeout: float = Field(
        10.0, gt=0, le=300, description="seconds to wait for a database connection before a 503"
    )
    host: str = Field("127.0.0.1", description="address `coplane server` listens on")
    port: int = Field(4200, ge=1, le=65535, description="port `coplane server` listens on")
    events_retention_days: int = Field(
        90, ge=0, description="raw events older than this are dropped; 0 keeps them forever"
    )
    logs_retention_days: int = Field(
        30, ge=0, description="flow and task log lines older than this are dropped; 0 keeps them"
    )
    config: Path | None = Field(
        None, description="coplane.yaml with slas: and channels: (also `--config`)"
    )
    public_url: str | None = Field(
        None,
        description="the address users reach coplane at, for links in alerts "
        "(default http://HOST:PORT)",
    )
    alerts_max_backoff: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="longest wait in seconds between retries of a failing alert channel",
    )
    auth: Literal["none", "keys"] = Field(
        "none",
        description="keys: every request but /api/health needs an API key of the right scope; "
        "none: open (only on a loopback address unless --insecure-no-auth)",
    )
    ingest_rate_limit: float = Field(
        50.0,
        ge=0,
        description="ingest requests a second each API key may send on average, in bursts of "
        "twice that (COPLANE_AUTH=keys); 0: no limit",
    )
    secret_key: str | None = Field(
        None,
        repr=False,
        description="Fernet key(s) encrypting secrets stored through the API, comma-separated: "
        "the first encrypts, all decrypt (`coplane secrets generate-key`, `secrets rotate`)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="log level of the server"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="server log lines: text, or json (one object a line, with the fields of "
        "each decision: incident, alert, channel, request_id, ...)",
    )
    outbound_allow: str = Field(
        "",
        description="comma-separated CIDRs and host names alert channels may reach although "
        "they are loopback, link-local or metadata addresses",
    )

    body_timeout: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="seconds a client has to send a request's whole body before a 408",
    )
    keepalive_timeout: int = Field(
        5, ge=1, le=300, description="seconds an idle connection is kept open"
    )
    allowed_hosts: str = Field(
        "",
        description="comma-separated names (*.domain for its subdomains) requests may carry in "
        "Host besides loopback, the listen address and COPLANE_PUBLIC_URL's host",
    )

    tls_cert: Path | None = Field(
        None, description="PEM certificate (chain) for `coplane server` to serve HTTPS with"
    )
    tls_key: Path | None = Field(None, description="PEM private key of COPLANE_TLS_CERT")
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="comma-separated addresses and CIDRs of reverse proxies whose "
        "X-Forwarded-Proto and X-Forwarded-For are believed; * for any",
    )

    worker: bool = Field(
        True, description="run a worker for the `default` pool inside `coplane server`"
    )
    worker_heartbeat_timeout: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="seconds without a heartbeat after which a worker's runs are crashed",
    )

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in SECRET_SETTINGS:
            path = os.environ.get(f"COPLANE_{name.upper()}_FILE")
            if path and name not in data and f"COPLANE_{name.upper()}" not in os.environ:
                try:
                    data[name] = read_secret_file(path).strip()
                except UnreadableFile as exc:
                    raise ValueError(f"COPLANE_{name.upper()}_FILE: {exc}") from None
        return data

    @model_validator(mode="after")
    def _tls_in_pairs(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("COPLANE_TLS_CERT and COPLANE_TLS_KEY go together: set both")
        return self

    @property
    def own_url(self) -> str:
        """This server's address as it listens: https when it serves TLS itself."""
        scheme = "https" if self.tls_cert is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def link_base(self) -> str:
        """Where alert links point: PUBLIC_URL, or this server's own address."""
        return self.public_url or self.own_url

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_forwarded_allow_ips(cls, value: str) -> str:
        # uvicorn would take a mistyped address as a name that never matches: refuse it here
        value = value.strip()
        if value == "*":
            return value
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or CIDR (or use *)") from None
        return value

    @field_validator("config", "public_url", "tls_cert", "tls_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # COPLANE_CONFIG= (set but empty) means no file, not the current directory
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: str | None) -> str | None:
        parse_keys(value)
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str) -> str:
        parse_allowed_hosts(value)
        return value

    @field_validator("outbound_allow")
    @classmethod
    def _check_outbound_allow(cls, value: str) -> str:
        parse_allow(value)  # the policy reads the variable itself (coplane.security.outbound)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise ValueError("must start with postgresql://, postgres:// or sqlite:///")
        if value == "sqlite:///":
            raise ValueError("a sqlite URL needs a file path: sqlite:///path/to/coplane.sqlite")
        return value
