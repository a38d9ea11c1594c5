"""The UI in real headless Chromium (Debian's `chromium`, driven by Playwright, never a
downloaded browser) against a real `coplane server` seeded through the public API: every page
loads without console errors, the click path from a breached tile to its incident to the graph,
acknowledging through htmx, and new events appearing without a reload. Screenshots of every page
go to each test's output folder."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.conftest import LiveServer, sqlite_server
from tests.factories import event_dict

pytestmark = pytest.mark.slow





def post(server: LiveServer, path: str, body: Any) -> httpx.Response:
    resp = httpx.post(server.url + path, json=body, timeout=10)
    assert resp.status_code in (200, 201, 202), resp.text
    return resp


def seed(server: LiveServer) -> str:
    """A two-step flow with a failed report and a stale table under a freshness SLA; returns the
    id of the incident the SLA engine opens for it."""
    out = [{"role": "output", "id": "wh.orders", "kind": "asset"}]
    into = [
        {"role": "input", "id": "wh.orders", "kind": "asset"},
        {"role": "output", "id": "wh.report", "kind": "asset"},
    ]
    events = [
        event_dict("run.started", "etl.load", run="l1", kind="pipeline", related=out),
        event_dict("run.completed", "etl.load", run="l1", kind="pipeline", related=out, minutes=9),
        event_dict(
            "asset.updated",
            "wh.orders",
            kind="asset",
            minutes=9,
            related=[{"role": "producer", "id": "etl.load"}],
        ),
        event_dict(
            "run.started", "etl.report", run="r1", kind="pipeline", related=into, minutes=10
        ),
        event_dict(
            "run.failed",
            "etl.report",
            run="r1",
            kind="pipeline",
            related=into,
            minutes=11,
            payload={"error": "division by zero"},
        ),
    ]
    post(server, "/api/events", events)
    post(
        server,
        "/api/slas",
        {"name": "orders_fresh", "kind": "freshness", "target": "wh.orders", "max_age": "1h"},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = httpx.get(server.url + "/api/incidents?state=open", timeout=5).json()
        if found["incidents"]:
            return str(found["incidents"][0]["id"])
        time.sleep(0.2)
    raise AssertionError("the SLA engine opened no incident")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    with sqlite_server(tmp_path_factory.mktemp("browser")) as server:
        yield server, seed(server)


class Watched:
    """A page whose console errors and uncaught exceptions are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    w = Watched(context.new_page())
    yield w
    context.close()
    assert w.errors == [], w.errors


def shoot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000  # a rendered page, not a blank one


def test_every_page_loads_with_htmx_and_no_console_errors(
    seeded: tuple[LiveServer, str], watched: Watched, tmp_path: Path
) -> None:
    server, incident = seeded
    pages = {
        "health": ("/", "Health"),
        "graph": ("/graph", "Dataflow graph"),
        "pipeline": ("/pipelines/etl.report", "Pipeline: etl.report"),
        "asset": ("/assets/wh.orders", "Asset: wh.orders"),
        "slas": ("/slas", "SLAs"),
        "incidents": ("/incidents", "Incidents"),
        "incident": (f"/incidents/{incident}", "Incident: orders_fresh"),
        "events": ("/events", "Events"),
    }
    page = watched.page
    for name, (path, heading) in pages.items():
        response = page.goto(server.url + path)
        assert response is not None and response.status == 200, path
        # the pages run under a policy that refuses inline scripts and styles: a violation
        # would be a console error
        assert "script-src 'self';" in response.headers["content-security-policy"]
        expect(page.locator("h1")).to_have_text(heading)
        assert page.evaluate("typeof htmx") == "object", f"htmx did not load on {path}"
        shoot(page, tmp_path, name)


def test_from_a_breached_tile_to_its_incident_to_the_graph(
    seeded: tuple[LiveServer, str], watched: Watched, tmp_path: Path
) -> None:
    server, incident = seeded
    page = watched.page
    page.goto(server.url + "/")
    tile = page.locator("li.tile", has_text="wh.orders")
    expect(tile).to_contain_text("breached")
    tile.locator('a[href^="/incidents/"]').first.click()
    expect(page).to_have_url(re.compile(f"/incidents/{incident}$"))
    page.get_by_role("link", name="show in the dataflow graph").click()
    expect(page).to_have_url(re.compile(r"/graph\?focus=wh.orders"))
    focused = page.locator('a[data-node="wh.orders"] g.node')
    expect(focused).to_have_class(re.compile("focused"))
    expect(page.locator("#graph-panel")).to_contain_text("wh.orders")
    shoot(page, tmp_path, "graph-focus")
    # clicking another node loads its panel through htmx: the page itself stays
    page.evaluate("window.notReloaded = true")
    page.locator('a[data-node="etl.report"]').click()
    expect(page.locator("#graph-panel")).to_contain_text("etl.report")
    expect(page.locator("#graph-panel")).to_contain_text("Downstream of this broken node")
    expect(page).to_have_url(re.compile("node=etl.report"))
    assert page.evaluate("window.notReloaded") is True


def test_acknowledge_an_incident(seeded: tuple[LiveServer, str], watched: Watched) -> None:
    server, incident = seeded
    page = watched.page
    page.goto(f"{server.url}/incidents/{incident}")
    page.evaluate("window.notReloaded = true")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("main")).to_contain_text("acked")
    expect(page.get_by_role("button", name="Acknowledge")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True  # swapped in by htmx
    stored = httpx.get(f"{server.url}/api/incidents", timeout=5).json()["incidents"]
    assert [i["acked"] is not None for i in stored if i["id"] == incident] == [True]


def test_a_new_event_appears_without_a_reload(
    seeded: tuple[LiveServer, str], watched: Watched
) -> None:
    server, _ = seeded
    page = watched.page
    page.goto(server.url + "/events")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#event-list")).not_to_contain_text("file.arrived")
    post(server, "/api/events", [event_dict("file.arrived", "sftp.orders")])
    expect(page.locator("#event-list")).to_contain_text("file.arrived", timeout=10_000)
    assert page.evaluate("window.notReloaded") is True


def test_dark_mode_follows_the_system_and_the_skip_link_comes_first(
    seeded: tuple[LiveServer, str], browser: Browser, tmp_path: Path
) -> None:
    server, _ = seeded
    colours = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        page.goto(server.url + "/")
        colours[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
        shoot(page, tmp_path, f"health-{scheme}")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        context.close()
    assert colours["light"] == "rgb(255, 255, 255)" and colours["dark"] != colours["light"]
