"""Logging in to the UI with an API key (read: look; admin: also acknowledge and resolve), kept
in an HttpOnly, SameSite=Strict cookie; and logging out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from coplane.auth.keys import Key, check_key
from coplane.auth.middleware import KEY_COOKIE
from coplane.collector.ingest import store_of
from coplane.web import csrf
from coplane.web.render import render

router = APIRouter(include_in_schema=False)

SESSION_SECONDS = 12 * 3600  # the login cookie lasts a working day


def _safe_next(target: str) -> str:
    """Only a path on this server: never an open redirect to another site."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _form(request: Request, next_: str, error: str = "", status: int = 200) -> HTMLResponse:
    token = csrf.token_for(request)
    auth = request.app.state.settings.auth
    context = {"next": _safe_next(next_), "error": error, "csrf_token": token, "auth": auth}
    response = render(request, "login.html", context, status)
    csrf.set_token(request, response, token)
    return response


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    """The login form: one field for an API key."""
    return _form(request, next)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key; a read or admin key gets the cookie and goes where it was heading."""
    form = await csrf.read_form(request)
    next_ = _safe_next(form.get("next", "/"))
    if not csrf.token_matches(request, form):
        return _form(request, next_, "The form expired. Enter the key again.", 403)
    secret = form.get("key", "").strip()

    def look_up() -> Key | None:
        with store_of(request).connect() as conn:
            return check_key(conn, secret)

    key = await run_in_threadpool(look_up) if secret else None
    if key is None:
        return _form(request, next_, "That key is unknown or revoked.", 401)
    if not key.allows("read"):
        return _form(request, next_, "That key may only send events: the UI needs read.", 403)
    response = RedirectResponse(next_, status_code=303)
    response.set_cookie(
        KEY_COOKIE,
        secret,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the key in this browser."""
    form = await csrf.read_form(request)
    if not csrf.token_matches(request, form):
        return _form(request, "/", "The form expired: log out again.", 403)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(KEY_COOKIE, path="/")
    return response
