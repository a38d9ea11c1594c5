"""Ping keys: one per cron monitor, carried in its ping URL (`/ping/{key}/{slug}`), stored as a
SHA-256 (a key is 144 random bits, so a slow password hash would add nothing), shown once,
listed by prefix; creating one for a slug replaces its old key, revoking deletes it."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound

PING_KEY_PREFIX = "cpk_"
# what a ping key looks like in a URL (the path convertor matches the same)
PING_KEY_PATTERN = re.compile(r"^cpk_[A-Za-z0-9_-]+$")
SHOWN = 12  # characters of a key kept in clear to tell keys apart ("cpk_" and 8 more)
COLUMNS = "id, slug, prefix, created"


@dataclass(frozen=True, slots=True)
class PingKey:
    """A monitor's ping key as stored (never the key itself)."""

    id: str
    slug: str
    prefix: str
    created: datetime

    def json(self) -> dict[str, Any]:
        return {"slug": self.slug, "prefix": self.prefix, "created": self.created.isoformat()}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _ping_key(row: Row) -> PingKey:
    return PingKey(str(row["id"]), row["slug"], row["prefix"], row["created"])


def create_ping_key(conn: Conn, slug: str, now: datetime | None = None) -> tuple[PingKey, str]:
    """A new key for the monitor `slug`, replacing its old one, and the key itself, which is
    shown this once and never stored."""
    secret = PING_KEY_PREFIX + secrets.token_urlsafe(18)
    kid = uuid.uuid4()
    now = now or datetime.now(UTC)
    # one statement: two rotations at once leave one key, never a duplicate-slug error
    conn.execute(
        "INSERT INTO ping_keys (id, slug, prefix, hash, created) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (slug) DO UPDATE SET id = excluded.id, prefix = excluded.prefix, "
        "hash = excluded.hash, created = excluded.created",
        (conn.uid(kid), slug, secret[:SHOWN], digest(secret), conn.time(now)),
    )
    return PingKey(str(kid), slug, secret[:SHOWN], now), secret


def read_ping_key(conn: Conn, slug: str) -> PingKey:
    """The live key of the monitor `slug`; NotFound when it has none."""
    row = conn.one(f"SELECT {COLUMNS} FROM ping_keys WHERE slug = ?", (slug,))
    if row is None:
        raise NotFound(f"monitor {slug!r} has no ping key")
    return _ping_key(row)


def list_ping_keys(conn: Conn) -> list[PingKey]:
    """Every live ping key, by slug."""
    return [_ping_key(r) for r in conn.query(f"SELECT {COLUMNS} FROM ping_keys ORDER BY slug")]


def revoke_ping_key(conn: Conn, slug: str) -> PingKey:
    """Delete the monitor's key: pings with it are refused from now on; NotFound when none."""
    key = read_ping_key(conn, slug)
    conn.execute("DELETE FROM ping_keys WHERE id = ?", (conn.uid(key.id),))
    return key


def check_ping_key(conn: Conn, secret: str) -> PingKey | None:
    """The live key this secret is, or None: one lookup by the (unique, indexed) hash."""
    if not PING_KEY_PATTERN.match(secret):
        return None
    row = conn.one(f"SELECT {COLUMNS} FROM ping_keys WHERE hash = ?", (digest(secret),))
    return None if row is None else _ping_key(row)
