"""The GitHub channel's configuration, as written under `channels:` with `type: github`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from coplane.alerts.channels import ChannelBase, OutgoingURL


class GitHubChannel(ChannelBase):
    """A GitHub issue in `repository` ("owner/name"), with `labels`."""

    type: Literal["github"]
    repository: str = Field(pattern=r"^[A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+$")
    token: str = Field(repr=False)
    base_url: OutgoingURL | None = None  # GitHub Enterprise's API
    labels: list[str] = Field(default_factory=list)
