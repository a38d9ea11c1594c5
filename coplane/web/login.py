"""Logging in to the UI as a user (name and password: a session) or with an API key (read:
look; admin: everything), kept in an HttpOnly, SameSite=Strict cookie; and logging out."""

from __future__ import annotations

import asyncio
import math
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from coplane.auth.keys import Key, check_key
from coplane.auth.middleware import KEY_COOKIE, SESSION_COOKIE
from coplane.auth.throttle import HASH_POOL, LoginThrottle
from coplane.auth.users import SESSION_LIFETIME, check_password, end_session, start_session
from coplane.http.deps import store_of
from coplane.web import csrf
from coplane.web.render import render

router = APIRouter(include_in_schema=False)

SESSION_SECONDS = int(SESSION_LIFETIME.total_seconds())  # a working day


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
    """A user's name and password open a session; an API key (read or admin) is kept as it
    is. Either way the browser goes on where it was heading."""
    form = await csrf.read_form(request)
    next_ = _safe_next(form.get("next", "/"))
    if not csrf.token_matches(request, form):
        return _form(request, next_, "The form expired. Log in again.", 403)
    name, password = form.get("name", "").strip(), form.get("password", "")
    secret = form.get("key", "").strip()
    if name:
        return await _password_login(request, name, password, next_)
    if not secret:
        return _form(request, next_, "Give a user name and password, or an API key.", 400)

    def look_up() -> Key | None:
        with store_of(request).connect() as conn:
            return check_key(conn, secret)

    key = await run_in_threadpool(look_up)
    if key is None:
        return _form(request, next_, "That key is unknown or revoked.", 401)
    if not key.allows("read"):
        return _form(request, next_, "That key may only send events: the UI needs read.", 403)
    response = RedirectResponse(next_, status_code=303)
    _set_cookie(request, response, KEY_COOKIE, secret)
    _rotate_csrf(request, response)
    return response


async def _password_login(request: Request, name: str, password: str, next_: str) -> Response:
    throttle = _throttle(request)
    address = request.client.host if request.client else "unknown"
    who = ("user:" + name.lower(), "address:" + address)
    wait = throttle.wait(*who)
    if wait > 0:  # not even checked: a right guess now would tell the guesser so
        seconds = math.ceil(wait)
        refused = _form(
            request,
            next_,
            f"Too many failed logins for this user or from this address: try again in "
            f"{seconds} s.",
            429,
        )
        refused.headers["Retry-After"] = str(seconds)
        return refused

    def check() -> str | None:
        with store_of(request).connect() as conn:
            user = check_password(conn, name, password)
            return None if user is None else start_session(conn, user)

    token = await asyncio.get_running_loop().run_in_executor(HASH_POOL, check)
    if token is None:
        throttle.failed(*who)
        return _form(request, next_, "Unknown user name or wrong password.", 401)
    throttle.succeeded(*who)
    response = RedirectResponse(next_, status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, token)
    response.delete_cookie(KEY_COOKIE, path="/")
    _rotate_csrf(request, response)
    return response


def _rotate_csrf(request: Request, response: Response) -> None:
    """A new CSRF token once logged in: one planted before (by a sibling subdomain, say) is
    worth nothing afterwards."""
    csrf.set_token(request, response, secrets.token_urlsafe(32))


def _throttle(request: Request) -> LoginThrottle:
    """The app's login throttle, made on first use."""
    state = request.app.state
    if not hasattr(state, "login_throttle"):
        state.login_throttle = LoginThrottle()
    throttle: LoginThrottle = state.login_throttle
    return throttle


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (or forget the key) in this browser."""
    form = await csrf.read_form(request)
    if not csrf.token_matches(request, form):
        return _form(request, "/", "The form expired: log out again.", 403)
    token = request.cookies.get(SESSION_COOKIE)
    if token:

        def end() -> None:
            with store_of(request).connect() as conn:
                end_session(conn, token)

        await run_in_threadpool(end)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(KEY_COOKIE, path="/")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
