"""The webhook channel's configuration, as written under `channels:` with `type: webhook`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from coplane.alerts.channels import ChannelBase, OutgoingURL


class WebhookChannel(ChannelBase):
    """A JSON POST to `url`, signed with `secret` when given, with extra `headers`."""

    type: Literal["webhook"]
    url: OutgoingURL
    secret: str | None = Field(None, repr=False)
    headers: dict[str, str] = Field({}, repr=False)
