"""The SLA preview on the SLAs page: the form, the CSRF check, and the result block."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from coplane.events.model import Event, Resource
from coplane.store import Store
from coplane.store.events import insert_events
from coplane.web.routes import CSRF_COOKIE

YAML_SLA = "name: orders_fresh\nkind: freshness\ntarget: wh.orders\nmax_age: 1h\n"
HTMX = {"HX-Request": "true", "HX-Target": "backtest-result"}


def _token(web: TestClient) -> str:
    html = web.get("/backtest").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match and web.cookies.get(CSRF_COOKIE) == match.group(1)
    return match.group(1)


def _updated(store: Store, *hours_ago: int) -> None:
    now = datetime.now(UTC)
    with store.connect() as conn:
        for hours in hours_ago:
            at = now - timedelta(hours=hours)
            event = Event(occurred=at, event="asset.updated", resource=Resource(id="wh.orders"))
            insert_events(conn, [event], at, store.partitions)


def test_slas_page_loads_the_form(web: TestClient) -> None:
    html = web.get("/slas").text
    assert 'hx-get="/backtest"' in html and 'href="/backtest"' in html
    form = web.get("/backtest")
    assert form.status_code == 200
    assert '<textarea id="backtest-sla" name="sla"' in form.text
    assert 'hx-post="/backtest"' in form.text


def test_preview_counts_the_breaches_of_the_last_30_days(web: TestClient, store: Store) -> None:
    _updated(store, 50, 20)  # stale from 49 h ago until 20 h ago, and again from 19 h ago
    token = _token(web)
    resp = web.post("/backtest", data={"csrf_token": token, "sla": YAML_SLA}, headers=HTMX)
    assert resp.status_code == 200, resp.text
    assert resp.text.lstrip().startswith('<div id="backtest-result"')  # only the block
    # never updated from 30 days ago + 1 h until 50 h ago, then the two stale episodes
    assert "would have fired <strong>3 times</strong> in the last 30 days" in resp.text
    assert resp.text.count("<tr><td>") == 3 and "no update since" in resp.text


def test_preview_accepts_json(web: TestClient) -> None:
    sla = '{"name": "x", "kind": "freshness", "target": "wh.none", "deadline": "0 9 * * *"}'
    resp = web.post("/backtest", data={"csrf_token": _token(web), "sla": sla}, headers=HTMX)
    assert resp.status_code == 200 and "would have fired <strong>30 times</strong>" in resp.text


def test_preview_of_an_invalid_sla_names_the_field(web: TestClient) -> None:
    token = _token(web)
    bad = YAML_SLA.replace("1h", "soon")
    resp = web.post("/backtest", data={"csrf_token": token, "sla": bad}, headers=HTMX)
    assert resp.status_code == 422 and "max_age:" in resp.text
    resp = web.post("/backtest", data={"csrf_token": token, "sla": "a: [b"}, headers=HTMX)
    assert resp.status_code == 422 and "not valid YAML or JSON" in resp.text


def test_preview_without_the_right_token_is_403(web: TestClient) -> None:
    _token(web)
    resp = web.post("/backtest", data={"csrf_token": "wrong", "sla": YAML_SLA}, headers=HTMX)
    assert resp.status_code == 403 and "security token did not match" in resp.text
    assert "would have fired" not in resp.text


def test_preview_without_htmx_is_the_whole_page(web: TestClient) -> None:
    resp = web.post("/backtest", data={"csrf_token": _token(web), "sla": YAML_SLA})
    assert resp.status_code == 200
    assert "<html" in resp.text and "would have fired" in resp.text
    assert "orders_fresh" in resp.text  # the textarea keeps what was written
