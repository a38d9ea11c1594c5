"""Automations: the pure decision (thresholds, windows, for_each, its own runs), and a real
server running deployments from events, chaining on run states without looping, pausing and
resuming a schedule, explaining itself and backtesting."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from coplane.orchestrate.automations import BATCH, backtest, run_automations
from coplane.rules.automation import AutomationSpec, decide, matches
from coplane.store import Store
from coplane.store.automations import upsert_automation
from coplane.store.events import insert_events
from tests.conftest import LiveServer
from tests.factories import event_dict, events
from tests.orchestrate.support import wait_for, write_flows

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def _event(name: str, resource: str, minutes: float, **labels: str) -> dict[str, Any]:
    at = (T0 + timedelta(minutes=minutes)).isoformat()
    resource_ = {"id": resource, "labels": labels}
    return {"id": str(uuid.uuid4()), "occurred": at, "event": name, "resource": resource_,
            "related": []}  # fmt: skip


def _automation(**trigger: Any) -> AutomationSpec:
    return AutomationSpec.model_validate({
        "name": "a", "trigger": trigger,
        "actions": [{"type": "pause_schedule", "deployment": "d"}],
    })  # fmt: skip


def test_a_threshold_counts_within_its_window_per_label_and_starts_over_after_firing() -> None:
    a = _automation(event="check.failed", resource="wh.*", threshold=3, within="10m",
                    for_each="team")  # fmt: skip
    events = [
        _event("check.failed", "wh.orders", 0, team="sales"),
        _event("check.failed", "wh.orders", 1, team="sales"),
        _event("check.failed", "wh.stock", 2, team="ops"),  # another group
        _event("check.failed", "wh.orders", 30, team="sales"),  # the first two are out of window
        _event("check.failed", "wh.orders", 31, team="sales"),
        _event("check.failed", "wh.orders", 32, team="sales"),  # fires: 3 within 10m
        _event("check.failed", "wh.orders", 33, team="sales"),  # counted afresh after firing
        _event("check.passed", "wh.orders", 34, team="sales"),  # another event
        _event("check.failed", "lake.raw", 35, team="sales"),  # another resource
    ]
    firings = backtest(a, events)
    assert [f["occurred"] for f in firings] == [events[5]["occurred"]]
    assert firings[0]["reason"] == "3 check.failed within 10m for team='sales' (threshold 3)"
    not_yet = decide(a, events[3], [], None)
    assert not not_yet.fired and not_yet.reason == (
        "1 of 3 check.failed within 10m for team='sales': not yet"
    )


def test_an_automations_own_runs_never_trigger_it() -> None:
    a = _automation(event="run.completed", resource="flow.*")
    own = {**_event("run.completed", "flow.hello", 0),
           "related": [{"role": "cause", "id": "automation:a"}]}  # fmt: skip
    other = {**own, "related": [{"role": "cause", "id": "automation:b"}]}
    assert not matches(a, own) and matches(a, other)


def test_a_threshold_needs_a_window() -> None:
    with pytest.raises(ValueError, match="a threshold above 1 needs `within`"):
        _automation(event="x", threshold=2)


CONFIG = """\
deployments:
  - name: hello
    entrypoint: flows.py:hello
    working_dir: {folder}
  - name: every
    entrypoint: flows.py:hello
    working_dir: {folder}
    parameters: {{name: hourly}}
    schedules: [{{interval: 1h}}]
automations:
  - name: on-file
    trigger: {{event: file.arrived, resource: "s3://vendor/*"}}
    actions:
      - type: run_deployment
        deployment: hello
        parameters: {{name: "{{{{ event.resource.id }}}}", n: 2}}
  - name: chain
    trigger: {{deployment: hello, states: [completed]}}
    actions:
      - {{type: run_deployment, deployment: hello, parameters: {{name: chained}}}}
  - name: stop-on-bad-data
    trigger: {{event: check.failed, resource: wh.orders}}
    actions: [{{type: pause_schedule, deployment: every}}]
  - name: go-on-good-data
    trigger: {{event: check.passed, resource: wh.orders}}
    actions: [{{type: resume_schedule, deployment: every}}]
