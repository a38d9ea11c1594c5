"""Alert channels' delivery state: disabled by a permanent error until their config changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row


def list_channel_states(conn: Conn) -> dict[str, Row]:
    """Every channel that has a recorded state, by name."""
    rows = conn.query(
        "SELECT channel, config_hash, disabled, last_error, updated FROM channel_states "
        "ORDER BY channel"
    )
    return {row["channel"]: row for row in rows}


def disable_channel(conn: Conn, channel: str, config_hash: str, error: str, now: datetime) -> None:
    """Stop sending to a channel whose service refused it for good; `error` says why."""
    conn.execute(
        "INSERT INTO channel_states (channel, config_hash, disabled, last_error, updated) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel) DO UPDATE SET "
        "config_hash = excluded.config_hash, disabled = excluded.disabled, "
        "last_error = excluded.last_error, updated = excluded.updated",
        (channel, config_hash, conn.time(now), error, conn.time(now)),
    )


def enable_channel(conn: Conn, channel: str, now: datetime) -> bool:
    """Send to a channel again; True when it was disabled."""
    changed = conn.execute(
        "UPDATE channel_states SET disabled = NULL, updated = ? "
        "WHERE channel = ? AND disabled IS NOT NULL",
        (conn.time(now), channel),
    )
    return changed == 1


def disabled_channels(conn: Conn, hashes: dict[str, str]) -> dict[str, Row]:
    """The channels still disabled: those whose config is unchanged since they failed.

    A channel whose config changed (a new token, a fixed URL) is enabled again, since the
    change may well have fixed what made it fail.
    """
    out: dict[str, Row] = {}
    for name, row in list_channel_states(conn).items():
        if row["disabled"] is None:
            continue
        if name in hashes and hashes[name] != row["config_hash"]:
            conn.execute(
                "UPDATE channel_states SET disabled = NULL, updated = updated WHERE channel = ?",
                (name,),
            )
            continue
        out[name] = row
    return out


def channel_state_json(name: str, kind: str, row: Row | None) -> dict[str, Any]:
    """A channel as the API shows it: its type and whether it is disabled, and why."""
    disabled = None if row is None else row["disabled"]
    return {
        "name": name,
        "type": kind,
        "status": "disabled" if disabled is not None else "enabled",
        "disabled": None if disabled is None else disabled.isoformat(),
        "last_error": None if row is None else row["last_error"],
    }
