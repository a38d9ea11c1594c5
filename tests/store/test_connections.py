"""Stored connections: replaced whole, listed by name, and their tokens rewrapped together."""

from __future__ import annotations

import pytest

from coplane.store import Conn, NotFound
from coplane.store.connections import (
    delete_connection,
    list_connections,
    put_connection,
    read_connection,
    rewrap_connection_secrets,
)
from tests.factories import at


def test_setting_again_replaces_it_whole_and_keeps_its_creation(conn: Conn) -> None:
    assert put_connection(conn, "wh", "postgres", {"host": "a"}, "token-1", at(0)) is True
    assert put_connection(conn, "wh", "generic", {"values": {}}, None, at(5)) is False
    row = read_connection(conn, "wh")
    assert (row["type"], row["fields"], row["secrets"]) == ("generic", {"values": {}}, None)
    assert (row["created"], row["updated"]) == (at(0), at(5))
    put_connection(conn, "api", "http", {"base_url": "https://x"}, "token-2", at(1))
    assert [r["name"] for r in list_connections(conn)] == ["api", "wh"]
    delete_connection(conn, "wh")
    with pytest.raises(NotFound, match="no connection named 'wh'"):
        read_connection(conn, "wh")
    with pytest.raises(NotFound):
        delete_connection(conn, "wh")


def test_rewrapping_is_all_or_nothing(conn: Conn) -> None:
    put_connection(conn, "a", "http", {}, "old-a", at(0))
    put_connection(conn, "b", "http", {}, "old-b", at(0))
    put_connection(conn, "c", "generic", {}, None, at(0))
    assert rewrap_connection_secrets(conn, lambda t: t.replace("old", "new"), at(1)) == 2
    assert [r["secrets"] for r in list_connections(conn)] == ["new-a", "new-b", None]

    def refuse(token: str) -> str:
        if token == "new-b":
            raise ValueError("no key opens it")
        return "newer"

    with pytest.raises(ValueError, match="no key opens it"):
        rewrap_connection_secrets(conn, refuse, at(2))
    assert [r["secrets"] for r in list_connections(conn)] == ["new-a", "new-b", None]
