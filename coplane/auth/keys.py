"""API keys: created at random, stored as a SHA-256 (a key is 256 random bits, so a slow
password hash would add nothing), shown once, listed by prefix, revoked by id or prefix."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from coplane.events.names import event_name_matches
from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "read", "admin")
KEY_PREFIX = "cpl_"
SHOWN = 12  # characters of a key kept in clear to tell keys apart ("cpl_" and 8 more)
USED_EVERY = timedelta(minutes=1)  # `used` is written at most this often per key


@dataclass(frozen=True, slots=True)
class Key:
    """A key as stored (never the key itself)."""

    id: str
    name: str
    prefix: str
    scopes: tuple[Scope, ...]
    created: datetime
    used: datetime | None
    revoked: datetime | None
    resources: tuple[str, ...] = ()  # patterns of the resources it may send about; () any

    def allows(self, needed: str) -> bool:
        """admin may do anything; read and ingest only their own kind of request."""
        return "admin" in self.scopes or needed in self.scopes

    def may_send_about(self, resource_id: str) -> bool:
        """Whether this key may send events whose resource is `resource_id`."""
        return not self.resources or any(
            event_name_matches(pattern, resource_id) for pattern in self.resources
        )

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "created": self.created.isoformat(),
            "used": None if self.used is None else self.used.isoformat(),
            "revoked": None if self.revoked is None else self.revoked.isoformat(),
            "resources": list(self.resources),
        }


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key(row: Row) -> Key:
    scopes = tuple(s for s in SCOPES if s in row["scopes"])
    return Key(
        str(row["id"]),
        row["name"],
        row["prefix"],
        scopes,
        row["created"],
        row["used"],
        row["revoked"],
        tuple(row["resources"]),
    )


COLUMNS = "id, name, prefix, scopes, created, used, revoked, resources"
MAX_PATTERNS = 50


def check_resource_patterns(patterns: Sequence[str]) -> list[str]:
    """Resource patterns of a key, stripped: an id, or a prefix ending in `*` (as event names
    match); ValueError naming the first that is neither."""
    checked = []
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern == "*" or "*" in pattern[:-1] or len(pattern) > 500:
            raise ValueError(
                f"resource pattern {raw!r}: give a resource id or a prefix ending in *, "
                "such as airflow.prod.*"
            )
        checked.append(pattern)
    if len(checked) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} resource patterns, not {len(checked)}")
    return checked


def create_key(
    conn: Conn,
    name: str,
    scopes: Sequence[Scope],
    now: datetime | None = None,
    resources: Sequence[str] = (),
) -> tuple[Key, str]:
    """A new key and its secret, which is shown this once and never stored; with `resources`,
    it may send events only about resources those patterns match."""
    if not name.strip():
        raise ValueError("a key needs a name")
    patterns = check_resource_patterns(resources)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}, not {list(scopes)}")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    kid = uuid.uuid4()
    now = now or datetime.now(UTC)
    ordered = [s for s in SCOPES if s in scopes]
    conn.execute(
        "INSERT INTO api_keys (id, name, prefix, hash, scopes, created, resources) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            conn.uid(kid),
            name.strip(),
            secret[:SHOWN],
            digest(secret),
            conn.json(ordered),
            conn.time(now),
            conn.json(patterns),
        ),
    )
    key = Key(
        str(kid), name.strip(), secret[:SHOWN], tuple(ordered), now, None, None, tuple(patterns)
    )
    return key, secret


def list_keys(conn: Conn) -> list[Key]:
    """Every key, revoked ones too, oldest first."""
    return [_key(r) for r in conn.query(f"SELECT {COLUMNS} FROM api_keys ORDER BY created, id")]


def revoke_key(conn: Conn, which: str, now: datetime | None = None) -> Key:
    """Revoke the key with this id or prefix; NotFound when none (or several) match."""
    rows = conn.query(
        f"SELECT {COLUMNS} FROM api_keys WHERE prefix = ? OR CAST(id AS TEXT) = ?",
        (which, which),
    )
    if len(rows) != 1:
        raise NotFound(
            f"no key with id or prefix {which!r}"
            if not rows
            else f"{len(rows)} keys have the prefix {which!r}: give the id"
        )
    conn.execute(
        "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
        (conn.time(now or datetime.now(UTC)), conn.uid(rows[0]["id"])),
    )
    return _key(
        conn.one(f"SELECT {COLUMNS} FROM api_keys WHERE id = ?", (conn.uid(rows[0]["id"]),))
        or rows[0]
    )


def check_key(conn: Conn, secret: str, now: datetime | None = None) -> Key | None:
    """The live key this secret is, or None (unknown or revoked); notes when it was used."""
    if not secret.startswith(KEY_PREFIX):
        return None
    row = conn.one(f"SELECT {COLUMNS} FROM api_keys WHERE hash = ?", (digest(secret),))
    if row is None or row["revoked"] is not None:
        return None
    now = now or datetime.now(UTC)
    if row["used"] is None or now - row["used"] > USED_EVERY:
        conn.execute(
            "UPDATE api_keys SET used = ? WHERE id = ?", (conn.time(now), conn.uid(row["id"]))
        )
    return _key(row)
