"""GitHub channel: opens an issue for each incident, comments on it while the incident stays
open, and comments and closes it when the incident resolves.

An automation's `notify` action naming a GitHub channel opens an issue for its message (its
first line the title): naming the channel there asks for an issue. Nothing follows it.

GitHub REST API, issues: https://docs.github.com/en/rest/issues/issues
"""

from __future__ import annotations

import re
from typing import Any, assert_never

import httpx

from coplane.alerts import text
from coplane.alerts.http import channel_client, request
from coplane.alerts.notifier import Alert, IntegrationError
from coplane.alerts.urls import RefusedURL
from coplane.integrations.github.config import GitHubChannel

SERVICE = "GitHub"
API = "https://api.github.com"
API_VERSION = "2022-11-28"  # https://docs.github.com/en/rest/about-the-rest-api/api-versions
MAX_TITLE = 256
RECENT = 30  # issues looked through for one an earlier attempt created


def marker(incident_id: str) -> str:
    """The hidden line in an issue's body that names its incident."""
    return f"<!-- coplane-incident: {incident_id} -->"


def title(alert: Alert) -> str:
    """The issue's one-line title."""
    line = " ".join(alert.title.split())
    return line if len(line) <= MAX_TITLE else line[: MAX_TITLE - 1] + "…"


# The characters that open Markdown (and HTML) constructs, backslash-escaped, which CommonMark
# allows for any ASCII punctuation (https://spec.commonmark.org/0.31.2/#backslash-escapes)
# and GitHub renders as the character itself. A line's leading - + = > or "1." would start a
# list, a heading underline or a quote.
_PUNCTUATION = re.compile(r"([\\`*_\[\]()#<>!|~&]|^[-+=>])")
_ORDERED = re.compile(r"^(\d+)\.")  # "1." (its ")" form is escaped above)


def escape(value: str) -> str:
    """Producer text as literal Markdown on one line: no headings, links, HTML, emphasis or
    tables of its making, and no @mention that would notify people.

    Characters that open markup are backslash-escaped; GitHub links mentions in the rendered
    text, escaped or not, so an @ is followed by a zero-width space."""
    line = _PUNCTUATION.sub(r"\\\1", " ".join(value.split()))
    return _ORDERED.sub(r"\1\\.", line).replace("@", "@\u200b")


def _cell(value: str) -> str:
    """A value made safe for one Markdown table cell."""
    return escape(value)


def body(alert: Alert, *, mark: bool = False) -> str:
    """The alert in Markdown: headline, a table of fields, the link (and the incident marker)."""
    lines = [escape(text.headline(alert)), "", "| | |", "| --- | --- |"]
    lines += [f"| **{label}** | {_cell(value)} |" for label, value in text.fields(alert)]
    lines += ["", f"[Open the {text.link_label(alert).lower()} in coplane]({alert.url})"]
    if mark:
        lines += ["", marker(alert.incident_id)]
    return "\n".join(lines)


def _issue_number(alert: Alert) -> int | None:
    number = (alert.thread or {}).get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


