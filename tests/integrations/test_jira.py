"""The Jira channel against a fake Jira Cloud that checks the documented request shapes."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from coplane.alerts.notifier import Action, Alert, IntegrationError
from coplane.integrations.jira.config import JiraChannel
from coplane.integrations.jira.notifier import JiraNotifier, build, incident_label
from tests.fake_http import FakeService, Reply, Request

EMAIL = "bot@example.com"
TOKEN = "jira-api-token"
PROJECT = "DATA"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
INCIDENT = "0b9e2c1e-6a57-4f55-9a57-0a0c2b3e4f11"


def make_alert(action: Action = "trigger", **changes: Any) -> Alert:
    """An alert about a breached quality SLA; `changes` override any field."""
    alert = Alert(
        action=action,
        channel="tickets",
        incident_id=INCIDENT,
        sla="orders_valid",
        kind="quality",
        severity="warning",
        reason="check not_null(order_id) failed on warehouse.orders",
        resource="warehouse.orders",
        affected=["dashboards.revenue"],
        due=NOW - timedelta(minutes=5),
        opened=NOW,
        url="https://coplane.example.com/incidents/0b9e2c1e",
        owners=["data-team"],
    )
    return replace(alert, **changes)


def texts(node: Any) -> list[str]:
    """Every text in an ADF node, in order."""
    if isinstance(node, dict):
        own = [node["text"]] if node.get("type") == "text" else []
        return own + texts(node.get("content", []))
    if isinstance(node, list):
        return [t for child in node for t in texts(child)]
    return []


def links(node: Any) -> list[str]:
    """Every link target in an ADF node."""
    if isinstance(node, dict):
        own = [m["attrs"]["href"] for m in node.get("marks", []) if m.get("type") == "link"]
        return own + links(node.get("content", []))
    if isinstance(node, list):
        return [href for child in node for href in links(child)]
    return []


def check_adf(doc: Any) -> None:
    assert isinstance(doc, dict), doc
    assert doc.get("type") == "doc" and doc.get("version") == 1, doc
    assert isinstance(doc.get("content"), list) and doc["content"], doc
    for node in doc["content"]:
        assert node["type"] in ("paragraph", "bulletList"), node
    assert all(t for t in texts(doc)), "ADF text nodes must not be empty"


@dataclass
class Issue:
    id: str
    key: str
    fields: dict[str, Any]
    status: str = "To Do"
    comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeJira:
    """Jira Cloud REST v3, as far as the channel uses it."""

    transitions: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {"id": "21", "name": "Start", "to": {"statusCategory": {"key": "indeterminate"}}},
            {"id": "31", "name": "Done", "to": {"statusCategory": {"key": "done"}}},
        ]
    )
    issues: dict[str, Issue] = field(default_factory=dict)
    slow_create: float = 0.0  # seconds the first create takes after storing the issue
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, req: Request) -> Reply:
        expected = base64.b64encode(f"{EMAIL}:{TOKEN}".encode()).decode()
        if req.headers.get("authorization") != f"Basic {expected}":
            return Reply(401, {"errorMessages": ["Client must be authenticated"]})
        route = (req.method, req.path)
        if route == ("GET", "/rest/api/3/myself"):
            return Reply(200, {"accountId": "5b10a2844c20165700ede21g", "emailAddress": EMAIL})
        if req.method == "GET" and req.path.startswith("/rest/api/3/project/"):
            if req.path.rsplit("/", 1)[1] != PROJECT:
                return Reply(404, {"errorMessages": ["No project could be found."]})
            return Reply(200, {"id": "10000", "key": PROJECT})
        if route == ("POST", "/rest/api/3/issue"):
            return self.create(req.json())
        if route == ("POST", "/rest/api/3/search/jql"):
            return self.search(req.json())
        parts = req.path.split("/")  # '', rest, api, 3, issue, KEY, what
        if len(parts) == 7 and parts[:5] == ["", "rest", "api", "3", "issue"]:
            issue = self.issues.get(parts[5])
            if issue is None:
                return Reply(404, {"errorMessages": ["Issue does not exist"]})
            if (req.method, parts[6]) == ("POST", "comment"):
                check_adf(req.json()["body"])
                issue.comments.append(req.json()["body"])
                return Reply(201, {"id": str(10000 + len(issue.comments))})
            if (req.method, parts[6]) == ("GET", "transitions"):
                return Reply(200, {"transitions": self.transitions})
            if (req.method, parts[6]) == ("POST", "transitions"):
                wanted = req.json()["transition"]["id"]
                chosen = [t for t in self.transitions if t["id"] == wanted]
                assert chosen, f"no transition {wanted}"
                issue.status = chosen[0]["name"]
                return Reply(204, b"")
        return Reply(404, {"errorMessages": [f"no route {req.method} {req.path}"]})

    def create(self, body: dict[str, Any]) -> Reply:
        fields = body["fields"]
        assert fields["project"] == {"key": PROJECT}, fields["project"]
        assert fields["issuetype"] == {"name": "Bug"}, fields["issuetype"]
        assert isinstance(fields["summary"], str) and 0 < len(fields["summary"]) <= 255
        assert "\n" not in fields["summary"]
        assert all(isinstance(x, str) and " " not in x for x in fields["labels"])
        check_adf(fields["description"])
        with self._lock:
            number = len(self.issues) + 1
            issue = Issue(str(10000 + number), f"{PROJECT}-{number}", fields)
            self.issues[issue.key] = issue
            slow, self.slow_create = self.slow_create, 0.0
        if slow:
            time.sleep(slow)
        return Reply(201, {"id": issue.id, "key": issue.key, "self": f"/issue/{issue.id}"})

    def search(self, body: dict[str, Any]) -> Reply:
        assert body["fields"] == ["key"] and body["maxResults"] == 1, body
        prefix, label = 'labels = "', body["jql"]
        assert label.startswith(prefix) and label.endswith('"'), label
        label = label[len(prefix) : -1]
        found = [i for i in self.issues.values() if label in i.fields["labels"]]
        return Reply(200, {"issues": [{"id": i.id, "key": i.key} for i in found[:1]]})


@pytest.fixture
def jira() -> Iterator[tuple[FakeJira, FakeService]]:
    fake = FakeJira()
    with FakeService(fake) as service:
        yield fake, service


@pytest.fixture
def notifier(jira: tuple[FakeJira, FakeService]) -> Iterator[JiraNotifier]:
    config = JiraChannel(
        type="jira",
        url=jira[1].url + "/",
        email=EMAIL,
        api_token=TOKEN,
        project=PROJECT,
        issue_type="Bug",
        labels=["data-quality"],
    )
    channel = build(config)
    yield channel
    channel.close()


def test_quality_incident_opens_one_ticket_with_reason_and_link(
    jira: tuple[FakeJira, FakeService], notifier: JiraNotifier
) -> None:
    fake, service = jira
    alert = make_alert()
    assert notifier.wants(alert)

    thread = notifier.send(alert)

    assert list(fake.issues) == ["DATA-1"]
    issue = fake.issues["DATA-1"]
    assert thread == {"key": "DATA-1", "id": issue.id, "url": f"{service.url}/browse/DATA-1"}
    assert issue.fields["summary"] == "[warning] orders_valid breached"
    words = " ".join(texts(issue.fields["description"]))
    assert alert.reason in words and "warehouse.orders" in words and "data-team" in words
    assert links(issue.fields["description"]) == [alert.url]
    label = "coplane-incident-0b9e2c1e6a574f559a570a0c2b3e4f11"
    assert issue.fields["labels"] == ["data-quality", "coplane", label]
    assert incident_label(INCIDENT) == label
    assert not any(r.path.endswith("/search/jql") for r in service.requests)  # first attempt


def test_which_alerts_are_wanted(notifier: JiraNotifier) -> None:
    assert not notifier.wants(make_alert(kind="freshness", severity="warning"))
    assert notifier.wants(make_alert(kind="freshness", severity="critical"))
    assert notifier.wants(make_alert(kind="quality", severity="info"))
    assert not notifier.wants(make_alert("resolve", thread=None))
    assert not notifier.wants(make_alert("repeat", thread={"channel": "C1", "ts": "1.2"}))
    assert notifier.wants(make_alert("resolve", thread={"key": "DATA-1"}))
    assert notifier.wants(make_alert("test", kind="freshness", severity="info"))


def test_resolve_comments_and_moves_the_ticket_to_done(
    jira: tuple[FakeJira, FakeService], notifier: JiraNotifier
) -> None:
    fake, _ = jira
    thread = notifier.send(make_alert())
    assert thread is not None

    repeat = notifier.send(make_alert("repeat", thread=thread))
    assert fake.issues["DATA-1"].status == "To Do"
    resolved = make_alert("resolve", thread=thread, resolved=NOW + timedelta(hours=1))
    answer = notifier.send(resolved)

    issue = fake.issues["DATA-1"]
    assert issue.status == "Done"  # the transition into the done category, not the first one
    assert len(issue.comments) == 2
    assert "Still open" in " ".join(texts(issue.comments[0]))
    assert "Resolved" in " ".join(texts(issue.comments[1]))
    assert repeat == {"key": "DATA-1", "comment": "10001"}
    assert answer == {"key": "DATA-1", "comment": "10002", "transition": "31"}


def test_resolve_without_a_done_transition_only_comments(
    jira: tuple[FakeJira, FakeService], notifier: JiraNotifier
) -> None:
    fake, service = jira
    fake.transitions = [t for t in fake.transitions if t["id"] != "31"]
    thread = notifier.send(make_alert())

    answer = notifier.send(make_alert("resolve", thread=thread))

    assert fake.issues["DATA-1"].status == "To Do"
    assert len(fake.issues["DATA-1"].comments) == 1
    assert answer is not None and answer["transition"] is None
    assert not [r for r in service.requests if r.method == "POST" and "transitions" in r.path]


def test_retry_after_a_timeout_reuses_the_ticket_the_first_try_created(
    jira: tuple[FakeJira, FakeService], notifier: JiraNotifier
) -> None:
    fake, _ = jira
    fake.slow_create = 1.0
    notifier.client.timeout = httpx.Timeout(0.3)

    with pytest.raises(IntegrationError) as failed:
        notifier.send(make_alert())
    assert not failed.value.permanent

    thread = notifier.send(make_alert(attempt=1))

    assert list(fake.issues) == ["DATA-1"]
    assert thread is not None and thread["key"] == "DATA-1"


def test_retry_creates_the_ticket_when_the_first_try_did_not(
    jira: tuple[FakeJira, FakeService], notifier: JiraNotifier
) -> None:
    fake, service = jira
    service.script(Reply(503, {"errorMessages": ["down"]}))
    with pytest.raises(IntegrationError):
        notifier.send(make_alert())

    thread = notifier.send(make_alert(attempt=1))

    assert list(fake.issues) == ["DATA-1"] and thread is not None and thread["key"] == "DATA-1"


def test_test_alert_checks_access_and_creates_nothing(
    jira: tuple[FakeJira, FakeService], notifier: JiraNotifier
) -> None:
    fake, service = jira
    assert notifier.send(make_alert("test")) == {"checked": PROJECT}
    assert not fake.issues
    assert [(r.method, r.path) for r in service.requests] == [
        ("GET", "/rest/api/3/myself"),
        ("GET", f"/rest/api/3/project/{PROJECT}"),
    ]


def test_missing_project_is_a_permanent_error_naming_it(
    jira: tuple[FakeJira, FakeService], notifier: JiraNotifier
) -> None:
    notifier.config = notifier.config.model_copy(update={"project": "NOPE"})
    with pytest.raises(IntegrationError) as failed:
        notifier.send(make_alert("test"))
    assert failed.value.permanent and "NOPE" in failed.value.message


def test_wrong_credentials_are_permanent(jira: tuple[FakeJira, FakeService]) -> None:
    config = JiraChannel(
        type="jira", url=jira[1].url, email=EMAIL, api_token="wrong", project=PROJECT
    )
    channel = build(config)
    try:
        with pytest.raises(IntegrationError) as failed:
            channel.send(make_alert())
    finally:
        channel.close()
    assert failed.value.permanent and "401" in failed.value.message
    assert not jira[0].issues


@pytest.mark.parametrize(
    ("reply", "wait"),
    [
        (Reply(429, {"errorMessages": ["Rate limit"]}, {"Retry-After": "30"}), 30.0),
        (Reply(502, b"<html>Bad Gateway</html>", {"content-type": "text/html"}), None),
    ],
)
def test_rate_limits_and_outages_are_transient(
    jira: tuple[FakeJira, FakeService],
    notifier: JiraNotifier,
    reply: Reply,
    wait: float | None,
) -> None:
    jira[1].script(reply)
    with pytest.raises(IntegrationError) as failed:
        notifier.send(make_alert())
    assert not failed.value.permanent
    assert failed.value.retry_after == wait
    assert not jira[0].issues


def test_an_early_warning_gets_no_ticket(notifier: JiraNotifier) -> None:
    assert not notifier.wants(make_alert("warn", kind="quality", severity="critical", warning=True))
    assert not notifier.wants(make_alert("resolve", warning=True, thread={"key": "DATA-1"}))


def test_an_automation_message_opens_a_ticket_of_its_own(
    jira: tuple[FakeJira, FakeService], notifier: JiraNotifier
) -> None:
    fake, _ = jira
    url = "https://coplane.example.com/automations/on-bad-data"
    alert = make_alert(
        "notify",
        reason="wh.orders failed its checks\nsee the run",
        kind="automation",
        severity="info",
        sla="",
        url=url,
        automation="on-bad-data",
        event="check.failed",
    )
    assert notifier.wants(alert)  # whatever its severity: the automation named this channel
    assert notifier.send(alert) is not None
    issue = fake.issues["DATA-1"]
    assert issue.fields["summary"] == "wh.orders failed its checks"
    words = " ".join(texts(issue.fields["description"]))
    assert "Automation: " in words and "on-bad-data" in words and "check.failed" in words
    assert links(issue.fields["description"]) == [url]
