"""The pages added on top of health, SLAs and incidents: pipeline, asset, events and graph pages,
SLA compliance, the health page's statuses and filters, and the htmx partials."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coplane.rules.facts import Evaluation
from coplane.store import Store
from coplane.store.health import compliance
from coplane.store.slas import save_sla_state
from tests.factories import event_dict
from tests.web.test_pages import open_incident, page, post_events, tile_names

HX = {"HX-Request": "true"}
NOW = datetime.now(UTC).replace(microsecond=0)


def run_events(
    pipeline: str,
    key: str,
    start: float,
    end: float | None,
    state: str = "run.completed",
    *,
    outputs: tuple[str, ...] = (),
    inputs: tuple[str, ...] = (),
    error: str | None = None,
    parent: tuple[str, str] | None = None,
    source: str | None = None,
    labels: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """A run's start and (optionally) end event; a task run when `parent` = (pipeline, run key)."""
    related: list[dict[str, Any]] = [{"role": "output", "id": o, "kind": "asset"} for o in outputs]
    related += [{"role": "input", "id": i, "kind": "asset"} for i in inputs]
    kind = "pipeline"
    if parent is not None:
        kind = "task"
        related += [{"role": "parent", "id": parent[0]}, {"role": "parent_run", "id": parent[1]}]
    if source:
        related.append({"role": "source", "id": source})
    out = [event_dict("run.started", pipeline, run=key, kind=kind, minutes=start, related=related)]
    if end is not None:
        payload = {"error": error} if error else None
        out.append(
            event_dict(
                state, pipeline, run=key, kind=kind, minutes=end, related=related, payload=payload
            )
        )
    for e in out:
        if labels:
            e["resource"]["labels"] = labels
    return out


def seed_flow(web: TestClient) -> None:
    """raw.orders -> etl.load (two tasks) -> wh.orders -> etl.report -> wh.report."""
    events: list[dict[str, Any]] = []
    for i, minutes in enumerate((10, 12, 11, 30)):
        key = f"r{i}"
        events += run_events(
            "etl.load",
            key,
            i * 100,
            i * 100 + minutes,
            inputs=("raw.orders",),
            outputs=("wh.orders",),
        )
    events += run_events("etl.load.extract", "r3/extract", 300, 305, parent=("etl.load", "r3"))
    events += run_events(
        "etl.load.write", "r3/write", 305, 330, parent=("etl.load", "r3"), outputs=("wh.orders",)
    )
    events += run_events(
        "etl.report",
        "p1",
        400,
        402,
        "run.failed",
        inputs=("wh.orders",),
        outputs=("wh.report",),
        error="division by zero",
    )
    events.append(
        event_dict(
            "asset.updated",
            "wh.orders",
            minutes=331,
            kind="asset",
            related=[{"role": "producer", "id": "etl.load"}],
        )
    )
    events.append(
        event_dict(
            "check.failed",
            "wh.orders",
            minutes=332,
            kind="asset",
            payload={"check": "not_null_id", "message": "3 nulls"},
        )
    )
    post_events(web, *events)


# --- pipeline and asset pages -----------------------------------------------------------------


def test_pipeline_page_shows_runs_chart_timeline_and_lineage(web: TestClient) -> None:
    seed_flow(web)
    html = page(web, "/pipelines/etl.load")
    assert "<h1>Pipeline: etl.load</h1>" in html
    # the duration chart: a bar per run with its duration, and the p50-p95 band
    bars = re.findall(
        r'<rect class="bar fill-ok"[^>]*><title>(r\d): completed, ([\w ]+)</title>', html
    )
    assert bars == [("r0", "10m 0s"), ("r1", "12m 0s"), ("r2", "11m 0s"), ("r3", "30m 0s")]
    assert '<rect class="band"' in html
    # the latest run is chosen: its task timeline, in start order
    assert '<h2 id="run-heading">Run r3</h2>' in html
    gantt = re.findall(r'<text class="row-label"[^>]*>([\w.]+)</text>', html)
    assert gantt == ["extract", "write"]
    assert "write: completed, 25m 0s" in html
    assert 'href="/assets/raw.orders"' in html and 'href="/assets/wh.orders"' in html
    assert 'href="/pipelines/etl.load.extract"' in html
    assert "not_null_id" in html and "3 nulls" in html  # checks on its outputs


