"""`pause_flow_run(...)`: suspend a flow run until someone resumes it, optionally with input.

The pause is recorded on the server with the input's JSON schema, so the run's page can draw
a form and `POST /api/runs/{id}/resume` can check the input without the flow's code. The
flow then asks the server every `poll_s` seconds until the run is resumed or the pause
times out; the server's clock decides the timeout, so a resume is never accepted after the
flow has given up.

In an `async def` flow, `await apause_flow_run(...)` pauses the same way without blocking
the event loop: the server is asked from a thread and the waits are `asyncio.sleep`.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from coplane.client import CoplaneClient
from coplane.orchestrate.remote import ServerError, call, client_from_env

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

RECORD_FOR_S = 30.0  # how long to keep trying to record the pause (the run may be in flight)
GRACE_S = 60.0  # past the deadline, how long an unreachable server is waited for


class PauseTimeout(TimeoutError):
    """Nobody resumed the run before the pause's timeout: the run fails."""


class PauseError(RuntimeError):
    """The pause could not be recorded: no server, no flow run, or the server refused it."""


def _from_context() -> tuple[str | None, str | None, Any]:
    try:  # the flow SDK's run context, when this runs inside a flow (imported late: it is heavier)
        context = importlib.import_module("coplane.orchestrate.context")
    except ImportError:
        return None, None, None
    ctx = context.get_run_context()
    if ctx is None:
        return None, None, None
    return ctx.flow_run_id, ctx.pipeline_id, getattr(ctx, "reporter", None)


def _record(client: CoplaneClient, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + RECORD_FOR_S
    wait = 0.2
    while True:
        try:
            answer: dict[str, Any] = call(client, "POST", f"/api/runs/{run_id}/pause", body)
            return answer
        except ServerError as exc:
            # 404: the run's first events may still be on their way to the server
            again = exc.status is None or exc.status == 404 or exc.status >= 500
            if not again or time.monotonic() > deadline:
                raise PauseError(f"pausing run {run_id}: {exc}") from None
        time.sleep(wait)
        wait = min(2.0, wait * 2)


@dataclass(frozen=True, slots=True)
class _Pausing:
    """The run to pause, the client asking about it (closed at the end when `own`), the body."""

    run_id: str
    client: CoplaneClient
    own: bool
    body: dict[str, Any]


def _begin(
    timeout: float,
    wait_for_input: type[BaseModel] | None,
    run_id: str | None,
    pipeline_id: str | None,
    client: CoplaneClient | None,
) -> _Pausing:
    """Find the run and the server, and send the run's events first."""
    ctx_run, ctx_pipeline, reporter = _from_context()
    run_id = run_id or ctx_run
    pipeline_id = pipeline_id or ctx_pipeline
    if run_id is None:
        raise PauseError("pause_flow_run needs a flow run: call it inside a @flow or pass run_id")
    own = client is None
    client = client or client_from_env()
    if client is None:
        raise PauseError("pausing needs a coplane server to resume through: set COPLANE_URL")
    if reporter is not None:
        reporter.flush()  # the run's events first, so that the server knows the run
    body: dict[str, Any] = {"timeout_s": timeout, "pipeline_id": pipeline_id}
    if wait_for_input is not None:
        body["schema"] = wait_for_input.model_json_schema()
    return _Pausing(run_id, client, own, body)


def _look(client: CoplaneClient, run_id: str, timeout: float, give_up: float) -> Any:
    """The pause once it is resumed; None while it still waits; PauseTimeout past its end."""
    try:
        pause = call(client, "GET", f"/api/runs/{run_id}/pause")
    except ServerError as exc:
        if time.monotonic() > give_up:
            raise PauseTimeout(
                f"run {run_id}: no answer about its pause past the timeout: {exc}"
            ) from None
        return None
    if pause["state"] == "timed_out":
        raise PauseTimeout(f"run {run_id} was not resumed within {timeout:g} s")
    return pause if pause["state"] == "resumed" else None


def _resumed(run_id: str, pause: Any, wait_for_input: type[M] | None) -> M | None:
    log.info("run %s resumed by %s", run_id, pause.get("resumed_by") or "someone")
    if wait_for_input is None:
        return None
    return wait_for_input.model_validate(pause["input"] or {})


def pause_flow_run(
    *,
    timeout: float,
    wait_for_input: type[M] | None = None,
    run_id: str | None = None,
    pipeline_id: str | None = None,
    client: CoplaneClient | None = None,
    poll_s: float = 1.0,
) -> M | None:
    """Pause the current flow run (state `paused`) until it is resumed, for at most `timeout` s.

    Returns the input validated by `wait_for_input` (None without a model). PauseTimeout when
    nobody resumed it in time, which fails the run; PauseError when the pause cannot be
    recorded (no coplane server configured, not inside a flow run and no `run_id`, or refused).
    """
    if _loop_running():
        log.warning("pause_flow_run blocks this thread's event loop: await apause_flow_run")
    p = _begin(timeout, wait_for_input, run_id, pipeline_id, client)
    try:
        _record(p.client, p.run_id, p.body)
        log.info("run %s paused for up to %g s, waiting to be resumed", p.run_id, timeout)
        give_up = time.monotonic() + timeout + GRACE_S
        while True:
            time.sleep(poll_s)
            pause = _look(p.client, p.run_id, timeout, give_up)
            if pause is not None:
                break
    finally:
        if p.own:
            p.client.close()
    return _resumed(p.run_id, pause, wait_for_input)


async def apause_flow_run(
    *,
    timeout: float,
    wait_for_input: type[M] | None = None,
    run_id: str | None = None,
    pipeline_id: str | None = None,
    client: CoplaneClient | None = None,
    poll_s: float = 1.0,
) -> M | None:
    """`pause_flow_run` for an `async def` flow: the loop runs other coroutines meanwhile."""
    # to_thread copies this context, so the run is found there as here
    p = await asyncio.to_thread(_begin, timeout, wait_for_input, run_id, pipeline_id, client)
    try:
        await asyncio.to_thread(_record, p.client, p.run_id, p.body)
        log.info("run %s paused for up to %g s, waiting to be resumed", p.run_id, timeout)
        give_up = time.monotonic() + timeout + GRACE_S
        while True:
            await asyncio.sleep(poll_s)
            pause = await asyncio.to_thread(_look, p.client, p.run_id, timeout, give_up)
            if pause is not None:
                break
    finally:
        if p.own:
            p.client.close()
    return _resumed(p.run_id, pause, wait_for_input)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