"""


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    folder = write_flows(tmp_path / "code")
    config = tmp_path / "coplane.yaml"
    config.write_text(CONFIG.format(folder=folder))
    monkeypatch.setenv("COPLANE_CONFIG", str(config))
    s = LiveServer(db_url, tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _send(server: LiveServer, name: str, resource: str) -> str:
    event_id = str(uuid.uuid4())
    body = {"id": event_id, "occurred": datetime.now(UTC).isoformat(), "event": name,
            "resource": {"id": resource}}  # fmt: skip
    assert httpx.post(f"{server.url}/api/events", json=body).status_code == 202
    return event_id


def _runs(server: LiveServer, deployment: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{server.url}/api/flow-runs", params={"deployment": deployment})
    return list(got.json()["flow_runs"])


@pytest.mark.slow
def test_events_run_deployments_and_a_chain_does_not_loop(server: LiveServer) -> None:
    time.sleep(1.5)  # the first pass sets the cursor: what happens from then on counts
    event_id = _send(server, "file.arrived", "s3://vendor/daily.csv")
    _send(server, "file.arrived", "s3://elsewhere/x.csv")  # no match
    vendor = "s3://vendor/daily.csv"
    first = wait_for(lambda: [r for r in _runs(server, "hello")
                              if r["parameters"]["name"] == vendor])[0]  # fmt: skip
    assert first["parameters"] == {"name": "s3://vendor/daily.csv", "n": 2}
    assert {"role": "cause", "id": "automation:on-file"} in first["related"]
    assert {"role": "cause", "id": f"event:{event_id}"} in first["related"]

    # its completion triggers `chain` once; the chained run's own completion does not again
    chained = wait_for(lambda: [r for r in _runs(server, "hello")
                                if r["parameters"]["name"] == "chained"], timeout=40)  # fmt: skip
    wait_for(lambda: all(r["state"] == "completed" for r in _runs(server, "hello")), timeout=40)
    time.sleep(3)  # passes enough to have looped, had it
    assert len(_runs(server, "hello")) == 2 and len(chained) == 1

    explained = httpx.get(f"{server.url}/api/automations/on-file").json()
    assert explained["origin"] == "file"
    [decision] = explained["decisions"]
    assert decision["fired"] and decision["reason"] == "file.arrived on s3://vendor/daily.csv"
    [firing] = explained["firings"]
    assert firing["actions"][0]["ok"] and firing["actions"][0]["run"] == first["id"]
    recorded = httpx.get(f"{server.url}/api/events",
                         params={"resource": "automation.on-file"}).json()["events"]  # fmt: skip
    assert {e["event"] for e in recorded} == {
        "automation.triggered", "automation.action.succeeded"
    }  # fmt: skip


@pytest.mark.slow
def test_an_automation_pauses_and_resumes_a_schedule(server: LiveServer) -> None:
    time.sleep(1.5)

    def paused() -> bool:
        d = httpx.get(f"{server.url}/api/deployments/every").json()
        return bool(d["schedules"][0]["paused"])

    assert not paused()
    _send(server, "check.failed", "wh.orders")
    wait_for(paused, timeout=20)
    # the runs made ahead are cancelled (the first, due at once, may have run already)
    before = [r["state"] for r in _runs(server, "every")]
    assert "scheduled" not in before and before.count("cancelled") >= 9
    _send(server, "check.passed", "wh.orders")
    wait_for(lambda: not paused(), timeout=20)
    states = [r["state"] for r in _runs(server, "every")]
    assert states.count("scheduled") >= 9 and states.count("cancelled") == before.count("cancelled")

    back = httpx.post(f"{server.url}/api/automations/backtest", json={
        "automation": {"name": "t", "trigger": {"event": "check.*", "resource": "wh.orders",
                                                "threshold": 2, "within": "1h"},
                       "actions": [{"type": "pause_schedule", "deployment": "every"}]},
    }).json()  # fmt: skip
    assert len(back["firings"]) == 1 and back["events"] == 2
    assert "2 check.* within 1h" in back["firings"][0]["reason"]
    bad = httpx.post(f"{server.url}/api/automations", json={"name": "x", "trigger": {
        "event": "e"}, "actions": [{"type": "explode"}]})  # fmt: skip
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][:3] == [
        "body", "actions", 0
    ]  # fmt: skip
    assert httpx.get(f"{server.url}/api/automations/nope").status_code == 404
    backwards = httpx.post(f"{server.url}/api/automations/backtest", json={
        "automation": {"name": "t", "trigger": {"event": "x"},
                       "actions": [{"type": "pause_schedule", "deployment": "every"}]},
        "start": "2026-11-02T09:00:00Z", "end": "2026-11-02T08:00:00Z",
    })  # fmt: skip
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["loc"] == [
        "body", "start"
    ]  # fmt: skip
    made = {"name": "api-made", "trigger": {"event": "x"},
            "actions": [{"type": "resume_schedule", "deployment": "every"}]}  # fmt: skip
    assert httpx.post(f"{server.url}/api/automations", json=made).status_code == 201
    assert httpx.post(f"{server.url}/api/automations", json=made).status_code == 409
    assert httpx.delete(f"{server.url}/api/automations/api-made").status_code == 204
    assert httpx.delete(f"{server.url}/api/automations/on-file").status_code == 409


@pytest.mark.slow
def test_coplane_deploy_on_event(server: LiveServer, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    folder = write_flows(tmp_path / "greet")
    done = subprocess.run(
        [sys.executable, "-m", "coplane", "deploy", "flows.py:hello", "--name", "greet",
         "--param", "name=landed", "--on-event", "file.landed", "--resource", "s3://in/*",
         "--server", server.url],
        cwd=folder, capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "automation greet-on-event: runs it on file.landed of s3://in/*" in done.stdout
    time.sleep(1.5)
    _send(server, "file.landed", "s3://out/x")  # not its resource
    _send(server, "file.landed", "s3://in/x")
    run = wait_for(lambda: _runs(server, "greet"))[0]
    assert {"role": "cause", "id": "automation:greet-on-event"} in run["related"]
    time.sleep(2)
    assert len(_runs(server, "greet")) == 1
    again = subprocess.run(
        [sys.executable, "-m", "coplane", "deploy", "flows.py:hello", "--name", "greet",
         "--resource", "s3://in/*", "--server", server.url],
        cwd=folder, capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    assert again.returncode == 2 and "--resource goes with --on-event" in again.stderr
    on_file = httpx.put(f"{server.url}/api/automations/on-file", json={
        "name": "on-file", "trigger": {"event": "x"},
        "actions": [{"type": "pause_schedule", "deployment": "every"}]})  # fmt: skip
    assert on_file.status_code == 409  # the config file's


def test_a_pass_reads_only_what_its_triggers_can_match(store: Store) -> None:
    """Thousands of other events in the same second do not push a matching one to a later
    pass, and with no automation at all the pass reads nothing and still moves on."""
    assert run_automations(store, now=T0) == 0  # the first pass only places the cursor

    def arrive(second: int, *dicts: dict[str, Any]) -> None:
        with store.connect() as conn:
            insert_events(conn, events(*dicts), T0 + timedelta(seconds=second), store.partitions)

    def noise() -> list[dict[str, Any]]:
        return [event_dict("run.completed", f"sdk.bulk.t{i}", minutes=1, run=f"r{i}")
                for i in range(BATCH + 1)]  # fmt: skip

    arrive(1, *noise(), event_dict("file.arrived", "vendor.orders", minutes=1))
    assert run_automations(store, now=T0 + timedelta(seconds=20)) == 0  # none declared yet
    with store.connect() as conn:
        upsert_automation(conn, {
            "name": "on-file", "trigger": {"event": "file.*"},
            "actions": [{"type": "pause_schedule", "deployment": "nightly"}],
        }, "api", T0, replace=False)  # fmt: skip
    late = event_dict("file.arrived", "vendor.stock", minutes=2)
    arrive(30, *noise())
    arrive(31, late)
    assert run_automations(store, now=T0 + timedelta(seconds=32)) == 1
    with store.connect() as conn:
        firings = conn.query("SELECT event_id FROM automation_firings")
    assert [str(f["event_id"]) for f in firings] == [late["id"]]


def test_a_run_state_trigger_reads_only_its_deployments_runs(store: Store) -> None:
    """Thousands of task runs ending in the same second (an SDK flow's) do not hide the end of
    the deployment's run from a run-state automation."""
    assert run_automations(store, now=T0) == 0
    with store.connect() as conn:
        upsert_automation(conn, {
            "name": "after-nightly", "trigger": {"deployment": "nightly", "states": ["completed"]},
            "actions": [{"type": "pause_schedule", "deployment": "weekly"}],
        }, "api", T0, replace=False)  # fmt: skip
    tasks = [event_dict("run.completed", f"sdk.load.t{i}", minutes=1, run=f"r{i}")
             for i in range(BATCH + 1)]  # fmt: skip
    ours = event_dict("run.completed", "sdk.load", minutes=1, run="flow-run",
                      related=[{"role": "deployment", "id": "deployment.nightly"}])  # fmt: skip
    with store.connect() as conn:
        insert_events(conn, events(*tasks), T0 + timedelta(seconds=1), store.partitions)
        insert_events(conn, events(ours), T0 + timedelta(seconds=2), store.partitions)
    assert run_automations(store, now=T0 + timedelta(seconds=3)) == 1
    with store.connect() as conn:
        firings = conn.query("SELECT event_id FROM automation_firings")
    assert [str(f["event_id"]) for f in firings] == [ours["id"]]