def test_pipeline_page_picks_a_run_and_shows_its_error(web: TestClient) -> None:
    seed_flow(web)
    html = page(web, "/pipelines/etl.report")
    run_id = re.search(r'\?run=([0-9a-f-]{36})">p1<', html)
    assert run_id
    assert "division by zero" in html and "Latest errors" in html
    chosen = page(web, f"/pipelines/etl.report?run={run_id.group(1)}")
    assert 'aria-current="true"' in chosen
    assert "run.failed" in chosen  # the run's events


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/pipelines/nope", "no pipeline or task with id"),
        ("/pipelines/etl.load?run=not-a-uuid", "is not a run id"),
        ("/pipelines/etl.load?run=ad034683-7f36-4e11-a661-7aa3e706655c", "no run with id"),
        ("/assets/etl.load", "no asset with id"),
    ],
)
def test_unknown_resources_and_runs_are_404_pages(web: TestClient, url: str, message: str) -> None:
    seed_flow(web)
    assert message in page(web, url, 404)


def test_a_run_of_another_pipeline_is_a_404(web: TestClient) -> None:
    seed_flow(web)
    html = page(web, "/pipelines/etl.report")
    run_id = re.search(r'\?run=([0-9a-f-]{36})"', html)
    assert run_id
    assert "is not a run of etl.load" in page(
        web, f"/pipelines/etl.load?run={run_id.group(1)}", 404
    )


def test_asset_page_shows_checks_updates_and_neighbours(web: TestClient) -> None:
    seed_flow(web)
    html = page(web, "/assets/wh.orders")
    assert "<h1>Asset: wh.orders</h1>" in html
    assert "failing checks" in html and "not_null_id" in html and "3 nulls" in html
    assert 'href="/pipelines/etl.load"' in html  # producer
    assert 'href="/pipelines/etl.report"' in html  # reader
    assert html.count("<li><time") >= 1  # one update listed


def test_pipeline_page_partial_is_the_live_block_only(web: TestClient) -> None:
    seed_flow(web)
    resp = web.get("/pipelines/etl.load", headers={**HX, "HX-Target": "pipeline-live"})
    assert resp.status_code == 200
    assert resp.text.lstrip().startswith('<div id="pipeline-live"')
    assert "<html" not in resp.text and "Run history" in resp.text


# --- events -----------------------------------------------------------------------------------


def test_events_page_lists_newest_first_and_filters(web: TestClient) -> None:
    seed_flow(web)
    html = page(web, "/events")
    names = re.findall(r'<td><a href="/events\?name=[^"]*">([\w.]+)</a></td>', html)
    assert names[:3] == ["run.failed", "run.started", "check.failed"] and len(names) == 16
    assert "division by zero" in html
    only = page(web, "/events?name=run.*&resource=etl.report")
    names = re.findall(r'<td><a href="/events\?name=[^"]*">([\w.]+)</a></td>', only)
    assert names == ["run.failed", "run.started"]
    assert "No events match this filter" in page(web, "/events?name=nothing.here")


def test_events_partial_refreshes_the_list_only(web: TestClient) -> None:
    resp = web.get("/events", headers={**HX, "HX-Target": "event-list"})
    assert resp.text.lstrip().startswith('<div id="event-list" hx-get="/events?"')
    assert "No events yet" in resp.text
    post_events(web, event_dict("file.arrived", "sftp.orders"))
    resp = web.get("/events", headers={**HX, "HX-Target": "event-list"})
    assert "file.arrived" in resp.text and "<html" not in resp.text


def test_events_paging_and_a_bad_cursor(web: TestClient) -> None:
    post_events(web, *[event_dict("tick", "clock", minutes=i) for i in range(105)])
    html = page(web, "/events")
    assert html.count('<tr id="event-') == 100
    cursor = re.search(r"cursor=([\w-]+)", html)
    assert cursor
    older = page(web, f"/events?cursor={cursor.group(1)}")
    assert older.count('<tr id="event-') == 5 and "hx-trigger" not in older.split("<main")[1]
    assert "not one this server returned" in page(web, "/events?cursor=garbage", 400)


# --- health -----------------------------------------------------------------------------------


def test_health_partial_is_the_tiles_block(web: TestClient) -> None:
    seed_flow(web)
    resp = web.get("/?q=etl", headers={**HX, "HX-Target": "tiles"})
    assert resp.text.lstrip().startswith('<div id="tiles" hx-get="/?q=etl"')
    assert tile_names(resp.text) == ["etl.report", "etl.load"]
    # a request without HX-Request gets the whole page, as a pasted link does
    assert "<html" in web.get("/?q=etl", headers={"HX-Target": "tiles"}).text


