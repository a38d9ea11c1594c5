"""`/api/monitors/{slug}/ping-key`: create (rotate), show and revoke a monitor's ping key
(the admin scope, when keys are required)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from coplane.collector.ping import MAX_SLUG_LENGTH, valid_slug
from coplane.http.deps import store_of
from coplane.http.errors import ApiError, not_found_at
from coplane.store.ping_keys import create_ping_key, read_ping_key, revoke_ping_key

router = APIRouter()

Slug = Annotated[str, Path(description="the monitor's slug (a heartbeat SLA's `target`)")]


def checked_slug(slug: str) -> str:
    """The slug, or a 422 naming it when no monitor may have it."""
    if not valid_slug(slug):
        raise ApiError(
            422,
            f"slug: {slug!r} is not a monitor slug (letters, digits and `_.-`, at most "
            f"{MAX_SLUG_LENGTH} characters, not starting with cpk_)",
            ["path", "slug"],
        )
    return slug


def ping_url(base: str, slug: str, key: str) -> str:
    """The success ping URL of a monitor with its key; `/start`, `/fail` or `/{exit code}`
    may follow."""
    return f"{base.rstrip('/')}/ping/{key}/{slug}"


@router.post(
    "/api/monitors/{slug}/ping-key", status_code=201, summary="Create or rotate a ping key"
)
def post_ping_key(request: Request, slug: Slug) -> dict[str, Any]:
    """A new ping key for the monitor, replacing its old one. The key is in `ping_key` and
    `ping_url`, in this response only: coplane keeps a hash."""
    checked_slug(slug)
    with store_of(request).connect() as conn:
        key, secret = create_ping_key(conn, slug)
    base: str = request.app.state.settings.link_base
    return {**key.json(), "ping_key": secret, "ping_url": ping_url(base, slug, secret)}


@router.get("/api/monitors/{slug}/ping-key", summary="A monitor's ping key, without the key")
def get_ping_key(request: Request, slug: Slug) -> dict[str, Any]:
    """The live key's prefix and creation time; 404 when the monitor has none."""
    checked_slug(slug)
    with not_found_at("path", "slug"), store_of(request).connect() as conn:
        return read_ping_key(conn, slug).json()


@router.delete("/api/monitors/{slug}/ping-key", status_code=204, summary="Revoke a ping key")
def delete_ping_key(request: Request, slug: Slug) -> Response:
    """Revoke the monitor's key: pings with it are answered 404 from now on."""
    checked_slug(slug)
    with not_found_at("path", "slug"), store_of(request).connect() as conn:
        revoke_ping_key(conn, slug)
    return Response(status_code=204)
