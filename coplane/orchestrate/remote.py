"""How a flow talks to the server beyond events: the client from the environment, JSON calls."""

from __future__ import annotations

import os
from typing import Any

import httpx

from coplane.client import CoplaneClient

URL_ENV = "COPLANE_URL"
API_KEY_ENV = "COPLANE_API_KEY"


class ServerError(Exception):
    """The coplane server could not be reached, or refused a call; `status` is None when it
    could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def client_from_env() -> CoplaneClient | None:
    """A client for `COPLANE_URL` with `COPLANE_API_KEY`, or None when no server is set."""
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        return None
    return CoplaneClient(url, api_key=os.environ.get(API_KEY_ENV, "").strip() or None)


def call(
    client: CoplaneClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    params: dict[str, str | int | float] | None = None,
    timeout: float | None = None,
) -> Any:
    """The JSON answer of one API call; ServerError naming the server's detail otherwise."""
    try:
        resp = client.request(method, path, json=body, params=params, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ServerError(f"cannot reach the coplane server at {client.url}: {exc}") from None
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text[:300]
        raise ServerError(
            f"{method} {path} answered {resp.status_code}: {detail}", resp.status_code
        )
    return resp.json() if resp.content else None