def test_health_statuses_and_filters_by_source_owner_and_label(web: TestClient) -> None:
    post_events(
        web,
        *run_events(
            "dbt.shop.model.a", "i1", 0, 1, source="dbt", labels={"owner": "ana", "team": "core"}
        ),
        *run_events(
            "airflow.x.dag", "d1", 0, 3, "run.failed", source="airflow", labels={"team": "ops"}
        ),
        *run_events("cron.backup", "c1", 0, None, source="cron"),
    )
    html = page(web, "/")
    assert tile_names(html) == ["airflow.x.dag", "cron.backup", "dbt.shop.model.a"]
    assert '<span class="icon" aria-hidden="true">✖</span> failed' in html
    assert tile_names(page(web, "/?source=dbt")) == ["dbt.shop.model.a"]
    assert tile_names(page(web, "/?owner=ana")) == ["dbt.shop.model.a"]
    assert tile_names(page(web, "/?label=team")) == ["airflow.x.dag", "dbt.shop.model.a"]
    assert tile_names(page(web, "/?label=team=ops")) == ["airflow.x.dag"]
    assert tile_names(page(web, "/?status=failed")) == ["airflow.x.dag"]
    assert '<option value="dbt" selected>' in page(web, "/?source=dbt")


def test_a_run_going_on_far_longer_than_usual_is_late(web: TestClient) -> None:
    base = (NOW - datetime(2026, 11, 2, 8, 0, tzinfo=UTC)).total_seconds() / 60
    events = []
    for i in range(3):  # three completed runs of 5 minutes
        events += run_events("etl.nightly", f"n{i}", base - 300 + i * 60, base - 295 + i * 60)
    events += run_events("etl.nightly", "n3", base - 30, None)  # 30 minutes and still going
    events += run_events("etl.fresh", "f1", base - 2, None)
    post_events(web, *events)
    html = page(web, "/?status=late")
    assert tile_names(html) == ["etl.nightly"]
    assert "running for longer than twice the usual" in html and "usual 5m 0s" in html


def test_asset_tiles_come_with_an_sla_and_carry_its_incidents(
    web: TestClient, store: Store
) -> None:
    seed_flow(web)
    body = {"name": "orders_fresh", "kind": "freshness", "target": "wh.orders", "max_age": "1h"}
    assert web.post("/api/slas", json=body).status_code == 201
    with store.connect() as conn:
        save_sla_state(
            conn,
            "orders_fresh",
            Evaluation(status="ok", next_deadline=datetime.now(UTC) + timedelta(hours=2)),
            NOW,
        )
    html = page(web, "/")
    assert "wh.orders" in tile_names(html) and "wh.report" not in tile_names(html)
    assert tile_names(page(web, "/?status=failing_checks")) == ["wh.orders"]
    iid = open_incident(store, "x", sla=body, resource="wh.orders")
    html = page(web, "/?status=breached")
    assert tile_names(html) == ["wh.orders"] and f'href="/incidents/{iid}"' in html
    assert "in 1h 59m" in html or "in 2h 0m" in html  # next deadline, as time left


# --- SLA compliance ---------------------------------------------------------------------------


def test_compliance_counts_overlapping_incidents_once() -> None:
    start, end = NOW - timedelta(days=10), NOW
    day = timedelta(days=1)
    assert compliance([], start, end) == 1
    assert compliance([(start + day, start + 2 * day)], start, end) == pytest.approx(0.9)
    overlapping = [(start + day, start + 3 * day), (start + 2 * day, start + 4 * day)]
    assert compliance(overlapping, start, end) == pytest.approx(0.7)
    # an incident opened before the window counts from its start; an open one up to now
    assert compliance([(start - day, start + day), (end - day, None)], start, end) == pytest.approx(
        0.8
    )
    assert compliance([], end, end) is None


