"""Remediation against a real server: a breach starts exactly one run, its success resolves the
incident ("remediated by run ..."), a failing one does not loop, and the hourly limit holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coplane.orchestrate.remediation import render_parameters
from coplane.store import Conn, Store
from tests.conftest import LiveServer
from tests.orchestrate.support import wait_for, write_flows

REFILL = """
import os
from datetime import datetime, timezone

from coplane.client import CoplaneClient


def refill(asset: str) -> None:
    with CoplaneClient(os.environ["COPLANE_URL"]) as client:
        client.send_events([{"occurred": datetime.now(timezone.utc).isoformat(),
                             "event": "asset.updated", "resource": {"id": asset}}])
"""

CONFIG = """\
slas:
  - name: orders_fresh
    kind: freshness
    target: wh.orders
    max_age: 3s
    remediate:
      deployment: refill
      parameters: {{asset: "{{{{ incident.resource }}}}"}}
      max_runs_per_hour: 1
  - name: never_fresh
    kind: freshness
    target: wh.never
    max_age: 2s
    remediate: {{deployment: boom}}
deployments:
  - name: refill
    entrypoint: remedies.py:refill
    working_dir: {folder}
  - name: boom
    entrypoint: flows.py:boom
    working_dir: {folder}
"""


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    folder = write_flows(tmp_path / "code")
    (folder / "remedies.py").write_text(REFILL)
    config = tmp_path / "coplane.yaml"
    config.write_text(CONFIG.format(folder=folder))
    monkeypatch.setenv("COPLANE_CONFIG", str(config))
    s = LiveServer(db_url, tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _incidents(server: LiveServer, sla: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{server.url}/api/incidents", params={"limit": 100}).json()["incidents"]
    return sorted((i for i in got if i["sla"] == sla), key=lambda i: i["opened"])


def _remediation(server: LiveServer, incident: dict[str, Any]) -> Any:
    resp = httpx.get(f"{server.url}/api/incidents/{incident['id']}/remediation")
    return resp.json() if resp.status_code == 200 else None


def _runs(server: LiveServer, deployment: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{server.url}/api/flow-runs", params={"deployment": deployment}).json()
    return list(got["flow_runs"])


@pytest.mark.slow
def test_a_breach_is_remediated_once_and_a_failing_remedy_does_not_loop(
    server: LiveServer,
) -> None:
    first = wait_for(lambda: _incidents(server, "orders_fresh"), timeout=30)[0]
    done = wait_for(lambda: (r := _remediation(server, first)) and r["outcome"] == "remediated"
                    and r, timeout=40)  # fmt: skip
    assert done["detail"] == f"remediated by run {done['run']}"
    assert done["run_state"] == "completed"
    resolved = next(i for i in _incidents(server, "orders_fresh") if i["id"] == first["id"])
    assert resolved["resolved"] is not None
    # the run links its incident, and carries its causes in its related resources
    run = httpx.get(f"{server.url}/api/flow-runs/{done['run']}").json()
    assert run["remediates"] == first["id"] and run["parameters"] == {"asset": "wh.orders"}
    assert {"role": "cause", "id": f"incident:{first['id']}"} in run["related"]
    events = httpx.get(f"{server.url}/api/runs/{done['run']}").json()["events"]
    assert any(r == {"role": "cause", "id": f"incident:{first['id']}"}
               for e in events for r in e["related"])  # fmt: skip

    # the SLA breaches again; the hourly limit (1) allows no second run
    second = wait_for(lambda: [i for i in _incidents(server, "orders_fresh")
                               if i["id"] != first["id"]], timeout=30)[0]  # fmt: skip
    limited = wait_for(lambda: _remediation(server, second), timeout=20)
    assert limited["outcome"] == "rate_limited" and limited["run"] is None
    assert "max_runs_per_hour: 1" in limited["detail"]
    assert len(_runs(server, "refill")) == 1

    # the failing remedy: one run for its incident, failed, and never started again
    never = wait_for(lambda: _incidents(server, "never_fresh"), timeout=30)[0]
    failed = wait_for(lambda: (r := _remediation(server, never)) and r["outcome"] == "failed"
                      and r, timeout=40)  # fmt: skip
    assert failed["run_state"] == "failed" and "not started again" in failed["detail"]
    runs_then = _runs(server, "boom")
    import time

    time.sleep(4)  # several more passes of the job and of the SLA engine
    assert _runs(server, "boom") == runs_then and len(runs_then) == 1


def test_parameters_are_rendered_in_a_sandbox() -> None:
    context = {"incident": {"resource": "wh.orders", "reason": "late"}}
    assert render_parameters({"a": "{{ incident.resource }}", "n": 3, "l": ["{{ 1 + 1 }}"]},
                             context) == {"a": "wh.orders", "n": 3, "l": ["2"]}  # fmt: skip
    from jinja2.exceptions import SecurityError, UndefinedError

    with pytest.raises(SecurityError):
        render_parameters("{{ incident.__class__.__mro__ }}", context)
    with pytest.raises(UndefinedError):
        render_parameters("{{ incident.nothing }}", context)


def _sla(**remediate: Any) -> Any:
    from pydantic import TypeAdapter

    from coplane.rules.model import SLA

    return TypeAdapter(SLA).validate_python({"name": "s", "kind": "freshness", "target": "wh.x",
                                             "max_age": "1h", "remediate": remediate})  # fmt: skip


def test_remediations_that_cannot_start_say_why(store: Store, conn: Conn) -> None:
    import uuid
    from datetime import UTC, datetime

    from coplane.orchestrate.remediation import _start_one
    from tests.store.test_flow_runs import make_deployment

    make_deployment(conn, "fix")  # its flow is sdk.fix; signature takes `n` (an integer)
    now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    incident = {"id": uuid.uuid4(), "sla": "s", "key": "k", "reason": "late",
                "resource": "wh.x", "due": now, "opened": now}  # fmt: skip
    with conn.transaction():
        missing = _start_one(store, conn, _sla(deployment="nope"), incident, now)
        loop = _start_one(store, conn, _sla(deployment="fix"), {**incident, "resource": "sdk.fix"},
                          now)  # fmt: skip
        template = _start_one(store, conn, _sla(deployment="fix", parameters={"n": "{{ x.y }}"}),
                              incident, now)  # fmt: skip
        wrong = _start_one(store, conn, _sla(deployment="fix", parameters={"n": "many"}),
                           incident, now)  # fmt: skip
    assert missing == ("refused", "no deployment named 'nope'", None)
    assert loop[0] == "refused" and "the remediation's own flow" in loop[1]
    assert template[0] == "refused" and template[1].startswith("remediate.parameters: ")
    assert wrong[0] == "refused" and "parameter n" in wrong[1]
    with pytest.raises(ValueError, match="remediate needs `deployment`"):
        _sla(parameters={})
