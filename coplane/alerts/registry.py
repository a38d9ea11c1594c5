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

from coplane.alerts.notifier import Notifier
from coplane.security.outbound import ALLOW_ENV
from coplane.slas.config import ChannelConfig

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

Builder = Callable[[Any], Notifier]


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
