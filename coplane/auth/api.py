"""`/api/keys`: create, list and revoke API keys (the admin scope, when keys are required)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, Field

from coplane.auth.keys import (
    Scope,
    check_resource_patterns,
    create_key,
    list_keys,
    revoke_key,
)
from coplane.http.deps import store_of
from coplane.http.errors import ApiError, not_found_at

router = APIRouter()


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="who or what uses the key")
    scopes: list[Scope] = Field(min_length=1, description="ingest, read and/or admin")
    resources: list[str] = Field(
        default_factory=list,
        description="resource ids or prefixes ending in * (airflow.prod.*) the key may send "
        "events about; empty: any",
    )


@router.post("/api/keys", status_code=201, summary="Create an API key")
def post_key(request: Request, body: Annotated[NewKey, Body()]) -> dict[str, Any]:
    """A new key. Its secret is in `key`, in this response only: coplane keeps a hash."""
    if request.app.state.settings.auth == "none":
        # an open server would hand a key to anyone who reaches it, and the key would stay
        # good after a switch to COPLANE_AUTH=keys
        raise ApiError(
            403,
            "keys are created over HTTP only with COPLANE_AUTH=keys: on the server's host, "
            "run `coplane keys create NAME --scope ...`",
            ["body"],
        )
    if not body.name.strip():
        raise ApiError(422, "name: a key needs a name, not only spaces", ["body", "name"])
    try:
        resources = check_resource_patterns(body.resources)
    except ValueError as exc:
        raise ApiError(422, f"resources: {exc}", ["body", "resources"]) from None
    with store_of(request).connect() as conn:
        key, secret = create_key(conn, body.name, body.scopes, resources=resources)
    return {**key.json(), "key": secret}


@router.get("/api/keys", summary="Every API key, without secrets")
def get_keys(request: Request) -> dict[str, Any]:
    """Keys by creation, each with its prefix, scopes, last use and revocation."""
    with store_of(request).connect() as conn:
        return {"keys": [k.json() for k in list_keys(conn)]}


@router.delete("/api/keys/{key}", status_code=204, summary="Revoke an API key")
def delete_key(request: Request, key: str) -> Response:
    """Revoke by id or prefix: requests with it are refused from now on."""
    with not_found_at("path", "key"), store_of(request).connect() as conn:
        revoke_key(conn, key)
    return Response(status_code=204)
