"""The Airflow listener: DAG runs and task tries as coplane `run.*` events, sent in the background.

Airflow calls the hooks below (the listener hookspecs of `airflow/listeners/spec/`, see
https://airflow.apache.org/docs/apache-airflow/stable/administration-and-deployment/listeners.html):

- `on_dag_run_running/success/failed` in the scheduler (and the API server, for runs it
  changes): `run.started`, `run.completed`, `run.failed` of the DAG's pipeline run.
- `on_task_instance_running/success/failed/skipped` in the task's own process (the Task SDK's
  task runner in Airflow 3): `run.started`, `run.completed`, `run.failed`, `run.cancelled` of
  one try of a task, a child run of the DAG run. A failure that Airflow will retry
  (`up_for_retry`) is `run.retrying` of that try (state `retrying`, with `payload.will_retry`
  true), not `run.failed`; the next try is a new child run.
- the same task hooks also report the task's inlets and outlets (Airflow 3 resolves them on
  the task the runner holds) as related `input` and `output` assets, and so lineage edges;
  a try that succeeded sends one `asset.updated` per outlet, produced by that try. Assets
  are named by `naming.asset_id`, the id the OpenLineage provider's datasets get too.
  `on_asset_changed` is not used: it names the asset but not the task that changed it, and
  an update without its producer would hide the producer the task hook reported.

Names and run keys come from `naming` (shared with the REST poller and the OpenLineage
translation); event ids are uuid5 of dag_id, run_id, task, map index, try and event name, so a
retried send, or the poller reporting the same run, is stored once.

Reporting must never slow or fail a task: a hook only builds a dict and puts it on a queue; a
daemon thread sends it through `CoplaneClient` (short timeout, spool when unreachable), and
every exception is logged, never raised. The queue is flushed at exit (at most
`FLUSH_SECONDS`), since the task runner process ends right after the task.

The pure functions here (`dag_run_event`, `task_event`, `event_id`) import nothing from
Airflow: the poller builds the same events from the REST API's answers.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from coplane.events import names as n
from coplane.integrations.airflow import naming

log = logging.getLogger(__name__)

EVENT_NAMESPACE = uuid.UUID("5c1e3f0a-7d4b-4f43-9a52-2f0c3b8e6a1d")
FLUSH_SECONDS = 5.0  # longest wait at exit for queued events to be sent
SEND_TIMEOUT = 3.0  # seconds per request: the server is expected to be near
MAX_QUEUE = 10_000  # past this, events are dropped (logged) rather than using memory


def event_id(
    dag_id: str,
    run_id: str,
    event: str,
    task_id: str = "",
    map_index: int = -1,
    try_number: int = 0,
) -> str:
    """The deterministic id of an event: the same run and event give the same id, anywhere."""
    key = f"{dag_id}\n{run_id}\n{task_id}\n{map_index}\n{try_number}\n{event}"
    return str(uuid.uuid5(EVENT_NAMESPACE, key))


def _iso(at: datetime | None) -> str:
    when = at if at is not None else datetime.now(UTC)
    if when.tzinfo is None:  # Airflow stores UTC; an offset is required by the server
        when = when.replace(tzinfo=UTC)
    return when.isoformat()


def dag_labels(owners: Iterable[str], tags: Iterable[str]) -> dict[str, str]:
    """Resource labels of a DAG: its owners and tags, comma-separated (labels are strings)."""
    labels = {}
    owner_list = sorted({o.strip() for o in owners if o and o.strip()})
    tag_list = sorted({t.strip() for t in tags if t and t.strip()})
    if owner_list:
        labels["owners"] = ",".join(owner_list)
    if tag_list:
        labels["tags"] = ",".join(tag_list)
    return labels


def dag_run_event(
    instance: str,
    event: str,
    *,
    dag_id: str,
    run_id: str,
    occurred: datetime | None,
    labels: Mapping[str, str],
    state: str | None = None,
    error: str | None = None,
    run_type: str | None = None,
) -> dict[str, Any]:
    """One `run.*` event of a DAG run (the pipeline run)."""
    payload: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id}
    if state:
        payload["state"] = state
    if run_type:
        payload["run_type"] = run_type
    if error:
        payload["error"] = error
    return {
        "id": event_id(dag_id, run_id, event),
        "occurred": _iso(occurred),
        "event": event,
        "resource": {
            "id": naming.dag_resource(instance, dag_id),
            "name": dag_id,
            "kind": n.KIND_PIPELINE,
            "labels": dict(labels),
        },
        "related": [
            {"role": n.ROLE_RUN, "id": naming.dag_run_key(run_id)},
            {"role": n.ROLE_SOURCE, "id": naming.SOURCE},
        ],
        "payload": payload,
    }


def task_event(
    instance: str,
    event: str,
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int,
    map_index: int,
    occurred: datetime | None,
    labels: Mapping[str, str],
    operator: str | None = None,
    state: str | None = None,
    error: str | None = None,
    will_retry: bool = False,
    inlets: Sequence[str] = (),
    outlets: Sequence[str] = (),
) -> dict[str, Any]:
    """One `run.*` event of one try of a task instance (a child run of the DAG run); a
    failure Airflow will retry is `run.retrying`. `inlets` and `outlets` are the URIs of
    the task's assets: its inputs and outputs, and so lineage edges."""
    if will_retry:
        event = n.RUN_RETRYING
    payload: dict[str, Any] = {
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "try_number": try_number,
    }
    if map_index >= 0:
        payload["map_index"] = map_index
    if operator:
        payload["operator"] = operator
    if state:
        payload["state"] = state
    if error:
        payload["error"] = error
    if will_retry:
        payload["will_retry"] = True
    task_labels = dict(labels)
    if operator:
        task_labels["operator"] = operator
    dag = naming.dag_resource(instance, dag_id)
    return {
        "id": event_id(dag_id, run_id, event, task_id, map_index, try_number),
        "occurred": _iso(occurred),
        "event": event,
        "resource": {
            "id": naming.task_resource(instance, dag_id, task_id),
            "name": task_id,
            "kind": n.KIND_TASK,
            "labels": task_labels,
        },
        "related": [
            {"role": n.ROLE_RUN, "id": naming.task_run_key(run_id, task_id, try_number, map_index)},
            {"role": n.ROLE_PARENT, "id": dag, "kind": n.KIND_PIPELINE, "labels": dict(labels)},
            {"role": n.ROLE_PARENT_RUN, "id": naming.dag_run_key(run_id)},
            *_asset_related(inlets, n.ROLE_INPUT),
            *_asset_related(outlets, n.ROLE_OUTPUT),
            {"role": n.ROLE_SOURCE, "id": naming.SOURCE},
        ],
        "payload": payload,
    }


