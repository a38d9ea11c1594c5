"""The canonical event model, event names and resource ids."""

from __future__ import annotations

from coplane.events.model import (
    Event,
    EventDecodeError,
    RelatedResource,
    Resource,
    decode_events,
)
from coplane.events.names import event_name_matches

__all__ = [
    "Event",
    "EventDecodeError",
    "RelatedResource",
    "Resource",
    "decode_events",
    "event_name_matches",
]
