"""The GitHub channel against a fake GitHub REST API that checks the documented request shapes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from coplane.alerts.notifier import Action, Alert, IntegrationError
from coplane.integrations.github.config import GitHubChannel
from coplane.integrations.github.notifier import GitHubNotifier, body, build, escape, marker
from tests.fake_http import FakeService, Reply, Request

TOKEN = "ghp_test_token"
REPOSITORY = "acme/data"
PREFIX = "/api/v3"  # served like GitHub Enterprise, to check the base URL's path is kept
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
INCIDENT = "5f1d7c2a-0d4e-4b8f-9a51-3c2e1b0a9d87"


def make_alert(action: Action = "trigger", **changes: Any) -> Alert:
    """An alert about a late table (a freshness SLA); `changes` override any field."""
    alert = Alert(
        action=action,
        channel="issues",
        incident_id=INCIDENT,
        sla="sales_fresh",
        kind="freshness",
        severity="warning",
        reason="warehouse.sales not updated since 2024-05-01T09:00:00+00:00",
        resource="warehouse.sales",
        affected=["dashboards.sales | daily"],
        due=NOW - timedelta(minutes=5),
        opened=NOW,
        url="https://coplane.example.com/incidents/5f1d7c2a",
    )
    return replace(alert, **changes)


@dataclass
class FakeGitHub:
    """The issues part of GitHub's REST API for one repository."""

    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[str]] = field(default_factory=dict)
    has_issues: bool = True
    slow_create: float = 0.0  # seconds the first create takes after storing the issue
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, req: Request) -> Reply:
        if req.headers.get("authorization") != f"Bearer {TOKEN}":
            return Reply(401, {"message": "Bad credentials"})
        assert req.headers.get("accept") == "application/vnd.github+json"
        assert req.headers.get("x-github-api-version") == "2022-11-28"
        assert req.path.startswith(PREFIX + "/repos/"), req.path
        path = req.path.removeprefix(PREFIX)
        repo = f"/repos/{REPOSITORY}"
        if not (path == repo or path.startswith(repo + "/")):
            return Reply(404, {"message": "Not Found"})
        rest = path.removeprefix(repo).strip("/").split("/")
        match req.method, rest:
            case "GET", [""]:
                return Reply(200, {"full_name": REPOSITORY, "has_issues": self.has_issues})
            case "POST", ["issues"]:
                return self.create(req.json())
            case "GET", ["issues"]:
                return self.list(req.query)
            case "POST", ["issues", number, "comments"] if int(number) in self.issues:
                body = req.json()["body"]
                assert isinstance(body, str) and body
                self.comments.setdefault(int(number), []).append(body)
                return Reply(201, {"id": 900 + len(self.comments[int(number)])})
            case "PATCH", ["issues", number] if int(number) in self.issues:
                update = req.json()
                assert update.get("state") in ("open", "closed"), update
                assert update.get("state_reason") in (None, "completed", "not_planned"), update
                self.issues[int(number)].update(update)
                return Reply(200, self.issues[int(number)])
        return Reply(404, {"message": "Not Found"})

    def create(self, body: dict[str, Any]) -> Reply:
        assert isinstance(body["title"], str) and body["title"], body
        assert isinstance(body["body"], str), body
        assert isinstance(body["labels"], list), body
        with self._lock:
            number = len(self.issues) + 1
            issue = {
                "number": number,
                "html_url": f"https://github.com/{REPOSITORY}/issues/{number}",
                "title": body["title"],
                "body": body["body"],
                "labels": [{"name": name} for name in body["labels"]],
                "state": "open",
                "state_reason": None,
            }
            self.issues[number] = issue
            slow, self.slow_create = self.slow_create, 0.0
        if slow:
            time.sleep(slow)
        return Reply(201, issue)

    def list(self, query: dict[str, list[str]]) -> Reply:
        assert query == {
            "state": ["all"],
            "per_page": ["30"],
            "sort": ["created"],
            "direction": ["desc"],
        }, query
        newest = sorted(self.issues.values(), key=lambda i: -int(i["number"]))
        # issues created by people, and a pull request (which has no body), come first
        others = [
            {"number": 99, "html_url": "x", "body": "unrelated"},
            {"number": 98, "html_url": "y", "body": None, "pull_request": {}},
        ]
        return Reply(200, others + newest)


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, FakeService]]:
    fake = FakeGitHub()
    with FakeService(fake) as service:
        yield fake, service