def _asset_related(uris: Sequence[str], role: str) -> list[dict[str, Any]]:
    ids = dict.fromkeys(naming.asset_id(uri) for uri in uris)  # each once, in order
    return [{"role": role, "id": asset, "name": asset, "kind": n.KIND_ASSET} for asset in ids]


def asset_events(
    instance: str,
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    try_number: int,
    map_index: int,
    outlets: Sequence[str],
    occurred: datetime | None,
) -> list[dict[str, Any]]:
    """One `asset.updated` per outlet of a task try that succeeded, produced by that try."""
    task = naming.task_resource(instance, dag_id, task_id)
    run_key = naming.task_run_key(run_id, task_id, try_number, map_index)
    events = []
    for asset in dict.fromkeys(naming.asset_id(uri) for uri in outlets):
        events.append(
            {
                "id": event_id(
                    dag_id, run_id, f"{n.ASSET_UPDATED}\n{asset}", task_id, map_index, try_number
                ),
                "occurred": _iso(occurred),
                "event": n.ASSET_UPDATED,
                "resource": {"id": asset, "name": asset, "kind": n.KIND_ASSET},
                "related": [
                    {"role": n.ROLE_RUN, "id": run_key},
                    {"role": n.ROLE_PRODUCER, "id": task, "kind": n.KIND_TASK, "name": task_id},
                    {"role": n.ROLE_SOURCE, "id": naming.SOURCE},
                ],
                "payload": {"dag_id": dag_id, "run_id": run_id, "task_id": task_id},
            }
        )
    return events


# settings


