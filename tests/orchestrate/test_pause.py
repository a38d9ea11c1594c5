"""Pausing a flow run for input: recorded with its schema, resumed through the API, the CLI or
the run page with input checked against that schema, or timed out."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from coplane.auth.keys import create_key
from coplane.auth.users import create_user
from coplane.cli import app
from coplane.client import CoplaneClient
from coplane.events.derive import derive, run_uuid
from coplane.jobs.scheduler import JOBS
from coplane.orchestrate.pause import PauseError, PauseTimeout, pause_flow_run
from coplane.orchestrate.paused import fail_expired_pauses
from coplane.server import create_app
from coplane.settings import Settings
from coplane.store import Store
from coplane.web.csrf import CSRF_COOKIE
from tests.conftest import LiveServer
from tests.factories import event_dict, events

PIPE = "sdk.flow.approve"
RUN = run_uuid(PIPE, "r1")
runner = CliRunner()


class Approval(BaseModel):
    """Whether to publish today's numbers."""

    approver: str
    rows: int = Field(ge=0, description="rows checked")
    publish: bool = False


def _started() -> dict[str, Any]:
    return event_dict("run.started", PIPE, run="r1", related=[{"role": "source", "id": "sdk"}])


def _state(server: LiveServer) -> str:
    state: str = httpx.get(f"{server.url}/api/runs/{RUN}").json()["state"]
    return state


