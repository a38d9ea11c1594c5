"""Secrets stored through the API or CLI, encrypted at rest, and `${secret:NAME}` references.

Each value is kept as a Fernet token (AES-128-CBC with an HMAC-SHA256, from `cryptography`)
under the key in COPLANE_SECRET_KEY (or the file COPLANE_SECRET_KEY_FILE names). The setting
may hold several keys, comma-separated: the first encrypts, any of them decrypts, which is how
keys are rotated:

1. `coplane secrets generate-key` prints a new key;
2. put it first: COPLANE_SECRET_KEY=<new>,<old>, and restart;
3. `coplane secrets rotate` re-encrypts every stored secret under the new key;
4. drop the old key from the setting.

A channel in coplane.yaml names a stored secret as `${secret:NAME}` in any of its strings; the
reference is replaced when the channel's notifier is built, so the value is never part of the
loaded config. Values are never returned by the API: only names and times are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from cryptography.fernet import InvalidToken, MultiFernet
from pydantic import BaseModel, ValidationError

from coplane.security.fernet import parse_keys
from coplane.security.mask import masker
from coplane.store.dialects import Conn
from coplane.store.errors import NotFound

Model = TypeVar("Model", bound=BaseModel)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
NAME_RULE = "1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit"
REFERENCE = re.compile(r"\$\{secret:([^}]*)\}")
MAX_VALUE_BYTES = 64 * 1024
KEY_SETTING = "COPLANE_SECRET_KEY"


class SecretError(Exception):
    """A secret that cannot be stored or read: no key set, unknown name, wrong key."""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A stored secret as anyone may see it: its name and when it was set, never its value."""

    name: str
    created: datetime
    updated: datetime

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
        }


def check_name(name: str) -> str | None:
    """Why `name` cannot name a secret, or None when it can."""
    return None if NAME_PATTERN.match(name) else f"{name!r} is not a secret name: {NAME_RULE}"


def check_value(value: str) -> str | None:
    """Why `value` cannot be stored, or None when it can."""
    if not value:
        return "a secret cannot be empty"
    if len(value.encode()) > MAX_VALUE_BYTES:
        return f"a secret is at most {MAX_VALUE_BYTES} bytes"
    return None


