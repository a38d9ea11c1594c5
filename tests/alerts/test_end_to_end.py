"""Alerts end to end: a real `coplane server` process, real clients, local Slack/PagerDuty/Jira.

Each fake checks the documented request shapes (see tests/integrations); these tests check
what a team sees: one message per incident, its resolve in the same thread or dedup key, a
ticket for a failed check, nothing lost or doubled across rate limits, outages and replicas.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer, _clean_postgresql
from tests.fake_http import FakeService, Reply
from tests.integrations.test_jira import EMAIL, PROJECT, FakeJira
from tests.integrations.test_jira import TOKEN as JIRA_TOKEN
from tests.integrations.test_pagerduty import ROUTING_KEY, events_api
from tests.integrations.test_slack import TOKEN as SLACK_TOKEN
from tests.integrations.test_slack import body_of, slack_api

pytestmark = pytest.mark.slow

PIPELINE = "airflow.prod.sales_daily"


class Fakes:
    """The outside services, started for one test."""

    def __init__(self) -> None:
        self.slack = FakeService(slack_api).start()
        self.pagerduty = FakeService(events_api).start()
        self.jira_state = FakeJira()
        self.jira = FakeService(self.jira_state).start()

    def stop(self) -> None:
        for fake in (self.slack, self.pagerduty, self.jira):
            fake.stop()

    def slack_posts(self, ok_only: bool = True) -> list[dict[str, Any]]:
        """Top-level chat.postMessage bodies Slack accepted (or received, with ok_only off)."""
        return [
            body_of(r)
            for r in list(self.slack.requests)
            if r.path == "/api/chat.postMessage"
            and "thread_ts" not in body_of(r)
            and (not ok_only or r.answered == 200)
        ]

    def slack_calls(self, method: str) -> list[dict[str, Any]]:
        return [body_of(r) for r in list(self.slack.requests) if r.path == f"/api/{method}"]

    def pagerduty_events(self) -> list[dict[str, Any]]:
        return [r.json() for r in list(self.pagerduty.requests)]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'coplane.sqlite'}"


@pytest.fixture
def clean_pg_url(pg_url: str) -> str:
    _clean_postgresql(pg_url)
    return pg_url


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    f = Fakes()
    try:
        yield f
    finally:
        f.stop()


def write_config(path: Path, fakes: Fakes, slas: str) -> Path:
    path.write_text(
        f"""
channels:
  slack:
    type: slack
    token: {SLACK_TOKEN}
    channel: "#data-alerts"
    base_url: {fakes.slack.url}/api/
  pagerduty:
    type: pagerduty
    routing_key: {ROUTING_KEY}
    base_url: {fakes.pagerduty.url}
  jira:
    type: jira
    url: {fakes.jira.url}
    email: {EMAIL}
    api_token: {JIRA_TOKEN}
    project: {PROJECT}
    issue_type: Bug
slas:
{slas}
"""
    )
    return path


COMPLETION = """
  - name: sales_done
    kind: completion
    target: airflow.prod.sales_daily
    within: 2s
    severity: critical
    notify: [slack, pagerduty]
"""
QUALITY = """
  - name: sales_checks
    kind: quality
    target: "wh.*"
    notify: [jira]
