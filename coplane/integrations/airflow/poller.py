"""The Airflow REST poller: DAG runs and task tries read from Airflow 3's v2 API, sent as events.

`coplane airflow poll` reads, through `apache-airflow-client` (the `airflow-client` extra,
imported lazily), the DAG runs and task instances updated since its cursor, and sends the
same events as the listener plugin (`listener.dag_run_event` and `listener.task_event`, so
the same names, run keys and deterministic event ids): running the plugin and the poller
on one Airflow stores each event once.

What only the poller sees: tasks that end `upstream_failed` (or are skipped without running)
never reach a listener. Such a task is `run.cancelled` with `payload.error` "upstream_failed",
as dbt's skipped nodes are: it did not fail itself, it was not run. Tries before the last one
come from the task instance's tries endpoint; each is a `run.retrying` with `will_retry`.

Authentication: a JWT from `POST /auth/token` (username and password), fetched again shortly
before it expires (https://airflow.apache.org/docs/apache-airflow/stable/security/api.html).

The cursor is the time the previous poll started, less `OVERLAP` for clock skew and rows
committed late; it is kept in a JSON file under platformdirs' `user_state_dir("coplane")`
(`~/.local/state/coplane/airflow-poll-<instance>.json` on Linux), one per instance. The
overlap sends some events again, which the server stores once (same ids).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from coplane.client import CoplaneClient, SendResult
from coplane.events import names as n
from coplane.integrations.airflow.listener import dag_labels, dag_run_event, task_event

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=2)
PAGE = 100  # rows per API request
TOKEN_MARGIN = 60.0  # seconds before a token's expiry when a new one is fetched
# States in which the row's start_date is this try's. A scheduled or queued instance may
# still carry the previous try's, under the new try_number: it has not started yet.
STARTED_STATES = frozenset(
    {"running", "deferred", "up_for_reschedule", "success", "failed", "up_for_retry", "skipped"}
)


class PollError(Exception):
    """Airflow could not be read (unreachable, refused credentials, no client installed)."""


def state_file(instance: str) -> Path:
    """The cursor file of an instance: `airflow-poll-<instance>.json` in the user state dir."""
    from platformdirs import user_state_dir

    safe = re.sub(r"[^A-Za-z0-9._-]", "_", instance)
    return Path(user_state_dir("coplane")) / f"airflow-poll-{safe}.json"


def read_cursor(path: Path) -> datetime | None:
    try:
        data = json.loads(path.read_text())
        return datetime.fromisoformat(data["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cursor(path: Path, since: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"since": since.isoformat()}))
    tmp.replace(path)


class TokenSource:
    """A JWT from `POST /auth/token`, fetched again `TOKEN_MARGIN` s before it expires."""

    def __init__(self, url: str, username: str, password: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.token: str | None = None
        self.expires = 0.0

    def invalidate(self) -> None:
        """Forget the token: the next `get` fetches a new one."""
        self.token = None

    def get(self) -> str:
        if self.token is None or time.time() > self.expires - TOKEN_MARGIN:
            self._fetch()
        assert self.token is not None
        return self.token

    def _fetch(self) -> None:
        try:
            response = httpx.post(
                f"{self.url}/auth/token",
                json={"username": self.username, "password": self.password},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise PollError(f"cannot reach {self.url}/auth/token: {exc}") from None
        if not response.is_success:
            raise PollError(f"{self.url}/auth/token answered {response.status_code}")
        token = str(response.json()["access_token"])
        self.token = token
        self.expires = _jwt_expiry(token) or time.time() + 300.0


def _jwt_expiry(token: str) -> float | None:
    """The `exp` claim of a JWT (unverified: only to know when to fetch a new one)."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _value(x: Any) -> str | None:
    if x is None:
        return None
    return str(getattr(x, "value", x))


@dataclass
class PollResult:
    dag_runs: int = 0
    task_instances: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    sent: SendResult | None = None


