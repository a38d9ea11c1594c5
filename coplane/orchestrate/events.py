"""How flows, tasks and their runs are named in coplane, and the `run.*` events that report them.

Following the Airflow collector's conventions, so that SDK runs look like any other:

- a flow is the pipeline `sdk.<flow name>`; a flow run's run key is a new UUID per call;
- a task is `sdk.<flow name>.<task name>` (kind `task`, `parent` the flow), and each try of a
  task run is a child run keyed `<flow run key>/<task name>-<n>/<try>`, `n` counting the
  task's calls within the flow run, so a retried task run shows each try as Airflow's do
  (a try that will be retried ends `run.retrying`);
- a subflow is its own pipeline, whose runs are child runs of the calling flow's run;
- every event names the source `sdk`, and its id is derived from the run, the event name and
  the time, so an event sent twice (a retry, a replayed spool) is stored once. The id is laid
  out as a UUIDv7 (RFC 9562): the time's milliseconds first, then 74 bits of a SHA-1 of the
  rest. Ids that grow with time land at the end of the events table's key index instead of
  all over it: a burst of task runs costs the server fewer page writes.

The functions here are pure: the engine calls them and hands the dicts to the reporter.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from coplane.events import names as n
from coplane.events.derive import run_uuid

SOURCE = "sdk"
EVENT_NAMESPACE = uuid.UUID("2b8f4c1e-6a3d-5e70-8c19-4d2a7b9e0f51")
SUMMARY_CHARS = 200  # longest repr of one parameter or result kept in an event
MAX_PARAMETERS = 50  # parameters summarised per run
TRACEBACK_CHARS = 20_000  # the end of a traceback is where the error is


def flow_resource(flow_name: str) -> str:
    """The pipeline id of a flow."""
    return f"{SOURCE}.{flow_name}"


def task_resource(flow_name: str, task_name: str) -> str:
    """The resource id of one of a flow's tasks."""
    return f"{SOURCE}.{flow_name}.{task_name}"


def task_run_key(flow_run_key: str, task_name: str, call: int, try_number: int) -> str:
    """The run key of one try of a task run (the task's `call`-th call in the flow run)."""
    return f"{flow_run_key}/{task_name}-{call}/{try_number}"


def run_id(pipeline: str, run_key: str) -> str:
    """The coplane run id of a run (what `GET /api/runs/{id}` takes)."""
    return run_uuid(pipeline, run_key)


def now_iso() -> str:
    """The current time in RFC 3339 with an offset."""
    return datetime.now(UTC).isoformat()


def summary(value: object) -> str:
    """A short, safe description of a value: its repr, cut to SUMMARY_CHARS."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not fail the task run
        text = f"<{type(value).__name__}>"
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def parameters_summary(parameters: Mapping[str, Any]) -> dict[str, str]:
    """The first MAX_PARAMETERS parameters, each summarised."""
    out = {}
    for i, (name, value) in enumerate(parameters.items()):
        if i >= MAX_PARAMETERS:
            break
        out[name] = summary(value)
    return out


def error_payload(exc: BaseException) -> dict[str, Any]:
    """An exception as `payload.error`: message, type and (the end of) its traceback."""
    text = "".join(traceback.format_exception(exc))
    if len(text) > TRACEBACK_CHARS:
        text = "…" + text[-TRACEBACK_CHARS:]
    return {"message": str(exc) or type(exc).__name__, "type": type(exc).__name__,
            "traceback": text}  # fmt: skip


def _event_id(resource: str, run_key: str, event: str, occurred: str) -> str:
    millis = int(datetime.fromisoformat(occurred).timestamp() * 1000) & _MILLIS
    digest = uuid.uuid5(EVENT_NAMESPACE, f"{resource}\n{run_key}\n{event}\n{occurred}").int
    return str(uuid.UUID(int=(millis << 80) | (digest & _HASH_BITS) | _VERSION_7))


_MILLIS = (1 << 48) - 1
_VERSION_7 = (0x7 << 76) | (0x2 << 62)  # version 7, RFC 9562 variant
_HASH_BITS = ((1 << 80) - 1) & ~(0xF << 76) & ~(0x3 << 62)


def flow_run_event(
    event: str,
    *,
    flow_name: str,
    run_key: str,
    payload: dict[str, Any],
    labels: Mapping[str, str],
    parent_pipeline: str | None = None,
    parent_run_key: str | None = None,
    occurred: str | None = None,
    causes: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One `run.*` event of a flow run; a subflow's names its caller's run as parent, and a
    run a deployment started carries what caused it (`causes`, the worker's related)."""
    resource = flow_resource(flow_name)
    at = occurred or now_iso()
    related: list[dict[str, Any]] = [{"role": n.ROLE_RUN, "id": run_key}]
    if parent_pipeline is not None and parent_run_key is not None:
        related.append({"role": n.ROLE_PARENT, "id": parent_pipeline, "kind": n.KIND_PIPELINE})
        related.append({"role": n.ROLE_PARENT_RUN, "id": parent_run_key})
    related.append({"role": n.ROLE_SOURCE, "id": SOURCE})
    related += [dict(c) for c in causes]
    return {
        "id": _event_id(resource, run_key, event, at),
        "occurred": at,
        "event": event,
        "resource": {
            "id": resource, "name": flow_name, "kind": n.KIND_PIPELINE, "labels": dict(labels)
        },
        "related": related,
        "payload": payload,
    }


def task_run_event(
    event: str,
    *,
    flow_pipeline: str,
    flow_run_key: str,
    resource: str,
    task_name: str,
    run_key: str,
    payload: dict[str, Any],
    labels: Mapping[str, str],
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    occurred: str | None = None,
) -> dict[str, Any]:
    """One `run.*` event of one try of a task run, a child run of its flow run."""
    at = occurred or now_iso()
    related: list[dict[str, Any]] = [
        {"role": n.ROLE_RUN, "id": run_key},
        {"role": n.ROLE_PARENT, "id": flow_pipeline, "kind": n.KIND_PIPELINE},
        {"role": n.ROLE_PARENT_RUN, "id": flow_run_key},
        {"role": n.ROLE_SOURCE, "id": SOURCE},
    ]
    related += [{"role": n.ROLE_INPUT, "id": a, "kind": n.KIND_ASSET} for a in inputs]
    related += [{"role": n.ROLE_OUTPUT, "id": a, "kind": n.KIND_ASSET} for a in outputs]
    return {
        "id": _event_id(resource, run_key, event, at),
        "occurred": at,
        "event": event,
        "resource": {
            "id": resource, "name": task_name, "kind": n.KIND_TASK, "labels": dict(labels)
        },
        "related": related,
        "payload": payload,
    }


def asset_updated_event(
    asset: str, *, producer: str, run_key: str, occurred: str | None = None
) -> dict[str, Any]:
    """`asset.updated` of an output asset by the task run that wrote it."""
    at = occurred or now_iso()
    return {
        "id": _event_id(asset, run_key, n.ASSET_UPDATED, at),
        "occurred": at,
        "event": n.ASSET_UPDATED,
        "resource": {"id": asset, "kind": n.KIND_ASSET},
        "related": [
            {"role": n.ROLE_PRODUCER, "id": producer},
            {"role": n.ROLE_RUN, "id": run_key},
            {"role": n.ROLE_SOURCE, "id": SOURCE},
        ],
        "payload": {},
    }


def labels_of(tags: Sequence[str]) -> dict[str, str]:
    """Resource labels for a flow's or task's tags (labels are strings: comma-separated)."""
    unique = sorted({t.strip() for t in tags if t and t.strip()})
    return {"tags": ",".join(unique)} if unique else {}
