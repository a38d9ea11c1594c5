"""The server's log: a line per decision, JSON when asked, request ids, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from coplane.auth.keys import create_key
from coplane.http.request_ids import RequestIds
from coplane.logs import JsonFormatter, TextFormatter, decision
from coplane.security.fernet import generate_key
from coplane.store.migrate import migrated_connection
from tests.alerts.test_end_to_end import wait_for
from tests.conftest import LiveServer
from tests.fake_http import FakeService
from tests.integrations.test_slack import TOKEN as SLACK_TOKEN
from tests.integrations.test_slack import body_of, slack_api


def record(message: str, **fields: Any) -> logging.LogRecord:
    rec = logging.LogRecord("coplane.test", logging.WARNING, __file__, 1, message, None, None)
    rec.__dict__.update(fields)
    return rec


def test_json_lines_carry_the_decision_and_its_fields() -> None:
    line = JsonFormatter().format(
        record("incident 1 opened", decision="incident.opened", sla="sales_fresh", incident="1")
    )
    body = json.loads(line)
    assert body["level"] == "warning" and body["logger"] == "coplane.test"
    assert body["message"] == "incident 1 opened"
    assert (body["decision"], body["sla"], body["incident"]) == (
        "incident.opened",
        "sales_fresh",
        "1",
    )
    assert body["time"].endswith("Z")


def test_text_lines_show_fields_as_key_value_pairs() -> None:
    line = TextFormatter().format(record("alert sent", channel="slack data", attempt=2))
    assert line.endswith('WARNING coplane.test: alert sent channel="slack data" attempt=2')


def test_a_credential_in_a_field_is_masked_too() -> None:
    line = JsonFormatter().format(record("x", url="postgresql://u:s3cretpw@db/coplane"))
    assert "s3cretpw" not in line


def test_decision_logs_through_the_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="coplane.test"):
        decision(logging.getLogger("coplane.test"), "config.reloaded", "reloaded", slas=3)
    [rec] = caplog.records
    assert rec.__dict__["decision"] == "config.reloaded" and rec.__dict__["slas"] == 3


@pytest.fixture
def failing_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestIds)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/fine")
    def fine() -> dict[str, str]:
        logging.getLogger("coplane.test").warning("inside the request")
        return {}

    return app


def test_a_failed_request_is_logged_with_its_request_id(
    failing_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(failing_app, raise_server_exceptions=False) as client:
        answer = client.get("/boom", headers={"X-Request-ID": "req-12345678"})
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "req-12345678"
    assert "req-12345678" in answer.json()["detail"]
    [failed] = [r for r in caplog.records if r.name == "coplane.http.request_ids"]
    assert "GET /boom failed" in failed.getMessage() and failed.exc_info is not None
    assert json.loads(JsonFormatter().format(failed))["request_id"] == "req-12345678"


def test_lines_logged_while_serving_carry_the_id_and_odd_ids_are_replaced(
    failing_app: FastAPI,
) -> None:
    written = io.StringIO()
    handler = logging.StreamHandler(written)  # formats as the server's handler does: at once
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("coplane.test")
    logger.addHandler(handler)
    try:
        with TestClient(failing_app) as client:
            answer = client.get("/fine", headers={"X-Request-ID": "no spaces\tor tabs allowed"})
    finally:
        logger.removeHandler(handler)
    rid = answer.headers["x-request-id"]
    assert rid != "no spaces\tor tabs allowed" and len(rid) == 16
    assert f"inside the request request_id={rid}" in written.getvalue()


# --- end to end: a server process, a breach alerting a local Slack, its resolve -------------

SLAS = """
channels:
  slack:
    type: slack
    token: {token}
    channel: "#data-alerts"
    base_url: {slack}/api/
slas:
  - name: nightly_export_done
    kind: completion
    target: cron.nightly_export
    within: 2s
    notify: [slack]
"""


@pytest.fixture
def slack() -> Iterator[FakeService]:
    fake = FakeService(slack_api).start()
    try:
        yield fake
    finally:
        fake.stop()


def with_password(url: str, password: str) -> str:
    """The PostgreSQL URL with a user and password (the test server trusts any password)."""
    scheme, rest = url.split("://", 1)
    with psycopg.connect(url) as conn:
        user = conn.info.user
    return f"{scheme}://{user}:{password}@{rest.rsplit('@', 1)[-1]}"


@pytest.mark.slow
def test_a_full_run_logs_each_decision_and_no_secret(
    db_url: str, tmp_path: Path, slack: FakeService
) -> None:
    secrets = {"slack token": SLACK_TOKEN, "secret key": generate_key()}
    if db_url.startswith("postgresql"):
        secrets["database password"] = "pg-pass-Zq81x"
        db_url = with_password(db_url, secrets["database password"])
    with migrated_connection(db_url) as conn:
        _, api_key = create_key(conn, "e2e", ["ingest", "read", "admin"])
    secrets["API key"] = api_key
    config = tmp_path / "coplane.yaml"
    config.write_text(SLAS.format(token=SLACK_TOKEN, slack=slack.url))
    env = {
        "COPLANE_LOG_FORMAT": "json",
        "COPLANE_AUTH": "keys",
        "COPLANE_SECRET_KEY": secrets["secret key"],
    }
    server = LiveServer(db_url, tmp_path / "server.log", config=config, env=env)
    headers = {"Authorization": f"Bearer {api_key}"}

    def send(name: str, request_id: str | None = None, **over: Any) -> httpx.Response:
        event = {"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(),
                 "event": name, "resource": {"id": "cron.nightly_export"},
                 "related": [{"role": "run", "id": "r1"}], **over}  # fmt: skip
        extra = {"X-Request-ID": request_id} if request_id else {}
        return httpx.post(
            f"{server.url}/api/events", json=[event], headers=headers | extra, timeout=10
        )

    server.start()
    try:
        assert send("run.started").status_code == 202
        wait_for(
            lambda: [r for r in slack.requests if r.path == "/api/chat.postMessage"],
            message="the Slack alert",
        )
        refused = send("run.completed", request_id="e2e-naive-time", occurred="2026-12-04T08:00:00")
        assert refused.status_code == 422
        assert send("run.completed").status_code == 202
        wait_for(
            lambda: [r for r in slack.requests if "thread_ts" in body_of(r)],
            message="the resolve in the thread",
        )
        time.sleep(0.5)  # the resolve's own log line follows its delivery
    finally:
        server.stop()

    log = server.log_path.read_text()
    for what, secret in secrets.items():
        assert secret not in log, f"the {what} is in the server log"
    lines = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    decisions = [line.get("decision") for line in lines]
    for expected in ("incident.opened", "alert.sent", "incident.resolved"):
        assert expected in decisions, f"no {expected} line in {decisions}"
    sent = [line for line in lines if line.get("decision") == "alert.sent"]
    assert {line["action"] for line in sent} == {"trigger", "resolve"}
    assert all(line["channel"] == "slack" and line["incident"] for line in sent)
    messages = [line["message"] for line in lines]
    assert any(m.startswith("SLAs: 1 (1 from") for m in messages)
    assert "channels: slack (slack)" in messages
    assert any(m.startswith("auth: keys") for m in messages)
    [refusal] = [line for line in lines if line.get("request_id") == "e2e-naive-time"]
    assert "422" in refusal["message"] and "add Z or an offset" in refusal["message"]
