"""The error body `{"detail": ..., "errors": [{"loc": [...], "msg": ...}]}` for every error."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def not_found_at(*loc: str) -> Iterator[None]:
    """Answer a NotFound raised inside as a 404 naming `loc`, the part of the request that
    named nothing (the store's handler below answers one without a location)."""
    try:
        yield
    except NotFound as exc:
        raise ApiError(404, str(exc), list(loc)) from None


def error_body(detail: str, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The documented error body."""
    return {"detail": detail, "errors": errors or []}


# The error body as a JSON schema, for the OpenAPI document (README "HTTP API").
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail", "errors"],
    "properties": {
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}


def document_error_body(app: FastAPI) -> None:
    """Make the OpenAPI schema's 422 responses the body the handlers send, not FastAPI's own.

    FastAPI documents every 422 as its `HTTPValidationError` (`detail` a list), which the
    handler below replaces; clients generated from the schema would otherwise fail to parse it.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    invalid = operation.get("responses", {}).get("422", {})
                    if "application/json" in invalid.get("content", {}):
                        invalid["content"]["application/json"]["schema"] = {
                            "$ref": "#/components/schemas/Error"
                        }
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            schemas["Error"] = ERROR_SCHEMA
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def refuse_nul_in_query(request: Request) -> None:
    """422 naming the query parameter that holds U+0000, before any route uses it: PostgreSQL
    cannot take the character in text, so a search for it failed with a 500."""
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            field = name.replace("\x00", "")
            raise ApiError(422, f"{field}: the character U+0000 is not allowed", ["query", field])


def _log_refusal(request: Request, status: int, detail: str) -> None:
    # One line per refused API request: with the request id (coplane.logs adds it) an
    # operator finds what a producer was told; the detail never echoes a credential.
    log.info("%s %s refused with %d: %s", request.method, request.url.path, status, detail)


def unknown_route(path: str, known: list[str]) -> str:
    """The 404 detail for a path no route matches, naming the nearest route there is."""
    api = sorted({p for p in known if p.startswith("/api/")})
    nearest = difflib.get_close_matches(path.rstrip("/"), api, n=1, cutoff=0.6)
    hint = f"; the nearest is {nearest[0]}" if nearest else ""
    return f"no route {path}{hint} (every route is listed at /docs)"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with the documented body and a fitting status."""
    document_error_body(app)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        _log_refusal(request, exc.status, exc.detail)
        return JSONResponse(
            error_body(exc.detail, exc.errors), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        _log_refusal(request, 422, f"{where}: {first['msg']}")
        return JSONResponse(error_body(f"{where}: {first['msg']}", errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if exc.status_code == 404 and exc.detail == "Not Found" and path.startswith("/api/"):
            # the OpenAPI paths: every documented route, however the routers are nested
            detail = unknown_route(path, list(app.openapi().get("paths", {})))
            return JSONResponse(error_body(detail, [{"loc": ["path"], "msg": detail}]), 404)
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
