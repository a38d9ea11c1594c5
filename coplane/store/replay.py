"""Reading stored events back as `Event`s, with when they were received, for SLA backtests."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import msgspec

from coplane.events.model import Event
from coplane.store.dialects import Conn


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_replay_events(
    conn: Conn,
    since: datetime,
    until: datetime,
    limit: int,
    resources: Collection[str] | None = None,
) -> list[tuple[datetime, Event]]:
    """Events that occurred in [since, until] and were received by `until`, as
    (received, event) pairs in the order they were received; at most `limit` of them.

    `resources`: only events about one of these ids, as their resource or a related one
    (what derives the runs, updates and checks of those ids); None for every event.
    """
    where = "occurred >= ? AND occurred <= ? AND received <= ?"
    params: list[Any] = [conn.time(since), conn.time(until), conn.time(until)]
    if resources is not None:
        ids = sorted(resources)
        marks = ", ".join("?" * len(ids))
        if conn.dialect == "postgresql":
            related = "related_ids && ?::text[]"
            params += [*ids, ids]
        else:
            related = (
                "EXISTS (SELECT 1 FROM json_each(related) "
                f"WHERE json_extract(value, '$.id') IN ({marks}))"
            )
            params += [*ids, *ids]
        where += f" AND (resource_id IN ({marks}) OR {related})"
    rows = conn.query(
        "SELECT id, occurred, received, event, resource, related, payload FROM events "
        f"WHERE {where} ORDER BY received, occurred, id LIMIT ?",
        (*params, limit),
    )
    out: list[tuple[datetime, Event]] = []
    for row in rows:
        event = msgspec.convert(
            {
                "id": str(row["id"]),
                "occurred": _aware(row["occurred"]),
                "event": row["event"],
                "resource": row["resource"],
                "related": row["related"],
                "payload": row["payload"],
            },
            Event,
        )
        out.append((_aware(row["received"]), event))
    return out
