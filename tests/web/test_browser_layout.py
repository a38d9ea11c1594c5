"""Every page in headless Chromium at a desktop (1,400 x 900) and a phone (390 x 844) size:
screenshots, no horizontal overflow, an axe-core run with no serious violations, and the
graph's fit, zoom and pan (buttons and keyboard).

axe-core comes from the npm registry as the tarball package-lock.json pins (checked against
its sha512), fetched and cached by setup.py's own functions, the way htmx is vendored; it is
injected into the page under test only, never shipped."""

from __future__ import annotations

import io
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import LiveServer, sqlite_server
from tests.test_htmx_build import ROOT, load_setup
from tests.web.test_browser import Watched, post, seed, shoot
from tests.web.test_views import run_events

pytestmark = pytest.mark.slow

SIZES = {"desktop": (1400, 900), "phone": (390, 844)}
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def axe_source() -> str:
    setup = load_setup()
    package = setup.read_locked_package(ROOT, "axe-core")
    environ = {k: v for k, v in os.environ.items() if k != "COPLANE_HTMX_TARBALL"}
    data = setup.fetch_tarball(package, environ)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        script: bytes = setup.read_member(tar, ("package/axe.min.js",))
    return script.decode()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    with sqlite_server(tmp_path_factory.mktemp("layout")) as server:
        incident = seed(server)
        project = "dbt.jaffle_shop"
        events = run_events(project, "inv1", 0, 5)
        events += run_events(
            f"{project}.stg_orders", "inv1/stg", 0, 2, parent=(project, "inv1"),
            inputs=("raw.orders",), outputs=("wh.stg_orders",),
        )  # fmt: skip
        events += run_events(
            f"{project}.orders", "inv1/orders", 2, 4, parent=(project, "inv1"),
            inputs=("wh.stg_orders",), outputs=("wh.orders_mart",),
        )  # fmt: skip
        post(server, "/api/events", events)
        yield server, incident


@pytest.fixture(params=list(SIZES))
def sized(request: pytest.FixtureRequest, browser: Browser) -> Iterator[tuple[str, Watched]]:
    width, height = SIZES[request.param]
    context = browser.new_context(viewport={"width": width, "height": height})
    watched = Watched(context.new_page())
    yield request.param, watched
    context.close()
    assert watched.errors == [], watched.errors


def pages(incident: str) -> dict[str, str]:
    return {
        "health": "/",
        "graph": "/graph",
        "graph-focus": "/graph?focus=wh.orders&node=wh.orders",
        "pipeline": "/pipelines/etl.report",
        "asset": "/assets/wh.orders",
        "slas": "/slas",
        "sla": "/slas/orders_fresh",
        "incidents": "/incidents",
        "incident": f"/incidents/{incident}",
        "events": "/events",
    }


def serious_violations(page: Page, axe: str) -> list[dict[str, Any]]:
    # evaluated through the browser's protocol, which the pages' script-src 'self' does not
    # govern (a <script> tag would be refused, rightly)
    page.evaluate(f"{axe}\n;undefined")
    result: dict[str, Any] = page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in SERIOUS
    ]


def test_every_page_fits_and_has_no_serious_accessibility_violation(
    site: tuple[LiveServer, str], sized: tuple[str, Watched], axe_source: str, tmp_path: Path
) -> None:
    server, incident = site
    size, watched = sized
    page = watched.page
    found: dict[str, Any] = {}
    for name, path in pages(incident).items():
        response = page.goto(server.url + path)
        assert response is not None and response.status == 200, path
        shoot(page, tmp_path, f"{name}-{size}")
        # nothing wider than the window: tables scroll inside their own box
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{path} is {overflow}px wider than the {size} window"
        if violations := serious_violations(page, axe_source):
            found[path] = violations
    assert found == {}


def view_box(page: Page) -> list[float]:
    raw = page.locator("svg.graph").get_attribute("viewBox") or ""
    return [float(v) for v in raw.split()]


def test_the_graph_fills_the_width_and_zooms_and_pans(
    site: tuple[LiveServer, str], sized: tuple[str, Watched]
) -> None:
    server, _ = site
    size, watched = sized
    page = watched.page
    page.goto(server.url + "/graph")
    region = page.locator(".graph-scroll")
    region_box = region.bounding_box()
    assert region_box is not None
    window = SIZES[size][0]
    assert region_box["width"] > window * 0.85  # the window's width, not a column of it
    svg = page.locator("svg.graph").bounding_box()
    assert svg is not None and abs(svg["width"] - region_box["width"]) <= 2
    expect_buttons = page.get_by_role("button", name="Zoom in")
    assert expect_buttons.is_visible()
    start = view_box(page)
    region.focus()
    page.keyboard.press("+")
    zoomed = view_box(page)
    assert zoomed[2] < start[2]  # a narrower view: zoomed in
    page.keyboard.press("ArrowRight")
    assert view_box(page)[0] > zoomed[0]  # panned right
    page.get_by_role("button", name="Zoom out").click()
    assert view_box(page)[2] > zoomed[2]
    page.get_by_role("button", name="Fit").click()
    fitted = view_box(page)
    layout_width = float(page.locator("svg.graph").get_attribute("data-width") or 0)
    assert fitted[2] >= layout_width  # the whole graph is in view
    # labels stay readable: at most this much smaller than drawn
    scale = region_box["width"] / view_box(page)[2]
    page.reload()
    assert region_box["width"] / view_box(page)[2] >= min(scale, 0.74)


def test_pipelines_tasks_and_assets_are_different_shapes(
    site: tuple[LiveServer, str], sized: tuple[str, Watched]
) -> None:
    server, _ = site
    _, watched = sized
    page = watched.page
    page.goto(server.url + "/graph?tasks=shown")
    radius = {
        kind: page.locator(f"g.kind-{kind} rect").first.get_attribute("rx")
        for kind in ("pipeline", "task", "asset")
    }
    assert radius["asset"] is not None and float(radius["asset"]) > 5
    assert float(radius["pipeline"] or 0) <= 2 and float(radius["task"] or 0) <= 2
    fills = {
        kind: page.locator(f"g.kind-{kind} rect").first.evaluate("r => getComputedStyle(r).fill")
        for kind in ("pipeline", "task")
    }
    assert fills["pipeline"] != fills["task"]
    # the full id is on hover and in the panel, however the label is cut
    title = page.locator('a[data-node="dbt.jaffle_shop.stg_orders"] title').text_content() or ""
    assert "dbt.jaffle_shop.stg_orders" in title
    assert re.search(r"task dbt\.jaffle_shop\.stg_orders", title)


def test_the_tab_title_follows_an_htmx_swap(
    site: tuple[LiveServer, str], sized: tuple[str, Watched]
) -> None:
    server, _ = site
    _, watched = sized
    page = watched.page
    page.goto(server.url + "/graph")
    assert page.title() == "Dataflow graph · coplane"
    page.evaluate("window.notReloaded = true")
    # by keyboard, as on a phone the node may be outside the zoomed view: focusing it pans there
    node = page.locator('a[data-node="etl.report"]')
    node.focus()
    assert node.is_visible()
    box, region = node.bounding_box(), page.locator(".graph-scroll").bounding_box()
    assert box is not None and region is not None
    assert region["x"] <= box["x"] + box["width"] / 2 <= region["x"] + region["width"]
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile("node=etl.report"))
    page.wait_for_function("document.title.includes('etl.report')")
    assert page.title() == "Dataflow graph · etl.report · coplane"
    assert page.evaluate("window.notReloaded") is True  # swapped, not loaded
