"""A deployment's paused flow run resumed from its flow-run page in headless Chromium: an
editor starts the run from the deployment's Run form, a real worker runs a flow that waits in
`pause_flow_run(wait_for_input=...)`, the page grows the resume form when the run pauses,
keeps what is typed while it refreshes, names the wrong field, and lands back on the flow-run
page once the flow has its input. A viewer is shown no form."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from coplane.auth.keys import create_key
from coplane.auth.users import create_user
from coplane.store import open_store
from tests.chromium import log_in
from tests.conftest import LiveServer
from tests.web.test_browser import Watched, shoot

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"

FLOWS = '''
from pathlib import Path

from pydantic import BaseModel, Field

from coplane import flow, get_run_logger, pause_flow_run


class Approval(BaseModel):
    """Whether to publish today's numbers."""

    approver: str = Field(description="who checked them")
    rows: int = Field(ge=0, description="rows checked")


@flow
def approve(out: str) -> None:
    log = get_run_logger()
    log.info("numbers ready for review")
    answer = pause_flow_run(timeout=300, wait_for_input=Approval, poll_s=0.2)
    log.info("approved by %s", answer.approver)
    Path(out).write_text(answer.model_dump_json())
'''


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    """A server with logins required and its own worker; an editor `ed`, a viewer `vera`, and
    the keys of an admin (to deploy) and of flows (the worker's, to report and pause)."""
    url = f"sqlite:///{tmp_path / 'coplane.sqlite'}"
    store = open_store(url)
    try:
        with store.connect() as conn:
            keys = {
                "admin": create_key(conn, "deployer", ["admin"])[1],
                "flows": create_key(conn, "flows", ["ingest", "read"])[1],
            }
            create_user(conn, "ed", PASSWORD, "editor")
            create_user(conn, "vera", PASSWORD, "viewer")
    finally:
        store.close()
    env = {"COPLANE_AUTH": "keys", "COPLANE_API_KEY": keys["flows"]}
    s = LiveServer(url, tmp_path / "server.log", env=env)
    s.start()
    try:
        yield s, keys
    finally:
        s.stop()




def _api(server: LiveServer, key: str, method: str, path: str, body: Any = None) -> Any:
    resp = httpx.request(method, server.url + path, json=body, timeout=60,
                         headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert resp.status_code < 300, resp.text
    return resp.json()



def test_an_editor_resumes_a_deployment_run_from_its_flow_run_page(
    server: tuple[LiveServer, dict[str, str]], browser: Browser, tmp_path: Path
) -> None:
    live, keys = server
    code, out = tmp_path / "code", tmp_path / "answer.json"
    code.mkdir()
    (code / "flows.py").write_text(FLOWS)
    _api(live, keys["admin"], "PUT", "/api/deployments/approve",
         {"name": "approve", "entrypoint": "flows.py:approve", "working_dir": str(code),
          "parameters": {"out": str(out)}})  # fmt: skip

    editor = browser.new_context(viewport={"width": 1280, "height": 900})
    w = Watched(editor.new_page())
    page = w.page
    log_in(page, live.url, "ed", PASSWORD, "/deployments/approve")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page).to_have_url(re.compile(r"/flow-runs/[0-9a-f-]{36}$"))
    run_id = page.url.rsplit("/", 1)[1]
    # the page was drawn before the run paused: its refresh brings the form in
    section = page.locator("#run-pause")
    expect(section).to_contain_text("Waiting for input: Approval", timeout=60_000)
    expect(page.locator("#flow-run-live p").first).to_contain_text("paused")
    expect(page.locator("#run-logs")).to_contain_text("numbers ready for review")
    shoot(page, tmp_path, "paused")

    viewer = browser.new_context()
    v = Watched(viewer.new_page())
    log_in(v.page, live.url, "vera", PASSWORD, f"/flow-runs/{run_id}")
    expect(v.page.locator("#run-pause")).to_contain_text(
        "Only editors and admins can resume this run"
    )
    expect(v.page.locator("#run-pause form")).to_have_count(0)
    viewer.close()
    assert v.errors == []

    page.get_by_label("approver (required)").fill("ed")
    page.get_by_label("rows (required)").fill("-3")
    # the state and the logs go on refreshing around the form and leave what was typed alone
    note = {"run_id": run_id, "task_run_id": None, "level": "INFO", "logger": "reviewer",
            "timestamp": datetime.now(UTC).isoformat(),
            "message": "a note while paused"}  # fmt: skip
    _api(live, keys["flows"], "POST", "/api/logs", {"logs": [note]})
    with page.expect_response(lambda r: f"/flow-runs/{run_id}?paused=1" in r.url):
        pass
    expect(page.locator("#run-logs")).to_contain_text("a note while paused")
    expect(page.get_by_role("heading", name="Logs", level=2)).to_be_visible()
    expect(page.get_by_label("approver (required)")).to_have_value("ed")
    expect(page.get_by_label("rows (required)")).to_be_focused()

    section.get_by_role("button", name="Resume").click()
    # refused, naming the field beside it, with the way back to this flow-run page
    expect(page.get_by_role("alert")).to_contain_text("input.rows")
    expect(page.get_by_role("alert")).to_contain_text("The run is still paused")
    expect(page.locator("#input-rows-error")).to_have_text("-3 is less than the minimum of 0")
    expect(page.get_by_label("approver (required)")).to_have_value("ed")
    back = page.get_by_role("link", name="Back to the run")
    expect(back).to_have_attribute("href", f"/flow-runs/{run_id}")
    shoot(page, tmp_path, "refused")
    assert _api(live, keys["flows"], "GET", f"/api/runs/{run_id}")["state"] == "paused"

    page.get_by_label("rows (required)").fill("12")
    section.get_by_role("button", name="Resume").click()
    expect(page).to_have_url(re.compile(f"/flow-runs/{run_id}$"))
    expect(page.locator("#flow-run-live")).to_contain_text("completed", timeout=60_000)
    expect(page.locator("#run-pause")).to_have_count(0)
    expect(page.locator("#run-logs")).to_contain_text("approved by ed")
    shoot(page, tmp_path, "resumed")
    assert json.loads(out.read_text()) == {"approver": "ed", "rows": 12}
    pause = _api(live, keys["flows"], "GET", f"/api/runs/{run_id}/pause")
    assert pause["state"] == "resumed" and pause["resumed_by"] == "ed"
    editor.close()
    # the refused form came back as a 422: the one resource the browser reports failing
    assert w.errors == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
