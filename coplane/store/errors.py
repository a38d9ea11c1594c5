"""Errors the store raises; the HTTP layer maps them to status codes."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's errors."""


class NotFound(StoreError):
    """The thing asked for does not exist (404)."""


class Conflict(StoreError):
    """The change contradicts what is stored (409)."""


class DatabaseUnavailable(StoreError):
    """The database cannot be reached right now (503)."""
