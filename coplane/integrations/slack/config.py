"""The Slack channel's configuration, as written under `channels:` with `type: slack`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from coplane.alerts.channels import ChannelBase, OutgoingURL


class SlackChannel(ChannelBase):
    """Slack, through a bot `token` (chat.postMessage to `channel`) or an incoming `webhook_url`."""

    type: Literal["slack"]
    token: str | None = Field(None, repr=False)
    webhook_url: OutgoingURL | None = Field(None, repr=False)
    channel: str | None = None
    base_url: OutgoingURL | None = None  # the Slack API, for tests and proxies

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackChannel:
        if (self.token is None) == (self.webhook_url is None):
            raise ValueError("give exactly one of token, webhook_url")
        # https://api.slack.com/methods/chat.postMessage: `channel` is required
        if self.token is not None and self.channel is None:
            raise ValueError("a token needs a channel to post to")
        return self
