"""The error body `{"detail": ..., "errors": [{"loc": [...], "msg": ...}]}` for every error."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from coplane.store.errors import Conflict, DatabaseUnavailable, NotFound

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered with `status` and the documented body."""

    def __init__(
        self,
        status: int,
        detail: str,
        loc: list[str | int] | None = None,
        headers: dict[str, str] | None = None,
        msg: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = [{"loc": loc, "msg": msg or detail}] if loc is not None else []
        self.headers = headers


def error_body(detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The documented error body."""
    return {"detail": detail, "errors": errors or []}


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the documented body and a fitting status."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.detail, exc.errors), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(error_body(f"{where}: {first['msg']}", errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(error_body(str(exc)), status_code=409)

    @app.exception_handler(DatabaseUnavailable)
    async def _unavailable(_: Request, exc: DatabaseUnavailable) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return JSONResponse(
            error_body(f"database unavailable: {exc}"),
            status_code=503,
            headers={"Retry-After": "5"},
        )
