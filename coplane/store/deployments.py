"""Deployments: a flow entrypoint with its default parameters, signature, pool and code source."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from coplane.store.dialects import Conn, Row
from coplane.store.errors import Conflict, NotFound

COLUMNS = (
    "name, entrypoint, flow, parameters, signature, tags, work_pool, concurrency_limit, "
    "retries, working_dir, git_url, git_ref, env, infrastructure, origin, created, updated"
)


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    """What is stored of one deployment (`signature` as `orchestrate.execute` describes it)."""

    name: str
    entrypoint: str
    flow: str
    signature: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    work_pool: str = "default"
    concurrency_limit: int | None = None
    retries: int = 0
    working_dir: str | None = None
    git_url: str | None = None
    git_ref: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    infrastructure: str = "process"
    origin: str = "api"


def upsert_deployment(conn: Conn, d: DeploymentRow, now: datetime, *, replace: bool) -> Row:
    """Store `d`; an existing one of that name is replaced when `replace`, else Conflict.

    A deployment from the config file is only changed by the file (origin `file`), as SLAs are.
    """
    existing = conn.one("SELECT origin FROM deployments WHERE name = ?", (d.name,))
    if existing is not None and not replace:
        raise Conflict(f"a deployment named {d.name!r} exists")
    if existing is not None and existing["origin"] == "file" and d.origin != "file":
        raise Conflict(f"deployment {d.name!r} comes from the config file: change it there")
    values = (
        d.entrypoint, d.flow, conn.json(d.parameters), conn.json(d.signature),
        conn.json(d.tags), d.work_pool, d.concurrency_limit, d.retries, d.working_dir,
        d.git_url, d.git_ref, conn.json(d.env), d.infrastructure, d.origin,
    )  # fmt: skip
    if existing is None:
        conn.execute(
            f"INSERT INTO deployments ({COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (d.name, *values, conn.time(now), conn.time(now)),
        )
    else:
        conn.execute(
            "UPDATE deployments SET entrypoint = ?, flow = ?, parameters = ?, signature = ?, "
            "tags = ?, work_pool = ?, concurrency_limit = ?, retries = ?, working_dir = ?, "
            "git_url = ?, git_ref = ?, env = ?, infrastructure = ?, origin = ?, updated = ? "
            "WHERE name = ?",
            (*values, conn.time(now), d.name),
        )
    return read_deployment(conn, d.name)


def read_deployment(conn: Conn, name: str) -> Row:
    """One deployment; NotFound naming it when there is none."""
    row = conn.one(f"SELECT {COLUMNS} FROM deployments WHERE name = ?", (name,))
    if row is None:
        raise NotFound(f"no deployment named {name!r}")
    return row


def list_deployments(conn: Conn, origin: str | None = None) -> list[Row]:
    """Every deployment (or those of one origin), by name."""
    if origin is None:
        return conn.query(f"SELECT {COLUMNS} FROM deployments ORDER BY name")
    return conn.query(
        f"SELECT {COLUMNS} FROM deployments WHERE origin = ? ORDER BY name", (origin,)
    )


def delete_deployment(conn: Conn, name: str, *, origin: str | None = None) -> None:
    """Remove a deployment and its runs' orchestration rows (the observed runs stay)."""
    row = read_deployment(conn, name)
    if origin is not None and row["origin"] == "file" and origin != "file":
        raise Conflict(f"deployment {name!r} comes from the config file: change it there")
    conn.execute("DELETE FROM deployments WHERE name = ?", (name,))


def deployment_json(row: Row) -> dict[str, Any]:
    """A deployment as the API shows it."""
    return {
        "name": row["name"],
        "entrypoint": row["entrypoint"],
        "flow": row["flow"],
        "parameters": row["parameters"],
        "signature": row["signature"],
        "tags": row["tags"],
        "work_pool": row["work_pool"],
        "concurrency_limit": row["concurrency_limit"],
        "retries": row["retries"],
        "working_dir": row["working_dir"],
        "git_url": row["git_url"],
        "git_ref": row["git_ref"],
        "env": sorted(row["env"]),  # names only: values may be credentials
        "infrastructure": row["infrastructure"],
        "origin": row["origin"],
        "created": row["created"].isoformat(),
        "updated": row["updated"].isoformat(),
    }
