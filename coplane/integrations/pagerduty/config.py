"""The PagerDuty channel's configuration, as written under `channels:` with `type: pagerduty`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from coplane.alerts.channels import ChannelBase, OutgoingURL


class PagerDutyChannel(ChannelBase):
    """PagerDuty Events API v2, with an integration's `routing_key`."""

    type: Literal["pagerduty"]
    routing_key: str = Field(repr=False)
    base_url: OutgoingURL | None = None
