"""The deployments, flow run, work pool and automation pages on real servers (both backends),
and in headless Chromium: run a deployment from its form and watch the run finish."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.chromium import CHROMIUM, FLAGS
from tests.conftest import LiveServer
from tests.orchestrate.support import deploy, start_run, wait_state, write_flows

pytestmark = pytest.mark.slow

AUTOMATIONS = """\
automations:
  - name: on-file
    trigger: {event: file.arrived}
    actions: [{type: pause_schedule, deployment: every}]
"""


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    config = tmp_path / "coplane.yaml"
    config.write_text(AUTOMATIONS)
    monkeypatch.setenv("COPLANE_CONFIG", str(config))
    s = LiveServer(db_url, tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _page(server: LiveServer, path: str) -> httpx.Response:
    resp = httpx.get(server.url + path, timeout=10)
    assert resp.status_code == 200, (path, resp.text[:500])
    return resp


def test_the_pages_empty_and_full(server: LiveServer, tmp_path: Path) -> None:
    for path in ("/deployments", "/work-pools", "/automations", "/automations/on-file"):
        _page(server, path)
    assert "No deployments yet" in _page(server, "/deployments").text
    assert httpx.get(server.url + "/deployments/nope").status_code == 404
    assert httpx.get(server.url + "/flow-runs/not-a-uuid").status_code == 404
    assert httpx.get(server.url + "/automations/nope").status_code == 404

    folder = write_flows(tmp_path / "code")
    deploy(server, folder, "every", "hello", parameters={"name": "x"},
           schedules=[{"cron": "0 6 * * *", "timezone": "Europe/Berlin"}])  # fmt: skip
    run_id = start_run(server, "every", n=4)
    wait_state(server, run_id, "completed", "failed")
    listing = _page(server, "/deployments").text
    assert "0 6 * * * Europe/Berlin" in listing and f"/flow-runs/{run_id}" in listing
    page = _page(server, "/deployments/every").text
    assert 'name="param-name"' in page and 'value="x"' in page and 'name="param-n"' in page
    assert "Pause schedule" in page
    run_page = _page(server, f"/flow-runs/{run_id}").text
    assert "run.started" in run_page and "run.completed" in run_page
    assert "Cancel run" not in run_page  # it has ended
    pools = _page(server, "/work-pools").text
    assert "default" in pools and "online" in pools

    # a form without its CSRF token changes nothing
    forged = httpx.post(server.url + "/deployments/every/pause", data={"csrf_token": "x"})
    assert forged.status_code == 403
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        form = browser.get("/deployments/every").text
        match = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert match is not None
        bad = browser.post("/deployments/every/run",
                           data={"csrf_token": match.group(1), "param-n": "many"})  # fmt: skip
        assert bad.status_code == 422 and "parameter n" in bad.text  # shown on the form
    runs = httpx.get(server.url + "/api/flow-runs", params={"deployment": "every"}).json()
    # the one run by hand and the next 06:00 (made ahead); the refused form made none
    assert len(runs["flow_runs"]) == 2


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_run_a_deployment_from_its_form_in_chromium(server: LiveServer, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    folder = write_flows(tmp_path / "code")
    deploy(server, folder, "hello", "hello")
    deploy(server, folder, "every", "hello", parameters={"name": "e"},
           schedules=[{"interval": "1h"}])  # fmt: skip
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/deployments")
        page.get_by_role("link", name="hello", exact=True).click()
        expect(page.get_by_role("heading", name="Run", exact=True)).to_be_visible()

        page.get_by_label("name (required)").fill("from the browser")
        page.get_by_label("n", exact=True).fill("7")
        page.get_by_role("button", name="Run", exact=True).click()
        expect(page).to_have_url(re.compile(r"/flow-runs/[0-9a-f-]{36}$"))
        # the page refreshes itself through htmx until the run has ended
        expect(page.locator("#flow-run-live")).to_contain_text("completed", timeout=30_000)
        expect(page.locator(".timeline")).to_contain_text("run.completed")
        run_id = page.url.rsplit("/", 1)[1]
        assert (folder / "out" / run_id).read_text() == "from the browser 7"
        page.screenshot(path=str(tmp_path / "flow-run.png"), full_page=True)

        page.goto(server.url + "/deployments/every")
        page.get_by_role("button", name="Pause schedule").click()
        expect(page.get_by_role("button", name="Resume schedule")).to_be_visible()
        page.get_by_role("button", name="Resume schedule").click()
        expect(page.get_by_role("button", name="Pause schedule")).to_be_visible()
        browser.close()
    assert errors == []
