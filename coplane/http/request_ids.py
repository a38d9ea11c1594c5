"""Request ids: each request gets one, answered as X-Request-ID and carried by its log lines."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coplane.http.errors import error_body
from coplane.logs import request_id

log = logging.getLogger(__name__)

HEADER = "x-request-id"
# A proxy's id is kept when it looks like one; anything else (long, odd characters) is
# replaced, since it ends up in log lines.
_ACCEPTED = re.compile(r"[A-Za-z0-9._\-]{8,64}")


class RequestIds:
    """ASGI middleware: set the request's id, answer it, and log failed requests with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(HEADER.encode(), b"").decode("latin-1")
        rid = given if _ACCEPTED.fullmatch(given) else uuid.uuid4().hex[:16]
        token = request_id.set(rid)
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", []), (HEADER.encode(), rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("%s %s failed", scope["method"], scope["path"], extra={"request_id": rid})
            if started:
                raise
            # Answered here rather than by Starlette's last-resort handler, so that the
            # answer names the id to look for in the log.
            detail = f"internal error: the server log has its traceback under request id {rid}"
            await JSONResponse(error_body(detail), 500, {HEADER: rid})(scope, receive, send)
        else:
            if status >= 500:
                log.error(
                    "%s %s answered %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"request_id": rid},
                )
        finally:
            request_id.reset(token)