def _conf(section: str, key: str) -> str | None:
    """`[section] key` from airflow.cfg or AIRFLOW__SECTION__KEY (Airflow's own lookup)."""
    try:
        from airflow.configuration import conf

        value = conf.get(section, key, fallback=None)
    except Exception:  # no Airflow, or its config cannot be read: the environment decides
        value = os.environ.get(f"AIRFLOW__{section.upper()}__{key.upper()}")
    return str(value) if value else None


def settings() -> tuple[str | None, str | None, str]:
    """(url, api_key, instance) from `[coplane]`.

    The instance defaults to `[openlineage] namespace`, the namespace the OpenLineage provider
    gives this Airflow's jobs, so that its events and the plugin's name the same pipelines;
    else `default`.
    """
    instance = _conf("coplane", "instance") or _conf("openlineage", "namespace") or "default"
    return _conf("coplane", "url"), _conf("coplane", "api_key"), instance


# the background sender


class Sender:
    """A queue and a daemon thread sending its events through CoplaneClient.

    Made per process (a forked process gets a new one: threads do not survive fork), and
    flushed at exit for at most `FLUSH_SECONDS`.
    """

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url
        self.api_key = api_key
        self.pid = os.getpid()
        self.queue: queue.Queue[dict[str, Any] | threading.Event] = queue.Queue(MAX_QUEUE)
        self.thread = threading.Thread(target=self._run, name="coplane-sender", daemon=True)
        self.thread.start()
        atexit.register(self.flush, FLUSH_SECONDS)

    def put(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            log.warning("coplane: send queue full, event %s dropped", event.get("event"))

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait (at most `timeout` s) until what was queued before this call is sent."""
        if not self.thread.is_alive():
            return False
        done = threading.Event()
        try:
            self.queue.put(done, timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def _run(self) -> None:
        from coplane.client import CoplaneClient

        try:
            client = CoplaneClient(
                self.url, api_key=self.api_key, timeout=SEND_TIMEOUT, retries=2, max_time=10.0
            )
        except Exception:
            log.exception("coplane: cannot make a client for %s; events will not be sent", self.url)
            return
        while True:
            item = self.queue.get()
            batch: list[dict[str, Any]] = []
            markers: list[threading.Event] = []
            while True:  # everything queued now goes in one request
                if isinstance(item, threading.Event):
                    markers.append(item)
                else:
                    batch.append(item)
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    result = client.send_events(batch)
                    if not result.delivered:
                        log.warning(
                            "coplane: %d events spooled, %d lost", result.spooled, result.lost
                        )
                except Exception:
                    log.exception("coplane: sending %d events failed", len(batch))
            for marker in markers:
                marker.set()


_sender: Sender | None = None
_sender_lock = threading.Lock()


def _forget_sender() -> None:
    """In a forked child: the parent's thread is gone, and its lock may have been held."""
    global _sender, _sender_lock
    _sender = None
    _sender_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_sender)


def _get_sender() -> Sender | None:
    global _sender
    with _sender_lock:
        if _sender is not None and _sender.pid == os.getpid():
            return _sender
        url, api_key, _ = settings()
        if not url:
            return None
        _sender = Sender(url, api_key)
        return _sender


def _emit(event: dict[str, Any]) -> None:
    sender = _get_sender()
    if sender is not None:
        sender.put(event)


# reading Airflow's objects (typed loosely: Airflow is not installed where mypy runs)


def _state(obj: Any) -> str | None:
    state = getattr(obj, "state", None)
    if state is None:
        return None
    return str(getattr(state, "value", state))


def _dag_of_run(dag_run: Any) -> Any:
    dag = getattr(dag_run, "dag", None)
    if dag is None:
        try:
            dag = dag_run.dag_model  # the scheduler's DagRun may not have the DAG itself
        except Exception:
            dag = None
    return dag


def _labels_of(dag: Any) -> dict[str, str]:
    if dag is None:
        return {}
    owners = getattr(dag, "owner", None) or getattr(dag, "owners", None) or ""
    owner_list = owners.split(",") if isinstance(owners, str) else list(owners)
    tags = getattr(dag, "tags", None) or []
    tag_list = [t if isinstance(t, str) else str(getattr(t, "name", t)) for t in tags]
    return dag_labels(owner_list, tag_list)


