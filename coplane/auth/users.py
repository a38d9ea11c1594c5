"""Local users of the UI: argon2-hashed passwords, a role each, and login sessions.

Roles map onto the API keys' scopes, so one check covers both: a viewer reads, an editor
also acknowledges and resolves incidents (`act`), an admin may do everything.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound

Role = Literal["viewer", "editor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "editor", "admin")
ROLE_SCOPES: dict[Role, tuple[str, ...]] = {
    "viewer": ("read",),
    "editor": ("read", "act"),
    "admin": ("admin",),
}
SESSION_LIFETIME = timedelta(hours=12)
MIN_PASSWORD = 12  # characters

_hasher = PasswordHasher()
# Verified against when the name is unknown, so that a wrong name takes as long as a wrong
# password and login timing does not tell which users exist.
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class User:
    """A logged-in user, as the access check sees them."""

    id: str
    name: str
    role: Role

    @property
    def scopes(self) -> tuple[str, ...]:
        return ROLE_SCOPES[self.role]

    def allows(self, needed: str) -> bool:
        return "admin" in self.scopes or needed in self.scopes


def create_user(conn: Conn, name: str, password: str, role: Role) -> User:
    """A new user; ValueError for a taken name, an unknown role or a short password."""
    name = name.strip()
    if not name:
        raise ValueError("a user needs a name")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    if conn.one("SELECT 1 AS x FROM users WHERE name = ?", (name,)) is not None:
        raise ValueError(f"there is already a user {name!r}")
    uid = uuid.uuid4()
    conn.execute(
        "INSERT INTO users (id, name, password, role, created) VALUES (?, ?, ?, ?, ?)",
        (conn.uid(uid), name, _hasher.hash(password), role, conn.time(datetime.now(UTC))),
    )
    return User(str(uid), name, role)


def list_users(conn: Conn) -> list[tuple[User, datetime]]:
    """Every user with the time they were created, by name."""
    rows = conn.query("SELECT id, name, role, created FROM users ORDER BY name")
    return [(User(str(r["id"]), r["name"], r["role"]), r["created"]) for r in rows]


def check_password(conn: Conn, name: str, password: str) -> User | None:
    """The user when the password is theirs; None otherwise (in about the same time)."""
    row = conn.one("SELECT id, name, role, password FROM users WHERE name = ?", (name.strip(),))
    try:
        _hasher.verify(row["password"] if row else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    return None if row is None else User(str(row["id"]), row["name"], row["role"])


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(conn: Conn, user: User, now: datetime | None = None) -> str:
    """A new session token for the user's cookie; only its hash is stored."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    conn.execute("DELETE FROM sessions WHERE expires < ?", (conn.time(now),))
    conn.execute(
        "INSERT INTO sessions (hash, user_id, created, expires) VALUES (?, ?, ?, ?)",
        (_digest(token), conn.uid(user.id), conn.time(now), conn.time(now + SESSION_LIFETIME)),
    )
    return token


def session_user(conn: Conn, token: str, now: datetime | None = None) -> User | None:
    """The user of a live session, or None."""
    row = conn.one(
        "SELECT u.id, u.name, u.role FROM sessions s JOIN users u ON u.id = s.user_id "
        "WHERE s.hash = ? AND s.expires > ?",
        (_digest(token), conn.time(now or datetime.now(UTC))),
    )
    return None if row is None else User(str(row["id"]), row["name"], row["role"])


def end_session(conn: Conn, token: str) -> None:
    conn.execute("DELETE FROM sessions WHERE hash = ?", (_digest(token),))


def _user_row(conn: Conn, name: str) -> Row:
    row = conn.one("SELECT id, name, role FROM users WHERE name = ?", (name.strip(),))
    if row is None:
        raise NotFound(f"no user {name.strip()!r}")
    return row


def end_user_sessions(conn: Conn, name: str) -> int:
    """End every session of the user (logged out everywhere); how many there were."""
    row = _user_row(conn, name)
    count = conn.one("SELECT count(*) AS n FROM sessions WHERE user_id = ?", (conn.uid(row["id"]),))
    conn.execute("DELETE FROM sessions WHERE user_id = ?", (conn.uid(row["id"]),))
    return int(count["n"]) if count else 0


def set_password(conn: Conn, name: str, password: str) -> User:
    """Give the user a new password and end their sessions; ValueError for a short one."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must have at least {MIN_PASSWORD} characters")
    row = _user_row(conn, name)
    conn.execute(
        "UPDATE users SET password = ? WHERE id = ?",
        (_hasher.hash(password), conn.uid(row["id"])),
    )
    end_user_sessions(conn, name)
    return User(str(row["id"]), row["name"], row["role"])


def delete_user(conn: Conn, name: str) -> User:
    """Remove the user and their sessions: they are logged out at their next request."""
    row = _user_row(conn, name)
    end_user_sessions(conn, name)
    conn.execute("DELETE FROM users WHERE id = ?", (conn.uid(row["id"]),))
    return User(str(row["id"]), row["name"], row["role"])