class AirflowReader:
    """Reads DAG runs, task instances, tries and DAGs through apache-airflow-client."""

    def __init__(self, url: str, tokens: TokenSource) -> None:
        try:
            import airflow_client.client as ac
        except ImportError:
            raise PollError(
                "apache-airflow-client is not installed: pip install 'coplane[airflow-client]'"
            ) from None
        self.ac = ac
        self.tokens = tokens
        self.config = ac.Configuration(host=url.rstrip("/"))
        self.api = ac.ApiClient(self.config)
        self._dags: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        close = getattr(self.api, "close", None)  # not in every client version
        if close is not None:
            close()

    def _call(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.config.access_token = self.tokens.get()
        try:
            try:
                return f(*args, **kwargs)
            except self.ac.ApiException as exc:
                if exc.status != 401:
                    raise
                # The token was refused before its expiry (a restarted API server with a new
                # secret): fetch a new one and try once more.
                self.tokens.invalidate()
                self.config.access_token = self.tokens.get()
                return f(*args, **kwargs)
        except self.ac.ApiException as exc:
            raise PollError(f"Airflow API: {exc.status} {exc.reason}") from None
        except Exception as exc:  # urllib3's connection errors and the like
            raise PollError(f"Airflow API: {type(exc).__name__}: {exc}") from None

    def dag_runs(self, since: datetime | None) -> Iterator[Any]:
        api = self.ac.DagRunApi(self.api)
        return self._pages(api.get_dag_runs, "dag_runs", dag_id="~", updated_at_gte=since)

    def task_instances(self, since: datetime | None) -> Iterator[Any]:
        api = self.ac.TaskInstanceApi(self.api)
        return self._pages(
            api.get_task_instances,
            "task_instances",
            dag_id="~",
            dag_run_id="~",
            updated_at_gte=since,
        )

    def _pages(self, fetch: Callable[..., Any], field: str, **query: Any) -> Iterator[Any]:
        """Every item of a paged list endpoint, PAGE at a time in id order."""
        offset = 0
        while True:
            page = self._call(fetch, limit=PAGE, offset=offset, order_by=["id"], **query)
            items = getattr(page, field)
            yield from items
            offset += len(items)
            if not items or offset >= page.total_entries:
                return

    def tries(self, ti: Any) -> list[Any]:
        api = self.ac.TaskInstanceApi(self.api)
        map_index = ti.map_index if ti.map_index is not None and ti.map_index >= 0 else None
        page = self._call(
            api.get_task_instance_tries, ti.dag_id, ti.dag_run_id, ti.task_id, map_index=map_index
        )
        return list(page.task_instances)

    def dag_labels(self, dag_id: str) -> dict[str, str]:
        if dag_id not in self._dags:
            dag = self._call(self.ac.DAGApi(self.api).get_dag, dag_id)
            tags = [str(getattr(t, "name", t)) for t in (dag.tags or [])]
            self._dags[dag_id] = dag_labels(dag.owners or [], tags)
        return self._dags[dag_id]


def dag_run_events(instance: str, run: Any, labels: dict[str, str]) -> list[dict[str, Any]]:
    """The events of one DAG run as the API shows it (the listener's, for the same run)."""
    state = _value(run.state)
    common: dict[str, Any] = {
        "dag_id": run.dag_id,
        "run_id": run.dag_run_id,
        "labels": labels,
        "state": state,
        "run_type": _value(run.run_type),
    }
    events = []
    if run.start_date is not None:
        events.append(dag_run_event(instance, n.RUN_STARTED, occurred=run.start_date, **common))
    if state == "success":
        events.append(dag_run_event(instance, n.RUN_COMPLETED, occurred=run.end_date, **common))
    elif state == "failed":
        error = "DAG run failed"
        events.append(
            dag_run_event(instance, n.RUN_FAILED, occurred=run.end_date, error=error, **common)
        )
    return events


def try_events(
    instance: str, ti: Any, labels: dict[str, str], *, last: bool
) -> list[dict[str, Any]]:
    """The events of one try of a task instance (a TaskInstance or TaskInstanceHistory row)."""
    state = _value(ti.state)
    common: dict[str, Any] = {
        "dag_id": ti.dag_id,
        "run_id": ti.dag_run_id,
        "task_id": ti.task_id,
        "try_number": int(ti.try_number),
        "map_index": int(ti.map_index if ti.map_index is not None else -1),
        "labels": labels,
        "operator": ti.operator,
        "state": state,
    }
    events = []
    if ti.start_date is not None and state in STARTED_STATES:
        events.append(task_event(instance, n.RUN_STARTED, occurred=ti.start_date, **common))
    if state == "success":
        events.append(task_event(instance, n.RUN_COMPLETED, occurred=ti.end_date, **common))
    elif state == "up_for_retry" or (state == "failed" and not last):
        events.append(
            task_event(
                instance,
                n.RUN_FAILED,
                occurred=ti.end_date,
                error="task failed",
                will_retry=True,
                **common,
            )
        )
    elif state == "failed":
        events.append(
            task_event(instance, n.RUN_FAILED, occurred=ti.end_date, error="task failed", **common)
        )
    elif state == "skipped":
        events.append(task_event(instance, n.RUN_CANCELLED, occurred=ti.end_date, **common))
    elif state == "upstream_failed":
        at = ti.end_date or ti.start_date
        events.append(
            task_event(instance, n.RUN_CANCELLED, occurred=at, error="upstream_failed", **common)
        )
    return events


def poll_once(reader: AirflowReader, instance: str, since: datetime | None) -> PollResult:
    """The events of the DAG runs and task instances updated since `since` (all when None)."""
    result = PollResult()
    for run in reader.dag_runs(since):
        result.dag_runs += 1
        result.events += dag_run_events(instance, run, reader.dag_labels(run.dag_id))
    for ti in reader.task_instances(since):
        state = _value(ti.state)
        if state is None or (ti.start_date is None and state not in ("upstream_failed", "skipped")):
            continue  # not run yet: nothing to say
        result.task_instances += 1
        labels = reader.dag_labels(ti.dag_id)
        if int(ti.try_number) > 1:
            for earlier in reader.tries(ti):
                if int(earlier.try_number) < int(ti.try_number):
                    result.events += try_events(instance, earlier, labels, last=False)
        result.events += try_events(instance, ti, labels, last=True)
    return result


def poll(
    url: str,
    username: str,
    password: str,
    client: CoplaneClient,
    *,
    instance: str = "default",
    once: bool = False,
    interval: float = 60.0,
    cursor_path: Path | None = None,
    report: Callable[[PollResult], None] | None = None,
) -> PollResult:
    """Poll Airflow and send its runs; once, or every `interval` seconds until interrupted.

    The cursor advances only after the server (or the client's spool) has the events. With
    `once`, a PollError is raised; otherwise it is logged and the next poll tries again.
    """
    path = cursor_path or state_file(instance)
    reader = AirflowReader(url, TokenSource(url, username, password))
    try:
        while True:
            started = datetime.now(UTC)
            since = read_cursor(path)
            try:
                result = poll_once(reader, instance, since)
            except PollError as exc:
                if once:
                    raise
                # a long-running poller outlives an Airflow restart: try again next time
                log.warning("coplane airflow poll: %s; trying again in %s s", exc, interval)
                time.sleep(interval)
                continue
            result.sent = client.send_events(result.events)
            write_cursor(path, started - OVERLAP)
            if report is not None:
                report(result)
            if once:
                return result
            time.sleep(interval)
    finally:
        reader.close()
