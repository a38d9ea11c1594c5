"""The server's log: one line per record, plain text or JSON (COPLANE_LOG_FORMAT), request ids.

What coplane decides (an incident opened, an alert sent or given up on, a channel disabled,
leadership gained) is logged through `decision()`: the message reads as a sentence, and the
same facts travel as fields (`decision`, `sla`, `incident`, `channel`, ...), so that a JSON log
can be filtered on them without parsing sentences. Every line goes through the credential
masker (`coplane.security.mask`) once more as a whole, fields included.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from coplane.security.mask import mask

LogFormat = Literal["text", "json"]

# The id of the HTTP request being served (set by coplane.http.request_ids), if any.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "coplane_request_id", default=None
)

# What every LogRecord has; anything else on a record came in through `extra` (a field).
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of its message
    "_exc_text",  # coplane.security.mask's record keeps its traceback text here
}


def decision(
    logger: logging.Logger, event: str, message: str, *, level: int = logging.INFO, **fields: Any
) -> None:
    """Log one thing coplane decided: `event` (e.g. "incident.opened") and its fields."""
    logger.log(level, message, extra={"decision": event, **fields})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    found = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    rid = found.pop("request_id", None) or request_id.get()
    if rid is not None:
        found["request_id"] = rid
    return found


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`TIME LEVEL logger: message key=value ...`, the traceback below it."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        extra = "".join(f" {k}={_text(v)}" for k, v in fields.items() if k != "decision")
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}{extra}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return mask(line)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the record's fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            body["exception"] = record.exc_text
        return mask(json.dumps(body, default=str, ensure_ascii=False))


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c == '"' for c in text) else text


def configure_logging(level: str, fmt: LogFormat) -> None:
    """Send every logger's records (uvicorn's too) to stderr, one line each, in `fmt`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # httpx logs every request's URL at info (alert channels' URLs can hold tokens), and
    # APScheduler a line for every job it runs: neither is a decision of coplane's
    for name in ("httpx", "httpcore", "apscheduler"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