"""


def send(server: LiveServer, name: str, resource: str, **extra: Any) -> None:
    event = {"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(), "event": name,
             "resource": {"id": resource}, **extra}  # fmt: skip
    resp = httpx.post(f"{server.url}/api/events", json=[event], timeout=10)
    assert resp.status_code == 202, resp.text


def run_event(server: LiveServer, name: str, run_id: str) -> None:
    send(server, name, PIPELINE, related=[{"role": "run", "id": run_id}])


def wait_for(what: Callable[[], Any], timeout: float = 15.0, message: str = "") -> Any:
    """Poll until `what()` is truthy; fail naming `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {message or what}")


def incidents(server: LiveServer) -> list[dict[str, Any]]:
    resp = httpx.get(f"{server.url}/api/incidents", timeout=10)
    return list(resp.json()["incidents"])


def server_with(db_url: str, tmp_path: Path, config: Path, **env: str) -> LiveServer:
    name = f"server-{uuid.uuid4().hex[:6]}.log"
    return LiveServer(db_url, tmp_path / name, config=config, env=env)


def test_breach_alerts_once_and_the_fix_resolves_in_the_same_thread(
    db_url: str, tmp_path: Path, fakes: Fakes
) -> None:
    config = write_config(tmp_path / "coplane.yaml", fakes, COMPLETION + QUALITY)
    server = server_with(db_url, tmp_path, config)
    server.start()
    try:
        run_event(server, "run.started", "r1")
        # due 2 s after the start: one Slack message and one PagerDuty trigger
        [post] = wait_for(fakes.slack_posts, message="the Slack alert")
        assert "sales_done" in post["text"] and "r1" in post["text"]
        assert "/incidents/" in post["text"]
        trigger = wait_for(fakes.pagerduty_events, message="the PagerDuty trigger")[0]
        assert trigger["event_action"] == "trigger"
        assert trigger["payload"]["severity"] == "critical"

        # a failed check on a warehouse table: a Jira ticket with the check's message
        failed = {"check": "not_null_order_id", "message": "12 rows with null order_id"}
        send(server, "check.failed", "wh.sales", payload=failed)
        wait_for(lambda: fakes.jira_state.issues, message="the Jira ticket")
        [ticket] = fakes.jira_state.issues.values()
        assert "sales_checks" in ticket.fields["summary"]

        # the run completes and the check passes: everything resolves where it was opened
        run_event(server, "run.completed", "r1")
        send(server, "check.passed", "wh.sales", payload={"check": "not_null_order_id"})
        updates = wait_for(lambda: fakes.slack_calls("chat.update"), message="the Slack edit")
        assert updates[0]["ts"] == post.get("ts", updates[0]["ts"])
        replies = wait_for(
            lambda: [b for b in fakes.slack_calls("chat.postMessage") if "thread_ts" in b],
            message="the resolve in the thread",
        )
        assert "Resolved" in replies[0]["text"]
        resolve = wait_for(
            lambda: [e for e in fakes.pagerduty_events() if e["event_action"] == "resolve"],
            message="the PagerDuty resolve",
        )[0]
        assert resolve["dedup_key"] == trigger["dedup_key"]
        wait_for(lambda: ticket.status == "Done", message="the ticket moving to done")
        assert len(ticket.comments) == 1
        # nothing was sent twice
        time.sleep(1.5)
        assert len(fakes.slack_posts()) == 1
        assert len(fakes.jira_state.issues) == 1
        assert [e["event_action"] for e in fakes.pagerduty_events()] == ["trigger", "resolve"]
        states = {i["sla"]: i for i in incidents(server)}
        assert all(i["resolved"] for i in states.values())
        slack_notes = [n for n in states["sales_done"]["notifications"] if n["channel"] == "slack"]
        assert [(n["action"], n["status"]) for n in slack_notes] == [
            ("trigger", "sent"),
            ("resolve", "sent"),
        ]
    finally:
        server.stop()


def test_slack_429_then_500_then_200_delivers_exactly_one_message(
    sqlite_url: str, tmp_path: Path, fakes: Fakes
) -> None:
    fakes.slack.script(
        Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
        Reply(500, b"upstream error", {"content-type": "text/plain"}),
    )
    config = write_config(tmp_path / "coplane.yaml", fakes, COMPLETION)
    server = server_with(sqlite_url, tmp_path, config, COPLANE_ALERTS_MAX_BACKOFF="3")
    server.start()
    try:
        run_event(server, "run.started", "r1")
        wait_for(
            lambda: [
                n
                for i in incidents(server)
                for n in i["notifications"]
                if n["channel"] == "slack" and n["status"] == "sent"
            ],
            message="the Slack alert to be delivered",
        )
        time.sleep(1.0)
        attempts = [r for r in fakes.slack.requests if r.path == "/api/chat.postMessage"]
        assert len(attempts) == 3  # 429, 500, then the one that was delivered
        [incident] = incidents(server)
        [slack] = [n for n in incident["notifications"] if n["channel"] == "slack"]
        assert (slack["attempts"], slack["last_error"]) == (3, None)
    finally:
        server.stop()


def test_an_alert_waits_out_a_notifier_down_for_a_minute(
    sqlite_url: str, tmp_path: Path, fakes: Fakes
) -> None:
    port = int(fakes.slack.url.rsplit(":", 1)[1])
    config = write_config(tmp_path / "coplane.yaml", fakes, COMPLETION)
    fakes.slack.stop()  # Slack is unreachable: connections are refused
    server = server_with(sqlite_url, tmp_path, config, COPLANE_ALERTS_MAX_BACKOFF="5")
    server.start()
    try:
        run_event(server, "run.started", "r1")
        down_until = time.monotonic() + 60
        failing = wait_for(
            lambda: [
                n
                for i in incidents(server)
                for n in i["notifications"]
                if n["channel"] == "slack" and n["attempts"] > 0
            ],
            message="a failed delivery",
        )
        assert (
            "could not be reached" in (failing[0]["last_error"] or "") or failing[0]["last_error"]
        )
        time.sleep(max(0.0, down_until - time.monotonic()))
        fakes.slack.start(port)  # back, on the same address
        [post] = wait_for(fakes.slack_posts, timeout=20, message="the alert after the outage")
        assert "sales_done" in post["text"]
        time.sleep(1.0)
        assert len(fakes.slack_posts()) == 1
    finally:
        server.stop()


@pytest.mark.postgresql
def test_two_servers_on_one_postgresql_send_one_alert_and_take_over(
    clean_pg_url: str, tmp_path: Path, fakes: Fakes
) -> None:
    config = write_config(tmp_path / "coplane.yaml", fakes, COMPLETION)
    first = server_with(clean_pg_url, tmp_path, config)
    second = server_with(clean_pg_url, tmp_path, config)
    first.start()
    second.start()
    try:
        run_event(second, "run.started", "r1")  # ingested by either replica
        wait_for(fakes.slack_posts, message="the alert")
        time.sleep(2.0)
        assert len(fakes.slack_posts()) == 1
        assert len([e for e in fakes.pagerduty_events() if e["event_action"] == "trigger"]) == 1

        # the replica that leads dies without a goodbye; the other takes over
        first.kill()
        run_event(second, "run.started", "r2")
        started = time.monotonic()
        wait_for(lambda: len(fakes.slack_posts()) == 2, timeout=15, message="the second alert")
        assert time.monotonic() - started < 12  # 2 s due, at most ~2 s to take over, delivery
        assert {p["text"].count("r2") > 0 for p in fakes.slack_posts()} == {True, False}
    finally:
        first.stop()
        second.stop()


def test_a_deadline_passed_while_the_server_was_down_is_raised_at_start_up(
    db_url: str, tmp_path: Path, fakes: Fakes
) -> None:
    config = write_config(tmp_path / "coplane.yaml", fakes, COMPLETION)
    server = server_with(db_url, tmp_path, config)
    server.start()
    try:
        run_event(server, "run.started", "r1")
        server.stop()  # down before the run is due
        time.sleep(3.0)
        assert fakes.slack_posts() == []
        server.start()
        [post] = wait_for(fakes.slack_posts, message="the alert raised at start-up")
        assert "r1" in post["text"]
    finally:
        server.stop()


WARNED = """
  - name: sales_warned
    kind: completion
    target: airflow.prod.sales_daily
    within: {within}
    warn_at_risk: true
    notify: [slack, pagerduty]
"""


def past_runs(server: LiveServer, minutes: int) -> None:
    """Three completed runs of `minutes` each, over the last hours: what forecasts read. One
    batch: a start stored without its end would be a run still running, past its deadline."""
    now = datetime.now(UTC)
    events = []
    for n in range(3):
        started = now - timedelta(hours=n + 1)
        ended = started + timedelta(minutes=minutes)
        for name, at in (("run.started", started), ("run.completed", ended)):
            events.append({"id": str(uuid.uuid4()), "occurred": at.isoformat(), "event": name,
                           "resource": {"id": PIPELINE},
                           "related": [{"role": "run", "id": f"h{n}"}]})  # fmt: skip
    resp = httpx.post(f"{server.url}/api/events", json=events, timeout=10)
    assert resp.status_code == 202, resp.text


def test_an_early_warning_then_its_breach_in_the_same_slack_thread(
    db_url: str, tmp_path: Path, fakes: Fakes
) -> None:
    # due 2 s after the start, but runs take 10 minutes: at risk from the start
    config = write_config(tmp_path / "coplane.yaml", fakes, WARNED.format(within="2s"))
    server = server_with(db_url, tmp_path, config)
    server.start()
    try:
        past_runs(server, 10)
        run_event(server, "run.started", "r1")
        [warn] = wait_for(fakes.slack_posts, message="the early warning")
        assert warn["text"].startswith("Early warning: sales_warned: run r1")
        reply = wait_for(
            lambda: [b for b in fakes.slack_calls("chat.postMessage") if "thread_ts" in b],
            message="the breach in the warning's thread",
        )[0]
        assert "sales_warned: run r1" in reply["text"] and "still running" in reply["text"]
        [edit] = fakes.slack_calls("chat.update")
        assert edit["text"].startswith("Turned into a breach")
        time.sleep(1.0)
        assert len(fakes.slack_posts()) == 1  # one top-level message: the warning
        # PagerDuty heard of the breach only
        assert [e["event_action"] for e in fakes.pagerduty_events()] == ["trigger"]
        [incident] = incidents(server)
        assert incident["sla"] == "sales_warned"
    finally:
        server.stop()


def test_an_early_warning_met_in_time_is_resolved_in_its_thread(
    db_url: str, tmp_path: Path, fakes: Fakes
) -> None:
    # due 10 minutes after the start, but runs take 20: at risk; this one is quick
    config = write_config(tmp_path / "coplane.yaml", fakes, WARNED.format(within="10m"))
    server = server_with(db_url, tmp_path, config)
    server.start()
    try:
        past_runs(server, 20)
        run_event(server, "run.started", "r1")
        wait_for(fakes.slack_posts, message="the early warning")
        run_event(server, "run.completed", "r1")
        [edit] = wait_for(lambda: fakes.slack_calls("chat.update"), message="the warning's edit")
        assert edit["text"].startswith("Met in time: sales_warned made its deadline")
        time.sleep(1.0)
        assert len(fakes.slack_posts()) == 1
        assert fakes.pagerduty_events() == [] and incidents(server) == []
    finally:
        server.stop()
