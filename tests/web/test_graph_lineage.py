"""The graph keeps asset-to-asset lineage that runs through tasks, and draws no orphan tasks."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from coplane.web.graph import fold_tasks
from tests.web.test_pages import page, post_events
from tests.web.test_views import drawn, run_events

PROJECT = "dbt.jaffle_shop"


def edges_of(html: str) -> int:
    return html.count('<polyline class="edge')


def seed_dbt(web: TestClient) -> None:
    """A dbt project: raw.orders -> stg_orders -> orders, each model a task of the project."""
    events = run_events(PROJECT, "inv1", 0, 5)
    events += run_events(
        f"{PROJECT}.stg_orders", "inv1/stg", 0, 2, parent=(PROJECT, "inv1"),
        inputs=("raw.orders",), outputs=("wh.stg_orders",),
    )  # fmt: skip
    events += run_events(
        f"{PROJECT}.orders", "inv1/orders", 2, 4, parent=(PROJECT, "inv1"),
        inputs=("wh.stg_orders",), outputs=("wh.orders",),
    )  # fmt: skip
    events += run_events(f"{PROJECT}.seed_check", "inv1/check", 4, 5, parent=(PROJECT, "inv1"))
    post_events(web, *events)


def test_folding_tasks_keeps_lineage_through_them() -> None:
    edges = {
        ("raw", "t1"), ("t1", "stg"), ("stg", "t2"), ("t2", "mart"),
        ("t3", "export"), ("mart", "t4"),
    }  # fmt: skip
    into = {"t1": "p", "t2": "p", "t3": "p", "t4": "p"}
    assert fold_tasks(edges, into) == {
        ("raw", "stg"),
        ("stg", "mart"),
        ("p", "export"),  # a task that only writes
        ("mart", "p"),  # a task that only reads
    }
    # without a task reading it, mart is the project's last product: the project points at it
    assert ("p", "mart") in fold_tasks(edges - {("mart", "t4")}, into)


def test_a_collapsed_dbt_project_reads_raw_stg_mart(web: TestClient) -> None:
    seed_dbt(web)
    html = page(web, "/graph")
    assert set(drawn(html)) == {PROJECT, "raw.orders", "wh.stg_orders", "wh.orders"}
    box = r'data-node="([^"]+)">\s*<g[^>]*>\s*<title>[^<]*</title>\s*<\w+ x="([\d.]+)"'
    xs = dict(re.findall(box, html))
    assert float(xs["raw.orders"]) < float(xs["wh.stg_orders"]) < float(xs["wh.orders"])
    assert edges_of(html) == 3  # raw -> stg -> mart, and the project -> mart


def test_shown_tasks_without_lineage_are_folded_not_drawn_alone(web: TestClient) -> None:
    seed_dbt(web)
    shown = drawn(page(web, "/graph?tasks=shown"))
    assert f"{PROJECT}.stg_orders" in shown and f"{PROJECT}.orders" in shown
    assert f"{PROJECT}.seed_check" not in shown  # no lineage: it would float alone
