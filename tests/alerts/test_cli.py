"""`coplane slas list`, `coplane incidents list` and `coplane alerts test` as a user types them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from typer.testing import CliRunner

from coplane.cli import app
from tests.conftest import LiveServer, free_port
from tests.fake_http import FakeService, Reply, Request

runner = CliRunner()

SLA = {"name": "sales_done", "kind": "completion", "target": "p.sales", "within": "1s"}


def test_slas_and_incidents_list(live_server: LiveServer) -> None:
    assert httpx.post(f"{live_server.url}/api/slas", json=SLA, timeout=10).status_code == 201
    started = {"occurred": datetime.now(UTC).isoformat(), "event": "run.started",
               "resource": {"id": "p.sales"}, "related": [{"role": "run", "id": "r1"}]}  # fmt: skip
    assert httpx.post(f"{live_server.url}/api/events", json=[started]).status_code == 202
    result = runner.invoke(app, ["slas", "list", "--server", live_server.url])
    assert result.exit_code == 0, result.output
    assert "sales_done" in result.output and "completion" in result.output
    assert "1 SLAs" in result.output

    for _ in range(100):  # the engine evaluates within a second of the ingest
        listed = runner.invoke(app, ["incidents", "list", "--server", live_server.url])
        if "1 incidents" in listed.output:
            break
        time.sleep(0.1)
    assert listed.exit_code == 0, listed.output
    assert "sales_done" in listed.output and "r1" in listed.output and "open" in listed.output
    as_json = runner.invoke(app, ["incidents", "list", "--state", "open", "--json",
                                  "--server", live_server.url])  # fmt: skip
    assert '"sla": "sales_done"' in as_json.output


def test_lists_name_an_unreachable_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["incidents", "list", "--server", url])
    assert result.exit_code == 1
    assert f"cannot reach {url}/api/incidents" in result.output


def test_incidents_list_refuses_an_unknown_state() -> None:
    result = runner.invoke(app, ["incidents", "list", "--state", "closed"])
    assert result.exit_code == 2 and "--state 'closed'" in result.output


def config_with_webhook(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "coplane.yaml"
    path.write_text(f"channels:\n  ops:\n    type: webhook\n    url: {url}/hook\n")
    return path


def test_alerts_test_sends_a_test_message(tmp_path: Path) -> None:
    def hook(request: Request) -> Reply:
        assert request.path == "/hook"
        return Reply(200, {})

    with FakeService(hook) as fake:
        config = config_with_webhook(tmp_path, fake.url)
        result = runner.invoke(app, ["alerts", "test", "ops", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert "ops: test alert delivered" in result.output
        [sent] = fake.requests
        assert sent.json()["test"] is True


def test_alerts_test_reports_a_refusing_channel(tmp_path: Path) -> None:
    with FakeService(lambda request: Reply(410, {"error": "gone"})) as fake:
        config = config_with_webhook(tmp_path, fake.url)
        result = runner.invoke(app, ["alerts", "test", "ops", "--config", str(config)])
    assert result.exit_code == 1
    assert "ops:" in result.output and "410" in result.output and "(permanent)" in result.output


def test_alerts_test_names_unknown_channels_and_missing_config(tmp_path: Path) -> None:
    config = config_with_webhook(tmp_path, "http://127.0.0.1:9")
    result = runner.invoke(app, ["alerts", "test", "slack", "--config", str(config)])
    assert result.exit_code == 2
    assert "no channel named 'slack' (ops)" in result.output
    result = runner.invoke(app, ["alerts", "test", "ops"], env={"COPLANE_CONFIG": ""})
    assert result.exit_code == 2 and "--config" in result.output
