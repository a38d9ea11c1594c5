"""A paused flow run approved in headless Chromium: a real flow process waits in
`pause_flow_run(wait_for_input=...)` against a real server with logins; an editor fills the form
drawn from the input's schema, is told which field is wrong, and resumes the run, whose flow
gets the input and completes. A viewer is shown no form."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
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
from tests.orchestrate.support import wait_for
from tests.web.test_browser import Watched, shoot

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"
PIPELINE = "sdk.approve_numbers"

FLOW = '''
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from coplane import flow, pause_flow_run


class Approval(BaseModel):
    """Whether to publish today's numbers."""

    approver: str = Field(description="who checked them")
    rows: int = Field(ge=0, description="rows checked")
    publish: bool = False


@flow
def approve_numbers() -> str:
    answer = pause_flow_run(timeout=300, wait_for_input=Approval, poll_s=0.2)
    Path(sys.argv[1]).write_text(answer.model_dump_json())
    return answer.approver


approve_numbers()
'''


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    """A server with logins required, an editor `ed` and a viewer `vera`; and a key for flows."""
    url = f"sqlite:///{tmp_path / 'coplane.sqlite'}"
    store = open_store(url)
    try:
        with store.connect() as conn:
            key = create_key(conn, "flows", ["ingest", "read"])[1]
            create_user(conn, "ed", PASSWORD, "editor")
            create_user(conn, "vera", PASSWORD, "viewer")
    finally:
        store.close()
    s = LiveServer(url, tmp_path / "server.log", env={"COPLANE_AUTH": "keys"})
    s.start()
    try:
        yield s, key
    finally:
        s.stop()




def _api(server: LiveServer, key: str, path: str) -> Any:
    resp = httpx.get(server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()



def test_an_editor_approves_a_paused_run_from_its_page(
    server: tuple[LiveServer, str], browser: Browser, tmp_path: Path
) -> None:
    live, key = server
    script, answer = tmp_path / "approve.py", tmp_path / "answer.json"
    script.write_text(FLOW)
    env = {**os.environ, "COPLANE_URL": live.url, "COPLANE_API_KEY": key}
    with (tmp_path / "flow.log").open("wb") as log:
        flow = subprocess.Popen(
            [sys.executable, str(script), str(answer)], env=env, stdout=log,
            stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    try:
        paused = wait_for(
            lambda: _api(live, key, f"/api/runs?state=paused&pipeline={PIPELINE}")["runs"],
            timeout=60,
        )
        run_id = paused[0]["id"]
        page_path = f"/pipelines/{PIPELINE}?run={run_id}"

        viewer = browser.new_context()
        v = Watched(viewer.new_page())
        log_in(v.page, live.url, "vera", PASSWORD, page_path)
        section = v.page.locator("#run-pause")
        expect(section).to_contain_text("Only editors and admins can resume this run")
        expect(section.locator("form")).to_have_count(0)
        viewer.close()
        assert v.errors == []

        editor = browser.new_context(viewport={"width": 1280, "height": 900})
        w = Watched(editor.new_page())
        page = w.page
        log_in(page, live.url, "ed", PASSWORD, page_path)
        form = page.locator("#run-pause form")
        expect(page.locator("#run-pause")).to_contain_text("Waiting for input: Approval")
        page.get_by_label("approver (required)").fill("ed")
        page.get_by_label("rows (required)").fill("-3")
        page.get_by_label("publish").check()
        shoot(page, tmp_path, "paused")
        form.get_by_role("button", name="Resume").click()
        # refused, naming the field, with the form again as it was sent; the run waits on
        expect(page.get_by_role("alert")).to_contain_text("input.rows")
        expect(page.get_by_role("alert")).to_contain_text("The run is still paused")
        rows = page.get_by_label("rows (required)")
        expect(rows).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#input-rows-error")).to_have_text("-3 is less than the minimum of 0")
        expect(page.get_by_label("approver (required)")).to_have_value("ed")
        expect(page.get_by_label("publish")).to_be_checked()
        shoot(page, tmp_path, "refused")
        assert _api(live, key, f"/api/runs/{run_id}")["state"] == "paused"
        assert flow.poll() is None

        rows.fill("12")
        page.locator("#run-pause form").get_by_role("button", name="Resume").click()
        expect(page).to_have_url(re.compile(f"run={run_id}$"))
        expect(page.locator("#run-pause")).to_have_count(0)
        shoot(page, tmp_path, "resumed")

        assert flow.wait(timeout=60) == 0, (tmp_path / "flow.log").read_text()
        assert json.loads(answer.read_text()) == {"approver": "ed", "rows": 12, "publish": True}
        done = wait_for(
            lambda: (r := _api(live, key, f"/api/runs/{run_id}"))["state"] == "completed" and r
        )
        names = [e["event"] for e in done["events"]]
        assert names[:3] == ["run.started", "run.paused", "run.resumed"]
        assert names[-1] == "run.completed"
        pause = _api(live, key, f"/api/runs/{run_id}/pause")
        assert pause["state"] == "resumed" and pause["resumed_by"] == "ed"
        editor.close()
        # the refused form came back as a 422: the one resource the browser reports failing
        assert w.errors == [
            "Failed to load resource: the server responded with a status of 422 "
            "(Unprocessable Entity)"
        ]
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.wait()
