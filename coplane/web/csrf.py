"""Double-submit CSRF tokens for the UI's forms: a random token in an HttpOnly, SameSite=Strict
cookie and the same token in a hidden field; a POST is accepted only when they match."""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from fastapi import Request, Response

from coplane.auth.middleware import CSRF_COOKIE

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "read_form", "set_token", "token_for", "token_matches"]
CSRF_FIELD = "csrf_token"


def token_for(request: Request) -> str:
    """The browser's token, or a new one: the cookie keeps it across pages and tabs."""
    token = request.cookies.get(CSRF_COOKIE) or ""
    return token if len(token) >= 32 else secrets.token_urlsafe(32)


def set_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each): no multipart dependency needed."""
    parsed = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {name: values[0] for name, values in parsed.items()}


def token_matches(request: Request, form: dict[str, str]) -> bool:
    """The form's token equals the cookie's (compared in constant time), and both are set."""
    sent = form.get(CSRF_FIELD, "")
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    return bool(sent and cookie) and hmac.compare_digest(sent.encode(), cookie.encode())
