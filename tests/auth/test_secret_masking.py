"""A real server with credentials from the store, the environment and a file, and services
that echo them back in their errors: no credential shows in any output a user can see, and
no answer's body is kept as a channel's error."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from coplane.integrations.webhook.notifier import verify_signature
from tests.alerts.test_end_to_end import wait_for
from tests.conftest import LiveServer
from tests.fake_http import FakeService, Reply, Request

pytestmark = pytest.mark.slow

SLACK_TOKEN = "xoxb-4242-stored-through-the-api"
SIGNING = "whsec-stored-signing-secret-77"
HOOK_TOKEN = "hook-bearer-from-a-mounted-file-88"
ENV_ROUTING = "pd-routing-key-from-the-env-99"
PIPELINE = "airflow.prod.sales_daily"
SECRET_KEY = Fernet.generate_key().decode()
CREDENTIALS = (SLACK_TOKEN, SIGNING, HOOK_TOKEN, ENV_ROUTING, SECRET_KEY)


def echoing_hook(request: Request) -> Reply:
    """A receiver that refuses, quoting the credentials it got: the worst case."""
    auth = request.headers.get("authorization", "")
    return Reply(400, {"error": f"rejected {auth}"})


def echoing_slack(request: Request) -> Reply:
    return Reply(200, {"ok": False, "error": f"invalid_auth: {request.headers['authorization']}"})


def echoing_pagerduty(request: Request) -> Reply:
    return Reply(400, {"status": "invalid", "message": f"bad key {request.json()['routing_key']}"})


@pytest.fixture
def fakes() -> Iterator[tuple[FakeService, FakeService, FakeService]]:
    hook = FakeService(echoing_hook).start()
    slack = FakeService(echoing_slack).start()
    pagerduty = FakeService(echoing_pagerduty).start()
    yield hook, slack, pagerduty
    for fake in (hook, slack, pagerduty):
        fake.stop()


def test_no_credential_shows_in_logs_answers_pages_or_errors(
    db_url: str, tmp_path: Path, fakes: tuple[FakeService, FakeService, FakeService]
) -> None:
    hook, slack, pagerduty = fakes
    token_file = tmp_path / "hook-token"
    token_file.write_text(HOOK_TOKEN + "\n")
    config = tmp_path / "coplane.yaml"
    config.write_text(
        f"""
channels:
  hook:
    type: webhook
    url: {hook.url}/hook
    secret: ${{secret:hook-signing}}
    headers:
      Authorization: "Bearer ${{HOOK_TOKEN}}"
  slack:
    type: slack
    token: ${{secret:slack-token}}
    channel: "#alerts"
    base_url: {slack.url}/api/
  pagerduty:
    type: pagerduty
    routing_key: ${{PD_ROUTING}}
    base_url: {pagerduty.url}
slas:
  - name: sales_done
    kind: completion
    target: {PIPELINE}
    within: 1s
    notify: [hook, slack, pagerduty]
"""
    )
    env = {
        "COPLANE_SECRET_KEY": SECRET_KEY,
        "HOOK_TOKEN_FILE": str(token_file),
        "PD_ROUTING": ENV_ROUTING,
        "COPLANE_LOG_LEVEL": "debug",  # the access log too
    }
    server = LiveServer(db_url, tmp_path / "server.log", config=config, env=env)
    server.start()
    try:
        for name, value in (("slack-token", SLACK_TOKEN), ("hook-signing", SIGNING)):
            resp = httpx.put(f"{server.url}/api/secrets/{name}", json={"value": value})
            assert resp.status_code == 201, resp.text
        event = {"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(),
                 "event": "run.started", "resource": {"id": PIPELINE},
                 "related": [{"role": "run", "id": "r1"}]}  # fmt: skip
        assert httpx.post(f"{server.url}/api/events", json=[event]).status_code == 202

        def channels_disabled() -> list[dict[str, str]] | None:
            channels = httpx.get(f"{server.url}/api/channels").json()["channels"]
            done = all(c["status"] == "disabled" for c in channels)
            return channels if done and len(channels) == 3 else None

        channels = wait_for(channels_disabled, 30, "all three channels to refuse")
        # the services did get the credentials, resolved from the store, env and file
        [sent] = hook.requests
        assert sent.headers["authorization"] == f"Bearer {HOOK_TOKEN}"
        assert verify_signature(
            SIGNING,
            sent.headers["x-coplane-timestamp"],
            sent.body,
            sent.headers["x-coplane-signature"],
        )
        assert slack.requests[0].headers["authorization"] == f"Bearer {SLACK_TOKEN}"
        # ...and echoed them: coplane kept the status of each answer, never its body
        errors = {c["name"]: c["last_error"] for c in channels}
        assert errors == {
            "hook": "Webhook answered 400 Bad Request",
            "pagerduty": "PagerDuty answered 400 Bad Request",
            "slack": "Slack chat.postMessage failed: no error code",
        }

        [incident] = httpx.get(f"{server.url}/api/incidents").json()["incidents"]
        outputs = {
            path: httpx.get(server.url + path).text
            for path in (
                "/api/channels",
                "/api/incidents",
                "/api/secrets",
                "/api/slas",
                "/api/events?limit=100",
                "/api/runs",
                "/openapi.json",
                "/",
                "/incidents",
                f"/incidents/{incident['id']}",
                "/slas",
                "/slas/sales_done",
                "/events",
            )
        }
        cli_env = {**os.environ, **env, "COPLANE_DATABASE_URL": db_url}
        for args in (["alerts", "test", "hook", "--config", str(config)], ["secrets", "list"]):
            done = subprocess.run(
                [sys.executable, "-m", "coplane", *args],
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            outputs[" ".join(args)] = done.stdout + done.stderr
        tested = outputs["alerts test hook --config " + str(config)]
        assert "hook: Webhook answered 400 Bad Request" in tested and "rejected" not in tested
    finally:
        server.stop()
    outputs["server log"] = server.log_path.read_text()
    assert "/api/secrets/slack-token" in outputs["server log"]  # the access log was on
    for where, text in outputs.items():
        for credential in CREDENTIALS:
            assert credential not in text, f"{credential!r} shows in {where}"