def make_notifier(service: FakeService, token: str = TOKEN, **changes: Any) -> GitHubNotifier:
    config = GitHubChannel(
        type="github",
        repository=REPOSITORY,
        token=token,
        base_url=service.url + PREFIX,
        labels=["incident", "data"],
    )
    return build(config.model_copy(update=changes))


@pytest.fixture
def notifier(github: tuple[FakeGitHub, FakeService]) -> Iterator[GitHubNotifier]:
    channel = make_notifier(github[1])
    yield channel
    channel.close()


def test_incident_opens_one_issue_with_reason_fields_and_link(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    fake, service = github
    alert = make_alert()
    assert notifier.wants(alert)  # every incident, even a warning about freshness

    thread = notifier.send(alert)

    assert list(fake.issues) == [1]
    issue = fake.issues[1]
    assert thread == {"number": 1, "url": f"https://github.com/{REPOSITORY}/issues/1"}
    assert issue["title"] == "[warning] sales_fresh breached"
    assert issue["labels"] == [{"name": "incident"}, {"name": "data"}]
    assert alert.reason in issue["body"]
    assert f"]({alert.url})" in issue["body"]
    assert "| **Resource** | warehouse.sales |" in issue["body"]
    assert "dashboards.sales \\| daily" in issue["body"]  # a pipe does not break the table
    assert marker(INCIDENT) in issue["body"]
    assert [r.method for r in service.requests] == ["POST"]  # no lookup on a first attempt


def test_which_alerts_are_wanted(notifier: GitHubNotifier) -> None:
    assert notifier.wants(make_alert(severity="info"))
    assert notifier.wants(make_alert("test"))
    assert not notifier.wants(make_alert("resolve", thread=None))
    assert not notifier.wants(make_alert("repeat", thread={"key": "DATA-1"}))
    assert notifier.wants(make_alert("repeat", thread={"number": 3, "url": "u"}))


def test_resolve_comments_and_closes_the_issue(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    fake, _ = github
    thread = notifier.send(make_alert())

    notifier.send(make_alert("repeat", thread=thread))
    assert fake.issues[1]["state"] == "open"
    answer = notifier.send(make_alert("resolve", thread=thread, resolved=NOW))

    assert fake.issues[1]["state"] == "closed"
    assert fake.issues[1]["state_reason"] == "completed"
    first, last = fake.comments[1]
    assert first.startswith("Still open")
    assert last.startswith("Resolved: sales\\_fresh is met again")  # _ escaped: no emphasis
    assert marker(INCIDENT) not in last  # only the issue itself is found by its marker
    assert answer == {"number": 1, "comment": 902, "closed": True}


def test_retry_after_a_timeout_reuses_the_issue_the_first_try_created(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    fake, _ = github
    fake.slow_create = 1.0
    notifier.client.timeout = httpx.Timeout(0.3)

    with pytest.raises(IntegrationError) as failed:
        notifier.send(make_alert())
    assert not failed.value.permanent

    thread = notifier.send(make_alert(attempt=1))

    assert list(fake.issues) == [1]
    assert thread == {"number": 1, "url": f"https://github.com/{REPOSITORY}/issues/1"}


def test_retry_creates_the_issue_when_the_first_try_did_not(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    fake, service = github
    service.script(Reply(502, b"Bad Gateway", {"content-type": "text/plain"}))
    with pytest.raises(IntegrationError) as failed:
        notifier.send(make_alert())
    assert not failed.value.permanent and failed.value.retry_after is None

    thread = notifier.send(make_alert(attempt=1))

    assert list(fake.issues) == [1] and thread is not None and thread["number"] == 1


def test_test_alert_checks_the_repository_and_creates_nothing(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    fake, service = github
    assert notifier.send(make_alert("test")) == {"checked": REPOSITORY}
    assert not fake.issues
    assert [(r.method, r.path) for r in service.requests] == [
        ("GET", f"{PREFIX}/repos/{REPOSITORY}")
    ]


def test_missing_repository_is_a_permanent_error_naming_it(
    github: tuple[FakeGitHub, FakeService],
) -> None:
    channel = make_notifier(github[1], repository="acme/gone")
    try:
        with pytest.raises(IntegrationError) as failed:
            channel.send(make_alert("test"))
    finally:
        channel.close()
    assert failed.value.permanent and "acme/gone" in failed.value.message


def test_repository_without_issues_is_a_permanent_error(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    github[0].has_issues = False
    with pytest.raises(IntegrationError) as failed:
        notifier.send(make_alert("test"))
    assert failed.value.permanent and REPOSITORY in failed.value.message


def test_bad_token_is_permanent(github: tuple[FakeGitHub, FakeService]) -> None:
    channel = make_notifier(github[1], token="wrong")
    try:
        with pytest.raises(IntegrationError) as failed:
            channel.send(make_alert())
    finally:
        channel.close()
    assert failed.value.permanent and "401 Unauthorized" in failed.value.message
    assert "Bad credentials" not in failed.value.message  # the answer's body is not kept
    assert not github[0].issues


def test_rate_limit_is_transient_until_the_reset(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    reset = int(time.time()) + 120
    github[1].script(
        Reply(
            403,
            {"message": "API rate limit exceeded"},
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
        )
    )
    with pytest.raises(IntegrationError) as failed:
        notifier.send(make_alert())
    assert not failed.value.permanent
    assert failed.value.retry_after is not None and 100 < failed.value.retry_after <= 120
    assert not github[0].issues


def test_too_many_requests_waits_as_told(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    github[1].script(Reply(429, {"message": "slow down"}, {"Retry-After": "60"}))
    with pytest.raises(IntegrationError) as failed:
        notifier.send(make_alert())
    assert not failed.value.permanent and failed.value.retry_after == 60.0


def test_producer_text_is_no_markdown_of_its_own(github: tuple[FakeGitHub, FakeService]) -> None:
    hostile = "# Fix now\n[click](https://evil.example) @acme/oncall <img src=x> **x** 1. a"
    alert = make_alert(reason=hostile, resource="wh.`x`|y", affected=["- a", "@bob"])
    text = body(alert)
    headline = text.splitlines()[0]
    assert headline == (
        "\\# Fix now \\[click\\]\\(https://evil.example\\) @\u200bacme/oncall "
        "\\<img src=x\\> \\*\\*x\\*\\* 1. a"
    )
    assert "| **Resource** | wh.\\`x\\`\\|y |" in text
    assert "\\- a, @\u200bbob" in text
    assert escape("1. first") == "1\\. first"


def test_an_early_warning_gets_no_issue(notifier: GitHubNotifier) -> None:
    assert not notifier.wants(make_alert("warn", warning=True))
    assert not notifier.wants(make_alert("resolve", warning=True, thread={"number": 3}))


def test_an_automation_message_opens_an_issue_of_its_own(
    github: tuple[FakeGitHub, FakeService], notifier: GitHubNotifier
) -> None:
    fake, _ = github
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
    assert notifier.wants(alert)
    assert notifier.send(alert) == {"number": 1, "url": f"https://github.com/{REPOSITORY}/issues/1"}
    issue = fake.issues[1]
    assert issue["title"] == "wh.orders failed its checks"
    assert "| **Automation** | on-bad-data |" in issue["body"]
    assert "| **Event** | check.failed |" in issue["body"]
    assert f"[Open the automation in coplane]({url})" in issue["body"]
