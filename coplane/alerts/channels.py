"""What every alert channel's configuration has, whichever integration serves it.

Each integration owns its channel's config model (`integrations/<name>/config.py`), a subclass
of `ChannelBase` found through the `coplane.channels` entry-point group, the way its notifier is
found through `coplane.notifiers`; the config loader builds the `channels:` schema from them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, model_validator

from coplane.alerts.urls import config_refusal
from coplane.rules.model import BusinessDays, Duration, TimeZone


class Quiet(BaseModel):
    """A silence: incidents of SLAs with all of `labels` (all incidents when empty) are not
    announced on the channel until `until`, or on the days off of `calendar` (dates in
    `timezone`)."""

    model_config = ConfigDict(extra="forbid")
    labels: dict[str, str] = {}
    until: AwareDatetime | None = None
    calendar: BusinessDays = None
    timezone: TimeZone = "UTC"
    reason: str | None = None

    @model_validator(mode="after")
    def _until_or_calendar(self) -> Quiet:
        if (self.until is None) == (self.calendar is None):
            raise ValueError("give exactly one of until, calendar")
        return self


def _outgoing(url: str) -> str:
    """A channel's URL, unless it points at this host, link-local or metadata addresses.

    A URL holding a `${secret:...}` reference is checked when it is sent to, once resolved.
    """
    refusal = None if "${secret:" in url else config_refusal(url)
    if refusal is not None:
        raise ValueError(refusal)
    return url


OutgoingURL = Annotated[str, AfterValidator(_outgoing)]


class ChannelBase(BaseModel):
    """The alert policy every channel has."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # inputs are secrets
    type: str  # each channel type narrows it to its name, the tag `channels:` entries carry
    repeat_every: Duration | None = None  # re-announce a still-open, unacknowledged incident
    quiet: list[Quiet] = []


# A configured channel of any type: its fields beyond the base are the integration's own.
ChannelConfig = ChannelBase
