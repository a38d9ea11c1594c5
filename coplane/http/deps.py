"""What a route takes from the running app (FastAPI dependencies): its store."""

from __future__ import annotations

from fastapi import Request

from coplane.store import Store


def store_of(request: Request) -> Store:
    """The store the app was started with."""
    store: Store = request.app.state.store
    return store
