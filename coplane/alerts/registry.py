"""Which notifier serves which channel type: the built-in ones and those of installed plugins.

Built-in channels are registered through the same entry-point group a third-party package
uses (`coplane.notifiers`, each entry naming a `build(config) -> Notifier` function), so a
plugin's channel is found exactly the way Slack's is.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from coplane.alerts.channels import ChannelConfig
from coplane.alerts.notifier import Notifier
from coplane.security.outbound import ALLOW_ENV

ENTRY_POINT_GROUP = "coplane.notifiers"

# Also declared under [project.entry-points."coplane.notifiers"] in pyproject.toml; listed
# here too so that a source checkout that was never installed still finds them.
BUILTIN = {
    "slack": "coplane.integrations.slack.notifier:build",
    "pagerduty": "coplane.integrations.pagerduty.notifier:build",
    "jira": "coplane.integrations.jira.notifier:build",
    "github": "coplane.integrations.github.notifier:build",
    "webhook": "coplane.integrations.webhook.notifier:build",
}

CHANNELS_GROUP = "coplane.channels"

# Each channel type's config model, declared under [project.entry-points."coplane.channels"].
BUILTIN_CHANNELS = {
    "slack": "coplane.integrations.slack.config:SlackChannel",
    "pagerduty": "coplane.integrations.pagerduty.config:PagerDutyChannel",
    "jira": "coplane.integrations.jira.config:JiraChannel",
    "github": "coplane.integrations.github.config:GitHubChannel",
    "webhook": "coplane.integrations.webhook.config:WebhookChannel",
}

Builder = Callable[[Any], Notifier]


@cache
def channel_models() -> dict[str, type[ChannelConfig]]:
    """Channel type → its config model, plugins' included; a plugin may not replace a built-in."""
    found = dict(BUILTIN_CHANNELS)
    for entry in entry_points(group=CHANNELS_GROUP):
        found.setdefault(entry.name, entry.value)
    models: dict[str, type[ChannelConfig]] = {}
    for kind, target in found.items():
        module, _, name = target.partition(":")
        model = getattr(import_module(module), name)
        if not (isinstance(model, type) and issubclass(model, ChannelConfig)):
            raise TypeError(f"channel type {kind!r}: {target} is not a ChannelBase model")
        models[kind] = model
    return models


@cache
def notifier_types() -> dict[str, str]:
    """Channel type → 'module:function' of its builder, plugins' entries included."""
    found = dict(BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, entry.value)
    return found


def build_notifier(config: ChannelConfig) -> Notifier:
    """The notifier for one configured channel."""
    target = notifier_types().get(config.type)
    if target is None:
        raise LookupError(f"no notifier is installed for channel type {config.type!r}")
    module, _, function = target.partition(":")
    builder: Builder = getattr(import_module(module), function)
    return builder(config)


def config_hash(config: ChannelConfig, secrets: Mapping[str, str] | None = None) -> str:
    """A fingerprint of a channel's settings and of when the stored secrets it names were set:
    a changed one re-enables a disabled channel."""
    text = config.model_dump_json()
    if secrets:
        text += json.dumps(dict(sorted(secrets.items())))
    allowed = os.environ.get(ALLOW_ENV, "")
    if allowed:  # allowing an address may fix a channel that was refused
        text += "\n" + allowed
    return hashlib.sha256(text.encode()).hexdigest()