class GitHubNotifier:
    """Talks to one repository with a token (classic, fine-grained or a GitHub App's)."""

    def __init__(self, config: GitHubChannel, client: httpx.Client | None = None) -> None:
        self.config = config
        self.repository = config.repository
        self.client = client or channel_client(
            base_url=(config.base_url or API).rstrip("/"),
            headers={
                "Authorization": f"Bearer {config.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
            },
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def wants(self, alert: Alert) -> bool:
        """Every incident gets an issue; later alerts need that issue. An early warning gets
        none: an issue for a forecast is noise."""
        if alert.warning or alert.action == "warn":
            return False
        if alert.action in ("test", "trigger", "notify"):
            return True
        return _issue_number(alert) is not None

    def send(self, alert: Alert) -> dict[str, Any] | None:
        """Create, comment on or close the incident's issue; for a test, check access only."""
        if alert.action == "test":
            return self._check()
        if alert.action == "trigger" or alert.action == "notify":  # narrows for assert_never
            return self._open(alert)
        number = _issue_number(alert)
        if number is None:
            return None  # no issue to update: `wants` declines such alerts
        if alert.action == "repeat":
            return {"number": number, "comment": self._comment(number, alert)}
        if alert.action == "resolve":
            comment = self._comment(number, alert)
            # https://docs.github.com/en/rest/issues/issues#update-an-issue
            closed = {"state": "closed", "state_reason": "completed"}
            self._json("PATCH", f"{self._repo}/issues/{number}", json=closed)
            return {"number": number, "comment": comment, "closed": True}
        if alert.action == "warn":
            return None  # `wants` declines early warnings
        assert_never(alert.action)

    @property
    def _repo(self) -> str:
        return f"/repos/{self.repository}"

    def _json(self, method: str, path: str, **kwargs: object) -> Any:
        """The JSON a call answered; an IntegrationError when the answer is not JSON."""
        response = request(self.client, method, path, SERVICE, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise IntegrationError(
                f"{SERVICE} answered {method} {path} with {response.status_code} but no JSON"
            ) from exc

    def _open(self, alert: Alert) -> dict[str, Any]:
        if alert.attempt > 0:
            # An earlier attempt may have created the issue before failing (a timeout, say).
            found = self._find(marker(alert.incident_id))
            if found is not None:
                return found
        # https://docs.github.com/en/rest/issues/issues#create-an-issue
        issue = {
            "title": title(alert),
            "body": body(alert, mark=True),
            "labels": self.config.labels,
        }
        return self._thread(self._json("POST", f"{self._repo}/issues", json=issue))

    def _find(self, mark: str) -> dict[str, Any] | None:
        """The most recent issue whose body carries `mark`, if one exists."""
        # https://docs.github.com/en/rest/issues/issues#list-repository-issues
        params = {
            "state": "all",
            "per_page": RECENT,
            "sort": "created",
            "direction": "desc",
        }
        issues = self._json("GET", f"{self._repo}/issues", params=params)
        for issue in issues if isinstance(issues, list) else []:
            if isinstance(issue, dict) and mark in (issue.get("body") or ""):
                return self._thread(issue)
        return None

    def _thread(self, issue: Any) -> dict[str, Any]:
        number = issue.get("number") if isinstance(issue, dict) else None
        if not isinstance(number, int):
            raise IntegrationError(f"{SERVICE} answered an issue without a number: {issue!r:.200}")
        return {"number": number, "url": issue.get("html_url")}

    def _comment(self, number: int, alert: Alert) -> int | None:
        """Add the alert as a comment; its id."""
        # https://docs.github.com/en/rest/issues/comments#create-an-issue-comment
        path = f"{self._repo}/issues/{number}/comments"
        answer = self._json("POST", path, json={"body": body(alert)})
        comment = answer.get("id") if isinstance(answer, dict) else None
        return comment if isinstance(comment, int) else None

    def _check(self) -> dict[str, Any]:
        """Check that the token sees the repository and that it takes issues, creating nothing."""
        # https://docs.github.com/en/rest/repos/repos#get-a-repository
        try:
            repo = self._json("GET", self._repo)
        except IntegrationError as exc:
            if exc.permanent and not isinstance(exc, RefusedURL):
                raise IntegrationError(
                    f"GitHub repository {self.repository} cannot be used with this token "
                    f"(missing, private to others, or the token lacks access): {exc.message}",
                    permanent=True,
                ) from exc
            raise
        if isinstance(repo, dict) and repo.get("has_issues") is False:
            raise IntegrationError(
                f"GitHub repository {self.repository} has issues turned off", permanent=True
            )
        return {"checked": self.repository}


def build(config: GitHubChannel) -> GitHubNotifier:
    """The notifier for a `type: github` channel."""
    return GitHubNotifier(config)
