"""Connections: named, typed configuration with secret fields, stored on the server.

A connection type is a pydantic model; a field typed `SecretStr` is a secret, kept encrypted
by the server's vault and shown nowhere (answers, the UI, logs, events: a `SecretStr` prints
as `**********`). Types are found through the entry-point group `coplane.connections`, the
built-in ones too, so a plugin's type is found exactly as PostgreSQL's is. A flow reads one
with `Connection.load("warehouse")`; setting it again (`coplane connections set ...`) is how
its credentials are rotated, in that one place, for every flow that loads it.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic_core import to_jsonable_python

from coplane.client import CoplaneClient
from coplane.orchestrate.remote import ServerError, call, client_from_env
from coplane.security.mask import masker

ENTRY_POINT_GROUP = "coplane.connections"

# Also declared under [project.entry-points."coplane.connections"] in pyproject.toml; listed
# here too so that a source checkout that was never installed still finds them.
BUILTIN = {
    "generic": "coplane.orchestrate.connections:GenericConnection",
    "postgres": "coplane.orchestrate.connections:PostgresConnection",
    "s3": "coplane.orchestrate.connections:S3Connection",
    "http": "coplane.orchestrate.connections:HttpTokenConnection",
}

C = TypeVar("C", bound="Connection")


class ConnectionLoadError(LookupError):
    """A connection could not be loaded: no server, no such connection, or not allowed."""


class Connection(BaseModel):
    """The base of every connection type."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def load(cls: type[C], name: str, *, client: CoplaneClient | None = None) -> C:
        """The stored connection `name`, secrets included (the key needs the admin scope).

        Called on a type (`PostgresConnection.load(...)`) it also checks the stored type.
        ConnectionLoadError when it cannot be loaded.
        """
        own = client is None
        client = client or client_from_env()
        if client is None:
            raise ConnectionLoadError(
                f"loading connection {name!r} needs a coplane server: set COPLANE_URL"
            )
        try:
            found = call(client, "GET", f"/api/connections/{quote(name, safe='')}/resolved")
        except ServerError as exc:
            raise ConnectionLoadError(f"connection {name!r}: {exc}") from None
        finally:
            if own:
                client.close()
        model = connection_model(found["type"])
        if cls is not Connection and not issubclass(model, cls):
            raise ConnectionLoadError(
                f"connection {name!r} is of type {found['type']!r}, not a {cls.__name__}"
            )
        instance = model.model_validate(found["fields"])
        masker.add(*secret_values(instance).values())  # this process's logs hide them too
        assert isinstance(instance, cls)
        return instance


class GenericConnection(Connection):
    """Any settings: `values` in clear, `secrets` kept secret."""

    values: dict[str, str] = {}
    secrets: dict[str, SecretStr] = {}


class PostgresConnection(Connection):
    """A PostgreSQL database."""

    host: str
    port: int = 5432
    database: str
    user: str
    password: SecretStr | None = None
    sslmode: str | None = None

    def url(self) -> str:
        """A `postgresql://` URL with the password, for psycopg or SQLAlchemy."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password.get_secret_value(), safe="")
        tail = f"?sslmode={quote(self.sslmode)}" if self.sslmode else ""
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(self.database)}{tail}"


class S3Connection(Connection):
    """S3 (or an S3-compatible store) credentials, as fsspec's `s3fs` takes them."""

    key: str | None = None
    secret: SecretStr | None = None
    token: SecretStr | None = None
    endpoint_url: str | None = None
    region_name: str | None = None

    def storage_options(self) -> dict[str, Any]:
        """The `storage_options` of `fsspec.filesystem("s3", ...)` or a result storage URL."""
        options: dict[str, Any] = {}
        if self.key is not None:
            options["key"] = self.key
        if self.secret is not None:
            options["secret"] = self.secret.get_secret_value()
        if self.token is not None:
            options["token"] = self.token.get_secret_value()
        pairs = (("endpoint_url", self.endpoint_url), ("region_name", self.region_name))
        client = {k: v for k, v in pairs if v}
        if client:
            options["client_kwargs"] = client
        return options


class HttpTokenConnection(Connection):
    """An HTTP API with a token."""

    base_url: str
    token: SecretStr
    header: str = "Authorization"
    scheme: str | None = "Bearer"

    def headers(self) -> dict[str, str]:
        """The header that carries the token."""
        token = self.token.get_secret_value()
        return {self.header: f"{self.scheme} {token}" if self.scheme else token}


@cache
def connection_types() -> dict[str, str]:
    """Connection type → 'module:Model', plugins' entries included."""
    found = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def connection_model(kind: str) -> type[Connection]:
    """The model of a connection type; LookupError naming the known ones for another."""
    target = connection_types().get(kind)
    if target is None:
        known = ", ".join(sorted(connection_types()))
        raise LookupError(f"no connection type {kind!r} is installed; types: {known}")
    module, _, name = target.partition(":")
    model = getattr(import_module(module), name)
    if not (isinstance(model, type) and issubclass(model, Connection)):
        raise LookupError(f"connection type {kind!r} ({target}) is not a Connection model")
    return model


_NOTHING = object()


def _split(value: Any) -> tuple[Any, Any]:
    if isinstance(value, SecretStr):
        return _NOTHING, value.get_secret_value()
    if isinstance(value, dict):
        public, secret = {}, {}
        for k, v in value.items():
            p, s = _split(v)
            if p is not _NOTHING:
                public[k] = p
            if s is not _NOTHING:
                secret[k] = s
        return public, (secret if secret else _NOTHING)
    return value, _NOTHING


def split_secrets(instance: Connection) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields shown in clear (as JSON values) and the secret ones (in clear, to encrypt)."""
    public, secret = _split(instance.model_dump(mode="python"))
    return to_jsonable_python(public), ({} if secret is _NOTHING else secret)


def merge_secrets(public: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    """The fields again, the secret ones put back where `split_secrets` took them from."""
    out = dict(public)
    for k, v in secret.items():
        out[k] = merge_secrets(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def secret_paths(secret: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the secret fields that are set (`password`, `secrets.api_key`)."""
    paths = []
    for k, v in secret.items():
        if isinstance(v, dict):
            paths += secret_paths(v, f"{prefix}{k}.")
        else:
            paths.append(prefix + k)
    return sorted(paths)


def secret_values(instance: Connection) -> dict[str, str]:
    """Each secret field's value by its dotted name."""
    _, secret = split_secrets(instance)
    flat: dict[str, str] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[prefix + k] = str(v)

    walk(secret, "")
    return flat
