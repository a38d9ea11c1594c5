"""One page, one status: headers agree with the SLAs below them; counts read as English."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from coplane.rules.facts import Evaluation
from coplane.store import Store
from coplane.store.slas import save_sla_state
from coplane.web.render import counted, live
from tests.web.test_pages import page, post_events
from tests.web.test_views import run_events

FRESH = {"name": "orders_fresh", "kind": "freshness", "target": "wh.orders", "max_age": "1h"}


def header_status(html: str) -> str:
    """The status badge right under the page's heading."""
    found = re.search(
        r'</h1>\s*<p><span class="status[^"]*"[^>]*>.*?</span>\s*(\w[\w ]*)', html, re.S
    )
    assert found, html
    return found.group(1).strip()


def test_an_asset_whose_sla_is_breached_is_breached_in_its_header(
    web: TestClient, store: Store
) -> None:
    post_events(web, *run_events("etl.load", "r1", 0, 5, outputs=("wh.orders",)))
    post_events(web, {**run_events("etl.load", "r2", 6, 7)[0], "event": "asset.updated",
                      "resource": {"id": "wh.orders", "kind": "asset"}})  # fmt: skip
    assert web.post("/api/slas", json=FRESH).status_code == 201
    assert header_status(page(web, "/assets/wh.orders")) == "ok"
    with store.connect() as conn:
        save_sla_state(conn, "orders_fresh", Evaluation(status="breached"), datetime.now(UTC))
    assert header_status(page(web, "/assets/wh.orders")) == "breached"


def test_one_evaluation_is_not_the_latest_1_evaluations(client: TestClient) -> None:
    assert client.post("/api/slas", json=FRESH).status_code == 201  # the engine evaluates it
    html = ""
    for _ in range(100):
        html = page(client, "/slas/orders_fresh")
        if "whose result changed" in html:
            break
        time.sleep(0.1)
    assert "The latest 1 evaluation whose result changed" in html
    assert "1 evaluations" not in html


def test_counted() -> None:
    assert (counted(1, "run"), counted(0, "run"), counted(2, "run")) == (
        "1 run",
        "0 runs",
        "2 runs",
    )


def test_a_partial_carries_the_title_of_the_page_its_url_shows(web: TestClient) -> None:
    post_events(web, *run_events("etl.load", "r1", 0, 5, outputs=("wh.orders",)))
    full = page(web, "/graph?node=wh.orders")
    assert "<title>Dataflow graph · wh.orders · coplane</title>" in full
    partial = web.get(
        "/graph?node=wh.orders", headers={"HX-Request": "true", "HX-Target": "graph-panel"}
    ).text
    assert partial.lstrip().startswith('<aside id="graph-panel"')
    assert "<title>Dataflow graph · wh.orders · coplane</title>" in partial
    assert "<h1>Dataflow graph</h1>" in full  # the heading names the graph, not the panel


def test_a_running_time_in_a_reason_is_brought_up_to_the_page_time() -> None:
    reason = "late_load: run r1 running for 12m since 2026-11-02 08:00 UTC; limit 10m"
    now = datetime(2026, 11, 2, 8, 47, 30, tzinfo=UTC)
    assert live(reason, now) == (
        "late_load: run r1 running for 47m 30s since 2026-11-02 08:00 UTC; limit 10m"
    )
    assert live("ran 12m since 2026-11-02 08:00 UTC", now) == "ran 12m since 2026-11-02 08:00 UTC"
    with_seconds = "running for 5s since 2026-11-02 08:47:20 UTC"
    assert live(with_seconds, now) == "running for 10s since 2026-11-02 08:47:20 UTC"


def test_a_pipeline_with_a_breached_sla_says_so_beside_its_last_run(
    web: TestClient, store: Store
) -> None:
    post_events(web, *run_events("etl.load", "r1", 0, None))  # still running
    late = {"name": "load_quick", "kind": "duration", "target": "etl.load", "max_duration": "10m"}
    assert web.post("/api/slas", json=late).status_code == 201
    html = page(web, "/pipelines/etl.load")
    assert "SLA <span" not in html
    with store.connect() as conn:
        save_sla_state(conn, "load_quick", Evaluation(status="breached"), datetime.now(UTC))
    html = page(web, "/pipelines/etl.load")
    assert header_status(html) == "running"
    assert re.search(r'running</span> · SLA <span class="status status-breached"', html)
