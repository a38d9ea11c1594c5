"""`/api/secrets`: store, list and delete secrets (the admin scope, when keys are required).

A value goes in and never comes out: answers carry names and times only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from coplane.auth.vault import (
    MAX_VALUE_BYTES,
    SecretError,
    Vault,
    check_name,
    delete_secret,
    list_secrets,
    read_secret_info,
)
from coplane.http.deps import store_of
from coplane.http.errors import ApiError, not_found_at

router = APIRouter()

SecretName = Annotated[str, Path(description="the name `${secret:NAME}` references use")]


class NewSecret(BaseModel):
    value: str = Field(
        min_length=1, max_length=MAX_VALUE_BYTES, description="the credential; never shown again"
    )


def vault_of(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


def _named(name: str) -> str:
    problem = check_name(name)
    if problem:
        raise ApiError(422, f"name: {problem}", ["path", "name"])
    return name


@router.put("/api/secrets/{name}", summary="Store a secret, encrypted")
async def put_secret(
    request: Request, name: SecretName, body: Annotated[NewSecret, Body()], response: Response
) -> dict[str, Any]:
    """Store or replace a secret; 201 when it is new. The answer has no value."""
    _named(name)
    vault, store = vault_of(request), store_of(request)

    def put() -> tuple[bool, dict[str, Any]]:
        with store.connect() as conn:
            new = vault.put(conn, name, body.value)
            return new, read_secret_info(conn, name).json()

    try:
        new, info = await run_in_threadpool(put)
    except SecretError as exc:
        raise ApiError(409, str(exc), ["body", "value"]) from None
    except ValueError as exc:
        raise ApiError(422, f"value: {exc}", ["body", "value"]) from None
    response.status_code = 201 if new else 200
    return info


@router.get("/api/secrets", summary="Every stored secret's name, without values")
def get_secrets(request: Request) -> dict[str, Any]:
    """Names with when each was created and last set."""
    with store_of(request).connect() as conn:
        return {"secrets": [s.json() for s in list_secrets(conn)]}


@router.delete("/api/secrets/{name}", status_code=204, summary="Delete a stored secret")
def delete_stored_secret(request: Request, name: SecretName) -> Response:
    """Forget a secret; channels naming it fail (and are disabled) until it is set again."""
    with not_found_at("path", "name"), store_of(request).connect() as conn:
        delete_secret(conn, _named(name))
    return Response(status_code=204)
