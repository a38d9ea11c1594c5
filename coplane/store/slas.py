"""SLA definitions (from the config file or the API) and each SLA's latest evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from coplane.rules.facts import Evaluation
from coplane.rules.model import SLA
from coplane.store.dialects import Conn, Row
from coplane.store.errors import NotFound

ORIGINS = ("file", "api")
STATE_COLUMNS = "st.status, st.next_deadline, st.last_met, st.evaluated, st.explanation"

_SLA_ADAPTER: TypeAdapter[SLA] = TypeAdapter(SLA)


def sla_definition(sla: SLA) -> dict[str, Any]:
    """An SLA as JSON that `TypeAdapter(SLA)` validates back to an equal SLA."""
    # Durations as seconds: the models parse numbers, not pydantic's ISO 8601 default ('PT1H').
    value: dict[str, Any] = to_jsonable_python(sla.model_dump(), timedelta_mode="float")
    return value


def parse_sla(definition: Any) -> SLA:
    """A stored definition as its SLA model."""
    return _SLA_ADAPTER.validate_python(definition)


def upsert_slas(conn: Conn, slas: Sequence[SLA], origin: str, now: datetime) -> None:
    """Insert or update SLA definitions; `created` stays, `updated` moves only on a change."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
    if not slas:
        return
    # Key order: concurrent writers lock rows in the same order and never deadlock.
    rows = [
        (sla.name, conn.json(sla_definition(sla)), origin, conn.time(now), conn.time(now))
        for sla in sorted(slas, key=lambda s: s.name)
    ]
    conn.executemany(
        "INSERT INTO slas (name, definition, origin, created, updated) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, "
        "origin = excluded.origin, updated = excluded.updated "
        "WHERE slas.definition <> excluded.definition OR slas.origin <> excluded.origin",
        rows,
    )


def delete_sla(conn: Conn, name: str) -> None:
    """Delete one SLA (its state goes with it; its incidents stay as history)."""
    if conn.execute("DELETE FROM slas WHERE name = ?", (name,)) == 0:
        raise NotFound(f"no SLA named {name!r}")


def replace_file_slas(conn: Conn, slas: Sequence[SLA], now: datetime) -> None:
    """Make the file's SLAs the set of origin='file' SLAs: upsert them, delete the rest."""
    keep = {sla.name for sla in slas}
    with conn.transaction():
        upsert_slas(conn, slas, "file", now)
        stored = conn.query("SELECT name FROM slas WHERE origin = 'file' ORDER BY name")
        gone = [(row["name"],) for row in stored if row["name"] not in keep]
        if gone:
            conn.executemany("DELETE FROM slas WHERE name = ? AND origin = 'file'", gone)


@dataclass(frozen=True, slots=True)
class StoredSla:
    """An SLA as stored: its definition, latest evaluation (None before the first), where it
    comes from ('file' or 'api') and when it was created (rules report no windows before)."""

    sla: SLA
    state: Row | None
    origin: str
    created: datetime


_STORED = (
    f"SELECT s.definition, s.origin, s.created, st.sla AS state_sla, {STATE_COLUMNS} "
    "FROM slas s LEFT JOIN sla_states st ON st.sla = s.name"
)


def _stored(row: Row) -> StoredSla:
    return StoredSla(parse_sla(row["definition"]), _state(row), row["origin"], row["created"])


def list_slas(conn: Conn) -> list[StoredSla]:
    """Every SLA by name, as stored."""
    return [_stored(row) for row in conn.query(f"{_STORED} ORDER BY s.name")]


def read_sla(conn: Conn, name: str) -> StoredSla:
    """One SLA as stored; NotFound if absent."""
    row = conn.one(f"{_STORED} WHERE s.name = ?", (name,))
    if row is None:
        raise NotFound(f"no SLA named {name!r}")
    return _stored(row)


def save_sla_state(conn: Conn, name: str, evaluation: Evaluation, now: datetime) -> None:
    """Record the latest evaluation of one SLA (replacing the one before)."""
    save_sla_states(conn, [(name, evaluation)], now)


def sla_version(conn: Conn) -> tuple[int, Any]:
    """A token that changes whenever an SLA is added, changed or deleted."""
    row = conn.one("SELECT count(*) AS n, max(updated) AS latest FROM slas")
    assert row is not None
    return int(row["n"]), row["latest"]


def list_sla_rows(conn: Conn) -> list[Row]:
    """Every SLA's name, origin, `created` and `updated` times and latest evaluation, by name,
    without its definition (callers cache the parsed ones: see `read_sla_definitions`)."""
    return conn.query(
        f"SELECT s.name, s.origin, s.created, s.updated, st.sla AS state_sla, "
        f"{STATE_COLUMNS} FROM slas s LEFT JOIN sla_states st ON st.sla = s.name ORDER BY s.name"
    )


def read_sla_definitions(conn: Conn, names: Sequence[str]) -> dict[str, Any]:
    """The stored definitions (JSON, not parsed) of these SLAs, by name."""
    out: dict[str, Any] = {}
    for i in range(0, len(names), 500):
        chunk = list(names[i : i + 500])
        rows = conn.query(
            f"SELECT name, definition FROM slas WHERE name IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        out.update({row["name"]: row["definition"] for row in rows})
    return out


def save_sla_states(conn: Conn, states: Sequence[tuple[str, Evaluation]], now: datetime) -> None:
    """Record the latest evaluation of several SLAs in one transaction."""
    if not states:
        return
    t = conn.time
    rows = [
        (name, e.status, t(e.next_deadline), t(e.last_met), t(now), e.explanation)
        for name, e in sorted(states, key=lambda item: item[0])
    ]
    with conn.transaction():
        conn.executemany(
            "INSERT INTO sla_states (sla, status, next_deadline, last_met, evaluated, "
            "explanation) SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM slas WHERE name = ?) "
            "ON CONFLICT (sla) DO UPDATE SET status = excluded.status, "
            "next_deadline = excluded.next_deadline, last_met = excluded.last_met, "
            "evaluated = excluded.evaluated, explanation = excluded.explanation",
            [(*row, row[0]) for row in rows],
        )


def _state(row: Row) -> Row | None:
    if row["state_sla"] is None:
        return None
    return {k: row[k] for k in ("status", "next_deadline", "last_met", "evaluated", "explanation")}


def insert_sla(conn: Conn, sla: SLA, origin: str, now: datetime) -> bool:
    """Store a new SLA; False (nothing written) when one of that name exists, even racing."""
    return (
        conn.execute(
            "INSERT INTO slas (name, definition, origin, created, updated) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (sla.name, conn.json(sla_definition(sla)), origin, conn.time(now), conn.time(now)),
        )
        == 1
    )
