"""The Jira channel's configuration, as written under `channels:` with `type: jira`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from coplane.alerts.channels import ChannelBase, OutgoingURL


class JiraChannel(ChannelBase):
    """Jira: an issue of `issue_type` in `project`, as `email` with an API token."""

    type: Literal["jira"]
    url: OutgoingURL
    email: str
    api_token: str = Field(repr=False)
    project: str
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=list)
