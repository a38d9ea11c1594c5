"""Automations with two real servers on one PostgreSQL database, each running the automations
pass every second over the same events: an event fires an automation once, its actions run
once (one webhook call, one flow run), and `automation.triggered` is recorded once; a burst of
distinct events fires once per event, and `max_runs_per_hour` holds across both servers."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from tests.conftest import LiveServer, throwaway_database
from tests.fake_http import FakeService, Reply
from tests.orchestrate.support import wait_for, write_flows

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]

CAP = 3  # the capped automation's max_runs_per_hour

CONFIG = """\
deployments:
  - name: hello
    entrypoint: flows.py:hello
    working_dir: FOLDER
automations:
  - name: on-file
    trigger: {event: file.arrived}
    max_runs_per_hour: 50
    actions:
      - {type: call_webhook, url: "HOOK/on-file", body: {event: "{{ event.id }}"}}
      - {type: run_deployment, deployment: hello, parameters: {name: "{{ event.id }}"}}
  - name: capped
    trigger: {event: table.loaded}
    max_runs_per_hour: CAP
    actions:
      - {type: call_webhook, url: "HOOK/capped", body: {event: "{{ event.id }}"}}
"""


@pytest.fixture(scope="module")
def hook() -> Iterator[FakeService]:
    with FakeService(lambda request: Reply(204)) as service:
        yield service


@pytest.fixture(scope="module")
def database(pg_url: str) -> Iterator[str]:
    with throwaway_database(pg_url) as url:
        yield url


@pytest.fixture(scope="module")
def servers(
    database: str, tmp_path_factory: pytest.TempPathFactory, hook: FakeService
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers on one database, both given the same config file; shared by the tests
    here (each asserts on the events it sent), since starting them is most of the time."""
    folder = tmp_path_factory.mktemp("replicas")
    config = folder / "coplane.yaml"
    code = write_flows(folder / "code")
    text = CONFIG.replace("FOLDER", str(code)).replace("HOOK", hook.url)
    config.write_text(text.replace("CAP", str(CAP)))
    env = {"COPLANE_CONFIG": str(config)}
    pair = (
        LiveServer(database, folder / "server-a.log", env=env),
        LiveServer(database, folder / "server-b.log", env=env),
    )
    try:
        for s in pair:
            s.start()
        wait_for(lambda: _cursor(database))  # the first pass has set the cursor
        yield pair
    finally:
        for s in pair:
            s.stop()


def _cursor(database: str) -> datetime | None:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT position FROM automation_cursor").fetchone()
    return None if row is None else row[0]


def _passes_after(database: str, moment: datetime, seconds: float) -> None:
    """Wait for the passes of the next `seconds` after `moment` (each reconsiders the events of
    the last ten seconds, so a second firing would be tried in them)."""
    wait_for(lambda: (c := _cursor(database)) is not None and c > moment + timedelta(
        seconds=seconds), timeout=30)  # fmt: skip


def _send(server: LiveServer, name: str) -> str:
    event_id = str(uuid.uuid4())
    body = {"id": event_id, "occurred": datetime.now(UTC).isoformat(), "event": name,
            "resource": {"id": "s3://vendor/daily.csv"}}  # fmt: skip
    assert httpx.post(f"{server.url}/api/events", json=body, timeout=10).status_code == 202
    return event_id


def _calls(hook: FakeService, path: str, sent: list[str]) -> list[str]:
    """The events of the webhook calls made for the events in `sent`."""
    return [e for r in list(hook.requests) if r.path == path and (e := r.json()["event"]) in sent]


def _runs(server: LiveServer, sent: list[str]) -> list[str]:
    """The events that the runs of `hello` made for the events in `sent` were made for."""
    got = httpx.get(f"{server.url}/api/flow-runs", params={"deployment": "hello", "limit": 200})
    names = [r["parameters"]["name"] for r in got.json()["flow_runs"]]
    return [name for name in names if name in sent]


def _triggered(server: LiveServer, automation: str, sent: list[str]) -> list[str]:
    """The events in `sent` that `automation.triggered` was recorded for."""
    got = httpx.get(f"{server.url}/api/events", params={
        "resource": f"automation.{automation}", "event": "automation.triggered", "limit": 500,
    }, timeout=10).json()["events"]  # fmt: skip
    causes = [r["id"] for e in got for r in e["related"] if r["role"] == "cause"]
    return [c for c in causes if c in sent]


def _firings(server: LiveServer, automation: str, sent: list[str]) -> list[str]:
    """The events in `sent` that `automation` has a firing for (of its latest 20)."""
    got = httpx.get(f"{server.url}/api/automations/{automation}", timeout=10).json()
    return [f["event"] for f in got["firings"] if f["event"] in sent]


def test_one_event_fires_once_across_two_servers(
    servers: tuple[LiveServer, LiveServer], hook: FakeService, database: str
) -> None:
    a, b = servers
    sent = [_send(a, "file.arrived")]
    wait_for(lambda: _calls(hook, "/on-file", sent) and _runs(b, sent))
    _passes_after(database, datetime.now(UTC), 3)
    assert _calls(hook, "/on-file", sent) == sent
    assert _runs(a, sent) == sent
    assert _triggered(b, "on-file", sent) == sent
    assert _firings(a, "on-file", sent) == sent
    explained = httpx.get(f"{b.url}/api/automations/on-file", timeout=10).json()
    [firing] = [f for f in explained["firings"] if f["event"] == sent[0]]
    assert [action["ok"] for action in firing["actions"]] == [True, True]


def test_a_burst_fires_once_per_event_and_the_cap_holds_across_two_servers(
    servers: tuple[LiveServer, LiveServer], hook: FakeService, database: str
) -> None:
    a, b = servers
    n = 8  # on-file allows 50 an hour: the cap is tried on `capped`
    burst = [_send((a, b)[i % 2], "file.arrived") for i in range(n)]
    loaded = [_send((a, b)[i % 2], "table.loaded") for i in range(2 * CAP)]
    wait_for(lambda: len(_calls(hook, "/on-file", burst)) >= n and len(_runs(a, burst)) >= n
             and len(_calls(hook, "/capped", loaded)) >= CAP)  # fmt: skip
    _passes_after(database, datetime.now(UTC), 3)

    assert Counter(_calls(hook, "/on-file", burst)) == Counter(burst), "a webhook call each"
    assert Counter(_runs(b, burst)) == Counter(burst), "a run each"
    assert Counter(_triggered(a, "on-file", burst)) == Counter(burst)
    assert Counter(_firings(b, "on-file", burst)) == Counter(burst)

    fired = _calls(hook, "/capped", loaded)
    assert len(fired) == len(set(fired)) == CAP, fired
    assert sorted(_firings(a, "capped", loaded)) == sorted(fired)
    assert sorted(_triggered(b, "capped", loaded)) == sorted(fired)
