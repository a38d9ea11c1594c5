"""What an ingest request may send: no event name reserved for the server, and, with a key
limited to some resources, events about those resources only."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request

from coplane.auth.keys import Key
from coplane.events.model import Event
from coplane.events.names import RESERVED_PREFIXES, is_reserved
from coplane.http.errors import ApiError


def check_sender(request: Request, events: Sequence[Event], loc: str = "body") -> None:
    """403 naming the first event this request may not send, and why."""
    found = getattr(request.state, "key", None)
    key = found if isinstance(found, Key) else None  # users and open servers: any resource
    for index, event in enumerate(events):
        where = [loc, index] if len(events) > 1 else [loc]
        if is_reserved(event.event):
            raise ApiError(
                403,
                f"event {event.event!r}: names starting with {', '.join(RESERVED_PREFIXES)} "
                "are recorded by coplane's server only",
                [*where, "event"],
            )
        if key is not None and not key.may_send_about(event.resource.id):
            raise ApiError(
                403,
                f"event {event.event!r} about {event.resource.id!r}: the key {key.name} may "
                f"send events only about {', '.join(key.resources)}",
                [*where, "resource", "id"],
            )
