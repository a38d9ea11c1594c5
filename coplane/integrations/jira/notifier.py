"""Jira Cloud channel: opens an issue for quality and critical incidents, comments on it while
the incident stays open, and comments and moves it to done when the incident resolves.

An automation's `notify` action naming a Jira channel opens an issue for its message (its
first line the summary): naming the channel there asks for a ticket. Nothing follows it.

Jira Cloud REST API v3: https://developer.atlassian.com/cloud/jira/platform/rest/v3/
"""

from __future__ import annotations

from typing import Any, assert_never

import httpx

from coplane.alerts import text
from coplane.alerts.http import channel_client, request
from coplane.alerts.notifier import Alert, IntegrationError
from coplane.integrations.jira.config import JiraChannel

SERVICE = "Jira"
MAX_SUMMARY = 255  # Jira rejects a longer summary
LABEL = "coplane"
INCIDENT_LABEL = "coplane-incident-"  # + the incident id's 32 hex digits: finds its issue again


def incident_label(incident_id: str) -> str:
    """The label that marks an incident's issue: the id's hex digits, lower case."""
    return INCIDENT_LABEL + incident_id.replace("-", "").lower()


def summary(alert: Alert) -> str:
    """The issue's one-line summary, cut to what Jira accepts."""
    line = " ".join(alert.title.split())
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…"


def _text(value: str, *marks: dict[str, Any]) -> list[dict[str, Any]]:
    """An ADF text node in a list, or no node for an empty string (ADF forbids empty text)."""
    if not value:
        return []
    node: dict[str, Any] = {"type": "text", "text": value}
    if marks:
        node["marks"] = list(marks)
    return [node]


def _paragraph(*content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "paragraph", "content": [node for nodes in content for node in nodes]}


def document(alert: Alert) -> dict[str, Any]:
    """The alert as an Atlassian Document Format doc: headline, a list of fields, the link.

    https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/
    """
    items = [
        {
            "type": "listItem",
            "content": [_paragraph(_text(f"{label}: ", {"type": "strong"}), _text(value))],
        }
        for label, value in text.fields(alert)
    ]
    link = {"type": "link", "attrs": {"href": alert.url}}
    return {
        "type": "doc",
        "version": 1,
        "content": [
            _paragraph(_text(text.headline(alert))),
            {"type": "bulletList", "content": items},
            _paragraph(_text(f"{text.link_label(alert)}: "), _text(alert.url, link)),
        ],
    }


def _issue_key(alert: Alert) -> str | None:
    key = (alert.thread or {}).get("key")
    return key if isinstance(key, str) and key else None