def _dag_run(event: str, dag_run: Any, msg: str | None, occurred_attr: str) -> None:
    try:
        _, _, instance = settings()
        error = (msg or "DAG run failed") if event == n.RUN_FAILED else None
        run_type = getattr(dag_run, "run_type", None)
        _emit(
            dag_run_event(
                instance,
                event,
                dag_id=dag_run.dag_id,
                run_id=dag_run.run_id,
                occurred=getattr(dag_run, occurred_attr, None),
                labels=_labels_of(_dag_of_run(dag_run)),
                state=_state(dag_run),
                error=error,
                run_type=str(getattr(run_type, "value", run_type)) if run_type else None,
            )
        )
    except Exception:
        log.exception("coplane: cannot report DAG run %s", event)


def _task(event: str, ti: Any, error: Any = None) -> None:
    try:
        _, _, instance = settings()
        task = getattr(ti, "task", None)
        dag = getattr(task, "dag", None) if task is not None else None
        state = _state(ti)
        will_retry = event == n.RUN_FAILED and state == "up_for_retry"
        message: str | None = None
        if event == n.RUN_FAILED:
            message = _error_text(error) or "task failed"
        at = getattr(ti, "start_date", None) if event == n.RUN_STARTED else None
        if event != n.RUN_STARTED:
            at = getattr(ti, "end_date", None)
        try_number = _int(getattr(ti, "try_number", None), 0)
        map_index = _int(getattr(ti, "map_index", None), -1)
        # Airflow 3 gives the task runner the task with its inlets and outlets resolved
        inlets = _asset_uris(getattr(task, "inlets", None))
        outlets = _asset_uris(getattr(task, "outlets", None))
        _emit(
            task_event(
                instance,
                event,
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                try_number=try_number,
                map_index=map_index,
                occurred=at,
                labels=_labels_of(dag),
                operator=type(task).__name__ if task is not None else None,
                state=state,
                error=message,
                will_retry=will_retry,
                inlets=inlets,
                outlets=outlets,
            )
        )
        if event == n.RUN_COMPLETED:
            # the outlets a successful try updated, with the try as their producer
            for asset_event in asset_events(
                instance,
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                task_id=ti.task_id,
                try_number=try_number,
                map_index=map_index,
                outlets=outlets,
                occurred=at,
            ):
                _emit(asset_event)
    except Exception:
        log.exception("coplane: cannot report task %s", event)


def _asset_uris(declared: Any) -> list[str]:
    """The URIs of the assets among a task's inlets or outlets (aliases and references,
    which name no URI, are left out)."""
    if not isinstance(declared, list | tuple):
        return []
    uris = []
    for item in declared:
        uri = getattr(item, "uri", None)
        if isinstance(uri, str) and uri:
            uris.append(uri)
    return uris


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _error_text(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        text = str(error)
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return str(error) or None


_F = TypeVar("_F", bound=Callable[..., Any])


def hookimpl(f: _F) -> _F:
    """Airflow's pluggy `hookimpl` marker; the plain method where Airflow is not installed."""
    try:
        from airflow.listeners import hookimpl as airflow_hookimpl
    except ImportError:  # imported by the poller or by mypy, outside Airflow's environment
        return f
    return cast(_F, airflow_hookimpl(f))


class CoplaneListener:
    """The hook implementations (signatures as in Airflow 3's `airflow/listeners/spec/`)."""

    @hookimpl
    def on_dag_run_running(self, dag_run: Any, msg: str) -> None:
        _dag_run(n.RUN_STARTED, dag_run, msg, "start_date")

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        _dag_run(n.RUN_COMPLETED, dag_run, msg, "end_date")

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        _dag_run(n.RUN_FAILED, dag_run, msg, "end_date")

    @hookimpl
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        _task(n.RUN_STARTED, task_instance)

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        _task(n.RUN_COMPLETED, task_instance)

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        _task(n.RUN_FAILED, task_instance, error)

    @hookimpl
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        _task(n.RUN_CANCELLED, task_instance)


listener = CoplaneListener()
