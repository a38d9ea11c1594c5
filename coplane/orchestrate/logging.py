"""Run logs: `get_run_logger()` and `log_prints=True`, shipped as records of the current run.

`get_run_logger()` gives the logger `coplane.runs`, whose handler turns each record into a
log record of the run it was logged in (read from the run context as it is logged) and
hands it to the reporter, which ships them in batches to `POST /api/logs`. Records also
propagate to the root logger as usual, so they show wherever the process logs.

`log_prints=True` on a flow or task makes `print()` inside it also log its text at INFO
to the run (it still prints). The builtin `print` is wrapped while a flow runs; the
wrapper is a cheap check of the context for code that does not log its prints.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from coplane.orchestrate.context import get_run_context

RUN_LOGGER = "coplane.runs"
MAX_MESSAGE_CHARS = 10_000  # one record's message; a longer one is cut, with a mark


def log_record(record: logging.LogRecord) -> dict[str, Any] | None:
    """The shipped form of a record logged inside a run; None outside one."""
    ctx = get_run_context()
    if ctx is None:
        return None
    try:
        message = record.getMessage()
    except Exception:  # bad %-arguments: ship what was meant rather than nothing
        message = str(record.msg)
    if record.exc_info:
        message += "\n" + logging.Formatter().formatException(record.exc_info)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "… (cut)"
    return {
        "run_id": ctx.flow_run_id,
        "task_run_id": ctx.task_run_id,
        "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": record.levelname,
        "logger": record.name,
        "message": message,
    }


class RunLogHandler(logging.Handler):
    """Hands each record logged in a run to the run's reporter."""

    def emit(self, record: logging.LogRecord) -> None:
        ctx = get_run_context()
        if ctx is None or not ctx.reporter.enabled:
            return
        try:
            shipped = log_record(record)
            if shipped is not None:
                ctx.reporter.emit_log(shipped)
        except Exception:
            self.handleError(record)


_handler = RunLogHandler()
_logger = logging.getLogger(RUN_LOGGER)
_logger.setLevel(logging.INFO)
_logger.addHandler(_handler)


def get_run_logger() -> logging.Logger:
    """The logger whose records go to the current flow or task run's logs."""
    return _logger


_print_lock = threading.Lock()
_print_users = 0
_original_print = builtins.print


def _run_print(*args: Any, **kwargs: Any) -> None:
    _original_print(*args, **kwargs)
    ctx = get_run_context()
    if ctx is None or not ctx.log_prints:
        return
    target = kwargs.get("file")
    if target is not None and target not in (sys.stdout, sys.stderr):
        return  # printing into a file is writing a file, not logging
    sep = kwargs.get("sep")
    text = (" " if sep is None else str(sep)).join(str(a) for a in args)
    _logger.info(text)


def capture_prints() -> None:
    """Wrap `print` (counted: each call is undone by one `release_prints`)."""
    global _print_users
    with _print_lock:
        if _print_users == 0 and builtins.print is _original_print:
            builtins.print = _run_print
        _print_users += 1


def release_prints() -> None:
    """Undo one `capture_prints`; the last one puts the builtin back."""
    global _print_users
    with _print_lock:
        _print_users = max(0, _print_users - 1)
        if _print_users == 0 and builtins.print is _run_print:
            builtins.print = _original_print