class Vault:
    """Encrypts and decrypts stored secrets with the configured keys."""

    def __init__(self, keys: str | None) -> None:
        fernets = parse_keys(keys)
        self._fernet = MultiFernet(fernets) if fernets else None

    @property
    def configured(self) -> bool:
        return self._fernet is not None

    def _keys(self) -> MultiFernet:
        if self._fernet is None:
            raise SecretError(
                f"no {KEY_SETTING} is set, so secrets cannot be stored or read; "
                "`coplane secrets generate-key` makes a key"
            )
        return self._fernet

    def encrypt(self, value: str) -> str:
        """A token of `value` under the first key, for a column of its own (connections)."""
        masker.add(value)
        return self._keys().encrypt(value.encode()).decode()

    def decrypt(self, token: str, what: str) -> str:
        """The value of a token `encrypt` made; SecretError naming `what` if no key opens it."""
        try:
            value = self._keys().decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretError(
                f"{what} cannot be decrypted with the keys in {KEY_SETTING}: it was stored "
                "under another key"
            ) from None
        masker.add(value)
        return value

    def reencrypt(self, token: str) -> str:
        """The same value as a token under the first key; InvalidToken if no key opens it."""
        return self._keys().rotate(token.encode()).decode()

    def put(self, conn: Conn, name: str, value: str, now: datetime | None = None) -> bool:
        """Store (or replace) a secret; True when it is new."""
        for problem in (check_name(name), check_value(value)):
            if problem:
                raise ValueError(problem)
        token = self._keys().encrypt(value.encode()).decode()
        masker.add(value)
        now = now or datetime.now(UTC)
        # one statement, so that concurrent puts and deletes of a name cannot interleave; a
        # replaced secret keeps its creation time, which tells the two cases apart
        [row] = conn.query(
            "INSERT INTO secrets (name, value, created, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated "
            "RETURNING created",
            (name, token, conn.time(now), conn.time(now)),
        )
        return bool(row["created"] == now)

    def get(self, conn: Conn, name: str) -> str:
        """A secret's value; SecretError when it is not stored or the keys cannot open it."""
        row = conn.one("SELECT value FROM secrets WHERE name = ?", (name,))
        if row is None:
            raise SecretError(
                f"secret {name!r} is not stored: set it with `coplane secrets set {name}` "
                f"or PUT /api/secrets/{name}"
            )
        try:
            value = self._keys().decrypt(row["value"].encode()).decode()
        except InvalidToken:
            raise SecretError(
                f"secret {name!r} cannot be decrypted with the keys in {KEY_SETTING}: it was "
                "stored under another key"
            ) from None
        masker.add(value)
        return value

    def rotate(self, conn: Conn, now: datetime | None = None) -> int:
        """Re-encrypt every secret under the first key; how many. All or none: a secret no
        key opens is a SecretError naming it, and nothing is changed."""
        keys = self._keys()
        rows = conn.query("SELECT name, value FROM secrets ORDER BY name")
        fresh: list[tuple[str, str]] = []
        unreadable: list[str] = []
        for row in rows:
            try:
                fresh.append((row["name"], keys.rotate(row["value"].encode()).decode()))
            except InvalidToken:
                unreadable.append(row["name"])
        if unreadable:
            raise SecretError(
                f"no key in {KEY_SETTING} decrypts {', '.join(map(repr, unreadable))}: "
                "add the key they were stored under, then rotate again"
            )
        stamp = conn.time(now or datetime.now(UTC))
        with conn.transaction():
            for name, token in fresh:
                conn.execute(
                    "UPDATE secrets SET value = ?, updated = ? WHERE name = ?", (token, stamp, name)
                )
        return len(fresh)

    def resolve(self, conn: Conn, value: Any) -> Any:
        """`value` (strings, through dicts and lists) with its references replaced."""
        return substitute(value, lambda name: self.get(conn, name))

    def resolve_channel(self, conn: Conn, config: Model) -> Model:
        """The channel with its `${secret:NAME}` references replaced by the stored values."""
        data = config.model_dump(mode="python")
        if not references(data):
            return config
        try:
            return type(config).model_validate(self.resolve(conn, data))
        except ValidationError as exc:  # e.g. a stored URL that is refused (inputs hidden)
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {str(e['msg']).removeprefix('Value error, ')}"
                for e in exc.errors(include_url=False)
            )
            raise SecretError(f"with its stored secrets filled in, {problems}") from None


def list_secrets(conn: Conn) -> list[SecretInfo]:
    """Every stored secret's name and times, by name."""
    rows = conn.query("SELECT name, created, updated FROM secrets ORDER BY name")
    return [SecretInfo(r["name"], r["created"], r["updated"]) for r in rows]


def read_secret_info(conn: Conn, name: str) -> SecretInfo:
    """One stored secret's name and times; NotFound when none has that name."""
    row = conn.one("SELECT name, created, updated FROM secrets WHERE name = ?", (name,))
    if row is None:
        raise NotFound(f"no secret named {name!r}")
    return SecretInfo(row["name"], row["created"], row["updated"])


def delete_secret(conn: Conn, name: str) -> None:
    """Forget a secret; NotFound when none has that name."""
    if not conn.execute("DELETE FROM secrets WHERE name = ?", (name,)):
        raise NotFound(f"no secret named {name!r}")


def versions(conn: Conn, names: Iterable[str]) -> dict[str, str]:
    """When each of these secrets was last set (missing ones are left out)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    marks = ", ".join("?" for _ in wanted)
    rows = conn.query(f"SELECT name, updated FROM secrets WHERE name IN ({marks})", wanted)
    return {r["name"]: r["updated"].isoformat() for r in rows}


def references(value: Any) -> set[str]:
    """The secret names `${secret:NAME}` references in `value`'s strings name."""
    found: set[str] = set()

    def note(name: str) -> str:
        found.add(name)
        return ""

    substitute(value, note)
    return found


def substitute(value: Any, lookup: Callable[[str], str]) -> Any:
    """`value` with each `${secret:NAME}` in its strings replaced by `lookup(NAME)`."""
    if isinstance(value, str):
        return REFERENCE.sub(lambda m: lookup(m.group(1)), value) if "${secret:" in value else value
    if isinstance(value, dict):
        return {k: substitute(v, lookup) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, lookup) for v in value]
    return value
