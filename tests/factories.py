"""Builders for test events: native dicts as producers send them, and decoded Event structs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from coplane.events.model import Event, decode_events, encode_json

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    """A fixed test time, `minutes` after T0."""
    return T0 + timedelta(minutes=minutes)


def event_dict(
    name: str,
    resource: str,
    *,
    minutes: float = 0,
    run: str | None = None,
    related: list[dict[str, Any]] | None = None,
    payload: dict[str, Any] | None = None,
    kind: str | None = None,
    id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """One native event as JSON, with a fresh id unless one is given."""
    rel = list(related or [])
    if run is not None:
        rel.insert(0, {"role": "run", "id": run})
    res: dict[str, Any] = {"id": resource}
    if kind:
        res["kind"] = kind
    return {
        "id": str(id or uuid.uuid4()),
        "occurred": at(minutes).isoformat(),
        "event": name,
        "resource": res,
        "related": rel,
        "payload": payload or {},
    }


def events(*dicts: dict[str, Any]) -> list[Event]:
    """Decode event dicts exactly as the collector does."""
    return decode_events(encode_json(list(dicts)))
