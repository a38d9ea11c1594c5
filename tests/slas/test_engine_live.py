"""A real server with a config file: the engine wakes at the deadline by itself, and recovers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    config = tmp_path / "coplane.yaml"
    config.write_text(
        "slas:\n"
        "  - name: orders_fresh\n"
        "    kind: freshness\n"
        "    target: wh.orders\n"
        "    max_age: 2s\n"
    )
    monkeypatch.setenv("COPLANE_CONFIG", str(config))
    s = LiveServer(db_url, tmp_path / "server.log")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _update(url: str) -> None:
    body = {"occurred": datetime.now(UTC).isoformat(), "event": "asset.updated",
            "resource": {"id": "wh.orders"}}  # fmt: skip
    assert httpx.post(f"{url}/api/events", json=body).status_code == 202


def _wait(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"no {what} within {seconds} s")


def test_stale_asset_opens_an_incident_then_an_update_resolves_it(server: LiveServer) -> None:
    _update(server.url)
    [sla] = httpx.get(f"{server.url}/api/slas").json()["slas"]
    assert sla["name"] == "orders_fresh" and sla["origin"] == "file"

    def open_incidents() -> list[dict[str, Any]]:
        r = httpx.get(f"{server.url}/api/incidents", params={"state": "open"})
        incidents: list[dict[str, Any]] = r.json()["incidents"]
        return incidents

    # nothing is sent: the engine wakes at last update + 2 s on its own
    [incident] = _wait(open_incidents, "incident")
    assert incident["sla"] == "orders_fresh"
    assert "wh.orders" in incident["reason"] or "orders_fresh" in incident["reason"]
    status = httpx.get(f"{server.url}/api/slas/orders_fresh").json()["status"]
    assert status == "breached"

    _update(server.url)  # fresh again: the ingest wakes the engine, which resolves it
    _wait(lambda: not open_incidents(), "resolution")
    resolved = httpx.get(f"{server.url}/api/incidents", params={"state": "resolved"}).json()
    assert [i["id"] for i in resolved["incidents"]] == [incident["id"]]


def test_reload_names_the_line_and_keeps_the_slas_loaded(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Path(os.environ["COPLANE_CONFIG"])
    config.write_text("slas:\n  - name: broken\n    kind: freshness\n    target: t\n")
    bad = httpx.post(f"{server.url}/api/slas/reload")
    assert bad.status_code == 422
    assert ":2:" in bad.json()["detail"] or ":3:" in bad.json()["detail"]
    names = [s["name"] for s in httpx.get(f"{server.url}/api/slas").json()["slas"]]
    assert names == ["orders_fresh"]  # still the SLAs of the last good file

    config.write_text(
        "slas:\n  - name: other\n    kind: freshness\n    target: t\n    max_age: 1h\n"
    )
    good = httpx.post(f"{server.url}/api/slas/reload")
    assert good.status_code == 200 and good.json()["evaluated"] == 1
    names = [s["name"] for s in httpx.get(f"{server.url}/api/slas").json()["slas"]]
    assert names == ["other"]


def test_sighup_reloads_the_config_file(server: LiveServer) -> None:
    config = Path(os.environ["COPLANE_CONFIG"])
    config.write_text(
        "slas:\n  - name: after_hup\n    kind: freshness\n    target: t\n    max_age: 1h\n"
    )
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)

    def names() -> list[str]:
        return [s["name"] for s in httpx.get(f"{server.url}/api/slas").json()["slas"]]

    assert _wait(lambda: names() == ["after_hup"], "reload after SIGHUP")
    assert server.process.poll() is None  # reloaded, not stopped