def test_slas_page_shows_compliance_over_7_and_30_days(web: TestClient, store: Store) -> None:
    # measured from this test's own start: NOW is fixed when the module is collected, minutes
    # before this runs in a full suite, and the page measures up to the request's time
    now = datetime.now(UTC)
    body = {"name": "hb", "kind": "heartbeat", "target": "job", "period": "1h"}
    assert web.post("/api/slas", json=body).status_code == 201
    with store.connect() as conn:
        conn.execute("UPDATE slas SET created = ?", (conn.time(now - timedelta(days=40)),))
    open_incident(store, "k", sla=body)
    with store.connect() as conn:  # the incident has been open for the last 14 hours
        conn.execute("UPDATE incidents SET opened = ?", (conn.time(now - timedelta(hours=14)),))
    html = page(web, "/slas")
    cells = re.findall(r'<td class="number">([\d.]+)%</td>', html)
    seven, thirty = (float(c) for c in cells)
    assert seven == pytest.approx(100 * (1 - 14 / (7 * 24)), abs=0.1)
    assert thirty == pytest.approx(100 * (1 - 14 / (30 * 24)), abs=0.1)


# --- the dataflow graph -----------------------------------------------------------------------


def drawn(html: str) -> dict[str, str]:
    """The nodes drawn in the graph's SVG, with the tone each is drawn in."""
    return dict(re.findall(r'data-node="([^"]+)">\s*<g class="node tone-(\w+)', html))


def test_graph_draws_every_node_with_its_health(web: TestClient) -> None:
    seed_flow(web)
    html = page(web, "/graph")
    assert drawn(html) == {
        "raw.orders": "unknown",  # only read, never updated
        "etl.load": "ok",
        "wh.orders": "failing_checks",
        "etl.report": "failed",
        "wh.report": "unknown",
    }
    assert html.count('<polyline class="edge') == 4
    # tasks are folded into their pipeline unless asked for; shown, those with lineage only
    shown = drawn(page(web, "/graph?tasks=shown"))
    assert "etl.load.write" in shown and "etl.load.extract" not in shown
    # boxes left to right in lineage order
    xs = {
        node: float(x)
        for node, x in re.findall(
            r'data-node="([^"]+)">\s*<g[^>]*>\s*<title>[^<]*</title>\s*<rect x="([\d.]+)"', html
        )
    }
    assert xs["raw.orders"] < xs["etl.load"] < xs["wh.orders"] < xs["etl.report"] < xs["wh.report"]


def test_graph_focus_walks_hops_and_directions(web: TestClient) -> None:
    seed_flow(web)
    assert set(drawn(page(web, "/graph?focus=wh.orders&hops=1"))) == {
        "etl.load",
        "wh.orders",
        "etl.report",
    }
    assert set(drawn(page(web, "/graph?focus=wh.orders&hops=6&direction=downstream"))) == {
        "wh.orders",
        "etl.report",
        "wh.report",
    }
    assert set(drawn(page(web, "/graph?focus=wh.orders&direction=upstream"))) == {
        "raw.orders",
        "etl.load",
        "wh.orders",
    }
    assert "There is no pipeline, task or asset nowhere" in page(web, "/graph?focus=nowhere")


def test_a_broken_node_shows_the_path_downstream(web: TestClient) -> None:
    seed_flow(web)
    html = page(web, "/graph?node=etl.report")
    assert html.count('class="edge impacted') == 1  # etl.report -> wh.report
    assert re.search(r'data-node="wh.report">\s*<g class="node tone-unknown impacted', html)
    resp = web.get("/graph?node=etl.report", headers={**HX, "HX-Target": "graph-panel"})
    panel = resp.text
    assert panel.lstrip().startswith('<aside id="graph-panel"') and "<svg" not in panel
    assert "Downstream of this broken node" in panel and "wh.report" in panel
    assert "division by zero" not in panel and "failed" in panel  # its last runs, by state
    assert 'href="/pipelines/etl.report"' in panel
    # a healthy node has no downstream path drawn
    assert 'class="edge impacted' not in page(web, "/graph?node=etl.load")


def test_large_graphs_open_in_focus_mode(web: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from coplane.web import graph

    seed_flow(web)
    monkeypatch.setattr(graph, "FOCUS_ABOVE", 3)
    html = page(web, "/graph")
    assert "Pick a place to start" in html and drawn(html) == {}
    starts = re.findall(
        r'<li><span class="status[^>]*>.*?</span> <a href="/graph\?focus=([\w.]+)', html
    )
    assert starts[:2] == ["etl.report", "wh.orders"]  # broken first
    assert len(drawn(page(web, "/graph?all=1"))) == 5
    assert len(drawn(page(web, "/graph?focus=etl.report&hops=1"))) == 3


def test_empty_graph(web: TestClient) -> None:
    assert "No lineage yet" in page(web, "/graph")