class JiraNotifier:
    """Talks to one Jira site as one user (Basic auth with an API token)."""

    def __init__(self, config: JiraChannel, client: httpx.Client | None = None) -> None:
        self.config = config
        self.url = config.url.rstrip("/")
        self.client = client or channel_client(
            base_url=self.url,
            auth=(config.email, config.api_token),
            headers={"Accept": "application/json"},
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def wants(self, alert: Alert) -> bool:
        """A ticket for quality and critical incidents only; later alerts need that ticket.
        Never one for an early warning: a ticket for a forecast is noise."""
        if alert.warning or alert.action == "warn":
            return False
        if alert.action in ("test", "notify"):
            return True
        if alert.action == "trigger":
            return alert.kind == "quality" or alert.severity == "critical"
        return _issue_key(alert) is not None

    def send(self, alert: Alert) -> dict[str, Any] | None:
        """Create, comment on or close the incident's issue; for a test, check access only."""
        if alert.action == "test":
            return self._check()
        if alert.action == "trigger" or alert.action == "notify":  # narrows for assert_never
            return self._open(alert)
        key = _issue_key(alert)
        if key is None:
            return None  # no issue to update: `wants` declines such alerts
        if alert.action == "repeat":
            return {"key": key, "comment": self._comment(key, alert)}
        if alert.action == "resolve":
            comment = self._comment(key, alert)
            return {"key": key, "comment": comment, "transition": self._close(key)}
        if alert.action == "warn":
            return None  # `wants` declines early warnings
        assert_never(alert.action)

    def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return request(self.client, method, path, SERVICE, **kwargs)

    def _json(self, method: str, path: str, **kwargs: object) -> dict[str, Any]:
        """The JSON object a call answered; an IntegrationError when the answer is not one."""
        response = self._call(method, path, **kwargs)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise IntegrationError(
                f"{SERVICE} answered {method} {path} with {response.status_code} but no JSON object"
            )
        return answer

    def _open(self, alert: Alert) -> dict[str, Any]:
        label = incident_label(alert.incident_id)
        if alert.attempt > 0:
            # An earlier attempt may have created the issue before failing (a timeout, say).
            found = self._find(label)
            if found is not None:
                return found
        # https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-post
        fields = {
            "project": {"key": self.config.project},
            "issuetype": {"name": self.config.issue_type},
            "summary": summary(alert),
            "description": document(alert),
            "labels": [*self.config.labels, LABEL, label],
        }
        created = self._json("POST", "/rest/api/3/issue", json={"fields": fields})
        return self._thread(created)

    def _find(self, label: str) -> dict[str, Any] | None:
        """The issue carrying `label`, if one exists."""
        # https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-search/#api-rest-api-3-search-jql-post
        body = {"jql": f'labels = "{label}"', "fields": ["key"], "maxResults": 1}
        issues = self._json("POST", "/rest/api/3/search/jql", json=body).get("issues")
        return self._thread(issues[0]) if issues else None

    def _thread(self, issue: dict[str, Any]) -> dict[str, Any]:
        key = issue.get("key")
        if not isinstance(key, str) or not key:
            raise IntegrationError(f"{SERVICE} answered an issue without a key: {issue!r:.200}")
        return {"key": key, "id": issue.get("id"), "url": f"{self.url}/browse/{key}"}

    def _comment(self, key: str, alert: Alert) -> str | None:
        """Add the alert as a comment; its id."""
        # https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issue-comments/#api-rest-api-3-issue-issueidorkey-comment-post
        path = f"/rest/api/3/issue/{key}/comment"
        comment = self._json("POST", path, json={"body": document(alert)}).get("id")
        return str(comment) if comment is not None else None

    def _close(self, key: str) -> str | None:
        """Move the issue to a done status if its workflow offers one; the transition's id."""
        # https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-issueidorkey-transitions-get
        path = f"/rest/api/3/issue/{key}/transitions"
        transitions = self._json("GET", path).get("transitions") or []
        done = next(
            (
                t
                for t in transitions
                if ((t.get("to") or {}).get("statusCategory") or {}).get("key") == "done"
            ),
            None,
        )
        if done is None:
            return None  # already closed, or a workflow without a done status: the comment stays
        # https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-issues/#api-rest-api-3-issue-issueidorkey-transitions-post
        self._call("POST", path, json={"transition": {"id": done["id"]}})
        return str(done["id"])

    def _check(self) -> dict[str, Any]:
        """Check the credentials and the project, creating nothing."""
        # https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-myself/#api-rest-api-3-myself-get
        self._call("GET", "/rest/api/3/myself")
        project = self.config.project
        # https://developer.atlassian.com/cloud/jira/platform/rest/v3/api-group-projects/#api-rest-api-3-project-projectidorkey-get
        try:
            self._call("GET", f"/rest/api/3/project/{project}")
        except IntegrationError as exc:
            if exc.permanent:
                raise IntegrationError(
                    f"Jira project {project} cannot be used by {self.config.email}: {exc.message}",
                    permanent=True,
                ) from exc
            raise
        return {"checked": project}


def build(config: JiraChannel) -> JiraNotifier:
    """The notifier for a `type: jira` channel."""
    return JiraNotifier(config)