def _wait(check: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


class PausedFlow:
    """pause_flow_run in a thread, as a flow would call it; its outcome once it returns."""

    def __init__(self, server: LiveServer, timeout: float, model: type[BaseModel] | None) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.client = CoplaneClient(server.url)

        def run() -> None:
            try:
                self.result = pause_flow_run(
                    timeout=timeout,
                    wait_for_input=model,
                    run_id=RUN,
                    pipeline_id=PIPE,
                    client=self.client,
                    poll_s=0.1,
                )
            except BaseException as exc:  # handed to the test
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(60)
        assert not self.thread.is_alive()
        self.client.close()


def test_pause_then_resume_with_input(live_server: LiveServer) -> None:
    httpx.post(f"{live_server.url}/api/events", json=[_started()]).raise_for_status()
    flow = PausedFlow(live_server, 60, Approval)
    _wait(lambda: _state(live_server) == "paused", "the run to pause")
    pause = httpx.get(f"{live_server.url}/api/runs/{RUN}/pause").json()
    assert pause["state"] == "paused" and pause["schema"]["title"] == "Approval"

    bad = httpx.post(
        f"{live_server.url}/api/runs/{RUN}/resume", json={"input": {"approver": "ana", "rows": -1}}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "input", "rows"]
    missing = httpx.post(f"{live_server.url}/api/runs/{RUN}/resume", json={"input": {"rows": 3}})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"] == ["body", "input", "approver"]
    time.sleep(0.5)  # the flow keeps waiting through refused input
    assert flow.thread.is_alive() and _state(live_server) == "paused"

    cli = runner.invoke(
        app,
        ["runs", "resume", RUN, "--input", "approver=007", "--input", "rows=12",
         "--input", "publish=true", "--server", live_server.url],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    flow.join()
    assert flow.error is None
    assert flow.result == Approval(approver="007", rows=12, publish=True)
    assert _state(live_server) == "running"
    names = [e["event"] for e in httpx.get(f"{live_server.url}/api/runs/{RUN}").json()["events"]]
    assert names == ["run.started", "run.paused", "run.resumed"]
    again = runner.invoke(app, ["runs", "resume", RUN, "--json", "{}", "--server", live_server.url])
    assert again.exit_code == 2 and "409" in again.output


def test_a_pause_nobody_answers_times_out(live_server: LiveServer) -> None:
    httpx.post(f"{live_server.url}/api/events", json=[_started()]).raise_for_status()
    flow = PausedFlow(live_server, 1, None)
    flow.join()
    assert isinstance(flow.error, PauseTimeout)
    assert "not resumed within 1 s" in str(flow.error)
    late = httpx.post(f"{live_server.url}/api/runs/{RUN}/resume", json={})
    assert late.status_code == 409 and "timed out" in late.json()["detail"]


def test_pausing_needs_a_server_and_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COPLANE_URL", raising=False)
    with pytest.raises(PauseError, match="COPLANE_URL"):
        pause_flow_run(timeout=5, run_id=RUN)
    with pytest.raises(PauseError, match="inside a @flow"):
        pause_flow_run(timeout=5)


def test_the_api_refuses_what_cannot_pause_or_resume(client: TestClient) -> None:
    nowhere = client.post(f"/api/runs/{RUN}/pause", json={"timeout_s": 5})
    assert nowhere.status_code == 404 and nowhere.json()["errors"][0]["loc"] == ["path", "run_id"]
    client.post("/api/events", json=[_started()])
    never = client.post(f"/api/runs/{RUN}/resume", json={})
    assert never.status_code == 404
    assert client.get(f"/api/runs/{RUN}/pause").status_code == 404
    other = client.post(f"/api/runs/{RUN}/pause", json={"timeout_s": 5, "pipeline_id": "x"})
    assert other.status_code == 422
    assert other.json()["errors"][0]["loc"] == ["body", "pipeline_id"]
    for schema in ({"type": "string"}, {"type": "nope"}, {"$ref": "http://169.254.169.254/x"}):
        refused = client.post(f"/api/runs/{RUN}/pause", json={"timeout_s": 5, "schema": schema})
        assert refused.status_code == 422, schema
        assert refused.json()["errors"][0]["loc"] == ["body", "schema"]
    forever = client.post(f"/api/runs/{RUN}/pause", json={"timeout_s": 10**9})
    assert forever.status_code == 422
    assert forever.json()["errors"][0]["loc"] == ["body", "timeout_s"]
    assert client.post(f"/api/runs/{RUN}/pause", json={"timeout_s": 60}).status_code == 201
    twice = client.post(f"/api/runs/{RUN}/pause", json={"timeout_s": 60})
    assert twice.status_code == 409
    assert client.get(f"/api/runs/{RUN}").json()["state"] == "paused"
    assert client.get("/api/runs", params={"state": "paused"}).json()["runs"][0]["id"] == RUN
    extra = client.post(f"/api/runs/{RUN}/resume", json={"input": {"a": 1}})
    assert extra.status_code == 422 and extra.json()["errors"][0]["loc"] == ["body", "input"]
    resumed = client.post(f"/api/runs/{RUN}/resume", json={})
    assert resumed.status_code == 200 and resumed.json()["state"] == "resumed"
    assert client.get(f"/api/runs/{RUN}").json()["state"] == "running"


def test_the_run_page_draws_the_form_and_resumes(client: TestClient) -> None:
    client.post("/api/events", json=[_started()])
    schema = Approval.model_json_schema()
    client.post(f"/api/runs/{RUN}/pause", json={"timeout_s": 60, "schema": schema})
    page = client.get(f"/pipelines/{PIPE}", params={"run": RUN})
    assert page.status_code == 200
    assert "Waiting for input: Approval" in page.text
    assert 'name="approver"' in page.text and 'type="number"' in page.text
    assert 'type="checkbox" id="input-publish"' in page.text
    token = client.cookies[CSRF_COOKIE]
    forged = client.post(f"/runs/{RUN}/resume", data={"csrf_token": "x" * 43, "approver": "a"})
    assert forged.status_code == 403
    not_a_number = client.post(
        f"/runs/{RUN}/resume", data={"csrf_token": token, "approver": "ana", "rows": "many"}
    )
    assert not_a_number.status_code == 422 and "input.rows" in not_a_number.text
    assert "still paused" in not_a_number.text
    assert client.get(f"/api/runs/{RUN}").json()["state"] == "paused"
    done = client.post(
        f"/runs/{RUN}/resume",
        data={"csrf_token": token, "approver": "ana", "rows": "12", "publish": "on"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith(f"?run={RUN}")
    assert client.get(f"/api/runs/{RUN}/pause").json()["input"] == {
        "approver": "ana",
        "rows": 12,
        "publish": True,
    }
    after = client.get(f"/pipelines/{PIPE}", params={"run": RUN})
    assert "Waiting for input" not in after.text
    assert client.post(f"/runs/{RUN}/resume", data={"csrf_token": token}).status_code == 409


def test_pause_and_resume_fold_the_same_in_any_order() -> None:
    batch = [
        event_dict("run.started", PIPE, minutes=0, run="r1"),
        event_dict("run.paused", PIPE, minutes=1, run="r1"),
        event_dict("run.resumed", PIPE, minutes=5, run="r1"),
        event_dict("run.paused", PIPE, minutes=6, run="r1"),
    ]
    states = {derive(events(*order)).runs[RUN].state for order in itertools.permutations(batch)}
    assert states == {"paused"}
    done = [*batch, event_dict("run.completed", PIPE, minutes=9, run="r1")]
    assert derive(events(*done)).runs[RUN].state == "completed"


def _logged_in(client: TestClient, name: str) -> None:
    client.cookies.clear()
    client.get("/login")
    done = client.post(
        "/login",
        data={"csrf_token": client.cookies[CSRF_COOKIE], "name": name, "password": PASSWORD_OF},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text


PASSWORD_OF = "correct horse battery"


def test_only_editors_and_admins_get_the_form(store: Store, db_url: str) -> None:
    settings = Settings(database_url=db_url, events_retention_days=0, auth="keys")
    with store.connect() as conn:
        ingest = create_key(conn, "flow", ["ingest"])[1]
        create_user(conn, "vera", PASSWORD_OF, "viewer")
        create_user(conn, "ed", PASSWORD_OF, "editor")
    with TestClient(create_app(settings, store=store)) as client:
        flow = {"Authorization": f"Bearer {ingest}"}
        client.post("/api/events", json=[_started()], headers=flow)
        paused = client.post(
            f"/api/runs/{RUN}/pause",
            json={"timeout_s": 60, "schema": Approval.model_json_schema()},
            headers=flow,
        )
        assert paused.status_code == 201
        assert client.post(f"/api/runs/{RUN}/resume", json={}, headers=flow).status_code == 403
        _logged_in(client, "vera")
        page = client.get(f"/pipelines/{PIPE}", params={"run": RUN})
        section = page.text.split('id="run-pause"')[1].split("</section>")[0]
        assert "Only editors and admins can resume" in section and "<form" not in section
        refused = client.post(
            f"/runs/{RUN}/resume", data={"csrf_token": client.cookies[CSRF_COOKIE]}
        )
        assert refused.status_code == 403
        _logged_in(client, "ed")
        page = client.get(f"/pipelines/{PIPE}", params={"run": RUN})
        assert 'action="/runs/' in page.text
        done = client.post(
            f"/runs/{RUN}/resume",
            data={"csrf_token": client.cookies[CSRF_COOKIE], "approver": "ed", "rows": "1"},
            follow_redirects=False,
        )
        assert done.status_code == 303
        pause = client.get(f"/api/runs/{RUN}/pause", headers=flow).json()
        assert pause["state"] == "resumed" and pause["resumed_by"] == "ed"


def test_a_run_left_paused_past_its_timeout_is_failed_by_the_server(
    client: TestClient, store: Store
) -> None:
    other = run_uuid(PIPE, "r2")
    client.post(
        "/api/events",
        json=[_started(), event_dict("run.started", PIPE, run="r2", minutes=1)],
    )
    client.post(f"/api/runs/{RUN}/pause", json={"timeout_s": 30})
    client.post(f"/api/runs/{other}/pause", json={"timeout_s": 30})
    client.post(f"/api/runs/{other}/resume", json={})
    soon = datetime.now(UTC) + timedelta(seconds=60)
    assert fail_expired_pauses(store, soon) == 0  # within the grace: a live flow reports first
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert fail_expired_pauses(store, later) == 1
    failed = client.get(f"/api/runs/{RUN}").json()
    assert failed["state"] == "failed" and "not resumed within 30 s" in failed["error"]
    assert client.get(f"/api/runs/{other}").json()["state"] == "running"
    assert fail_expired_pauses(store, later) == 0  # failed once
    assert "fail-expired-pauses" in JOBS
